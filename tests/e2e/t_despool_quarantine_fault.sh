#!/usr/bin/env bash
# Quarantine moves both files of a pair or neither (issue 17, defect 3):
# with despoolr.box/rejected unusable (here: another filesystem, so the
# rename fails like on a full or read-only disk), a forged pair stays whole
# in receive with 4426 - once, not on every scan - and the status text says
# what happened; once rejected/ works again the pair is quarantined (4407)
# with its .why file.
. "$(dirname "$0")/lib.sh"
mksite PS1; mksite SS1; pair PS1 SS1; despool_once SS1 >/dev/null
J=$(rejected SS1); R=$(receive SS1)
if ! mount -t tmpfs -o size=1m tmpfs "$J" 2>/dev/null; then
  echo "SKIP: cannot mount a tmpfs on $J (not root, or no mount namespace)"; exit 0
fi
MOUNTED=$J
trap 'umount "$MOUNTED" 2>/dev/null || true; cleanup' EXIT
F=$T/forge; mkdir "$F"
printf 'forged payload\n' > "$T/p.txt"
id=$(forge "$F" "$T/p.txt" name=p.txt)
printf 'tampered' >> "$F/$id.pck" # the signature no longer matches: 4407
mv "$F/$id.pck" "$F/$id.ins" "$R/"
despool_once SS1 >/dev/null || true
despool_once SS1 >/dev/null || true
assert_file "$R/$id.ins"; assert_file "$R/$id.pck"
assert_eq "$(count_all "$J")" 0 "nothing (no half pair, no .why) in rejected/"
assert_eq "$(status_count SS1 4426)" 1 "4426 once, not on every scan"
assert_eq "$(status_count SS1 4407)" 0 "no 4407 that says 'moved to despoolr.box/rejected'"
status_text SS1 4426 | grep -q "status 4407" || fail "4426 does not name the verdict: $(status_text SS1 4426)"
assert_no_file "$(incoming SS1)/p.txt"
pass "rejected/ unusable: the pair stays whole in receive, 4426 once, nothing delivered"
umount "$J"; MOUNTED=
despool_once SS1 >/dev/null
assert_file "$J/$id.ins"; assert_file "$J/$id.pck"; assert_file "$J/$id.why"
assert_eq "$(count_all "$R")" 0 "receive empty"
assert_eq "$(status_count SS1 4407)" 1 "quarantined with its verdict once rejected/ works"
pass "rejected/ usable again: both files and the .why moved, 4407"
