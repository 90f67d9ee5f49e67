#!/usr/bin/env bash
# Interoperability with stock minisign, both ways, through the real binary:
# `sitespool sign` output verifies with `minisign -V`; a file signed by stock
# minisign verifies with `sitespool verify --site`; and the real contract: an
# instruction written by stock minisign (package made by python3's zlib) is
# delivered by `sitespool despool --once` with the right content.
. "$(dirname "$0")/lib.sh"
mksite PS1; mksite SS1
"$S" -C "$T/PS1" key export -o "$T/PS1.pub" >/dev/null
"$S" -C "$T/SS1" key import "$T/PS1.pub" >/dev/null

# 1. sitespool signs, stock minisign verifies and shows the trusted comment.
printf 'a document from PS1\n' > "$T/doc.txt"
"$S" -C "$T/PS1" sign "$T/doc.txt" -t 'release 1.2 approved by PS1' >/dev/null
assert_file "$T/doc.txt.minisig"
out=$(minisign -V -p "$T/PS1.pub" -m "$T/doc.txt") || fail "minisign rejects sitespool's signature"
echo "$out" | grep -qx 'Trusted comment: release 1.2 approved by PS1' ||
  fail "minisign does not show the trusted comment: $out"
# Tampering is caught by minisign too (so the check above can fail).
printf 'a document from PS1!\n' > "$T/doc2.txt"
cp "$T/doc.txt.minisig" "$T/doc2.txt.minisig"
if minisign -V -p "$T/PS1.pub" -m "$T/doc2.txt" >/dev/null 2>&1; then
  fail "minisign accepted a signature of another file"
fi
pass "sitespool sign output verifies with stock minisign -V"

# 2. Stock minisign signs with PS1's key; SS1 (which imported it) verifies.
printf 'signed by stock minisign\n' > "$T/m.txt"
minisign -S -s "$T/PS1/keys/PS1.key" -m "$T/m.txt" -t 'sitespool/1 note=from-minisign' \
  </dev/null >/dev/null || fail "stock minisign cannot sign with PS1's secret key"
out=$("$S" -C "$T/SS1" verify "$T/m.txt" --site PS1) || fail "sitespool verify rejects: $out"
echo "$out" | grep -qx 'Trusted comment: sitespool/1 note=from-minisign' ||
  fail "verify does not print the trusted comment: $out"
# A site that did not import PS1's key refuses it, and so does a changed file.
mksite OT1
if "$S" -C "$T/OT1" verify "$T/m.txt" --site PS1 >/dev/null 2>&1; then
  fail "a site without PS1's key verified PS1's signature"
fi
echo tampered >> "$T/m.txt"
if "$S" -C "$T/SS1" verify "$T/m.txt" --site PS1 >/dev/null 2>&1; then
  fail "sitespool verify accepted a changed file"
fi
pass "a file signed by stock minisign verifies with sitespool verify --site PS1"

# 3. The contract: an instruction written by stock minisign is delivered.
id=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
rcv=$(receive SS1)
stage="$T/stage"; mkdir "$stage"
head -c 50000 /dev/urandom > "$T/x.txt"
printf 'and some text at the end\n' >> "$T/x.txt"
size=$(stat -c %s "$T/x.txt")
python3 -c 'import sys, zlib; open(sys.argv[2], "wb").write(zlib.compress(open(sys.argv[1], "rb").read()))' \
  "$T/x.txt" "$stage/$id.pck"
now=$(date +%s)
tc="sitespool/1 id=$id from=PS1 to=SS1 type=data dest=replmgr.box name=x.txt size=$size zip=zlib seq=1 created=$now expires=$((now + 3600))"
minisign -S -s "$T/PS1/keys/PS1.key" -m "$stage/$id.pck" -x "$stage/$id.ins" -t "$tc" \
  </dev/null >/dev/null || fail "stock minisign cannot sign the package"
# Package first, instruction last, as a sender would.
mv "$stage/$id.pck" "$rcv/"
mv "$stage/$id.ins" "$rcv/"
despool_once SS1 >/dev/null
assert_file "$(incoming SS1)/x.txt"
cmp "$T/x.txt" "$(incoming SS1)/x.txt" || fail "delivered x.txt differs from the original"
assert_eq "$(count_files "$rcv")" 0 "receive emptied"
assert_eq "$(count_files "$(rejected SS1)")" 0 "nothing rejected"
assert_eq "$(status_count SS1 4400)" 1 "one 4400 message"
status_text SS1 4400 | grep -q "$id" || fail "4400 does not name the instruction id"
grep -q "STATMSG: ID=4400 SEV=I" "$T/SS1/logs/despool.log" || fail "no STATMSG 4400 in despool.log"
pass "an instruction written by stock minisign is delivered by despool --once"

# The same instruction, with a trusted comment edited after signing, is refused.
id2=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
cp "$T/x.txt" "$T/y.txt"
python3 -c 'import sys, zlib; open(sys.argv[2], "wb").write(zlib.compress(open(sys.argv[1], "rb").read()))' \
  "$T/y.txt" "$stage/$id2.pck"
tc2="sitespool/1 id=$id2 from=PS1 to=SS1 type=data dest=replmgr.box name=y.txt size=$size zip=zlib seq=2 created=$now expires=$((now + 3600))"
minisign -S -s "$T/PS1/keys/PS1.key" -m "$stage/$id2.pck" -x "$stage/$id2.ins" -t "$tc2" \
  </dev/null >/dev/null || fail "stock minisign cannot sign the second package"
sed -i 's/name=y.txt/name=z.txt/' "$stage/$id2.ins"
mv "$stage/$id2.pck" "$rcv/"
mv "$stage/$id2.ins" "$rcv/"
despool_once SS1 >/dev/null || true
assert_no_file "$(incoming SS1)/z.txt"
assert_no_file "$(incoming SS1)/y.txt"
assert_eq "$(count_files "$rcv")" 0 "the forged pair left receive"
[ "$(count_files "$(rejected SS1)")" -ge 2 ] || fail "the forged pair was not quarantined"
pass "a trusted comment edited after minisign signed it is refused"
