#!/usr/bin/env bash
# A queued instruction whose package vanished from the outbox must not block
# the peer's queue: it is set aside with 4506 and the rest is delivered.
. "$(dirname "$0")/lib.sh"
# One pair per file: the test is about a pair that lost its package.
mksite PS1 "bundle_max_files = 1"; mksite SS1; pair PS1 SS1
for f in one two three; do echo "$f" > "$T/$f.txt"; done
"$S" -C "$T/PS1" send --to SS1 --queue-only "$T/one.txt" "$T/two.txt" "$T/three.txt" >/dev/null
box=$T/PS1/inboxes/schedule.box/outbox/SS1
rm "$(ls "$box"/*.pck | sed -n 2p)"
rc=0; "$S" -C "$T/PS1" send --flush --to SS1 >/dev/null || rc=$?
assert_eq "$rc" 0 "the flush succeeds"
assert_eq "$(status_count PS1 4506)" 1 "broken pair reported (4506)"
assert_eq "$(count_files "$T/PS1/inboxes/schedule.box/broken/SS1")" 1 "broken instruction set aside"
assert_eq "$(count_files "$box")" 0 "outbox empty"
despool_once SS1 >/dev/null
cmp "$T/one.txt" "$(incoming SS1)/one.txt" && cmp "$T/three.txt" "$(incoming SS1)/three.txt" ||
  fail "the good pairs were not delivered"
assert_no_file "$(incoming SS1)/two.txt"
pass "a pair without its package is set aside (4506); the queue keeps flowing"
