#!/usr/bin/env bash
# Rollovers under the trust rules (keystore/trust.h), with payloads made by
# stock minisign and python3 rather than by sitespool:
#  - a rollover signed by the trusted key whose next key fails its proof is
#    refused (4422) and blocks the site (3303): a different key was presented
#    by the trusted key itself; 'key revoke NEXT --site' lifts the block;
#  - a retired key (after a real rotation) verifies data within its grace
#    period but never vouches for a key: its key exchange is refused (4422).
. "$(dirname "$0")/lib.sh"
keyid_of() { sed -n 2p "$1" | base64 -d | tail -c +3 | head -c 8 | od -An -tx1 |
             tr -d ' \n' | fold -w2 | tac | tr -d '\n' | tr a-f A-F; }
# proof KEY STATEMENT: base64 of the raw Ed25519 signature by KEY over
# STATEMENT, made by stock minisign in legacy (non-prehashed) mode.
proof() {
  printf '%s' "$2" > "$T/stmt"
  minisign -S -l -s "$1" -m "$T/stmt" -x "$T/stmt.sig" </dev/null >/dev/null ||
    fail "minisign -l could not sign"
  sed -n 2p "$T/stmt.sig" | base64 -d | tail -c 64 | base64 -w0
}
# key_pair NAME: a fresh unencrypted minisign key pair $T/NAME.key, $T/NAME.pub.
key_pair() { minisign -G -W -p "$T/$1.pub" -s "$T/$1.key" </dev/null >/dev/null; }
# payload_for NAME SITE LINE: NAME's public key as SITE's key file, then LINE.
payload_for() {
  printf 'untrusted comment: sitespool public key for site %s\n%s\n%s\n' \
    "$2" "$(sed -n 2p "$T/$1.pub")" "$3"
}
# drop_key_instruction SIGNER_KEY TYPE PAYLOAD_FILE: a type=key or rollover
# pair PS1 -> SS1 signed with SIGNER_KEY by stock minisign; prints the id.
drop_key_instruction() {
  local id; id=$(new_id)
  zpack "$3" "$(receive SS1)/$id.pck"
  minisign -S -s "$1" -m "$(receive SS1)/$id.pck" -x "$(receive SS1)/$id.ins" \
    -t "$(fields "$id" "type=$2" dest=hman.box name=PS1.pub "size=$(stat -c %s "$3")")" \
    </dev/null >/dev/null || fail "minisign could not sign the instruction"
  echo "$id"
}
site_state() { "$S" -C "$T/SS1" key list | awk -v s="$1" '$1 == s && NF >= 2 && $2 ~ /^(ok|BLOCKED)$/ {print $2}'; }

mksite PS1; mksite SS1; pair PS1 SS1; despool_once SS1 >/dev/null
ps1=$(keyid_of "$T/PS1/keys/PS1.pub")
assert_eq "$(site_state PS1)" ok "a trusted peer is listed before any data arrived"

# ---- a rollover with a forged proof of the next key ----
key_pair NEXT; next=$(keyid_of "$T/NEXT.pub")
payload_for NEXT PS1 "sitespool-rollover/1 previous=$ps1 proof=$(head -c 64 /dev/urandom | base64 -w0)" > "$T/bad.roll"
id=$(drop_key_instruction "$T/PS1/keys/PS1.key" rollover "$T/bad.roll")
echo "held while blocked" > "$T/held.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/held.txt" >/dev/null
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4422)" 1 "a rollover whose proof fails is refused (4422)"
assert_file "$(rejected SS1)/$id.why"
grep -q "proof of possession of key $next does not verify" "$(rejected SS1)/$id.why" ||
  fail ".why does not say the proof failed: $(cat "$(rejected SS1)/$id.why")"
assert_eq "$(status_count SS1 3303)" 1 "the trusted key presented a key it cannot prove: blocked (3303)"
status_text SS1 3303 | grep -q "$next" || fail "3303 does not name the presented key"
"$S" -C "$T/SS1" key list | grep -q "^PS1 *BLOCKED by $next" || fail "key list does not show the block"
"$S" -C "$T/SS1" key list | grep -q "^PS1 *$next pending" || fail "the presented key is not pending"
assert_no_file "$(incoming SS1)/held.txt"
assert_eq "$(status_count SS1 4420)" 1 "PS1's data is held (4420)"
pass "rollover with a forged proof: 4422, site blocked (3303), data held"

# The administrator refuses the presented key: the block goes, data flows.
"$S" -C "$T/SS1" key revoke "$next" --site PS1 >/dev/null
despool_once SS1 >/dev/null
cmp "$T/held.txt" "$(incoming SS1)/held.txt" || fail "held data not delivered after the revoke"
"$S" -C "$T/SS1" key list | grep -q "^PS1 *ok" || fail "the block was not lifted"
"$S" -C "$T/SS1" key list | grep -q "^PS1 *$ps1 trusted" || fail "the trusted key must stay trusted"
pass "'key revoke NEXT --site PS1' lifts the block; held data delivered"

# ---- a retired key never vouches for a key ----
old_key="$T/PS1-old.key"; cp "$T/PS1/keys/PS1.key" "$old_key"
"$S" -C "$T/PS1" key rotate >/dev/null
despool_once SS1 >/dev/null
"$S" -C "$T/SS1" key list | grep -q "^PS1 *$ps1 retired" || fail "old key not retired after the rollover"
key_pair OTHER; other=$(keyid_of "$T/OTHER.pub")
payload_for OTHER PS1 "sitespool-key/1 proof=$(proof "$T/OTHER.key" "sitespool-key/1 site=PS1 key=$other")" > "$T/offer"
id=$(drop_key_instruction "$old_key" key "$T/offer")
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4422)" 2 "a key exchange signed by a retired key is refused"
grep -q "retired by a rollover" "$(rejected SS1)/$id.why" || fail ".why: $(cat "$(rejected SS1)/$id.why")"
"$S" -C "$T/SS1" key list | grep -q "$other" && fail "the retired key made key $other known"
# ... while data it signed within the grace period is still delivered.
echo "old key data" > "$T/old.txt"
did=$(new_id); zpack "$T/old.txt" "$(receive SS1)/$did.pck"
minisign -S -s "$old_key" -m "$(receive SS1)/$did.pck" -x "$(receive SS1)/$did.ins" \
  -t "$(fields "$did" name=old.txt "size=$(stat -c %s "$T/old.txt")")" </dev/null >/dev/null
despool_once SS1 >/dev/null
cmp "$T/old.txt" "$(incoming SS1)/old.txt" || fail "data signed by the retired key within grace not delivered"
pass "a retired key verifies data within its grace period but never vouches for a key (4422)"
