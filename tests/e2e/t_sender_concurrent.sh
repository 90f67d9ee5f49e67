#!/usr/bin/env bash
# Two processes of one sending site do not stall each other: two sends of
# 150 small files each, started together (to the same peer; to two peers;
# a send beside a flush of 150 queued pairs; a send racing a loop of
# `send --flush`), finish within a few seconds
# of one send alone (bound: 4 x one send + 5 s); every 4504 and 4500 is
# stored (none lost to a busy site.db); every pair arrives exactly once,
# in sequence order (no 4415 gap at the receiver).
. "$(dirname "$0")/lib.sh"
N=150
# One pair per file (no bundles): 150 pairs per send make the contention
# this test is about; t_sender_bundle.sh races two bundled sends.
mksite PS1 "bundle_max_files = 1"; mksite SS1; mksite SS2
pair PS1 SS1; pair PS1 SS2
despool_once SS1 >/dev/null; despool_once SS2 >/dev/null # import PS1's key
mkdir "$T/a" "$T/b" "$T/tpl"
for i in $(seq 1 $N); do
  echo "a $i $RANDOM" > "$T/a/a$i.txt"
  echo "b $i $RANDOM" > "$T/b/b$i.txt"
done
cp -a "$T/PS1" "$T/SS1" "$T/SS2" "$T/tpl/"
reset_sites() {
  rm -rf "${T:?}/PS1" "${T:?}/SS1" "${T:?}/SS2"
  cp -a "$T/tpl/PS1" "$T/tpl/SS1" "$T/tpl/SS2" "$T/"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# One send alone: the yardstick.
reset_sites
t0=$(now_ms)
"$S" -C "$T/PS1" send --to SS1 "$T"/a/*.txt >/dev/null || fail "a single send failed"
single=$(($(now_ms) - t0))
bound=$((4 * single + 5000))
echo "# one send of $N files: $(secs $single) s (bound for two at once: $(secs $bound) s)"

# check LABEL SITE FILES...: SITE got exactly FILES, once each, in order.
arrived() {
  local label=$1 site=$2; shift 2
  despool_once "$site" >/dev/null
  local f
  for f in "$@"; do cmp -s "$f" "$(incoming "$site")/${f##*/}" || fail "$label: ${f##*/} missing at $site"; done
  assert_eq "$(count_all "$(incoming "$site")")" $# "$label: files at $site (a second copy would be NAME.<id>)"
  assert_eq "$(status_count "$site" 4415)" 0 "$label: sequence gaps reported by $site"
}
# stored LABEL N: N pairs queued and delivered, each recorded once.
stored() {
  local label=$1 n=$2
  assert_eq "$(status_count PS1 4504)" "$n" "$label: 4504 stored"
  assert_eq "$(status_count PS1 4500)" "$n" "$label: 4500 stored"
  assert_eq "$("$S" -C "$T/PS1" status --id 4500 --json | sed -n 's/.*"istr":\["\([0-9a-f]*\)".*/\1/p' | sort | uniq -d | wc -l)" 0 \
    "$label: a 4500 stored twice"
  if grep -q "Could not store" "$T/PS1/logs/sender.log"; then
    fail "$label: sender.log: $(grep "Could not store" "$T/PS1/logs/sender.log" | head -3)"
  fi
  assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "$label: outbox of SS1 empty"
}
# two LABEL CMD1 -- CMD2: runs both at once; prints and checks the time.
two() {
  local label=$1 t0 rc1=0 rc2=0 p1 p2 took
  shift
  local -a first=() second=()
  while [ "$1" != -- ]; do first+=("$1"); shift; done
  shift; second=("$@")
  t0=$(now_ms)
  "$S" -C "$T/PS1" "${first[@]}" >"$T/out1" 2>"$T/err1" & p1=$!
  "$S" -C "$T/PS1" "${second[@]}" >"$T/out2" 2>"$T/err2" & p2=$!
  wait "$p1" || rc1=$?
  wait "$p2" || rc2=$?
  took=$(($(now_ms) - t0))
  echo "# $label: both done in $(secs $took) s"
  assert_eq "$rc1" 0 "$label: exit of the first ($(cat "$T/err1"))"
  assert_eq "$rc2" 0 "$label: exit of the second ($(cat "$T/err2"))"
  [ "$took" -lt "$bound" ] || fail "$label: took $(secs $took) s, more than $(secs $bound) s"
}

# --- two sends to the same peer
reset_sites
two "two sends to SS1" send --to SS1 "$T"/a/*.txt -- send --to SS1 "$T"/b/*.txt
assert_eq "$(grep -c '^Queued instruction' "$T/out1")" $N "lines printed by the first send"
assert_eq "$(grep -c '^Queued instruction' "$T/out2")" $N "lines printed by the second send"
stored "two sends to SS1" $((2 * N))
arrived "two sends to SS1" SS1 "$T"/a/*.txt "$T"/b/*.txt
pass "two sends to one peer at once: no stall, every notice stored, every pair once"

# --- one send to each of two peers
reset_sites
two "sends to SS1 and SS2" send --to SS1 "$T"/a/*.txt -- send --to SS2 "$T"/b/*.txt
stored "sends to SS1 and SS2" $((2 * N))
assert_eq "$(count_files "$(outbox PS1 SS2)")" 0 "outbox of SS2 empty"
arrived "sends to SS1 and SS2" SS1 "$T"/a/*.txt
arrived "sends to SS1 and SS2" SS2 "$T"/b/*.txt
pass "sends to two peers at once: no stall, every notice stored, every pair once"

# --- a send while a flush delivers 150 queued pairs (the flush holds the
# outbox lock while the send packs)
reset_sites
"$S" -C "$T/PS1" send --queue-only --to SS1 "$T"/b/*.txt >/dev/null
two "a send beside a flush" send --to SS1 "$T"/a/*.txt -- send --flush
stored "send beside a flush" $((2 * N))
arrived "send beside a flush" SS1 "$T"/a/*.txt "$T"/b/*.txt
pass "a send beside a flush of $N pairs: no stall, every notice stored, every pair once"

# --- a send while flushes run over and over
reset_sites
t0=$(now_ms)
"$S" -C "$T/PS1" send --to SS1 "$T"/a/*.txt >"$T/out1" 2>"$T/err1" & p1=$!
flushes=0
while kill -0 "$p1" 2>/dev/null; do
  "$S" -C "$T/PS1" send --flush >/dev/null 2>>"$T/err2" || fail "a flush failed: $(cat "$T/err2")"
  flushes=$((flushes + 1))
done
rc=0; wait "$p1" || rc=$?
took=$(($(now_ms) - t0))
echo "# a send with $flushes flushes beside it: $(secs $took) s"
assert_eq "$rc" 0 "exit of the send ($(cat "$T/err1"))"
[ "$took" -lt "$bound" ] || fail "a send beside flushes took $(secs $took) s"
"$S" -C "$T/PS1" send --flush >/dev/null
stored "send beside flushes" $N
arrived "send beside flushes" SS1 "$T"/a/*.txt
pass "a send beside $flushes flushes: no stall, every notice stored, every pair once"
