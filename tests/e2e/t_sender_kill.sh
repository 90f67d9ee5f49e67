#!/usr/bin/env bash
# A sender killed with SIGKILL at random moments never leaves an instruction
# that a despooler (or the deliverer) would pick up without its package:
# every instruction visible in the peer's receive or in the outbox is whole
# and stock minisign verifies it.  Packages go first, so a package may wait
# for its instruction (in receive, with the instruction still queued; or in
# the outbox, from a send killed mid-publish).  A later `send --flush`
# completes or cleans up everything: nothing is lost, nothing is left over.
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

  # Every visible instruction is whole: its package beside it, or (a
  # delivery stopped between packages and instructions) already in receive.
  nr=0; nq=0
  for ins in $(find "$R" "$Q" -maxdepth 1 -name '*.ins' ! -name '.*'); do
    id=$(basename "$ins" .ins); id=${id#*-}
    pck=${ins%.ins}.pck; [ -f "$pck" ] || pck=$R/$id.pck
    [ -f "$pck" ] || fail "round $round: $ins has no package anywhere"
    verify_pair "$PUB" "$pck" "$ins" >/dev/null || fail "round $round: minisign rejects $ins"
    case $ins in "$R"/*) nr=$((nr + 1));; *) nq=$((nq + 1));; esac
  done
  # A package in receive waits for its instruction, which must still be queued.
  for p in $(find "$R" -maxdepth 1 -name '*.pck' ! -name '.*' -printf '%f\n'); do
    id=${p%.pck}
    [ -f "$R/$id.ins" ] || ls "$Q"/*-"$id".ins >/dev/null 2>&1 ||
      { orphans=$((orphans + 1)); echo "# round $round: orphan $R/$p"; }
  done
  t=$(( $(tmp_count "$R") + $(tmp_count "$Q") ))
  leftover_tmp=$((leftover_tmp + t))
  echo "# round $round: killed $what after ${delay} ms: $nr pair(s) in receive, $nq queued, $t temporary file(s) left"

  before_r=$(ids_in "$R"); before_q=$(ids_in "$Q")
  interrupted=$(find "$Q" -maxdepth 1 -name '*.pck' ! -name '.*' -printf '%f\n' |
    while read -r p; do [ -f "$Q/${p%.pck}.ins" ] || echo "$p"; done | grep -c . || true)
  [ "$interrupted" = 0 ] || echo "# round $round: $interrupted queued package(s) without instruction (send killed mid-publish)"
  both=$(comm -12 <(echo "$before_r") <(echo "$before_q") | grep -c . || true)
  redelivered=$((redelivered + both))
  "$S" -C "$T/PS1" send --flush --to SS1 >/dev/null || fail "round $round: flush after the kill failed"
  assert_eq "$(count_files "$Q")" 0 "round $round: outbox empty after the flush"
  assert_eq "$(ids_in "$R")" "$(sort -u <(echo "$before_r") <(echo "$before_q") | grep .)" \
    "round $round: receive holds what was delivered plus what was queued"
  nr=$(check_pairs "$R" "$PUB") || exit 1
  assert_eq "$(find "$Q" -maxdepth 1 -type f -name '*.pck' | wc -l)" 0 "round $round: no package left in the outbox"
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
