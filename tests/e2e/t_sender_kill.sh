#!/usr/bin/env bash
# A sender killed with SIGKILL at random moments never leaves a name without
# a leading dot that a despooler (or the deliverer) would pick up: every such
# file in the peer's receive and in the outbox is part of a complete pair that
# stock minisign verifies.  A later `send --flush` delivers what was queued.
. "$(dirname "$0")/lib.sh"
mksite PS1 "batch_max = 2" "compression_level = 1"; mksite SS1
peer PS1 SS1
PUB="$T/PS1.pub"
"$S" -C "$T/PS1" key export -o "$PUB" 2>/dev/null
R=$(receive SS1); Q=$(outbox PS1 SS1)
head -c 48M /dev/urandom > "$T/big"
for i in 1 2 3 4 5; do head -c $((i * 70000)) /dev/urandom > "$T/small$i"; done
FILES=("$T/small1" "$T/small2" "$T/big" "$T/small3" "$T/small4" "$T/small5")

ids_in() { find "$1" -maxdepth 1 -name '*.ins' ! -name '.*' -printf '%f\n' | sed 's/^[0-9]*-//; s/\.ins$//' | sort; }
tmp_count() { find "$1" -maxdepth 1 -name '.*.tmp' | wc -l; }

# How long an undisturbed send and flush take, to spread the kills over them.
elapsed_ms() { local s; s=$(date +%s%N); "$@" >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 )); }
ms_send=$(elapsed_ms "$S" -C "$T/PS1" send --to SS1 "${FILES[@]}")
assert_eq "$(check_pairs "$R" "$PUB")" 6 "undisturbed send"
find "$R" -mindepth 1 -delete
"$S" -C "$T/PS1" send --queue-only --to SS1 "${FILES[@]}" >/dev/null
ms_flush=$(elapsed_ms "$S" -C "$T/PS1" send --flush --to SS1)
assert_eq "$(check_pairs "$R" "$PUB")" 6 "undisturbed flush"
find "$R" -mindepth 1 -delete
echo "# an undisturbed send takes ${ms_send} ms, a flush ${ms_flush} ms"

leftover_tmp=0 redelivered=0 orphans=0 killed=0
ROUNDS=8
for round in $(seq 1 $ROUNDS); do
  if [ $((round % 2)) = 1 ]; then
    what="send"; ms=$ms_send
    "$S" -C "$T/PS1" send --to SS1 "${FILES[@]}" >/dev/null 2>&1 & pid=$!
  else
    # Kill the delivery: queue first, then kill a flush.
    what="send --flush"; ms=$ms_flush
    "$S" -C "$T/PS1" send --queue-only --to SS1 "${FILES[@]}" >/dev/null
    "$S" -C "$T/PS1" send --flush --to SS1 >/dev/null 2>&1 & pid=$!
  fi
  delay=$(( RANDOM % (ms + 50) ))
  sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
  if kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
  wait "$pid" 2>/dev/null || true

  # Orphan packages are reported, not accepted: check_pairs fails on them.
  for d in "$R" "$Q"; do
    for p in $(find "$d" -maxdepth 1 -name '*.pck' ! -name '.*' -printf '%f\n'); do
      [ -f "$d/${p%.pck}.ins" ] || { orphans=$((orphans + 1)); echo "# round $round: orphan $d/$p"; }
    done
  done
  nr=$(check_pairs "$R" "$PUB") || exit 1
  nq=$(check_pairs "$Q" "$PUB") || exit 1
  t=$(( $(tmp_count "$R") + $(tmp_count "$Q") ))
  leftover_tmp=$((leftover_tmp + t))
  echo "# round $round: killed $what after ${delay} ms: $nr pair(s) in receive, $nq queued, $t temporary file(s) left"

  before_r=$(ids_in "$R"); before_q=$(ids_in "$Q")
  both=$(comm -12 <(echo "$before_r") <(echo "$before_q") | grep -c . || true)
  redelivered=$((redelivered + both))
  "$S" -C "$T/PS1" send --flush --to SS1 >/dev/null || fail "round $round: flush after the kill failed"
  assert_eq "$(count_files "$Q")" 0 "round $round: outbox empty after the flush"
  assert_eq "$(ids_in "$R")" "$(sort -u <(echo "$before_r") <(echo "$before_q") | grep .)" \
    "round $round: receive holds what was delivered plus what was queued"
  nr=$(check_pairs "$R" "$PUB") || exit 1
  # What was published is whole: every file either arrived or was never queued,
  # and a queued file's payload is intact.
  for ins in "$R"/*.ins; do
    [ -e "$ins" ] || continue
    name=$(tc_field "$ins" name)
    python3 - "${ins%.ins}.pck" "$T/$name" <<'PY' || fail "round $round: payload of $name differs"
import sys, zlib
assert zlib.decompress(open(sys.argv[1], 'rb').read()) == open(sys.argv[2], 'rb').read()
PY
  done
  # Clear for the next round (temporary files of the killed writer, too).
  find "$R" -mindepth 1 -delete
  find "$Q" -maxdepth 1 -name '.*.tmp' -delete
done
echo "# $killed of $ROUNDS rounds killed a running sender; $leftover_tmp temporary file(s) left in all; $redelivered pair(s) were in both receive and outbox after a kill; $orphans orphan package(s)"
assert_eq "$orphans" 0 "orphan packages"
pass "SIGKILL at random moments leaves only complete, verifiable pairs"
