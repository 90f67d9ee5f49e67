#!/usr/bin/env bash
# The key directory on a real OpenLDAP server (issue 11): Debian's slapd on
# the loopback, started by the test as the user running it, with
# sitespool's schema loaded as the README says (lib_ldap.sh).  Faults
# (server down, frozen, wrong password, TLS) are in t_ldap_faults.sh.
#   0. the harness itself: each site may write its own record only, anyone
#      reads, passwords are not readable, TLS and StartTLS with the
#      throw-away CA work and another CA is refused (checked with
#      ldapsearch/ldapmodify, so a broken harness cannot pass for a
#      working sitespool)
#   1. `key publish` from PS1 writes its record (the key file verbatim);
#      SS1 (bound) and SS2 (anonymous) deliver PS1's data with no manual
#      exchange (nothing in hman.box, no key import)
#   2. a site that publishes later: its waiting data (4405) is released at
#      the despooler's next rescan (rescan_interval 1 s), not after
#      key_lookup_interval (1 h here)
#   3. look-ups are cached: one despool of 20 pairs from one site searches
#      the directory a bounded number of times, published or not
#   4. a record changed by the directory's administrator to another key:
#      data signed by that key blocks the site (3303), data is held (4420),
#      not delivered, not lost, not quarantined
#   5. `key rotate` publishes the next key beside the current one; a peer
#      that has not processed the rollover yet verifies data signed with
#      the new key (found as the next key, vouched by the current one);
#      a next key whose vouch does not verify is never used
#   6. `key list --directory [--json]`: the directory beside the keystore
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ldap.sh"
ldap_env_check

dir_site() { ldap_dir_site "$@"; }
publish() { ldap_publish "$@"; }
send_files() { ldap_send "$@"; }
# first_delivery: a directory, PS1 and SS1 on it, PS1's key published and
# a first file delivered through it.
first_delivery() {
  ldap_start PS1 SS1
  dir_site PS1 ldap; dir_site SS1 ldap
  peer PS1 SS1
  publish PS1
  echo first >"$T/a.txt"
  send_files PS1 SS1 "$T/a.txt"
  despool_once SS1 >/dev/null
  cmp -s "$T/a.txt" "$(incoming SS1)/a.txt" || fail "first delivery via the directory"
}
key_line() { sed -n 2p "$1"; }

# --- 0. the harness
s_harness() {
  ldap_start PS1 SS1
  mksite PS1
  "$S" -C "$T/PS1" key export -o - >"$T/PS1.txt" 2>/dev/null
  local rec
  rec() { printf 'dn: %s\nobjectClass: sitespoolSite\nsitespoolSiteCode: %s\nsitespoolPublicKey:< file://%s\n' "$(ldap_site_dn "$1")" "$1" "$T/PS1.txt"; }
  rec PS1 | ldap_site_modify PS1 -a >/dev/null || fail "PS1's bind DN cannot add its own record"
  rec SS1 | ldap_site_modify PS1 -a >/dev/null 2>&1 && fail "PS1's bind DN could add SS1's record"
  printf 'dn: %s\nchangetype: modify\nreplace: description\ndescription: x\n' "$(ldap_site_dn PS1)" |
    ldap_site_modify SS1 >/dev/null 2>&1 && fail "SS1's bind DN could modify PS1's record"
  printf 'dn: %s\nchangetype: modify\nreplace: description\ndescription: x\n' "$(ldap_site_dn PS1)" |
    ldapmodify -x -H "$LDAP_URI" >/dev/null 2>&1 && fail "an anonymous client could modify PS1's record"
  ldap_anon_search '(sitespoolSiteCode=PS1)' sitespoolPublicKey | grep -q '^sitespoolPublicKey::' ||
    fail "an anonymous client cannot read PS1's record"
  [ "$(ldap_attr PS1 sitespoolPublicKey)" = "$(cat "$T/PS1.txt")" ] || fail "the key file did not come back verbatim"
  ldapsearch -x -LLL -H "$LDAP_URI" -b "$LDAP_SITES" userPassword | grep -qi '^userPassword' &&
    fail "userPassword is readable anonymously"
  ldapsearch -x -LLL -H "$LDAP_URI" -D "$(ldap_bind_dn SS1)" -y "$LDAP_DIR/SS1.pw" -b "$LDAP_SITES" \
    "(cn=PS1)" userPassword | grep -qi '^userPassword' && fail "SS1 can read PS1's userPassword"
  ldapsearch -x -LLL -H "$LDAP_URI" -D "$(ldap_bind_dn SS1)" -w wrong -b '' -s base >/dev/null 2>&1 &&
    fail "a wrong password binds"
  pass "harness: each site writes only its own record, anyone reads it (verbatim), passwords stay hidden"
  env LDAPTLS_CACERT="$LDAP_CA" LDAPTLS_REQCERT=demand ldapsearch -x -LLL -H "$LDAPS_URI" -b "$LDAP_BASE" dn >/dev/null ||
    fail "ldaps:// with the throw-away CA"
  env LDAPTLS_CACERT="$LDAP_CA" LDAPTLS_REQCERT=demand ldapsearch -ZZ -x -LLL -H "$LDAP_URI" -b "$LDAP_BASE" dn >/dev/null ||
    fail "StartTLS with the throw-away CA"
  env LDAPTLS_CACERT="$LDAP_OTHER_CA" LDAPTLS_REQCERT=demand ldapsearch -x -LLL -H "$LDAPS_URI" -b "$LDAP_BASE" dn >/dev/null 2>&1 &&
    fail "ldaps:// with another CA was accepted"
  env LDAPTLS_CACERT="$LDAP_OTHER_CA" LDAPTLS_REQCERT=demand ldapsearch -ZZ -x -LLL -H "$LDAP_URI" -b "$LDAP_BASE" dn >/dev/null 2>&1 &&
    fail "StartTLS with another CA was accepted"
  grep -q 'TLS established' "$LDAP_LOG" || fail "slapd's log shows no TLS session"
  pass "harness: ldaps:// and StartTLS verify with the throw-away CA, another CA is refused"
}

# --- 1. publish, then deliver without any manual exchange
s_publish_deliver() {
  ldap_start PS1 SS1 SS2
  dir_site PS1 ldap; dir_site SS1 ldap; dir_site SS2 anon
  peer PS1 SS1; peer PS1 SS2; peer SS1 PS1
  ldap_has PS1 && fail "a record for PS1 before key publish"
  publish PS1
  ldap_has PS1 || fail "no record sitespoolSiteCode=PS1,$LDAP_BASE after key publish: $(cat "$T/publish.PS1.out")"
  "$S" -C "$T/PS1" key export -o - >"$T/PS1.txt" 2>/dev/null
  [ "$(ldap_attr PS1 sitespoolPublicKey)" = "$(cat "$T/PS1.txt")" ] ||
    fail "sitespoolPublicKey is not the key file verbatim: got '$(ldap_attr PS1 sitespoolPublicKey)', want '$(cat "$T/PS1.txt")'"
  expect_eq "$(ldap_attr PS1 sitespoolSiteCode)" PS1 "sitespoolSiteCode"
  ldap_attr PS1 objectClass | grep -qx sitespoolSite || fail_later "objectClass: $(ldap_attr PS1 objectClass | tr '\n' ' ')"
  expect_eq "$(ldap_attr PS1 sitespoolNextPublicKey)" "" "sitespoolNextPublicKey with no rollover"
  local until na
  until=$(sed -n 's/.*valid until \([0-9]*\).*/\1/p' "$T/PS1.txt" | head -1)
  na=$(ldap_attr PS1 sitespoolKeyNotAfter)
  if [ -n "$na" ]; then
    expect_eq "$na" "$(date -u -d "@$until" +%Y%m%d%H%M%SZ)" "sitespoolKeyNotAfter (the key file says valid until $until)"
  else
    echo "# no sitespoolKeyNotAfter in the record (optional)"
  fi
  grep -q "$(ldap_bind_dn PS1)" "$LDAP_LOG" || fail_later "slapd's log shows no bind of PS1's bind DN"
  pass "key publish: sitespoolSiteCode=PS1,$LDAP_BASE holds the key file verbatim, bound as PS1"
  local before; before=$(ldap_root_search -s base -b "$(ldap_site_dn PS1)" '(objectClass=*)' '*' | sort)
  publish PS1
  expect_eq "$(ldap_root_search -s base -b "$(ldap_site_dn PS1)" '(objectClass=*)' '*' | sort)" "$before" "the record after publishing again"
  pass "publishing again: exit 0, the record unchanged"

  mkfiles "$T/src" 3 300
  send_files PS1 SS1 "$T/src"/*
  send_files PS1 SS2 "$T/src"/*
  local s
  for s in SS1 SS2; do
    expect_eq "$(find "$(hman "$s")" -name '*.pub' | wc -l)" 0 "key files in $s's hman.box"
    "$S" -C "$T/$s" key list | grep -q '^PS1 ' && fail "$s knows PS1's key before any lookup"
    despool_once "$s" >"$T/despool.$s.out" 2>&1 || fail "despool --once at $s: $(cat "$T/despool.$s.out")"
    same_files "$T/src" "$(incoming "$s")" ||
      fail "$s did not deliver PS1's files: $(ls "$(incoming "$s")"); statuses: $("$S" -C "$T/$s" status | tail -5)"
    "$S" -C "$T/$s" key list | grep -q "^PS1 *$(keyid_of "$T/PS1/keys/PS1.pub") *trusted" ||
      fail "$s does not trust PS1's key: $("$S" -C "$T/$s" key list)"
    expect_eq "$(count_all "$(rejected "$s")")" 0 "entries in $s's rejected"
  done
  echo "# SS1's keystore: $("$S" -C "$T/SS1" key list | grep '^PS1 ' | head -1)"
  pass "SS1 (bound) and SS2 (anonymous) found PS1's key in the directory and delivered, no manual exchange"
}

# --- 2. a site that publishes later is released at the next rescan
s_later_publish() {
  ldap_start PS2 SS1
  dir_site PS2 ldap
  dir_site SS1 ldap "rescan_interval = 1s" "key_lookup_interval = 1h"
  peer PS2 SS1
  start_despooler SS1
  mkfiles "$T/src" 2
  send_files PS2 SS1 "$T/src"/*
  wait_until 20 eval '[ "$(status_count SS1 4405)" -ge 1 ]' ||
    fail "no 4405 for PS2's data with no record: $("$S" -C "$T/SS1" status | tail -5)"
  sleep 3   # three rescans: still no record, still waiting
  expect_eq "$(count_files "$(incoming SS1)")" 0 "files delivered before PS2 published"
  expect_eq "$(pairs_in "$(receive SS1)")" 1 "pairs waiting in SS1's receive"
  expect_eq "$(status_count SS1 4441)" 0 "4441 (the directory answered: no record is not an error)"
  local t0=$SECONDS
  publish PS2
  wait_until 15 same_files "$T/src" "$(incoming SS1)" ||
    fail "PS2's waiting data not released within 15 s of its record appearing (key_lookup_interval is 1 h): $("$S" -C "$T/SS1" status | tail -5)"
  echo "# released $((SECONDS - t0)) s after the record appeared (rescan_interval 1 s)"
  stop_despooler "$DPID"
  expect_eq "$DRC" 0 "despooler exit status"
  pass "a record published later releases the waiting data (4405) at the next rescan, without waiting key_lookup_interval"
}

# --- 3. look-ups are cached within a run
s_cache() {
  ldap_start PS1 SS1
  dir_site PS1 ldap "bundle_max_files = 1"
  dir_site SS1 ldap
  peer PS1 SS1
  mkfiles "$T/src" 20
  send_files PS1 SS1 "$T/src"/*
  expect_eq "$(pairs_in "$(receive SS1)")" 20 "pairs in SS1's receive"
  local n0 n1
  n0=$(ldap_search_count)
  despool_once SS1 >/dev/null 2>&1 || true
  n1=$(ldap_search_count)
  expect_eq "$(count_files "$(incoming SS1)")" 0 "delivered with no record"
  echo "# 20 pairs, no record: $((n1 - n0)) searches"
  [ $((n1 - n0)) -ge 1 ] || fail "the despooler did not search the directory at all"
  [ $((n1 - n0)) -le 3 ] || fail "20 pairs from one site without a record: $((n1 - n0)) searches (not cached)"
  publish PS1
  n0=$(ldap_search_count)
  despool_once SS1 >/dev/null 2>&1 || fail "despool --once"
  n1=$(ldap_search_count)
  same_files "$T/src" "$(incoming SS1)" || fail "not delivered once PS1 published: $("$S" -C "$T/SS1" status | tail -3)"
  echo "# 20 pairs, record found: $((n1 - n0)) searches"
  [ $((n1 - n0)) -le 3 ] || fail "20 pairs from one site with a record: $((n1 - n0)) searches (not cached)"
  pass "20 pairs from one site: $((n1 - n0)) directory search(es) in one run, with or without a record"
}

# --- 4. a record changed to another key
s_changed_record() {
  first_delivery
  local old new
  old=$(keyid_of "$T/PS1/keys/PS1.pub")
  # Another key pair for "site PS1" (an impostor, or a re-keyed site that
  # skipped the rollover); the directory's administrator puts it in PS1's
  # record.
  mkdir "$T/imp"
  "$S" -C "$T/imp/PS1" init --site PS1 >/dev/null
  "$S" -C "$T/imp/PS1" peer add SS1 --inbox "$(receive SS1)" >/dev/null
  new=$(keyid_of "$T/imp/PS1/keys/PS1.pub")
  "$S" -C "$T/imp/PS1" key export -o - >"$T/new.txt" 2>/dev/null
  ldap_set_attr PS1 sitespoolPublicKey "$T/new.txt" || fail "ldapmodify as the root DN"
  [ "$(ldap_attr PS1 sitespoolPublicKey)" = "$(cat "$T/new.txt")" ] || fail "the record was not changed"
  echo changed >"$T/b.txt"
  "$S" -C "$T/imp/PS1" send --to SS1 "$T/b.txt" >/dev/null || fail "send from the other PS1 key"
  despool_once SS1 >/dev/null 2>&1 || true
  assert_no_file "$(incoming SS1)/b.txt"
  [ "$(status_count SS1 3303)" -ge 1 ] || fail "no 3303 for data signed by the key of the changed record: $("$S" -C "$T/SS1" status | tail -5)"
  local t; t=$(status_text SS1 3303)
  echo "$t" | grep -q "$new" || fail_later "3303 does not name the record's key $new: $t"
  echo "$t" | grep -q "$old" || fail_later "3303 does not name the trusted key $old: $t"
  "$S" -C "$T/SS1" key list | grep -q "^PS1 *BLOCKED" || fail_later "key list does not show PS1 blocked: $("$S" -C "$T/SS1" key list)"
  "$S" -C "$T/SS1" key list | grep -q "^PS1 *$old *trusted" || fail_later "the trusted key $old is no longer trusted"
  # PS1's own data, signed by the trusted key, is held while blocked.
  echo held >"$T/c.txt"
  send_files PS1 SS1 "$T/c.txt"
  despool_once SS1 >/dev/null 2>&1 || true
  assert_no_file "$(incoming SS1)/c.txt"
  [ "$(status_count SS1 4420)" -ge 1 ] || fail_later "no 4420 (held) for PS1's data while blocked"
  expect_eq "$(count_all "$(rejected SS1)")" 0 "entries in SS1's rejected (nothing quarantined)"
  expect_eq "$(find "$T/SS1" -name '*.ins' ! -path '*/rejected/*' | wc -l)" 2 "held instructions kept at SS1"
  expect_eq "$(find "$T/SS1" -name '*.pck' ! -path '*/rejected/*' | wc -l)" 2 "held packages kept at SS1"
  pass "a record changed to key $new: 3303, PS1 blocked, data held (4420), nothing delivered, lost or quarantined"
  # The administrator accepts the change: the held data flows.
  "$S" -C "$T/SS1" key trust PS1 "$new" >/dev/null || fail "key trust PS1 $new"
  despool_once SS1 >/dev/null 2>&1 || true
  cmp -s "$T/b.txt" "$(incoming SS1)/b.txt" || fail "data signed by $new not delivered after key trust"
  pass "key trust of the record's key: the data it signed flows"
}

# rollover_ids DIR: ids of the type=rollover instructions in DIR.
rollover_ids() {
  local f
  for f in "$1"/*.ins; do
    [ -f "$f" ] || continue
    [ "$(tc_field "$f" type)" = rollover ] && basename "$f" .ins
  done
  return 0
}

# --- 5. key rotate publishes the next key; a peer uses it before the rollover arrives
s_rotate() {
  first_delivery
  local old_line old new_line new
  old_line=$(key_line "$T/PS1/keys/PS1.pub"); old=$(keyid_of "$T/PS1/keys/PS1.pub")
  "$S" -C "$T/PS1" key rotate >"$T/rotate.out" 2>&1 || fail "key rotate: $(cat "$T/rotate.out")"
  new_line=$(key_line "$T/PS1/keys/PS1.pub"); new=$(keyid_of "$T/PS1/keys/PS1.pub")
  [ "$new" != "$old" ] || fail "key rotate made no new key"
  ldap_attr PS1 sitespoolPublicKey | grep -qxF "$old_line" ||
    fail "after key rotate the current key in the record is not the old one: $(ldap_attr PS1 sitespoolPublicKey)"
  ldap_attr PS1 sitespoolNextPublicKey | grep -qxF "$new_line" ||
    fail "after key rotate sitespoolNextPublicKey does not hold the new key $new: '$(ldap_attr PS1 sitespoolNextPublicKey)'"
  echo "# sitespoolNextPublicKey after key rotate:"; ldap_attr PS1 sitespoolNextPublicKey | sed 's/^/#   /'
  [ -n "$(ldap_attr PS1 sitespoolNextKeyNotAfter)" ] || echo "# no sitespoolNextKeyNotAfter (optional)"
  pass "key rotate: the record holds the current key $old and the next key $new"
  # The rollover instruction is still on its way: set it aside.
  mkdir "$T/aside"
  local id ids
  ids=$(rollover_ids "$(receive SS1)")
  [ -n "$ids" ] || ids=$(rollover_ids "$(outbox PS1 SS1)")
  [ -n "$ids" ] || fail "no rollover instruction for SS1 after key rotate: $(ls "$(receive SS1)" "$(outbox PS1 SS1)" 2>&1)"
  for id in $ids; do mv "$(receive SS1)/$id".* "$(outbox PS1 SS1)/"*"$id".* "$T/aside/" 2>/dev/null || true; done
  expect_eq "$(pairs_in "$(receive SS1)")" 0 "pairs in SS1's receive with the rollover set aside"
  echo "signed by the next key" >"$T/d.txt"
  send_files PS1 SS1 "$T/d.txt"
  despool_once SS1 >"$T/despool.out" 2>&1 || true
  cmp -s "$T/d.txt" "$(incoming SS1)/d.txt" ||
    fail "data signed with the next key $new not delivered before the rollover arrived: $("$S" -C "$T/SS1" status | tail -5)"
  expect_eq "$(status_count SS1 3303)" 0 "3303 at SS1"
  expect_eq "$(count_all "$(rejected SS1)")" 0 "entries in SS1's rejected"
  pass "a peer that has not processed the rollover verifies data signed by the next key (found in the record, vouched)"
  # The rollover arrives late: processed normally.
  for f in "$T/aside"/*; do n=${f##*/}; mv "$f" "$(receive SS1)/${n#*-}"; done
  despool_once SS1 >/dev/null 2>&1 || true
  expect_eq "$(status_count SS1 3303)" 0 "3303 after the late rollover"
  expect_eq "$(count_all "$(rejected SS1)")" 0 "entries in SS1's rejected after the late rollover"
  "$S" -C "$T/SS1" key list | grep -q "^PS1 *$new *trusted" || fail_later "the new key is not trusted: $("$S" -C "$T/SS1" key list)"
  pass "the late rollover is accepted; $new trusted"
}

# --- 5b. a next key the current key did not vouch for is never used
s_rotate_forged() {
  first_delivery
  "$S" -C "$T/PS1" key rotate >/dev/null 2>&1 || fail "key rotate"
  local new_line imp_line imp
  new_line=$(key_line "$T/PS1/keys/PS1.pub")
  # Keep the rollover away; an impostor with its own key for "site PS1"
  # puts its key in place of the next key (the proof and vouch stay).
  for id in $(rollover_ids "$(receive SS1)"); do rm -f "$(receive SS1)/$id".*; done
  mkdir "$T/imp"
  "$S" -C "$T/imp/PS1" init --site PS1 >/dev/null
  "$S" -C "$T/imp/PS1" peer add SS1 --inbox "$(receive SS1)" >/dev/null
  imp_line=$(key_line "$T/imp/PS1/keys/PS1.pub"); imp=$(keyid_of "$T/imp/PS1/keys/PS1.pub")
  ldap_attr PS1 sitespoolNextPublicKey | sed "s|^$(printf '%s' "$new_line" | sed 's/[][\.*^$/|]/\\&/g')\$|$imp_line|" >"$T/forged.txt"
  grep -qxF "$imp_line" "$T/forged.txt" || fail "could not forge the next key value"
  printf '%s' "$(cat "$T/forged.txt")" >"$T/forged.txt"
  ldap_set_attr PS1 sitespoolNextPublicKey "$T/forged.txt" || fail "ldapmodify as the root DN"
  echo "impostor" >"$T/x.txt"
  "$S" -C "$T/imp/PS1" send --to SS1 "$T/x.txt" >/dev/null || fail "send from the impostor"
  despool_once SS1 >/dev/null 2>&1 || true
  assert_no_file "$(incoming SS1)/x.txt"
  "$S" -C "$T/SS1" key list | grep -q "^PS1 *$imp *trusted" && fail "the impostor's key $imp is trusted"
  echo "# after a forged next key: 3303 x $(status_count SS1 3303), 4405 x $(status_count SS1 4405), 4422 x $(status_count SS1 4422)"
  pass "a next key in the record whose vouch does not verify ($imp) is not used: its data is not delivered"
}

# --- 6. key list --directory
s_key_list() {
  ldap_start PS1 PS2 SS1
  dir_site PS1 ldap; dir_site PS2 ldap; dir_site SS1 ldap
  peer PS1 SS1; peer SS1 PS1; peer SS1 PS2
  publish PS1; publish PS2
  echo x >"$T/a.txt"
  send_files PS1 SS1 "$T/a.txt"
  despool_once SS1 >/dev/null
  cmp -s "$T/a.txt" "$(incoming SS1)/a.txt" || fail "delivery via the directory"
  local k1 k2
  k1=$(keyid_of "$T/PS1/keys/PS1.pub"); k2=$(keyid_of "$T/PS2/keys/PS2.pub")
  "$S" -C "$T/SS1" key list --directory >"$T/list.out" 2>&1 || fail "key list --directory: $(cat "$T/list.out")"
  cat "$T/list.out" | sed 's/^/# /'
  grep -q "PS1.*$k1" "$T/list.out" || fail "key list --directory does not show PS1's record $k1"
  grep -q "PS2.*$k2" "$T/list.out" || fail "key list --directory does not show PS2's record $k2 (a peer the keystore does not know yet)"
  "$S" -C "$T/SS1" key list --directory --json >"$T/list.json" 2>"$T/list.err" || fail "key list --directory --json: $(cat "$T/list.err")"
  python3 - "$T/list.json" "$k1" "$k2" <<'PY' || fail "key list --directory --json: $(head -c 2000 "$T/list.json")"
import json, sys
text = open(sys.argv[1]).read()
try:
    doc = json.loads(text)
except ValueError:
    doc = [json.loads(l) for l in text.splitlines() if l.strip()]  # one object a line
flat = json.dumps(doc)
for k in sys.argv[2:]:
    assert k in flat.upper(), "key id %s missing" % k
assert "PS1" in flat and "PS2" in flat
PY
  pass "key list --directory [--json] shows the records of PS1 ($k1, trusted) and PS2 ($k2, not in the keystore)"
  ldap_stop
  local rc=0
  "$S" -C "$T/SS1" key list --directory >"$T/list2.out" 2>&1 || rc=$?
  expect_eq "$rc" 1 "key list --directory exit status with slapd stopped"
  grep -qi "127.0.0.1:$LDAP_PORT\|$LDAP_URI" "$T/list2.out" || fail_later "key list --directory with slapd stopped does not name the server: $(cat "$T/list2.out")"
  pass "key list --directory with slapd stopped: exit $rc, says: $(grep -v '^ *$' "$T/list2.out" | tail -1)"
}

ldap_scenario "0 the harness (slapd, ACLs, TLS)" s_harness
ldap_implemented || fail "this build has no LDAP key directory ('sitespool settings' names no directory_bind_dn)"
ldap_scenario "1 publish, deliver without a manual exchange" s_publish_deliver
ldap_scenario "2 a site publishing later is released at the next rescan" s_later_publish
ldap_scenario "3 look-ups cached within a run" s_cache
ldap_scenario "4 a record changed to another key: 3303, held" s_changed_record
ldap_scenario "5 key rotate: the next key, vouched" s_rotate
ldap_scenario "5b a forged next key is not used" s_rotate_forged
ldap_scenario "6 key list --directory" s_key_list
ldap_done
