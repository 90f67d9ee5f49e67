#!/usr/bin/env bash
# Key lifecycle, seeds 000-002 (Symantec, ESET):
#  (d) rotation with three sites, one offline during the rotation: all data
#      reaches all sites, nothing rejected; the old key is accepted within
#      rollover_grace_days and refused after it (clock moved with faketime);
#  (e) expiry warning at the 90-day mark, once a day, through notify_command;
#      data signed by an expired key is held;
#  (f) a revoked key is never accepted; waiting data signed by it is quarantined.
. "$(dirname "$0")/lib.sh"
command -v faketime >/dev/null || fail "faketime is not installed (Debian package faketime)"
# libfaketime is preloaded; ASan only tolerates that with this option.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
at() { local offset=$1; shift; faketime -f "$offset" "$@"; }
keyid() { sed -n 2p "$1" | base64 -d | tail -c +3 | head -c 8 | od -An -tx1 |
          tr -d ' \n' | fold -w2 | tac | tr -d '\n' | tr a-f A-F; }
# hold_pair SITE: moves the newest queued pair for SITE out of PS1's outbox
# into $T/held-<id>.{pck,ins} (wire names), printing the id.
hold_pair() {
  local ins; ins=$(ls "$T/PS1/inboxes/schedule.box/outbox/$1/"*.ins | tail -1)
  local id; id=$(basename "$ins" .ins); id=${id#*-}
  mv "${ins%.ins}.pck" "$T/held-$id.pck"; mv "$ins" "$T/held-$id.ins"; echo "$id"
}
drop_held() { mv "$T/held-$2.pck" "$(receive "$1")/$2.pck"; mv "$T/held-$2.ins" "$(receive "$1")/$2.ins"; }

mksite PS1 "package_lifetime = 200d"; mksite SS1; mksite SS2
pair PS1 SS1; pair PS1 SS2
old=$(keyid "$T/PS1/keys/PS1.pub")
for f in before late-within late-after; do echo "$f" > "$T/$f.txt"; done

# Before the rotation: data for both, and two K1-signed pairs kept aside.
"$S" -C "$T/PS1" send --to SS1 "$T/before.txt" >/dev/null
"$S" -C "$T/PS1" send --to SS2 "$T/before.txt" >/dev/null
despool_once SS1 >/dev/null      # SS2's despooler is not running: its pair waits
"$S" -C "$T/PS1" send --to SS1 --queue-only "$T/late-within.txt" >/dev/null
within=$(hold_pair SS1)
"$S" -C "$T/PS1" send --to SS1 --queue-only "$T/late-after.txt" >/dev/null
after=$(hold_pair SS1)

# SS2 goes offline (its inbox unreadable) and PS1 rotates.
mv "$(receive SS2)" "$(receive SS2).offline"
rc=0; "$S" -C "$T/PS1" key rotate >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 75 "rotate reports the offline peer (exit 75)"
new=$(keyid "$T/PS1/keys/PS1.pub")
[ "$old" != "$new" ] || fail "rotate did not change the key"
assert_eq "$(status_count PS1 3308)" 1 "rotation recorded (3308)"
echo "after rotation" > "$T/after.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/after.txt" >/dev/null
"$S" -C "$T/PS1" send --to SS2 "$T/after.txt" >/dev/null 2>&1 || true
despool_once SS1 >/dev/null
cmp "$T/after.txt" "$(incoming SS1)/after.txt" || fail "SS1 did not take the new key's data"
assert_eq "$(status_count SS1 3309)" 1 "SS1 accepted the rollover (3309)"
"$S" -C "$T/SS1" key list | grep -q "^PS1 *$old retired" || fail "old key not retired at SS1"
"$S" -C "$T/SS1" key list | grep -q "^PS1 *$new trusted *rollover" || fail "new key not trusted"
pass "(d) online peer: rollover accepted, new key's data delivered"

# SS2 comes back: the queue delivers the rollover first, then the data.
mv "$(receive SS2).offline" "$(receive SS2)"
"$S" -C "$T/PS1" send --flush --to SS2 >/dev/null
despool_once SS2 >/dev/null
cmp "$T/before.txt" "$(incoming SS2)/before.txt" || fail "SS2 lost the old key's data"
cmp "$T/after.txt" "$(incoming SS2)/after.txt" || fail "SS2 lost the new key's data"
for site in SS1 SS2; do
  assert_eq "$(count_files "$(rejected "$site")")" 0 "nothing rejected at $site"
done
pass "(d) offline peer: all data arrives after it comes back, nothing rejected"

# The old key: accepted within the grace period, refused after it.
drop_held SS1 "$within"
at +89d "$S" -C "$T/SS1" despool --once >/dev/null
cmp "$T/late-within.txt" "$(incoming SS1)/late-within.txt" || fail "old key refused within grace"
drop_held SS1 "$after"
at +91d "$S" -C "$T/SS1" despool --once >/dev/null
assert_no_file "$(incoming SS1)/late-after.txt"
assert_file "$(rejected SS1)/$after.why"
grep -q "past its grace period" "$(rejected SS1)/$after.why" || fail "refusal does not say why"
pass "(d) old key accepted at +89 days, refused at +91 days (rollover_grace_days = 90)"

# (e) Expiry: keys live 730 days; warnings from 90 days before, once a day.
printf '#!/bin/sh\nenv | grep ^SITESPOOL_STATUS_ >> "$1/notify.$SITESPOOL_STATUS_ID"\n' > "$T/notify.sh"
mksite EX1 "notify_command = sh $T/notify.sh $T"
mksite EX2; pair EX1 EX2
at +639d "$S" -C "$T/EX1" despool --once >/dev/null
assert_eq "$(status_count EX1 3304)" 0 "no warning 91 days before"
at +641d "$S" -C "$T/EX1" despool --once >/dev/null
at +641d "$S" -C "$T/EX1" despool --once >/dev/null
own_warnings() { status_text EX1 3304 | grep -c "of site EX1 expires" || true; }
assert_eq "$(own_warnings)" 1 "one warning at 89 days left, not one per run"
status_text EX1 3304 | grep -q "of site EX1 expires on .* (89 days left)" || fail "warning text: $(status_text EX1 3304)"
for _ in $(seq 1 100); do [ -s "$T/notify.3304" ] && break; sleep 0.05; done
grep -q "^SITESPOOL_STATUS_ID=3304$" "$T/notify.3304" || fail "notify_command not run for 3304"
grep -q "^SITESPOOL_STATUS_TEXT=Key .* of site EX[12] expires on" "$T/notify.3304" || fail "notify text"
at +642d "$S" -C "$T/EX1" despool --once >/dev/null
assert_eq "$(own_warnings)" 2 "warned again the next day"
at +641d "$S" -C "$T/EX2" despool --once >/dev/null
status_text EX2 3304 | grep -q "of site EX1" || fail "peer key expiry not warned at EX2"
pass "(e) expiry warnings at the 90-day mark, daily, through notify_command, for own and peer keys"
echo "late" > "$T/expired.txt"
at +731d "$S" -C "$T/EX1" send --to EX2 "$T/expired.txt" >/dev/null
at +731d "$S" -C "$T/EX2" despool --once >/dev/null
assert_no_file "$(incoming EX2)/expired.txt"
assert_eq "$(count_files "$(receive EX2)")" 2 "data signed by an expired key is held"
status_text EX2 4420 | grep -q "expired" || fail "hold reason does not say expired"
pass "(e) data signed by an expired key is held (4420)"

# (f) Revocation: checked first; waiting data signed by the key is quarantined.
echo "waiting" > "$T/waiting.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/waiting.txt" >/dev/null
"$S" -C "$T/SS1" key revoke "$new" >/dev/null
despool_once SS1 >/dev/null
assert_no_file "$(incoming SS1)/waiting.txt"
assert_eq "$(status_count SS1 4421)" 1 "revoked key -> 4421"
"$S" -C "$T/PS1" key export -o "$(hman SS1)/PS1.pub" 2>/dev/null
despool_once SS1 >/dev/null
"$S" -C "$T/SS1" key list | grep -q "^PS1 *$new revoked" || fail "a revoked key came back through hman.box"
assert_eq "$(status_count SS1 3301)" 1 "re-import of a revoked key refused (3301)"
pass "(f) revoked key: quarantined, and never trusted again"
