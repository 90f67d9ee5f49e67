#!/usr/bin/env bash
# Sealed packages over key changes (issue 15): the sender seals to the
# receiver's newest trusted key; after the receiver rotates, a package
# sealed to its old key is still opened within rollover_grace_days, one
# sealed to a key it revoked or retired past its grace is quarantined with
# 4444 naming the key, nothing decrypted, nothing delivered; an enc= on a
# key instruction is refused (4444).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_seal.sh"
mksite PS1; mksite SS1; pair PS1 SS1
despool_once PS1 >/dev/null; despool_once SS1 >/dev/null
# hold_pair: the newest pair PS1 queued for SS1, moved aside; prints its id.
hold_pair() {
  local ins; ins=$(ls "$T/PS1/inboxes/schedule.box/outbox/SS1/"*.ins | tail -1)
  local id; id=$(basename "$ins" .ins); id=${id#*-}
  mv "${ins%.ins}.pck" "$T/held-$id.pck"; mv "$ins" "$T/held-$id.ins"; echo "$id"
}
drop_held() { mv "$T/held-$1.pck" "$(receive SS1)/$1.pck"; mv "$T/held-$1.ins" "$(receive SS1)/$1.ins"; }
queue() { echo "$1" > "$T/$1.txt"; "$S" -C "$T/PS1" send --to SS1 --queue-only "$T/$1.txt" >/dev/null; hold_pair; }
sealed_to() { tc_field "$T/held-$1.ins" enc; }
I=$(incoming SS1)

k1=$(keyid_of "$T/SS1/keys/SS1.pub")
within=$(queue within-grace); revoked=$(queue revoked-key)
assert_eq "$(sealed_to "$within")" "$k1" "sealed to SS1's key"
"$S" -C "$T/SS1" key rotate >/dev/null
k2=$(keyid_of "$T/SS1/keys/SS1.pub")
[ "$k1" != "$k2" ] || fail "rotate did not change SS1's key"
assert_file "$T/SS1/keys/SS1.$k1.key.retired"
despool_once PS1 >/dev/null # the rollover: PS1 trusts K2
now_k2=$(queue sealed-to-new)
assert_eq "$(sealed_to "$now_k2")" "$k2" "after the rollover PS1 seals to SS1's new key"
past=$(queue past-grace)

drop_held "$within"; drop_held "$now_k2"
despool_once SS1 >/dev/null
cmp "$T/within-grace.txt" "$I/within-grace.txt" || fail "sealed to the retired key: not delivered"
cmp "$T/sealed-to-new.txt" "$I/sealed-to-new.txt" || fail "sealed to the new key: not delivered"
assert_eq "$(status_count SS1 4444)" 0 "no 4444 within the grace period"
pass "after a rotation, packages sealed to the old key (grace) and the new one are opened"

# A second rotation with no grace: K2 is retired and past its grace at once.
sed -i 's/^rollover_grace_days = .*/rollover_grace_days = 0/' "$T/SS1/site.conf"
"$S" -C "$T/SS1" key rotate >/dev/null
drop_held "$past"
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4444)" 1 "sealed to a key retired past its grace: 4444"
status_text SS1 4444 | grep -q "$past from site PS1 is sealed to key $k2, which this site retired by a key rotation; its grace period ended" ||
  fail "4444 text: $(status_text SS1 4444)"
assert_file "$(rejected SS1)/$past.pck"
assert_no_file "$I/past-grace.txt"
pass "sealed to a key retired past its grace: quarantined (4444, key $k2 named)"

# K1 revoked: a package sealed to it is quarantined, never opened.
"$S" -C "$T/SS1" key revoke "$k1" --force >/dev/null
drop_held "$revoked"
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4444)" 2 "sealed to a revoked key: 4444"
status_text SS1 4444 | grep -q "$revoked from site PS1 is sealed to key $k1, which this site revoked" ||
  fail "4444 text: $(status_text SS1 4444)"
grep -q "status 4444 (E): .*key $k1" "$(rejected SS1)/$revoked.why" || fail ".why: $(cat "$(rejected SS1)/$revoked.why")"
assert_no_file "$I/revoked-key.txt"
leftovers=$(find "$T/SS1/inboxes" -name '.sitespool-*' | head -n 3)
[ -z "$leftovers" ] || fail "temporary files left: $leftovers"
pass "sealed to a revoked key: quarantined (4444, key $k1 named), nothing delivered"

# Key instructions are never sealed: an enc= on one is refused.
id=$(new_id); R=$(receive SS1)
"$S" -C "$T/PS1" key export -o "$R/$id.pck" >/dev/null 2>&1
sign_ins PS1 "$R" "$id" "$(fields "$id" type=key name=sealed zip=none "size=$(stat -c %s "$R/$id.pck")") enc=$k2 seal=$(printf '%064d' 0)"
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4444)" 3 "a sealed key instruction: 4444"
status_text SS1 4444 | grep -q "but a key instruction is never sealed" || fail "4444 text: $(status_text SS1 4444)"
pass "an enc= on a key instruction is refused (4444)"
