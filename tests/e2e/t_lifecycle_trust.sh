#!/usr/bin/env bash
# Key exchange and trust (issue: key lifecycle), seeds 003 (Ivanti) and 004:
#  (a) secure key exchange on: an unauthenticated key exchange -> 4404;
#  (b) off: first key pending -> data held -> approve -> data flows;
#  (c) a trusted site's data under a new key id is a missing key (4405), not a
#      block; a key exchange proving a different key blocks the site, both key
#      ids named -> trust -> held data delivered exactly once; untrust.
. "$(dirname "$0")/lib.sh"
keyid() { sed -n 2p "$T/$1/keys/$1.pub" | base64 -d | tail -c +3 | head -c 8 | od -An -tx1 |
          tr -d ' \n' | fold -w2 | tac | tr -d '\n' | tr a-f A-F; }

# (a) PS1 requires secure key exchange (the default); SS1 is unknown to it.
mksite PS1; mksite SS1; peer SS1 PS1
"$S" -C "$T/SS1" key send-to PS1 >/dev/null
"$S" -C "$T/SS1" key send-to PS1 --unsigned >/dev/null 2>&1
despool_once PS1 >/dev/null
assert_eq "$(status_count PS1 4404)" 2 "both key exchanges rejected with 4404"
assert_eq "$(count_files "$(rejected PS1)")" 6 "both pairs quarantined with .why"
"$S" -C "$T/PS1" key list | grep -q "^SS1 " && fail "SS1's key must not be in the keystore"
pass "(a) secure key exchange on: unauthenticated key exchange -> 4404"

# (b) GS1 has secure key exchange off: trust on first use needs approval.
mksite GS1 "require_secure_key_exchange = no"; peer SS1 GS1
"$S" -C "$T/SS1" key send-to GS1 >/dev/null
echo "held data" > "$T/held.txt"
"$S" -C "$T/SS1" send --to GS1 "$T/held.txt" >/dev/null
despool_once GS1 >/dev/null
assert_eq "$(status_count GS1 3305)" 1 "pending key announced (3305)"
"$S" -C "$T/GS1" key list | grep -q "^SS1 *$(keyid SS1) pending" || fail "key not pending"
assert_eq "$(status_count GS1 4420)" 1 "data held (4420)"
assert_no_file "$(incoming GS1)/held.txt"
assert_eq "$(count_files "$(receive GS1)")" 2 "held pair stays in receive"
despool_once GS1 >/dev/null
assert_eq "$(status_count GS1 4420)" 1 "4420 not repeated on every scan"
"$S" -C "$T/GS1" key approve SS1 >/dev/null
assert_eq "$(status_count GS1 3306)" 1 "approval recorded (3306)"
despool_once GS1 >/dev/null
cmp "$T/held.txt" "$(incoming GS1)/held.txt" || fail "held data not delivered after approval"
pass "(b) secure key exchange off: pending -> approve -> data flows"

# tofu_auto_approve = yes skips the approval.
mksite AU1 "require_secure_key_exchange = no" "tofu_auto_approve = yes"; peer SS1 AU1
"$S" -C "$T/SS1" key send-to AU1 >/dev/null
"$S" -C "$T/SS1" send --to AU1 "$T/held.txt" >/dev/null
despool_once AU1 >/dev/null
cmp "$T/held.txt" "$(incoming AU1)/held.txt" || fail "tofu_auto_approve did not trust the first key"
pass "tofu_auto_approve = yes trusts the first key"

# (c) SS1's key is replaced by hand (no rollover) and data arrives signed by
# it: an unknown key id is only a missing key (4405) - nothing unauthenticated
# blocks a site - until the administrator imports the new key.
old=$(keyid SS1)
mv "$T/SS1/keys/SS1.key" "$T/SS1.key.old"; mv "$T/SS1/keys/SS1.pub" "$T/SS1.pub.old"
"$S" -C "$T/NEWKEY" init --site SS1 >/dev/null
cp "$T/NEWKEY/keys/SS1.key" "$T/NEWKEY/keys/SS1.pub" "$T/SS1/keys/"
new=$(keyid SS1)
[ "$old" != "$new" ] || fail "test setup: the key did not change"
echo "after the change" > "$T/changed.txt"
"$S" -C "$T/SS1" send --to GS1 "$T/changed.txt" >/dev/null
despool_once GS1 >/dev/null
assert_eq "$(status_count GS1 3303)" 0 "data under an unknown key id must not block the site"
assert_eq "$(status_count GS1 4405)" 1 "data under an unknown key id waits for its key (4405)"
"$S" -C "$T/GS1" key list | grep -q "^SS1 *ok" || fail "SS1 must stay unblocked: $("$S" -C "$T/GS1" key list)"
"$S" -C "$T/GS1" key list | grep -q "^SS1 *$old trusted" || fail "the trusted key must stay trusted"
assert_no_file "$(incoming GS1)/changed.txt"
assert_eq "$(count_files "$(receive GS1)")" 2 "kept, never lost"
out=$("$S" -C "$T/GS1" key trust SS1 "$new" 2>&1) && fail "trusting an unknown key must fail"
echo "$out" | grep -q "not known here.*hman.box" || fail "trusting a key never seen must explain how to get it: $out"
"$S" -C "$T/SS1" key export -o "$T/SS1-new.pub" 2>/dev/null
# A file whose name gives no site needs the administrator to say which.
"$S" -C "$T/GS1" key import "$T/SS1-new.pub" >/dev/null 2>"$T/err" && fail "SS1-new.pub names no site"
grep -q "file name gives no site.*comment says SS1.*--site CODE" "$T/err" || fail "unclear refusal: $(cat "$T/err")"
"$S" -C "$T/GS1" key import "$T/SS1-new.pub" --site SS1 >/dev/null
despool_once GS1 >/dev/null
cmp "$T/changed.txt" "$(incoming GS1)/changed.txt" || fail "waiting data not delivered after the import"
despool_once GS1 >/dev/null
assert_eq "$(find "$(incoming GS1)" -name 'changed.txt*' | wc -l)" 1 "delivered exactly once"
pass "(c) data under a new key id -> 4405, not blocked -> key imported -> delivered once"

# The same through a key exchange and 'key trust': the new key is offered,
# blocks the site, and the administrator trusts it.
mv "$T/SS1/keys/SS1.key" "$T/SS1/keys/SS1.pub" "$T/NEWKEY/"
"$S" -C "$T/NEWKEY2" init --site SS1 >/dev/null
cp "$T/NEWKEY2/keys/SS1.key" "$T/NEWKEY2/keys/SS1.pub" "$T/SS1/keys/"
third=$(keyid SS1)
"$S" -C "$T/SS1" key send-to GS1 >/dev/null
echo "third key data" > "$T/third.txt"
"$S" -C "$T/SS1" send --to GS1 "$T/third.txt" >/dev/null
despool_once GS1 >/dev/null
assert_eq "$(status_count GS1 3303)" 1 "a key exchange proving a different key blocks the site"
status_text GS1 3303 | grep -q "$third" || fail "3303 does not name the offered key"
status_text GS1 3303 | grep -q "$new" || fail "3303 does not name the trusted key"
"$S" -C "$T/GS1" key list | grep -q "^SS1 *BLOCKED by $third" || fail "key list does not show the block"
assert_no_file "$(incoming GS1)/third.txt"
"$S" -C "$T/GS1" key trust SS1 "not-a-key-id" 2>"$T/err" && fail "a malformed key id must be refused"
grep -q "is not a key id" "$T/err" || fail "no friendly error for a malformed key id: $(cat "$T/err")"
# Typed the way minisign prints ids (no leading zeros) and in lower case.
typed=$(printf '%s' "$third" | sed 's/^0*//' | tr 'A-F' 'a-f')
"$S" -C "$T/GS1" key trust SS1 "$typed" >/dev/null
despool_once GS1 >/dev/null
cmp "$T/third.txt" "$(incoming GS1)/third.txt" || fail "not delivered after key trust"
pass "(c) offered key -> blocked -> 'key trust SITE KEYID' -> held data flows"

waits_before=$(status_count GS1 4405)
"$S" -C "$T/GS1" key untrust SS1 >/dev/null
assert_eq "$(status_count GS1 3307)" 1 "untrust recorded (3307)"
"$S" -C "$T/SS1" send --to GS1 "$T/third.txt" --name after-untrust.txt >/dev/null
despool_once GS1 >/dev/null
assert_eq "$(status_count GS1 4405)" $((waits_before + 1)) "after untrust the site's data waits as for an unknown site"
pass "untrust: data waits for a key (4405)"
