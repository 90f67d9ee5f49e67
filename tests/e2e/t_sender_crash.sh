#!/usr/bin/env bash
# A killed `send` leaves a true account, deterministically: the sender is
# killed (SIGKILL, by strace's fault injection) at the Nth call of each
# system call of its order - flock (the outbox lock), syncfs (packages and
# instructions made durable), renameat (package, then instruction: queued),
# pwrite64 (site.db: the 4504 row; the journal in the lock file), write
# (packages, logs, the printed line), fdatasync and fsync (flushing site.db
# and the outbox).  After each kill:
#   - at every rename: what send printed as queued = what the outbox holds
#     = what status 4504 lists;
#   - at any other call: printed <= recorded (4504) <= queued, and at most
#     the one pair in flight is queued without having been printed;
#   - sending all the files again (without --again) queues exactly the ones
#     that are not queued and names the queued ones ("Already queued");
#   - after send --flush and despool --once at the receiver every file
#     arrives exactly once, with one 4504 and one 4500 each.
# A second pass kills a send that also delivers (renames into the peer's
# receive) and re-sends only the files it did not print.
# With SENDER_CRASH_SEALED=1 (t_sender_crash_sealed.sh) PS1 also trusts
# SS1's key, so every pair is sealed: its instruction names no file, and
# the duplicate check and the late 4504 rely on its rows in site.db.
. "$(dirname "$0")/lib.sh"
command -v strace >/dev/null || { echo "SKIP: strace is not installed (Debian package strace)"; exit 0; }
if ! strace -f -o /dev/null -e inject=getpid:error=EPERM true 2>/dev/null; then
  echo "SKIP: strace cannot trace here (ptrace not permitted)"; exit 0
fi
NFILES=6
# One pair per file, so that there are many crash points between pairs;
# t_sender_bundle.sh kills bundled sends.
mksite PS1 "batch_max = 4" "bundle_max_files = 1"; mksite SS1; pair PS1 SS1
despool_once SS1 >/dev/null # imports PS1's key
if [ "${SENDER_CRASH_SEALED:-0}" = 1 ]; then
  despool_once PS1 >/dev/null # imports SS1's key: data is sealed
fi
mkdir "$T/src" "$T/tpl"
for i in $(seq 1 $NFILES); do head -c $((2000 + i * 300)) /dev/urandom > "$T/src/f$i"; done
FILES=("$T"/src/f*)
cp -a "$T/PS1" "$T/SS1" "$T/tpl/"
reset_sites() { rm -rf "${T:?}/PS1" "${T:?}/SS1"; cp -a "$T/tpl/PS1" "$T/tpl/SS1" "$T/"; }
if [ "${SENDER_CRASH_SEALED:-0}" = 1 ]; then
  "$S" -C "$T/PS1" send --queue-only --to SS1 "${FILES[0]}" >/dev/null
  grep -q ' enc=' "$(outbox PS1 SS1)"/*.ins || fail "PS1 did not seal its data"
  reset_sites
fi

ids_printed() { sed -n "s/^$2 instruction \([0-9a-f]\{32\}\) for SS1: .*/\1/p" "$1" | sort; }
names_printed() { sed -n 's/^Queued instruction [0-9a-f]\{32\} for SS1: //p' "$1" | sort; }
ids_in_outbox() {
  [ -d "$(outbox PS1 SS1)" ] || return 0
  find "$(outbox PS1 SS1)" -maxdepth 1 -name '*.ins' ! -name '.*' -printf '%f\n' |
    sed 's/^[0-9]*-//; s/\.ins$//' | sort
}
ids_in_receive() { find "$(receive SS1)" -maxdepth 1 -name '*.ins' ! -name '.*' -printf '%f\n' | sed 's/\.ins$//' | sort; }
ids_recorded() {
  "$S" -C "$T/PS1" status --id "$1" --json | sed -n 's/.*"istr":\["\([0-9a-f]\{32\}\)".*/\1/p' | sort
}
n_of() { printf '%s\n' "$1" | awk 'NF' | wc -l; }
# subset A B: every line of A is in B.
subset() { [ -z "$(comm -23 <(printf '%s\n' "$1" | awk 'NF') <(printf '%s\n' "$2" | awk 'NF'))" ]; }
oneline() { printf '%s' "$1" | tr '\n' ' '; }

# count_calls CALL MODE...: how often an undisturbed send makes CALL.
count_calls() {
  local call=$1; shift
  reset_sites
  strace -f -o "$T/trace" -e trace="$call" "$S" -C "$T/PS1" send "$@" --to SS1 "${FILES[@]}" >/dev/null
  grep -c " $call(" "$T/trace" || true
}

# exactly_once LABEL: after a flush and a despool, each file once in
# incoming, and one 4504 and one 4500 for each pair that arrived.
exactly_once() {
  local label=$1 f
  "$S" -C "$T/PS1" send --flush --to SS1 >/dev/null || fail "$label: the flush failed"
  assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "$label: no pair left in the outbox after the flush"
  despool_once SS1 >/dev/null || fail "$label: despool failed"
  for f in "${FILES[@]}"; do
    cmp -s "$f" "$(incoming SS1)/${f##*/}" || fail "$label: ${f##*/} missing or different at SS1"
  done
  assert_eq "$(count_all "$(incoming SS1)")" $NFILES "$label: files at SS1 (a second copy would be NAME.<id>)"
  local r4504 r4500
  r4504=$(ids_recorded 4504); r4500=$(ids_recorded 4500)
  assert_eq "$(printf '%s\n' "$r4504" | uniq -d | awk 'NF' | wc -l)" 0 "$label: a 4504 row twice"
  assert_eq "$(n_of "$r4504")" $NFILES "$label: 4504 rows"
  assert_eq "$(oneline "$r4500")" "$(oneline "$r4504")" "$label: a 4500 for each 4504"
}

trials=0 killed=0 inflight=0
# trial LABEL CALL N MODE...: one crash point.
trial() {
  local label=$1 call=$2 n=$3; shift 3
  reset_sites
  local rc=0
  # (in a shell of its own, which reports the kill to /dev/null)
  bash -c '"$@"' _ strace -f -o /dev/null -e inject="$call":signal=KILL:when="$n" \
    "$S" -C "$T/PS1" send "$@" --to SS1 "${FILES[@]}" >"$T/out" 2>/dev/null || rc=$?
  [ "$rc" = 0 ] || killed=$((killed + 1))
  trials=$((trials + 1))
  local printed recorded queued
  printed=$(ids_printed "$T/out" Queued)
  recorded=$(ids_recorded 4504)
  queued=$(printf '%s\n%s\n' "$(ids_in_outbox)" "$(ids_in_receive)" | awk 'NF' | sort -u)
  case $call in
    renameat*)
      assert_eq "$(oneline "$queued")" "$(oneline "$printed")" "$label: queued vs printed"
      assert_eq "$(oneline "$recorded")" "$(oneline "$printed")" "$label: 4504 vs printed" ;;
    *)
      subset "$printed" "$recorded" || fail "$label: printed but not recorded: $(oneline "$printed") / $(oneline "$recorded")"
      subset "$recorded" "$queued" || fail "$label: recorded but not queued: $(oneline "$recorded") / $(oneline "$queued")"
      [ "$(n_of "$queued")" -le $(($(n_of "$printed") + 1)) ] ||
        fail "$label: more than the pair in flight queued but not printed" ;;
  esac
  [ "$(n_of "$queued")" = "$(n_of "$printed")" ] || inflight=$((inflight + 1))
  echo "# $label: exit $rc; printed $(n_of "$printed"), recorded $(n_of "$recorded"), queued $(n_of "$queued")"
}

# --- pass 1: send --queue-only, then everything sent again
for call in flock syncfs renameat pwrite64 write fdatasync fsync; do
  total=$(count_calls "$call" --queue-only)
  [ "$total" -gt 0 ] || fail "an undisturbed send makes no $call call: the test is out of date"
  step=$(( (total + 19) / 20 )) # at most 20 crash points per call
  for ((n = 1; n <= total; n += step)); do
    label="queue-only, killed at $call #$n of $total"
    trial "$label" "$call" "$n" --queue-only
    queued=$(ids_in_outbox)
    "$S" -C "$T/PS1" send --queue-only --to SS1 "${FILES[@]}" >"$T/again" 2>"$T/again.err" ||
      fail "$label: sending again failed: $(cat "$T/again.err")"
    assert_eq "$(oneline "$(ids_printed "$T/again" "Already queued")")" "$(oneline "$queued")" \
      "$label: sending again names exactly the queued files"
    assert_eq "$(n_of "$(ids_printed "$T/again" Queued)")" $((NFILES - $(n_of "$queued"))) \
      "$label: sending again queues the others"
    exactly_once "$label"
  done
done
pass "send --queue-only killed at $trials crash points: printed = queued = recorded; sending again duplicates nothing"

# --- pass 2: a send that delivers too, killed at each rename; the files
# it did not print are sent again.
total=$(count_calls renameat)
for ((n = 1; n <= total; n++)); do
  label="send, killed at renameat #$n of $total"
  trial "$label" renameat "$n"
  names_printed "$T/out" > "$T/done"
  again=()
  for f in "${FILES[@]}"; do grep -qxF "${f##*/}" "$T/done" || again+=("$f"); done
  if [ ${#again[@]} -gt 0 ]; then
    "$S" -C "$T/PS1" send --queue-only --to SS1 "${again[@]}" >/dev/null 2>&1 || fail "$label: sending again failed"
  fi
  exactly_once "$label"
done
echo "# $trials crash points, $killed of them killed the sender, $inflight left a pair queued but not printed"
[ "$killed" -ge $((trials * 3 / 4)) ] || fail "only $killed of $trials crash points killed the sender"
pass "send killed at every rename of publication and delivery: the printed account is exact; nothing arrives twice"
