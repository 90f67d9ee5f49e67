#!/usr/bin/env bash
# Receipts and heartbeats (issue 12), three sites PS1, SS1, SS2, all local:
#  1. receipts mark pairs confirmed at the sender (queue --sent, peer list);
#  2. a pair quarantined at the peer shows the peer's status id (4513);
#  3. a pair waiting there for our key shows as waiting (4514), then
#     confirmed once the key is dropped;
#  4. kill -9 of the receiving despooler and of the sender's despooler
#     while receipts flow: every pair delivered once, all confirmed;
#  5. a rotation with one peer offline: the propagation view shows it on
#     the old key, revoking the old key is refused naming it, it comes
#     back and confirms (3314), the revocation goes through;
#  6. link states driven by short heartbeat intervals: degraded (4515),
#     failed (4516), healthy again (4517);
# and receipts are never receipted, a forged receipt changes nothing.
. "$(dirname "$0")/lib.sh"

FAST=("heartbeat_interval = 2s" "link_degraded_after = 2" "receipt_timeout = 3s")
mksite PS1 "${FAST[@]}"; mksite SS1 "${FAST[@]}"; mksite SS2 "${FAST[@]}"
pair PS1 SS1; pair PS1 SS2
despool_once PS1 >/dev/null; despool_once SS1 >/dev/null; despool_once SS2 >/dev/null

sent_state() { # SITE ID: the state queue --sent gives the pair
  "$S" -C "$T/$1" queue --sent --all --json |
    python3 -c 'import json,sys; r=[p for p in json.load(sys.stdin) if p["id"]==sys.argv[1]]; print(r[0]["state"] if r else "absent")' "$2"
}
sent_status() {
  "$S" -C "$T/$1" queue --sent --all --json |
    python3 -c 'import json,sys; r=[p for p in json.load(sys.stdin) if p["id"]==sys.argv[1]]; print(r[0]["status_id"] if r else "absent")' "$2"
}
# round A B: B's despooler judges what came, B's sender returns receipts,
# A's despooler applies them.
round() { despool_once "$2" >/dev/null; "$S" -C "$T/$2" sender --once >/dev/null 2>&1 || true
          despool_once "$1" >/dev/null; }
send_one() { # FROM TO FILE [send options]: prints the instruction id
  local from=$1 to=$2 file=$3; shift 3
  "$S" -C "$T/$from" send --to "$to" "$@" "$file" | sed -n 's/^Queued instruction \([0-9a-f]*\) .*/\1/p' | head -n 1
}

# ---- 1. delivered: confirmed ----
echo "first" >"$T/a.txt"
id=$(send_one PS1 SS1 "$T/a.txt")
[ -n "$id" ] || fail "no instruction id from send"
assert_eq "$(sent_state PS1 "$id")" unconfirmed "state of a pair in SS1's inbox"
unconf=$("$S" -C "$T/PS1" peer list --json | python3 -c 'import json,sys; print([p for p in json.load(sys.stdin) if p["site"]=="SS1"][0]["unconfirmed"])')
assert_eq "$unconf" 1 "unconfirmed pairs for SS1 in peer list"
round PS1 SS1
assert_eq "$(sent_state PS1 "$id")" delivered "state after SS1's receipt"
unconf=$("$S" -C "$T/PS1" peer list --json | python3 -c 'import json,sys; print([p for p in json.load(sys.stdin) if p["site"]=="SS1"][0]["unconfirmed"])')
assert_eq "$unconf" 0 "unconfirmed pairs for SS1 after the receipt"
"$S" -C "$T/PS1" peer list | grep -q "sent, no receipt yet: 0" || fail "peer list does not show the receipts: $("$S" -C "$T/PS1" peer list)"
# The receipt was not receipted: nothing went back from PS1 to SS1.
assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "pairs PS1 queued for SS1 after applying a receipt"
grep -q "Receipt .* from site SS1: 1 fate(s)" "$T/PS1/logs/despool.log" || fail "despool.log does not name the receipt"
pass "a delivered pair is confirmed by SS1's receipt; the receipt itself is not receipted"

# ---- 2. quarantined there: the peer's status id ----
echo "bad dest" >"$T/b.txt"
id=$(send_one PS1 SS1 "$T/b.txt" --dest nowhere.box)
round PS1 SS1
assert_eq "$(sent_state PS1 "$id")" quarantined "state of a pair SS1 quarantined"
peer_status=$("$S" -C "$T/SS1" status --json --limit 50 | python3 -c '
import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if sys.argv[1] in l and m["id"]>=4401 and m["id"]!=4400: print(m["id"])' "$id" | tail -n 1)
[ -n "$peer_status" ] || fail "SS1 stored no status for $id"
assert_eq "$(sent_status PS1 "$id")" "$peer_status" "the status id PS1 shows for the quarantined pair"
status_text PS1 4513 | grep -q "Site SS1 quarantined b.txt (instruction $id): its status $peer_status" ||
  fail "no 4513 at PS1: $(status_text PS1 4513)"
pass "a pair SS1 quarantined shows SS1's status id ($peer_status) at PS1, with 4513"

# ---- resend on request: the same instruction, once ----
# Copies are kept of pairs delivered by copy (another filesystem) or SFTP:
# PS1 delivers to SS1 through a relay folder in /dev/shm (tmpfs), which
# the test empties into SS1's receive, as a mounted share would be.
RELAY_FS=$(stat -f -c %i /dev/shm 2>/dev/null || echo none)
if [ "$RELAY_FS" = none ] || [ "$RELAY_FS" = "$(stat -f -c %i "$T")" ] || [ ! -w /dev/shm ]; then
  echo "SKIP: send --resend: no writable /dev/shm on another filesystem than $T for a copied delivery"
else
  RELAY=$(mktemp -d /dev/shm/sitespool-relay.XXXXXX)
  trap 'rm -rf "$RELAY"; cleanup' EXIT
  relay() { mv "$RELAY"/*.pck "$(receive SS1)/" 2>/dev/null || true; mv "$RELAY"/*.ins "$(receive SS1)/" 2>/dev/null || true; }
  "$S" -C "$T/PS1" peer add SS1 --inbox "$RELAY" >/dev/null
  echo "resend me" >"$T/q.txt"
  id=$(send_one PS1 SS1 "$T/q.txt" --dest nowhere.box)
  [ -f "$T/PS1/inboxes/schedule.box/sent/SS1/"*"-$id.ins" ] || fail "no copy of $id kept for resending"
  relay; round PS1 SS1
  assert_eq "$(sent_state PS1 "$id")" quarantined "state of the pair SS1 refused"
  sed -i 's/^allowed_dest = .*/allowed_dest = replmgr.box nowhere.box/' "$T/SS1/site.conf"
  mkdir -p "$(incoming SS1 nowhere.box)"
  "$S" -C "$T/PS1" send --resend "$id" | grep -q "Queued instruction $id for SS1 again" || fail "send --resend"
  status_text PS1 4518 | grep -q "Resent instruction $id (q.txt) to site SS1 at the request of user" ||
    fail "no 4518: $(status_text PS1 4518)"
  relay; round PS1 SS1
  cmp -s "$T/q.txt" "$(incoming SS1 nowhere.box)/q.txt" || fail "the resent pair was not delivered"
  assert_eq "$(sent_state PS1 "$id")" delivered "state of the resent pair"
  rc=0; "$S" -C "$T/PS1" send --resend "$id" >/dev/null 2>"$T/err" || rc=$?
  assert_eq "$rc" 1 "resending a confirmed pair"
  grep -q "was confirmed delivered by SS1" "$T/err" || fail "refusal: $(cat "$T/err")"
  "$S" -C "$T/PS1" sender --once >/dev/null 2>&1 || true
  [ ! -e "$T/PS1/inboxes/schedule.box/sent/SS1/"*"-$id.ins" ] || fail "the copy of a confirmed pair was not pruned"
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(receive SS1)" >/dev/null
  rm -rf "$RELAY"
  pass "send --resend: the kept copy goes again (4518), is delivered once and confirmed; a confirmed pair is refused; copies pruned once confirmed"
fi
# A pair renamed into a local inbox is not kept: a resend says why.
echo "local" >"$T/r.txt"
id=$(send_one PS1 SS1 "$T/r.txt")
rc=0; "$S" -C "$T/PS1" send --resend "$id" >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "resending a pair renamed into a local inbox"
grep -q "not for pairs renamed into a local inbox" "$T/err" || fail "refusal: $(cat "$T/err")"
rc=0; "$S" -C "$T/PS1" send --resend 0123456789abcdef0123456789abcdef >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "resending an id never sent"
grep -q "no record of sending" "$T/err" || fail "refusal: $(cat "$T/err")"
round PS1 SS1
pass "send --resend of a pair without a kept copy, or never sent: refused, saying why"

# ---- a lost receipt never resends ----
echo "receipt lost" >"$T/l.txt"
lid=$(send_one PS1 SS1 "$T/l.txt")
despool_once SS1 >/dev/null; "$S" -C "$T/SS1" sender --once >/dev/null 2>&1 || true
lost=$(grep -l "type=receipt" "$(receive PS1)"/*.ins | head -n 1)
[ -n "$lost" ] || fail "no receipt reached PS1"
rm -f "$lost" "${lost%.ins}.pck"
despool_once PS1 >/dev/null; "$S" -C "$T/PS1" sender --once >/dev/null 2>&1 || true
assert_eq "$(sent_state PS1 "$lid")" unconfirmed "state after its receipt was lost"
assert_eq "$(grep -l "type=data" "$(receive SS1)"/*.ins 2>/dev/null | wc -l)" 0 \
  "data pairs sent to SS1 again after a lost receipt"
assert_eq "$(find "$(incoming SS1)" -name 'l.txt*' | wc -l)" 1 "copies of l.txt at SS1"
pass "a lost receipt leaves the pair unconfirmed and resends nothing"

# ---- 3. waiting for our key there, then confirmed ----
mksite SS3 "${FAST[@]}"
peer PS1 SS3; peer SS3 PS1
# PS1 holds SS3's key (so it can read SS3's receipts); SS3 lacks PS1's.
"$S" -C "$T/SS3" key export -o "$(hman PS1)/SS3.pub" 2>/dev/null; despool_once PS1 >/dev/null
echo "needs a key" >"$T/c.txt"
id=$(send_one PS1 SS3 "$T/c.txt")
round PS1 SS3
assert_eq "$(sent_state PS1 "$id")" waiting-key "state of a pair waiting for PS1's key at SS3"
status_text PS1 4514 | grep -q "Site SS3 has not delivered c.txt (instruction $id): it waits for this site's key (its status 4405)" ||
  fail "no 4514 at PS1: $(status_text PS1 4514)"
"$S" -C "$T/PS1" key export -o "$(hman SS3)/PS1.pub" 2>/dev/null
round PS1 SS3
assert_eq "$(sent_state PS1 "$id")" delivered "state once SS3 has PS1's key"
cmp -s "$T/c.txt" "$(incoming SS3)/c.txt" || fail "c.txt not delivered at SS3"
pass "a pair waiting for our key shows waiting-key (4514), then delivered once the key is there"

# ---- forged receipt: changes nothing ----
echo "still unconfirmed" >"$T/d.txt"
id=$(send_one PS1 SS1 "$T/d.txt")
mksite EVL
# EVL signs a receipt claiming to be SS1 with its own key: PS1 must not believe it.
printf 'sitespool-receipt/1 from=SS1 to=PS1 time=%s\n%s delivered 4400\n' "$(date +%s)" "$id" >"$T/forged.txt"
mkdir "$T/forge"; fid=$(new_id)
zpack "$T/forged.txt" "$T/forge/$fid.pck"
sign_ins EVL "$T/forge" "$fid" "$(fields "$fid" from=SS1 to=PS1 type=receipt dest=despoolr.box \
  name=SS1.receipt "size=$(stat -c %s "$T/forged.txt")" seq=999)"
mv "$T/forge/$fid.pck" "$T/forge/$fid.ins" "$(receive PS1)/"
despool_once PS1 >/dev/null
assert_eq "$(sent_state PS1 "$id")" unconfirmed "state after a receipt signed by another site's key"
pass "a receipt not signed by the peer's trusted key changes nothing"
round PS1 SS1   # confirms d.txt for the next steps

# ---- 4. kill -9 on both sides while receipts flow ----
for i in $(seq 1 120); do echo "file $i" >"$T/k$i.txt"; done
"$S" -C "$T/PS1" send --to SS1 --queue-only "$T"/k*.txt >/dev/null
"$S" -C "$T/PS1" send --flush --to SS1 >/dev/null
for n in 1 2 3; do
  "$S" -C "$T/SS1" despool >/dev/null 2>&1 & p=$!
  sleep 0.$((RANDOM % 4 + 1)); kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  "$S" -C "$T/SS1" sender --once >/dev/null 2>&1 || true
  "$S" -C "$T/PS1" despool >/dev/null 2>&1 & p=$!
  sleep 0.$((RANDOM % 3 + 1)); kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
done
for n in 1 2; do round PS1 SS1; done
delivered=$(find "$(incoming SS1)" -name 'k*.txt' | wc -l)
assert_eq "$delivered" 120 "k*.txt files at SS1"
dups=$(find "$(incoming SS1)" -name 'k*.txt*' | wc -l)
assert_eq "$dups" 120 "k*.txt files at SS1, copies included"
open=$("$S" -C "$T/PS1" queue --sent --peer SS1 --json |
  python3 -c 'import json,sys; print(len([p for p in json.load(sys.stdin) if p["name"].startswith("k")]))')
[ "$open" = 0 ] || { "$S" -C "$T/PS1" queue --sent --peer SS1; KEEP=1; fail "pairs for SS1 not confirmed after the kills: $open"; }
pass "kill -9 of SS1's and PS1's despoolers while receipts flow: 120 delivered once, all confirmed"

# ---- 5. rotation with SS2 offline ----
# Heartbeats both ways first: each knows which keys the other holds.
"$S" -C "$T/SS1" sender --once >/dev/null 2>&1 || true
"$S" -C "$T/SS2" sender --once >/dev/null 2>&1 || true
despool_once PS1 >/dev/null
old=$("$S" -C "$T/PS1" key list --json | python3 -c 'import json,sys; print([k for k in json.load(sys.stdin) if k["site"]=="PS1" and k["state"]=="own"][0]["key_id"])')
"$S" -C "$T/PS1" key rotate >/dev/null 2>&1 || true
new=$("$S" -C "$T/PS1" key list --json | python3 -c 'import json,sys; print([k for k in json.load(sys.stdin) if k["site"]=="PS1" and k["state"]=="own"][0]["key_id"])')
[ "$old" != "$new" ] || fail "key rotate made no new key"
# SS1 and SS3 are online: they take the rollover, and their heartbeats
# (sent at once after it) say they hold the new key.
for site in SS1 SS3; do
  despool_once $site >/dev/null
  "$S" -C "$T/$site" sender --once >/dev/null 2>&1 || true
done
despool_once PS1 >/dev/null
prop=$("$S" -C "$T/PS1" key propagation --json)
relies() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print([p for p in d["peers"] if p["site"]==sys.argv[2]][0]["relies_on"])' "$prop" "$1"; }
assert_eq "$(relies SS1)" "$new" "the key SS1 relies on"
assert_eq "$(relies SS2)" "$old" "the key SS2 (offline) relies on"
"$S" -C "$T/PS1" key propagation | grep -q "^SS2 .* $old" || fail "propagation text does not show SS2 on the old key"
rc=0; "$S" -C "$T/PS1" key revoke "$old" >"$T/out" 2>&1 || rc=$?
assert_eq "$rc" 1 "revoking the old key while SS2 holds only it"
grep -q "SS2 (heard" "$T/out" || fail "the refusal does not name SS2: $(cat "$T/out")"
grep -q -- "--force" "$T/out" || fail "the refusal does not name --force"
assert_eq "$(status_count PS1 3314)" 0 "3314 before SS2 confirmed"
# SS2 comes back.
despool_once SS2 >/dev/null
"$S" -C "$T/SS2" sender --once >/dev/null 2>&1 || true
despool_once PS1 >/dev/null
assert_eq "$(status_count PS1 3314)" 1 "3314 once every peer holds the new key"
status_text PS1 3314 | grep -q "holds key $new of this site: the old key $old can be revoked" ||
  fail "3314 text: $(status_text PS1 3314)"
"$S" -C "$T/PS1" key revoke "$old" >/dev/null || fail "revoking the old key once every peer holds the new one"
pass "rotation with SS2 offline: propagation shows it on the old key, revoke refused naming it; back, it confirms (3314) and the revoke goes through"

# ---- 6. link states ----
# PS1's sender watches; SS1 sends no heartbeat for a while.
"$S" -C "$T/PS1" sender --once >/dev/null 2>&1 || true
n15=$(status_count PS1 4515); n16=$(status_count PS1 4516); n17=$(status_count PS1 4517)
wait_until 20 eval '"$S" -C "$T/PS1" sender --once >/dev/null 2>&1; [ "$(status_count PS1 4515)" -gt "$n15" ]' ||
  fail "no 4515 (degraded) after 2 missed heartbeat intervals"
status_text PS1 4515 | grep -q "The link to site SS1 is degraded" || fail "4515 names SS1: $(status_text PS1 4515)"
wait_until 20 eval '"$S" -C "$T/PS1" sender --once >/dev/null 2>&1; [ "$(status_count PS1 4516)" -gt "$n16" ]' ||
  fail "no 4516 (failed) after 4 missed heartbeat intervals"
"$S" -C "$T/PS1" peer list | grep -q "link failed" || fail "peer list does not show the failed link"
"$S" -C "$T/SS1" sender --once >/dev/null 2>&1 || true
despool_once PS1 >/dev/null
"$S" -C "$T/PS1" sender --once >/dev/null 2>&1 || true
[ "$(status_count PS1 4517)" -gt "$n17" ] || fail "no 4517 (healthy again) after SS1's heartbeat"
pass "heartbeat intervals of 2 s: degraded (4515), failed (4516), healthy again (4517)"

# ---- overdue receipts ----
echo "no receipt" >"$T/e.txt"
id=$(send_one PS1 SS2 "$T/e.txt")
sleep 4
"$S" -C "$T/PS1" sender --once >/dev/null 2>&1 || true
status_text PS1 4512 | grep -q "pair(s) sent to site SS2 have had no receipt for 3 seconds" ||
  fail "no 4512 for a pair without receipt: $(status_text PS1 4512)"
n=$(status_count PS1 4512)
"$S" -C "$T/PS1" sender --once >/dev/null 2>&1 || true
assert_eq "$(status_count PS1 4512)" "$n" "4512 raised once per pair"
pass "a pair without receipt after receipt_timeout: 4512, once"
