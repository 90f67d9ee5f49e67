#!/usr/bin/env bash
# The LDAP key directory when things go wrong (issue 11), against a real
# OpenLDAP server (lib_ldap.sh):
#   1. slapd stopped: 4441 once per outage naming the server and libldap's
#      error, the pairs wait (4405) and are neither delivered, lost nor
#      quarantined (an outage does not use up key_lookup_retries, which do
#      run out for a record that is really missing while the directory
#      answers: the control), data from a peer whose key is in the
#      keystore flows meanwhile; after ldap_restart: 4443, delivered
#   2. slapd frozen (SIGSTOP: connections accepted, never answered): the
#      look-up times out (directory_timeout), the despooler goes on with
#      other sites' data, 4441 names the timeout; thawed: delivered
#   3. bind refused: a wrong password (4442 naming the bind DN, and
#      `key publish` fails saying so), a password file readable by others
#      (refused, 4442), a password file ending in a newline (accepted)
#   4. TLS with a throw-away CA: ldaps:// and StartTLS work (slapd's log
#      shows the TLS sessions), another CA fails with 4441 naming a
#      certificate error, for the despooler and for `key publish`
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ldap.sh"
ldap_env_check
ldap_implemented || fail "this build has no LDAP key directory ('sitespool settings' names no directory_bind_dn)"

dir_site() { ldap_dir_site "$@"; }
publish() { ldap_publish "$@"; }
send_files() { ldap_send "$@"; }
statuses() { "$S" -C "$T/$1" status | tail -n "${2:-6}"; }
# one_file DIR NAME: a file DIR/NAME with random content; prints its path.
one_file() { mkdir -p "$1"; head -c 200 /dev/urandom >"$1/$2"; echo "$1/$2"; }

# --- 1. slapd stopped
s_down() {
  ldap_start PS1 PS2 SS1
  dir_site PS1 ldap "bundle_max_files = 1"
  dir_site PS2 ldap
  dir_site SS1 ldap "rescan_interval = 1s" "key_lookup_interval = 1s" "key_lookup_retries = 2"
  mksite SS2; pair SS2 SS1
  peer PS1 SS1; peer PS2 SS1
  publish PS1
  start_despooler SS1
  # The control: the directory answers, PS2 has no record: the retries
  # run out (4406) and the pair goes to rejected.  So the same settings
  # would reject PS1's pairs below if the outage counted as "no record".
  send_files PS2 SS1 "$(one_file "$T/ps2" p.txt)"
  wait_until 30 eval '[ "$(status_count SS1 4406)" -ge 1 ]' ||
    fail "control: no 4406 after key_lookup_retries = 2 for a site without a record: $(statuses SS1)"
  expect_eq "$(pairs_in "$(rejected SS1)")" 1 "control: PS2's pair in rejected"
  pass "control: with the directory answering, a missing record uses up key_lookup_retries (4406, rejected)"

  ldap_stop
  local w0; w0=$(status_count SS1 4405)
  mkfiles "$T/src" 3
  send_files PS1 SS1 "$T/src"/*
  wait_until 20 eval '[ "$(status_count SS1 4441)" -ge 1 ]' ||
    fail "no 4441 with slapd stopped: $(statuses SS1)"
  wait_until 10 eval '[ "$(status_count SS1 4405)" -gt "$w0" ]' || fail_later "no 4405 for PS1's pairs with slapd stopped"
  local t; t=$(last_status SS1 4441)
  echo "# 4441: $t"
  echo "$t" | grep -q "127.0.0.1:$LDAP_PORT" || fail_later "4441 does not name the server 127.0.0.1:$LDAP_PORT: $t"
  echo "$t" | grep -qiE "can.t contact|connect|refused|unavailable|down" || fail_later "4441 does not name libldap's error: $t"
  # The despooler goes on: SS2's key is in the keystore.
  local f; f=$(one_file "$T/ss2" s.txt)
  send_files SS2 SS1 "$f"
  wait_until 10 cmp -s "$f" "$(incoming SS1)/s.txt" || fail "SS2's data (key in the keystore) not delivered while slapd is down"
  pass "slapd stopped: 4441 names the server and the error, PS1's pairs wait (4405), SS2's data flows"
  sleep 6   # six rescans and look-up intervals of the outage
  expect_eq "$(status_count SS1 4441)" 1 "4441 messages during one outage"
  expect_eq "$(count_files "$(incoming SS1)")" 1 "files delivered at SS1 (SS2's only)"
  expect_eq "$(pairs_in "$(receive SS1)")" 3 "PS1's pairs still in SS1's receive"
  expect_eq "$(pairs_in "$(rejected SS1)")" 1 "pairs in rejected (the control's only: nothing of PS1's quarantined)"
  expect_eq "$(status_count SS1 4406)" 1 "4406 messages (the control's only)"
  pass "a 6 s outage with key_lookup_retries = 2: one 4441, nothing delivered, lost or quarantined"
  ldap_restart
  wait_until 20 same_files "$T/src" "$(incoming SS1)" ||
    fail "PS1's data not delivered within 20 s of slapd's restart: $(statuses SS1)"
  [ "$(status_count SS1 4443)" -ge 1 ] || fail_later "no 4443 after the directory answered again"
  echo "# 4443: $(last_status SS1 4443)"
  stop_despooler "$DPID"
  expect_eq "$DRC" 0 "despooler exit status"
  pass "slapd restarted: 4443, PS1's waiting data delivered"
}

# --- 2. slapd frozen: time-outs
s_frozen() {
  ldap_start PS1 SS1
  dir_site PS1 ldap
  dir_site SS1 ldap "rescan_interval = 1s" "key_lookup_interval = 1h" "directory_timeout = 2s"
  mksite SS2; pair SS2 SS1
  peer PS1 SS1
  publish PS1
  start_despooler SS1
  ldap_freeze
  local a b t0
  a=$(one_file "$T/src" a.txt); b=$(one_file "$T/ss2" b.txt)
  send_files PS1 SS1 "$a"
  t0=$SECONDS
  send_files SS2 SS1 "$b"
  wait_until 15 cmp -s "$b" "$(incoming SS1)/b.txt" ||
    fail "with slapd frozen, SS2's data (key in the keystore) was not delivered within 15 s: the despooler hangs on the directory"
  echo "# SS2's data delivered $((SECONDS - t0)) s after it was sent, slapd frozen"
  wait_until 20 eval '[ "$(status_count SS1 4441)" -ge 1 ]' || fail "no 4441 with slapd frozen: $(statuses SS1)"
  local t; t=$(last_status SS1 4441)
  echo "# 4441: $t"
  echo "$t" | grep -qiE "time" || fail_later "4441 does not say the look-up timed out: $t"
  assert_no_file "$(incoming SS1)/a.txt"
  kill -0 "$DPID" || fail "the despooler died"
  pass "slapd frozen: the look-up times out (4441), the despooler goes on with SS2's data"
  ldap_thaw
  wait_until 20 cmp -s "$a" "$(incoming SS1)/a.txt" || fail "PS1's data not delivered after slapd was thawed: $(statuses SS1)"
  expect_eq "$(count_all "$(rejected SS1)")" 0 "entries in SS1's rejected"
  stop_despooler "$DPID"
  expect_eq "$DRC" 0 "despooler exit status"
  pass "slapd thawed: PS1's data delivered, nothing quarantined"
}

# --- 3. bind refused
s_bad_bind() {
  ldap_start PS1 SS1
  dir_site PS1 ldap; dir_site SS1 ldap
  peer PS1 SS1
  publish PS1
  local pw=$T/SS1/directory.pw good
  good=$(cat "$pw")
  printf 'wrong-%s' "$good" >"$pw"
  local a; a=$(one_file "$T/src" a.txt)
  send_files PS1 SS1 "$a"
  despool_once SS1 >"$T/d1.out" 2>&1 || true
  assert_no_file "$(incoming SS1)/a.txt"
  [ "$(status_count SS1 4442)" -ge 1 ] || fail "no 4442 with a wrong bind password: $(statuses SS1)"
  local t; t=$(last_status SS1 4442)
  echo "# 4442: $t"
  echo "$t" | grep -qF "$(ldap_bind_dn SS1)" || fail_later "4442 does not name the bind DN $(ldap_bind_dn SS1): $t"
  expect_eq "$(count_all "$(rejected SS1)")" 0 "entries in SS1's rejected"
  expect_eq "$(pairs_in "$(receive SS1)")" 1 "the pair kept in receive"
  pass "wrong bind password: 4442 names $(ldap_bind_dn SS1), the pair waits"
  # key publish with a wrong password fails, and says why.
  printf 'wrong' >"$T/PS1/directory.pw"
  local rc=0
  "$S" -C "$T/PS1" key publish >"$T/pub.out" 2>&1 || rc=$?
  [ "$rc" != 0 ] || fail "key publish with a wrong password: exit 0"
  grep -qiE "credentials|password|bind" "$T/pub.out" || fail_later "key publish with a wrong password does not say why: $(cat "$T/pub.out")"
  echo "# key publish, wrong password: exit $rc: $(tail -1 "$T/pub.out")"
  install -m 0600 "$LDAP_DIR/PS1.pw" "$T/PS1/directory.pw"
  pass "key publish with a wrong password: exit $rc, says why"
  # The right password, but a file readable by others.
  printf '%s' "$good" >"$pw"; chmod 0644 "$pw"
  local n; n=$(status_count SS1 4442)
  despool_once SS1 >"$T/d2.out" 2>&1 || true
  assert_no_file "$(incoming SS1)/a.txt"
  [ "$(status_count SS1 4442)" -gt "$n" ] || fail "no 4442 with a password file of mode 0644: $(statuses SS1) $(cat "$T/d2.out")"
  t=$(last_status SS1 4442)
  echo "# 4442: $t"
  echo "$t" | grep -qF "$pw" || fail_later "4442 does not name the password file $pw: $t"
  pass "password file mode 0644: refused (4442), the pair waits"
  # Fixed, as an administrator would write it (echo: a final newline).
  echo "$good" >"$pw"; chmod 0600 "$pw"
  despool_once SS1 >"$T/d3.out" 2>&1 || true
  cmp -s "$a" "$(incoming SS1)/a.txt" || fail "not delivered with the right password (file ending in a newline): $(statuses SS1)"
  expect_eq "$(count_all "$(rejected SS1)")" 0 "entries in SS1's rejected"
  pass "the right password (a file ending in a newline, mode 0600): delivered"
}

# --- 4. TLS
s_tls() {
  ldap_start PS1 SS1 SS2 SS3 SS4
  dir_site PS1 ldaps
  dir_site SS1 ldaps; dir_site SS2 starttls
  dir_site SS3 ldaps "directory_ca_file = $LDAP_OTHER_CA"
  dir_site SS4 starttls "directory_ca_file = $LDAP_OTHER_CA"
  local s
  for s in SS1 SS2 SS3 SS4; do peer PS1 "$s"; done
  local n0; n0=$(grep -c "ACCEPT from IP=.*(IP=127.0.0.1:$LDAPS_PORT)" "$LDAP_LOG" || true)
  publish PS1
  [ "$(grep -c "ACCEPT from IP=.*(IP=127.0.0.1:$LDAPS_PORT)" "$LDAP_LOG" || true)" -gt "$n0" ] ||
    fail "key publish over ldaps:// made no connection to the ldaps port"
  ldap_has PS1 || fail "no record after key publish over ldaps://"
  local a; a=$(one_file "$T/src" a.txt)
  for s in SS1 SS2 SS3 SS4; do send_files PS1 "$s" "$a"; done
  local tls0 ext0
  tls0=$(grep -c 'TLS established' "$LDAP_LOG" || true)
  despool_once SS1 >/dev/null 2>&1 || true
  cmp -s "$a" "$(incoming SS1)/a.txt" || fail "ldaps:// with directory_ca_file = the CA: not delivered: $(statuses SS1)"
  [ "$(grep -c 'TLS established' "$LDAP_LOG" || true)" -gt "$tls0" ] || fail "SS1's look-up made no TLS session"
  pass "ldaps:// with directory_ca_file = the throw-away CA: publish and look-up work"
  tls0=$(grep -c 'TLS established' "$LDAP_LOG" || true)
  ext0=$(grep -c 'EXT oid=1.3.6.1.4.1.1466.20037' "$LDAP_LOG" || true)
  despool_once SS2 >/dev/null 2>&1 || true
  cmp -s "$a" "$(incoming SS2)/a.txt" || fail "StartTLS with directory_ca_file = the CA: not delivered: $(statuses SS2)"
  [ "$(grep -c 'EXT oid=1.3.6.1.4.1.1466.20037' "$LDAP_LOG" || true)" -gt "$ext0" ] || fail "SS2's look-up sent no StartTLS"
  [ "$(grep -c 'TLS established' "$LDAP_LOG" || true)" -gt "$tls0" ] || fail "SS2's StartTLS made no TLS session"
  pass "StartTLS (directory_starttls = yes) with the throw-away CA: the look-up works, slapd saw StartTLS"
  for s in SS3 SS4; do
    despool_once "$s" >/dev/null 2>&1 || true
    assert_no_file "$(incoming "$s")/a.txt"
    [ "$(status_count "$s" 4441)" -ge 1 ] || fail "$s (another CA): no 4441: $(statuses "$s")"
    local t; t=$(last_status "$s" 4441)
    echo "# $s 4441: $t"
    echo "$t" | grep -qi "certificate" || fail_later "$s's 4441 does not name a certificate error: $t"
    [ "$(status_count "$s" 4405)" -ge 1 ] || fail_later "$s: no 4405"
    expect_eq "$(count_all "$(rejected "$s")")" 0 "entries in $s's rejected"
  done
  pass "another CA (ldaps:// and StartTLS): 4441 names the certificate error, the pair waits"
  local rc=0
  "$S" -C "$T/SS4" key publish >"$T/pub4.out" 2>&1 || rc=$?
  [ "$rc" != 0 ] || fail "key publish over StartTLS with another CA: exit 0"
  ldap_has SS4 && fail "key publish with another CA wrote a record"
  grep -qi certificate "$T/pub4.out" || fail_later "key publish with another CA does not name the certificate error: $(cat "$T/pub4.out")"
  pass "key publish over StartTLS with another CA: exit $rc, nothing written"
}

ldap_scenario "1 slapd stopped" s_down
ldap_scenario "2 slapd frozen (time-outs)" s_frozen
ldap_scenario "3 bind refused" s_bad_bind
ldap_scenario "4 TLS with a throw-away CA" s_tls
ldap_done
