#!/usr/bin/env bash
# One despooler per site, and the refusal of a second one names the first
# one's pid - also when both start at the same moment (the pid used to be
# written after the lock file was emptied, so the loser read "pid ?").
. "$(dirname "$0")/lib.sh"
mksite SS1
refusals=0
for i in $(seq 1 25); do
  "$S" -C "$T/SS1" despool >"$T/a.out" 2>&1 & A=$!
  "$S" -C "$T/SS1" despool --once >"$T/b.out" 2>&1 || true
  sleep 0.05
  kill -TERM "$A" 2>/dev/null || true; wait "$A" 2>/dev/null || true
  for f in "$T/a.out" "$T/b.out"; do
    if grep -q "another despooler" "$f"; then
      refusals=$((refusals + 1))
      grep -q "another despooler (pid [0-9][0-9]*) is already running" "$f" ||
        fail "round $i: the refusal does not name a pid: $(cat "$f")"
    fi
  done
done
echo "# $refusals refusals in 25 simultaneous starts"
[ "$refusals" -ge 5 ] || fail "only $refusals refusals: the starts did not overlap"
pass "a second despooler is refused, naming the first one's pid ($refusals times)"
