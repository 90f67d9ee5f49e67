#!/usr/bin/env bash
# The despooler daemon: pairs dropped while it was down are processed at
# start, pairs arriving while it runs are delivered promptly, a second
# despooler on the same site is refused, SIGTERM stops it cleanly (exit 0,
# 4418); an instruction whose package never arrives is kept and warned
# about (4414) once, not on every scan.
. "$(dirname "$0")/lib.sh"
mksite PS1 "bundle_max_files = 1"; mksite SS1; pair PS1 SS1
despool_once SS1 >/dev/null # import PS1's key
I=$(incoming SS1); R=$(receive SS1)

# ---- 6. pairs dropped while the daemon was down are processed at start ----
start_despooler SS1
stop_despooler "$DPID"
assert_eq "$DRC" 0 "first daemon's exit status"
for i in 1 2 3; do printf 'while down %d\n' "$i" > "$T/down$i.txt"; done
"$S" -C "$T/PS1" send --to SS1 "$T"/down{1,2,3}.txt >/dev/null
assert_eq "$(count_files "$R")" 6 "three pairs waiting while the daemon is down"
start_despooler SS1
wait_until 5 eval '[ "$(count_files "$I")" = 3 ]' || fail "pairs dropped while down not processed at start"
for i in 1 2 3; do cmp "$T/down$i.txt" "$I/down$i.txt" || fail "down$i.txt differs"; done
assert_eq "$(count_all "$R")" 0 "receive emptied at start"
assert_eq "$(status_count SS1 4400)" 3 "three 4400"
pass "pairs dropped while the daemon was down are delivered by its start-up scan"

# While it runs, a new pair is delivered within seconds (rescan_interval is 60 s).
printf 'while up\n' > "$T/up.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/up.txt" >/dev/null
wait_until 5 test -f "$I/up.txt" || fail "pair arriving while the daemon runs not delivered in 5 s"
pass "a pair arriving while the daemon runs is delivered at once"

# ---- 7. a second despooler on the same site is refused ----
rc=0; "$S" -C "$T/SS1" despool >"$T/second.out" 2>&1 & second=$!
DAEMONS+=("$second")
wait_until 10 eval '! kill -0 $second 2>/dev/null' || fail "the second despooler did not exit"
wait "$second" || rc=$?
[ "$rc" -ne 0 ] || fail "a second despooler exited 0"
grep -qi 'already running' "$T/second.out" || fail "no 'already running' message: $(cat "$T/second.out")"
grep -q "pid $DPID" "$T/second.out" || fail "the message does not name the running pid: $(cat "$T/second.out")"
rc=0; "$S" -C "$T/SS1" despool --once >"$T/third.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "despool --once exited 0 while the daemon runs"
grep -qi 'already running' "$T/third.out" || fail "--once: no 'already running' message"
kill -0 "$DPID" || fail "the first despooler died"
assert_eq "$(status_count SS1 4401)" 2 "the refused ones did not report a start"
printf 'still works\n' > "$T/still.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/still.txt" >/dev/null
wait_until 5 test -f "$I/still.txt" || fail "the first despooler stopped working"
pass "a second despooler (daemon or --once) is refused with 'already running' (exit $rc)"

stop_despooler "$DPID"
assert_eq "$DRC" 0 "exit status after SIGTERM"
assert_eq "$(status_count SS1 4418)" 2 "4418 for each stop"
pass "SIGTERM: exit 0 and 4418"

# ---- 8. an instruction whose package never arrives: kept, 4414 once ----
mksite SS2 "backlog_warning_age = 1s" "rescan_interval = 1s"; peer PS1 SS2; exchange PS1 SS2
despool_once SS2 >/dev/null
printf 'package lost\n' > "$T/lost.txt"
"$S" -C "$T/PS1" send --to SS2 "$T/lost.txt" >/dev/null
ins=$(ls "$(receive SS2)" | grep '\.ins$'); id=${ins%.ins}
mv "$(receive SS2)/$id.pck" "$T/late.pck" # the package does not arrive
cp "$(receive SS2)/$ins" "$T/ins.copy"
touch "$(receive SS2)/$ins"; t0=$(date +%s%N)
despool_once SS2 >/dev/null
if [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 900 ]; then # not when the machine is too slow to tell
  assert_eq "$(status_count SS2 4414)" 0 "no warning before backlog_warning_age"
fi
sleep 1.2
for i in 1 2 3; do despool_once SS2 >/dev/null; sleep 1.1; done
assert_eq "$(status_count SS2 4414)" 1 "4414 once over three scans spaced beyond the age"
"$S" -C "$T/SS2" status --id 4414 --json | grep -qF "$ins" || fail "4414 does not name $ins"
"$S" -C "$T/SS2" status --id 4414 --json | grep -q 'waiting for its package' || fail "4414 reason"
start_despooler SS2 # rescans every second
sleep 3.5
stop_despooler "$DPID"
assert_eq "$DRC" 0 "SS2 daemon exit status"
assert_eq "$(status_count SS2 4414)" 1 "still one 4414 after a daemon rescanning every second"
cmp "$T/ins.copy" "$(receive SS2)/$ins" || fail "the waiting instruction was changed or removed"
assert_eq "$(count_all "$(receive SS2)")" 1 "only the instruction waits in receive"
assert_eq "$(count_all "$(rejected SS2)")" 0 "nothing rejected"
assert_eq "$(count_all "$(incoming SS2)")" 0 "nothing delivered"
pass "instruction without its package kept in receive; 4414 raised once"
# When the package finally arrives, the pair is delivered.
mv "$T/late.pck" "$(receive SS2)/$id.pck"
despool_once SS2 >/dev/null
cmp "$T/lost.txt" "$(incoming SS2)/lost.txt" || fail "late package not delivered"
assert_eq "$(count_all "$(receive SS2)")" 0 "receive emptied"
assert_eq "$(sqlite3 -readonly "$T/SS2/site.db" 'SELECT count(*) FROM backlog')" 0 "backlog note cleared"
pass "the late package is delivered with its instruction"

# ---- a failed scan does not stop the daemon: 4423 once, back-off, then delivery ----
# Another program holds site.db's write lock past the busy timeout (10 s).
start_despooler SS2
(echo "BEGIN IMMEDIATE;"; sleep 13; echo "COMMIT;") | sqlite3 "$T/SS2/site.db" & LOCKER=$!
sleep 0.5
printf 'while site.db is locked\n' > "$T/locked.txt"
"$S" -C "$T/PS1" send --to SS2 "$T/locked.txt" >/dev/null
wait_until 20 grep -q "could not finish a scan" "$T/SS2/logs/despool.log" ||
  fail "no 4423 while site.db was locked"
kill -0 "$DPID" 2>/dev/null || fail "the daemon died of a failed scan"
wait "$LOCKER"
wait_until 20 test -f "$(incoming SS2)/locked.txt" || fail "not delivered once site.db was free"
cmp "$T/locked.txt" "$(incoming SS2)/locked.txt" || fail "locked.txt differs"
stop_despooler "$DPID"
assert_eq "$DRC" 0 "exit status after failed scans"
assert_eq "$(status_count SS2 4423)" 1 "4423 stored once for the streak"
grep -q "Scanning works again" "$T/SS2/logs/despool.log" || fail "recovery not logged"
pass "a scan failing on a locked site.db: 4423, the daemon keeps running and delivers afterwards"
