#!/usr/bin/env bash
# Attacks on trust (keystore/trust.h, keystore/keyfile.h), each with its
# status id and the site's state afterwards ('key list'):
#  1. forged-block attempts (data under another site's key, an unknown key,
#     random key id bytes) are missing keys (4405, then 4406), never a block;
#     an unknown key under the site's own key id is a forgery (4407);
#  2. key exchange without proof of possession -> 4422;
#  3. key exchange with proof, signed by the trusted key -> trusted (3300);
#     a proof for another site, flipped proof bytes, a comment naming another
#     site, another site's key, another key under the site's key id -> 4422;
#  4. a verified different key (self-signed key exchange with proof, where
#     require_secure_key_exchange = no) blocks the site (3303), holds its
#     data (4420), and 'key trust' releases it exactly once; with the
#     default = yes it is 4404 and nothing is blocked;
#  5. key files whose file name and comment disagree -> 3301;
#  6. one public key for a second site -> 3301 unless --shared-key;
#  7. 'key revoke ID' with an id two sites share -> only the named one; a
#     public key revoked for one site is refused for every site;
#  8. site.db locked (readers and writers for despool --once, writers for a
#     running despooler) -> nothing delivered, then exactly once.
. "$(dirname "$0")/lib.sh"

# keyid PUBFILE: the key id of a minisign public key file, as minisign shows it.
keyid() {
  python3 -c 'import base64, sys; b = base64.b64decode(open(sys.argv[1]).read().split("\n")[1]); print(b[2:10][::-1].hex().upper())' "$1"
}
# newkey NAME [SITE]: a fresh minisign key pair $T/NAME.key, $T/NAME.pub
# (unencrypted); with SITE its comment is sitespool's for that site.
newkey() {
  minisign -G -W -p "$T/$1.pub" -s "$T/$1.key" >/dev/null </dev/null || fail "minisign -G $1"
  [ -z "${2:-}" ] || sed -i "1s/.*/untrusted comment: sitespool public key for site $2/" "$T/$1.pub"
}
# site_trust SITE PEER: PEER's line in the per-site section of SITE's
# 'key list' ("ok", "BLOCKED by ID"; "-" when the site has no row yet).
site_trust() {
  "$S" -C "$T/$1" key list | awk -v p="$2" '
    /^SITE +TRUST/ { sites = 1; next }
    sites && $1 == p { if ($2 == "BLOCKED") print $2, $3, $4; else print $2; found = 1 }
    END { if (!found) print "-" }'
}
# key_state SITE PEER KEYID: the state of PEER's key KEYID at SITE ("" if none).
key_state() {
  "$S" -C "$T/$1" key list --json | python3 -c '
import json, sys
for k in json.load(sys.stdin):
    if k["site"] == sys.argv[1] and k["key_id"] == sys.argv[2]: print(k["state"])' "$2" "$3"
}
# keys_of SITE PEER: how many keys SITE holds for PEER.
keys_of() {
  "$S" -C "$T/$1" key list --json | python3 -c '
import json, sys
print(sum(k["site"] == sys.argv[1] for k in json.load(sys.stdin)))' "$2"
}
# mspair SECKEY DIR ID PAYLOAD FIELDS: a pair DIR/ID.pck (zlib of PAYLOAD)
# and DIR/ID.ins signed by stock minisign with SECKEY.
mspair() {
  zpack "$4" "$2/$3.pck"
  minisign -S -s "$1" -m "$2/$3.pck" -x "$2/$3.ins" -t "$5" </dev/null >/dev/null ||
    fail "minisign could not sign with $1"
}
# set_keyid FILE [PUBFILE]: replaces the 8 key id bytes of a minisign key or
# signature file (line 2, bytes 2..9) with PUBFILE's, or with random ones.
set_keyid() {
  python3 - "$@" <<'PY'
import base64, os, sys
def line2(p): return open(p).read().split("\n")
lines = line2(sys.argv[1])
b = bytearray(base64.b64decode(lines[1]))
old = bytes(b[2:10])
if len(sys.argv) > 2:
    b[2:10] = base64.b64decode(line2(sys.argv[2])[1])[2:10]
else:
    while bytes(b[2:10]) == old: b[2:10] = os.urandom(8)
lines[1] = base64.b64encode(bytes(b)).decode()
open(sys.argv[1], "w").write("\n".join(lines))
PY
}
# in_receive SITE ID: both files of the pair are still in SITE's receive.
in_receive() { [ -f "$(receive "$1")/$2.ins" ] && [ -f "$(receive "$1")/$2.pck" ]; }

F=$T/forge; mkdir -p "$F"

# ---- 1. forged-block attempts leave the victim trusted ----
mksite PS1; mksite SS2
mksite SS1 "key_lookup_retries = 2" "key_lookup_interval = 1s"
pair PS1 SS1
"$S" -C "$T/SS2" key export -o "$(hman SS1)/SS2.pub" 2>/dev/null
despool_once SS1 >/dev/null # imports PS1's and SS2's keys
ps1=$(keyid "$T/PS1/keys/PS1.pub"); ss2=$(keyid "$T/SS2/keys/SS2.pub")
assert_eq "$(key_state SS1 PS1 "$ps1")" trusted "setup: PS1's key trusted at SS1"
assert_eq "$(key_state SS1 SS2 "$ss2")" trusted "setup: SS2's key trusted at SS1"
R=$(receive SS1); J=$(rejected SS1); I=$(incoming SS1)
printf 'first\n' > "$T/first.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/first.txt" >/dev/null
despool_once SS1 >/dev/null
cmp "$T/first.txt" "$I/first.txt" || fail "setup: first.txt not delivered"
assert_eq "$(site_trust SS1 PS1)" ok "setup: PS1 shown ok"
printf 'forged\n' > "$T/forged.txt"
fsize=$(stat -c %s "$T/forged.txt")
# (a) claims PS1, signed by SS2's real (trusted, for SS2) key
fa=$(new_id); zpack "$T/forged.txt" "$F/$fa.pck"
sign_ins SS2 "$F" "$fa" "$(fields "$fa" name=forged-a.txt size="$fsize")"
# (b) claims PS1, signed by a key nobody knows
newkey unknown
fb=$(new_id)
mspair "$T/unknown.key" "$F" "$fb" "$T/forged.txt" "$(fields "$fb" name=forged-b.txt size="$fsize")"
# (c) a valid PS1 instruction whose key id bytes are replaced by random ones
fc=$(new_id); zpack "$T/forged.txt" "$F/$fc.pck"
sign_ins PS1 "$F" "$fc" "$(fields "$fc" name=forged-c.txt size="$fsize")"
set_keyid "$F/$fc.ins"
for id in "$fa" "$fb" "$fc"; do mv "$F/$id.pck" "$F/$id.ins" "$R/"; done
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4405)" 3 "each forged pair is a missing key (4405)"
for id in "$fa" "$fb" "$fc"; do
  in_receive SS1 "$id" || fail "forged pair $id not kept in receive"
  "$S" -C "$T/SS1" status --id 4405 --json | grep -q "$id" || fail "no 4405 names $id"
done
assert_eq "$(status_count SS1 3303)" 0 "no block (3303) from forged pairs"
assert_eq "$(key_state SS1 PS1 "$ps1")" trusted "PS1's key still trusted"
assert_eq "$(keys_of SS1 PS1)" 1 "no key recorded for PS1 from forged pairs"
assert_eq "$(site_trust SS1 PS1)" ok "PS1 shown ok (not BLOCKED) after forged pairs"
assert_eq "$(count_all "$I")" 1 "nothing delivered from forged pairs"
printf 'genuine\n' > "$T/genuine.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/genuine.txt" >/dev/null
despool_once SS1 >/dev/null
cmp "$T/genuine.txt" "$I/genuine.txt" || fail "the genuine pair was not delivered at once"
# (key_lookup_interval counts whole seconds: this run may already be the
# forged pairs' second and last lookup, 4406 below, but never another 4405)
assert_eq "$(status_count SS1 4405)" 3 "no further 4405"
pass "1. forged pairs (other site's key, unknown key, random key id) -> 4405, PS1 trusted, genuine data flows"
sleep 1.2
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4406)" 3 "the forged pairs' lookups ran out (4406)"
for id in "$fa" "$fb" "$fc"; do
  assert_file "$J/$id.ins"; assert_file "$J/$id.pck"
  grep -q '^status 4406 ' "$J/$id.why" || fail ".why of $id does not say 4406"
done
assert_eq "$(count_all "$R")" 0 "receive empty"
assert_eq "$(status_count SS1 3303)" 0 "still no 3303"
assert_eq "$(key_state SS1 PS1 "$ps1")" trusted "PS1's key still trusted after 4406"
assert_eq "$(site_trust SS1 PS1)" ok "PS1 still ok after 4406"
assert_eq "$(count_all "$I")" 2 "only the genuine files delivered"
pass "1. key_lookup_retries = 2: forged pairs end in rejected/ with 4406, PS1 still trusted"
# (d) signed by the unknown key under PS1's own key id: the signature does not
# verify with PS1's key, so it is a forgery (4407, quarantined), never a hold.
fd=$(new_id)
mspair "$T/unknown.key" "$F" "$fd" "$T/forged.txt" "$(fields "$fd" name=forged-d.txt size="$fsize")"
set_keyid "$F/$fd.ins" "$T/PS1/keys/PS1.pub"
mv "$F/$fd.pck" "$F/$fd.ins" "$R/"
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4407)" 1 "a forgery under PS1's key id -> 4407"
assert_file "$J/$fd.ins"; grep -q '^status 4407 ' "$J/$fd.why" || fail ".why of $fd does not say 4407"
assert_eq "$(status_count SS1 4420)" 0 "not held"
assert_eq "$(status_count SS1 3303)" 0 "no 3303"
assert_eq "$(key_state SS1 PS1 "$ps1")" trusted "PS1's key still trusted after 4407"
assert_eq "$(site_trust SS1 PS1)" ok "PS1 still ok after 4407"
assert_eq "$(count_all "$I")" 2 "the forgery was not delivered"
pass "1. a forgery under PS1's own key id -> 4407 (quarantined), PS1 still trusted"

# ---- 2. key exchange without proof of possession -> 4422 ----
# key_ins SECKEY PAYLOAD: a key exchange PS1 -> SS1 of PAYLOAD (a file),
# signed by stock minisign with SECKEY, dropped into SS1's receive; prints the id.
key_ins() {
  local id; id=$(new_id)
  mspair "$1" "$F" "$id" "$2" \
    "$(fields "$id" type=key dest=hman.box name=PS1.pub size="$(stat -c %s "$2")")"
  mv "$F/$id.pck" "$F/$id.ins" "$R/"
  echo "$id"
}
# refused_4422 ID KEYID WHAT WHY: the key exchange ID was quarantined with one
# more 4422 saying WHY, and KEYID (unless -) is not a key of PS1 at SS1; PS1
# is unchanged.
n4422=0
refused_4422() {
  despool_once SS1 >/dev/null
  n4422=$((n4422 + 1))
  assert_eq "$(status_count SS1 4422)" "$n4422" "$3: one more 4422"
  "$S" -C "$T/SS1" status --id 4422 --json | tail -n 1 | grep -q "$1" || fail "$3: 4422 does not name $1"
  "$S" -C "$T/SS1" status --id 4422 --json | tail -n 1 | grep -q "$4" || fail "$3: 4422 does not say '$4'"
  assert_file "$J/$1.ins"; assert_file "$J/$1.pck"
  grep -q '^status 4422 ' "$J/$1.why" || fail "$3: .why does not say 4422"
  [ "$2" = - ] || assert_eq "$(key_state SS1 PS1 "$2")" "" "$3: the offered key is not a key of PS1"
  assert_eq "$(keys_of SS1 PS1)" 1 "$3: PS1 still has one key"
  assert_eq "$(key_state SS1 PS1 "$ps1")" trusted "$3: PS1's key still trusted"
  assert_eq "$(site_trust SS1 PS1)" ok "$3: PS1 not blocked"
  assert_eq "$(status_count SS1 3300)" "$n3300" "$3: no key imported"
  pass "$3 -> 4422"
}
n3300=$(status_count SS1 3300)
# SS2's key, its comment edited to name PS1, and no proof line
sed '1s/.*/untrusted comment: sitespool public key for site PS1/' "$T/SS2/keys/SS2.pub" > "$T/ss2-as-ps1.pub"
id=$(key_ins "$T/PS1/keys/PS1.key" "$T/ss2-as-ps1.pub")
refused_4422 "$id" "$ss2" "2. key exchange of SS2's key relabelled for PS1, no proof" \
  "carries no proof of possession"
assert_eq "$(key_state SS1 SS2 "$ss2")" trusted "SS2's own key untouched"
# a brand-new key for PS1, no proof line
newkey noproof PS1
id=$(key_ins "$T/PS1/keys/PS1.key" "$T/noproof.pub")
refused_4422 "$id" "$(keyid "$T/noproof.pub")" "2. key exchange of a new key without proof" \
  "carries no proof of possession"

# ---- 3. key exchange with proof, signed by the trusted key -> trusted ----
newkey B PS1
bid=$(keyid "$T/B.pub")
# proof KEYNAME STATEMENT (proof_with SECKEYFILE STATEMENT): base64 of the raw
# Ed25519 signature by the key over STATEMENT (stock minisign's legacy mode
# signs the message itself: line 2 is "Ed" || key id || signature).
proof() { proof_with "$T/$1.key" "$2"; }
proof_with() {
  printf '%s' "$2" > "$T/stmt"
  minisign -S -l -s "$1" -m "$T/stmt" -x "$T/stmt.sig" </dev/null >/dev/null || fail "minisign -S -l"
  sed -n 2p "$T/stmt.sig" | base64 -d | tail -c 64 | base64 -w0
}
good=$(proof B "sitespool-key/1 site=PS1 key=$bid")
{ cat "$T/B.pub"; echo "sitespool-key/1 proof=$(proof B "sitespool-key/1 site=SS2 key=$bid")"; } > "$T/B-other.payload"
id=$(key_ins "$T/PS1/keys/PS1.key" "$T/B-other.payload")
refused_4422 "$id" "$bid" "3. key exchange whose proof names another site (SS2)" \
  "proof of possession of key $bid does not verify"
flipped=$(printf '%s' "$good" | base64 -d | python3 -c 'import sys, base64; b = bytearray(sys.stdin.buffer.read()); b[10] ^= 0x40; print(base64.b64encode(bytes(b)).decode())')
{ cat "$T/B.pub"; echo "sitespool-key/1 proof=$flipped"; } > "$T/B-flipped.payload"
id=$(key_ins "$T/PS1/keys/PS1.key" "$T/B-flipped.payload")
refused_4422 "$id" "$bid" "3. key exchange whose proof bytes are flipped" \
  "proof of possession of key $bid does not verify"
# a key exchange whose key's comment names another site
{ sed '1s/site PS1/site SS2/' "$T/B.pub"; echo "sitespool-key/1 proof=$good"; } > "$T/B-comment.payload"
id=$(key_ins "$T/PS1/keys/PS1.key" "$T/B-comment.payload")
refused_4422 "$id" "$bid" "3. key exchange whose key's comment names SS2" "names site SS2"
# SS2's key, proven for PS1 by SS2's secret key: a key of another site
ss2proof=$(proof_with "$T/SS2/keys/SS2.key" "sitespool-key/1 site=PS1 key=$ss2")
{ cat "$T/ss2-as-ps1.pub"; echo "sitespool-key/1 proof=$ss2proof"; } > "$T/ss2-proven.payload"
id=$(key_ins "$T/PS1/keys/PS1.key" "$T/ss2-proven.payload")
refused_4422 "$id" "$ss2" "3. key exchange of SS2's key with a valid proof for PS1" \
  "the same public key belongs to another site"
assert_eq "$(key_state SS1 SS2 "$ss2")" trusted "SS2's key still trusted for SS2"
# a new key under PS1's own key id (key ids are not covered by anything)
newkey C PS1; set_keyid "$T/C.pub" "$T/PS1/keys/PS1.pub"
{ cat "$T/C.pub"; echo "sitespool-key/1 proof=$(proof C "sitespool-key/1 site=PS1 key=$ps1")"; } > "$T/C.payload"
id=$(key_ins "$T/PS1/keys/PS1.key" "$T/C.payload")
refused_4422 "$id" - "3. key exchange of a different key under PS1's key id" \
  "already has a different key under this key id"
{ cat "$T/B.pub"; echo "sitespool-key/1 proof=$good"; } > "$T/B.payload"
id=$(key_ins "$T/PS1/keys/PS1.key" "$T/B.payload")
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 3300)" "$((n3300 + 1))" "the vouched key is imported (3300)"
"$S" -C "$T/SS1" status --id 3300 --json | tail -n 1 | grep -q "$bid" || fail "3300 does not name $bid"
assert_eq "$(key_state SS1 PS1 "$bid")" trusted "B trusted for PS1"
assert_eq "$(key_state SS1 PS1 "$ps1")" trusted "PS1's old key still trusted"
assert_eq "$(site_trust SS1 PS1)" ok "PS1 not blocked"
assert_eq "$(status_count SS1 3303)" 0 "no 3303"
assert_eq "$(count_all "$R")" 0 "the key exchange left receive"
assert_eq "$(count_all "$J")" $((12 + 3 * n4422)) "the key exchange was not quarantined"
printf 'signed with B\n' > "$T/b.txt"
id=$(new_id)
mspair "$T/B.key" "$F" "$id" "$T/b.txt" "$(fields "$id" name=b.txt size="$(stat -c %s "$T/b.txt")")"
mv "$F/$id.pck" "$F/$id.ins" "$R/"
despool_once SS1 >/dev/null
cmp "$T/b.txt" "$I/b.txt" || fail "data signed with B not delivered"
assert_eq "$(count_all "$R")" 0 "receive empty after B's data"
pass "3. key exchange with proof signed by PS1's trusted key -> B trusted (3300), B's data delivered"

# ---- 4. a verified different key blocks the site; 'key trust' releases once ----
# PS2 sends to GS1 (require_secure_key_exchange = no) and GS2 (the default
# yes); both trust PS2's first key.  Then PS2's key is replaced by hand.
mksite PS2; mksite GS1 "require_secure_key_exchange = no"; mksite GS2
pair PS2 GS1; pair PS2 GS2
despool_once GS1 >/dev/null; despool_once GS2 >/dev/null # import PS2's key
"$S" -C "$T/PS2" send --to GS1 "$T/first.txt" >/dev/null
"$S" -C "$T/PS2" send --to GS2 "$T/first.txt" >/dev/null
despool_once GS1 >/dev/null; despool_once GS2 >/dev/null
assert_eq "$(site_trust GS1 PS2)" ok "setup: PS2 shown ok at GS1"
assert_eq "$(site_trust GS2 PS2)" ok "setup: PS2 shown ok at GS2"
old=$(keyid "$T/PS2/keys/PS2.pub")
assert_eq "$(key_state GS1 PS2 "$old")" trusted "setup: PS2 trusted at GS1"
assert_eq "$(key_state GS2 PS2 "$old")" trusted "setup: PS2 trusted at GS2"
mv "$T/PS2/keys/PS2.key" "$T/PS2-old.key"; mv "$T/PS2/keys/PS2.pub" "$T/PS2-old.pub"
"$S" -C "$T/NEWKEY" init --site PS2 >/dev/null
cp "$T/NEWKEY/keys/PS2.key" "$T/NEWKEY/keys/PS2.pub" "$T/PS2/keys/"
new=$(keyid "$T/PS2/keys/PS2.pub")
[ "$old" != "$new" ] || fail "setup: the key did not change"
"$S" -C "$T/PS2" key send-to GS1 >/dev/null
printf 'new key data\n' > "$T/new.txt"
"$S" -C "$T/PS2" send --to GS1 "$T/new.txt" >/dev/null
# data signed by the old key, which GS1 still trusts
printf 'old key data\n' > "$T/old.txt"
id=$(new_id)
mspair "$T/PS2-old.key" "$F" "$id" "$T/old.txt" \
  "$(fields "$id" from=PS2 to=GS1 name=old.txt seq=99 size="$(stat -c %s "$T/old.txt")")"
mv "$F/$id.pck" "$F/$id.ins" "$(receive GS1)/"
despool_once GS1 >/dev/null
assert_eq "$(status_count GS1 3303)" 1 "the proven key change blocks PS2 (3303)"
status_text GS1 3303 | grep -q "$new" || fail "3303 does not name the new key"
status_text GS1 3303 | grep -q "$old" || fail "3303 does not name the trusted key"
assert_eq "$(site_trust GS1 PS2)" "BLOCKED by $new" "key list shows the block"
assert_eq "$(key_state GS1 PS2 "$old")" trusted "the old key stays trusted"
assert_eq "$(key_state GS1 PS2 "$new")" pending "the new key is pending"
assert_eq "$(status_count GS1 4420)" 2 "both data pairs held (4420)"
assert_eq "$(count_files "$(receive GS1)")" 4 "held pairs stay in receive"
assert_eq "$(count_all "$(incoming GS1)")" 1 "nothing delivered while blocked"
despool_once GS1 >/dev/null
assert_eq "$(status_count GS1 3303)" 1 "3303 raised once"
assert_eq "$(status_count GS1 4420)" 2 "4420 not repeated"
assert_eq "$(count_files "$(receive GS1)")" 4 "still held"
pass "4. self-signed key exchange with proof (secure key exchange off) -> 3303, BLOCKED by $new, data of both keys held (4420)"
"$S" -C "$T/GS1" key trust PS2 "$new" >/dev/null || fail "key trust PS2 $new"
assert_eq "$(status_count GS1 3306)" 1 "key trust recorded (3306)"
despool_once GS1 >/dev/null
despool_once GS1 >/dev/null
cmp "$T/new.txt" "$(incoming GS1)/new.txt" || fail "new-key data not delivered after trust"
cmp "$T/old.txt" "$(incoming GS1)/old.txt" || fail "old-key data not delivered after trust"
assert_eq "$(count_all "$(incoming GS1)")" 3 "each held file delivered exactly once"
assert_eq "$(status_count GS1 4400)" 3 "two more 4400"
assert_eq "$(count_all "$(receive GS1)")" 0 "receive empty"
assert_eq "$(site_trust GS1 PS2)" ok "PS2 no longer blocked"
assert_eq "$(key_state GS1 PS2 "$new")" trusted "the new key trusted"
pass "4. 'key trust PS2 $new' -> 3306, both held pairs delivered exactly once"

# The same key exchange at GS2 (require_secure_key_exchange = yes): 4404.
"$S" -C "$T/PS2" key send-to GS2 >/dev/null
"$S" -C "$T/PS2" send --to GS2 "$T/new.txt" >/dev/null
despool_once GS2 >/dev/null
assert_eq "$(status_count GS2 4404)" 1 "self-signed key exchange -> 4404"
assert_eq "$(status_count GS2 3303)" 0 "no block at GS2"
assert_eq "$(site_trust GS2 PS2)" ok "PS2 not blocked at GS2"
assert_eq "$(key_state GS2 PS2 "$new")" "" "the new key is not in GS2's keystore"
assert_eq "$(key_state GS2 PS2 "$old")" trusted "the old key stays trusted at GS2"
assert_eq "$(status_count GS2 4405)" 1 "data under the new key waits for a key (4405)"
assert_eq "$(status_count GS2 4420)" 0 "nothing held as blocked at GS2"
assert_eq "$(count_all "$(incoming GS2)")" 1 "nothing new delivered at GS2"
pass "4. the same key exchange with require_secure_key_exchange = yes -> 4404, PS2 not blocked"

# ---- 5. a key file whose file name and comment disagree -> 3301 ----
n3301=$(status_count SS1 3301)
"$S" -C "$T/SS2" key export -o "$T/SS2.pub" 2>/dev/null
cp "$T/SS2.pub" "$(hman SS1)/PS9.pub"
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 3301)" "$((n3301 + 1))" "hman.box PS9.pub saying SS2 -> 3301"
last3301=$("$S" -C "$T/SS1" status --id 3301 --json | tail -n 1)
echo "$last3301" | grep -q PS9 || fail "3301 does not name PS9: $last3301"
echo "$last3301" | grep -q SS2 || fail "3301 does not name SS2: $last3301"
assert_file "$(hman SS1)/PS9.pub.bad"
assert_no_file "$(hman SS1)/PS9.pub"
assert_no_file "$(hman SS1)/pubkey/PS9.pub"
assert_eq "$(keys_of SS1 PS9)" 0 "no key for PS9"
assert_eq "$(keys_of SS1 SS2)" 1 "SS2 still has its one key"
pass "5. hman.box PS9.pub whose comment says SS2 -> 3301 naming both, PS9.pub.bad, no key for PS9"
newkey NEW SS2 # a key nobody has, its comment saying SS2
rc=0; "$S" -C "$T/SS1" key import "$T/NEW.pub" >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "key import NEW.pub saying SS2: exit code"
{ grep -q NEW "$T/err" && grep -q SS2 "$T/err"; } || fail "the refusal does not name both sites: $(cat "$T/err")"
assert_eq "$(status_count SS1 3301)" "$((n3301 + 2))" "the refused import is a 3301"
assert_eq "$(keys_of SS1 NEW)" 0 "no key for NEW after the refusal"
assert_eq "$(keys_of SS1 SS2)" 1 "no key added to SS2"
"$S" -C "$T/SS1" key import "$T/NEW.pub" --site NEW >/dev/null || fail "key import NEW.pub --site NEW"
assert_eq "$(key_state SS1 NEW "$(keyid "$T/NEW.pub")")" trusted "NEW's key trusted with --site NEW"
assert_eq "$(keys_of SS1 SS2)" 1 "SS2 unchanged"
pass "5. key import NEW.pub saying SS2 -> refused (exit 1, names both); with --site NEW -> trusted"

# ---- 6. the same public key for a second site ----
rc=0; "$S" -C "$T/SS1" key import "$T/SS2.pub" --site SS3 >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "key import of SS2's key --site SS3: exit code"
grep -q SS2 "$T/err" || fail "the refusal does not name SS2: $(cat "$T/err")"
assert_eq "$(status_count SS1 3301)" "$((n3301 + 3))" "the refused import is a 3301"
"$S" -C "$T/SS1" status --id 3301 --json | tail -n 1 | grep -q SS2 || fail "3301 does not name SS2"
assert_eq "$(keys_of SS1 SS3)" 0 "no key for SS3"
"$S" -C "$T/SS1" key import "$T/SS2.pub" --site SS3 --shared-key >/dev/null ||
  fail "key import --site SS3 --shared-key"
assert_eq "$(key_state SS1 SS3 "$ss2")" trusted "SS2's key trusted for SS3 with --shared-key"
assert_eq "$(key_state SS1 SS2 "$ss2")" trusted "and still for SS2"
pass "6. SS2's key for SS3 -> refused (3301 names SS2); with --shared-key -> trusted for both"

# ---- 7. revoke with a key id two sites share -> only the named one ----
newkey X AAA; newkey Y BBB
set_keyid "$T/Y.pub" "$T/X.pub"
xid=$(keyid "$T/X.pub")
assert_eq "$(keyid "$T/Y.pub")" "$xid" "setup: both keys carry one key id"
cmp -s "$T/X.pub" "$T/Y.pub" && fail "setup: the two keys are the same file"
"$S" -C "$T/SS1" key import "$T/X.pub" --site AAA >/dev/null || fail "import X for AAA"
"$S" -C "$T/SS1" key import "$T/Y.pub" --site BBB >/dev/null || fail "import Y for BBB"
assert_eq "$(key_state SS1 AAA "$xid")" trusted "AAA's key trusted"
assert_eq "$(key_state SS1 BBB "$xid")" trusted "BBB's key trusted"
rc=0; "$S" -C "$T/SS1" key revoke "$xid" >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 2 "key revoke of a shared key id: exit code"
{ grep -q AAA "$T/err" && grep -q BBB "$T/err"; } || fail "the refusal does not name both sites: $(cat "$T/err")"
assert_eq "$(status_count SS1 3310)" 0 "nothing revoked"
assert_eq "$(key_state SS1 AAA "$xid")" trusted "AAA untouched by the refused revoke"
assert_eq "$(key_state SS1 BBB "$xid")" trusted "BBB untouched by the refused revoke"
"$S" -C "$T/SS1" key revoke "$xid" --site AAA >/dev/null || fail "key revoke $xid --site AAA"
assert_eq "$(key_state SS1 AAA "$xid")" revoked "AAA's key revoked"
assert_eq "$(key_state SS1 BBB "$xid")" trusted "BBB's key still trusted"
assert_eq "$(status_count SS1 3310)" 1 "one 3310"
"$S" -C "$T/SS1" status --id 3310 --json | grep -q AAA || fail "3310 does not name AAA"
pass "7. key revoke of an id AAA and BBB share -> exit 2 naming both; --site AAA revokes only AAA's key (3310)"
# Each key still stands for its own site: AAA's revoked key is refused (4421),
# BBB's key under the same id still verifies BBB's data.
printf 'from AAA\n' > "$T/aaa.txt"; printf 'from BBB\n' > "$T/bbb.txt"
ia=$(new_id)
mspair "$T/X.key" "$F" "$ia" "$T/aaa.txt" "$(fields "$ia" from=AAA name=aaa.txt size="$(stat -c %s "$T/aaa.txt")")"
ib=$(new_id)
mspair "$T/Y.key" "$F" "$ib" "$T/bbb.txt" "$(fields "$ib" from=BBB name=bbb.txt size="$(stat -c %s "$T/bbb.txt")")"
set_keyid "$F/$ib.ins" "$T/Y.pub" # Y's secret key still carries its original id
mv "$F/$ia.pck" "$F/$ia.ins" "$F/$ib.pck" "$F/$ib.ins" "$R/"
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4421)" 1 "data under AAA's revoked key -> 4421"
assert_file "$J/$ia.ins"; assert_no_file "$I/aaa.txt"
cmp "$T/bbb.txt" "$I/bbb.txt" || fail "BBB's data (same key id, its own key) not delivered"
pass "7. afterwards AAA's data is refused (4421) and BBB's, under the same key id, delivered"
# A public key revoked for one site is revoked for every site: SS2's key,
# shared with SS3 in 6., revoked by naming SS3: both records say revoked.
before_3310=$(status_count SS1 3310)
"$S" -C "$T/SS1" key revoke "$ss2" --site SS3 >/dev/null || fail "key revoke $ss2 --site SS3"
assert_eq "$(key_state SS1 SS3 "$ss2")" revoked "SS3's copy revoked"
assert_eq "$(key_state SS1 SS2 "$ss2")" revoked "the same public key held for SS2 is revoked too"
assert_eq "$(status_count SS1 3310)" $((before_3310 + 2)) "one 3310 per site that held the key"
printf 'from SS2\n' > "$T/ss2.txt"
i2=$(new_id); zpack "$T/ss2.txt" "$F/$i2.pck"
sign_ins SS2 "$F" "$i2" "$(fields "$i2" from=SS2 name=ss2.txt size="$(stat -c %s "$T/ss2.txt")")"
mv "$F/$i2.pck" "$F/$i2.ins" "$R/"
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4421)" 2 "SS2's data under the key revoked for SS3 -> 4421"
assert_file "$J/$i2.ins"; assert_no_file "$I/ss2.txt"
rc=0; "$S" -C "$T/SS1" key import "$T/SS2.pub" >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 1 "re-importing the revoked public key for SS2 is refused"
pass "7. a public key revoked for SS3 is refused for SS2 too (4421, import refused)"

# ---- 8. fail closed while site.db cannot be used ----
# lock_db DB MODE TAG: another process holds a lock on DB until $T/TAG.release
# exists; its pid is registered for cleanup and left in LOCKPID.
# MODE exclusive: locking_mode=EXCLUSIVE, which keeps out readers too (only
# possible while no other connection has DB open: WAL connections hold a
# shared lock on the file); writer: BEGIN EXCLUSIVE, which in WAL mode keeps
# out writers only.
lock_db() {
  python3 - "$@" "$T/$3.ready" "$T/$3.release" <<'PY' &
import os, sqlite3, sys, time
db, mode, _, ready, release = sys.argv[1:6]
con = sqlite3.connect(db, isolation_level=None, timeout=15)
if mode == "exclusive": con.execute("PRAGMA locking_mode=EXCLUSIVE")
con.execute("BEGIN EXCLUSIVE")
open(ready, "w").close()
while not os.path.exists(release): time.sleep(0.05)
con.execute("COMMIT")
con.close()
PY
  LOCKPID=$!
  DAEMONS+=("$LOCKPID")
  wait_until 20 test -e "$T/$3.ready" || fail "could not lock $1"
}
# SS1 (despool --once): site.db locked against readers and writers.
printf 'waits for the database\n' > "$T/db.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/db.txt" >/dev/null
ins=$(find "$R" -name '*.ins' -printf '%f\n'); dbid=${ins%.ins}
[ -n "$dbid" ] || fail "setup: no pair in SS1's receive"
before4400=$(status_count SS1 4400); before_files=$(count_all "$I")
# GS1 (a running despooler): site.db locked against writers while a pair
# arrives (it verifies the pair, then cannot record the delivery).  Its
# failed scan is reported (4423) only after several busy timeouts, so that
# is not waited for here.
G=$(incoming GS1); gbefore=$(count_files "$G")
start_despooler GS1
lock_db "$T/GS1/site.db" writer gs1; glock=$LOCKPID
lock_db "$T/SS1/site.db" exclusive ss1; slock=$LOCKPID
out=$(sqlite3 "$T/SS1/site.db" 'SELECT count(*) FROM keys' 2>&1) && fail "SS1's site.db still readable: $out"
echo "$out" | grep -q 'database is locked' || fail "unexpected sqlite3 error: $out"
printf 'arrives while locked\n' > "$T/gdb.txt"
"$S" -C "$T/PS2" send --to GS1 "$T/gdb.txt" >/dev/null
gid=$(find "$(receive GS1)" -name '*.ins' -printf '%f\n'); gid=${gid%.ins}
[ -n "$gid" ] || fail "setup: no pair in GS1's receive"
t0=$(date +%s%N)
rc=0; "$S" -C "$T/SS1" despool --once >"$T/locked.out" 2>&1 || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$rc" -ne 0 ] || fail "despool --once succeeded with site.db locked: $(cat "$T/locked.out")"
[ "$ms" -ge 9500 ] || fail "despool --once gave up after $ms ms, before the 10 s busy timeout"
in_receive SS1 "$dbid" || fail "the pair left SS1's receive while site.db was locked"
assert_eq "$(count_all "$I")" "$before_files" "nothing written to SS1's incoming while locked"
in_receive GS1 "$gid" || fail "the pair left GS1's receive while site.db was locked"
assert_eq "$(count_files "$G")" "$gbefore" "nothing delivered at GS1 while locked"
touch "$T/ss1.release" "$T/gs1.release"
wait "$slock" || fail "the lock holder of SS1 failed"
wait "$glock" || fail "the lock holder of GS1 failed"
assert_eq "$(status_count SS1 4400)" "$before4400" "no 4400 at SS1 while locked"
pass "8. site.db locked: despool --once fails after $ms ms (exit $rc), a running despooler keeps its pair; nothing delivered"
despool_once SS1 >/dev/null
despool_once SS1 >/dev/null
cmp "$T/db.txt" "$I/db.txt" || fail "not delivered at SS1 after the lock was released"
assert_eq "$(find "$I" -name 'db.txt*' | wc -l)" 1 "delivered exactly once at SS1"
assert_eq "$(status_count SS1 4400)" "$((before4400 + 1))" "one more 4400 at SS1"
assert_eq "$(count_all "$R")" 0 "SS1's receive empty"
assert_eq "$(site_trust SS1 PS1)" ok "PS1 still ok at SS1"
wait_until 20 test -f "$G/gdb.txt" || fail "GS1's despooler did not deliver after the lock was released"
wait_until 5 eval '[ "$(count_all "$(receive GS1)")" = 0 ]' || fail "GS1's receive not emptied"
stop_despooler "$DPID"
assert_eq "$DRC" 0 "GS1's despooler exit status"
cmp "$T/gdb.txt" "$G/gdb.txt" || fail "GS1 delivered different content"
assert_eq "$(find "$G" -name 'gdb.txt*' | wc -l)" 1 "delivered exactly once at GS1"
assert_eq "$(count_all "$G")" "$((gbefore + 1))" "no temporary files left at GS1"
assert_eq "$(site_trust GS1 PS2)" ok "PS2 still ok at GS1"
pass "8. lock released: each pair delivered exactly once"
