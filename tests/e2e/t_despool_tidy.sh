#!/usr/bin/env bash
# Temporary files that a sender killed mid-copy left in receive are removed
# once they are two days old (with a log line); fresh ones are left alone,
# their writer may still be working.
. "$(dirname "$0")/lib.sh"
mksite SS1
R=$(receive SS1)
echo partial > "$R/.0123456789abcdef0123456789abcdef.pck.1a2b3c4d.tmp"
touch -d '-3 days' "$R/.0123456789abcdef0123456789abcdef.pck.1a2b3c4d.tmp"
echo writing > "$R/.fedcba9876543210fedcba9876543210.ins.5e6f7a8b.tmp"
despool_once SS1 >/dev/null
assert_no_file "$R/.0123456789abcdef0123456789abcdef.pck.1a2b3c4d.tmp"
assert_file "$R/.fedcba9876543210fedcba9876543210.ins.5e6f7a8b.tmp"
grep -q "Removed .0123456789abcdef0123456789abcdef.pck.1a2b3c4d.tmp" "$T/SS1/logs/despool.log" ||
  fail "the removal is not logged"
pass "stale temporary files are swept from receive, fresh ones kept"
