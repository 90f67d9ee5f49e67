#!/usr/bin/env bash
# Delivery between two sites the manual-key-exchange way, with stock
# minisign and python3's zlib as independent checks of the wire format.
. "$(dirname "$0")/lib.sh"
mksite PS1; mksite SS1; pair PS1 SS1

head -c 100000 /dev/urandom > "$T/random.bin"
printf 'hello from PS1\n' > "$T/hello.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/hello.txt" "$T/random.bin" >/dev/null
assert_eq "$(count_files "$(receive SS1)")" 4 "two pairs in SS1's receive"
assert_eq "$(find "$(receive SS1)" -name '.*' | wc -l)" 0 "no temporary names left"

for ins in "$(receive SS1)"/*.ins; do
  pck=${ins%.ins}.pck
  out=$(minisign -V -p "$(hman SS1)/PS1.pub" -m "$pck" -x "$ins") || fail "minisign rejects $ins"
  echo "$out" | grep -q "^Trusted comment: sitespool/1 id=$(basename "${ins%.ins}") from=PS1 to=SS1 type=data dest=replmgr.box name=" ||
    fail "trusted comment fields: $out"
done
pass "stock minisign verifies every instruction"

for ins in "$(receive SS1)"/*.ins; do
  name=$(sed -n 's/^trusted comment: .* name=\([^ ]*\) .*/\1/p' "$ins")
  python3 - "${ins%.ins}.pck" "$T/${name}" <<'PY' || fail "python zlib disagrees for $name"
import sys, zlib
data = zlib.decompress(open(sys.argv[1], 'rb').read())
assert data == open(sys.argv[2], 'rb').read()
PY
done
pass "packages are plain zlib streams of the payload"

despool_once SS1 >/dev/null
cmp "$T/hello.txt" "$(incoming SS1)/hello.txt" || fail "hello.txt differs"
cmp "$T/random.bin" "$(incoming SS1)/random.bin" || fail "random.bin differs"
assert_eq "$(count_files "$(receive SS1)")" 0 "receive emptied"
assert_eq "$(status_count SS1 4400)" 2 "two 4400 messages"
grep -q 'STATMSG: ID=4400 SEV=I' "$T/SS1/logs/despool.log" || fail "no STATMSG line in despool.log"
pass "SS1 stored both files (4400) and emptied receive"

# And back the other way.
"$S" -C "$T/SS1" send --to PS1 --name reply.txt "$T/hello.txt" >/dev/null
despool_once PS1 >/dev/null
cmp "$T/hello.txt" "$(incoming PS1)/reply.txt" || fail "reply differs"
pass "delivery works both ways"
