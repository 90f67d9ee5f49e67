#!/usr/bin/env bash
# SFTP delivery (issue 10), host keys and the basics, across real network
# namespaces: PS1 sends from NS_A to a real OpenSSH server in NS_B that
# holds SS1's receive inbox (the site folders are on the shared
# filesystem, so the test reads SS1's folders directly).
#   1. host key not pinned: refused (4507 with the fingerprint and the
#      trust-host command), nothing sent, pairs queued, state host-key-unknown
#   2. peer trust-host: delivered, verified byte for byte after SS1's
#      despooler; OpenSSH's own ssh reads our keys/known_hosts
#   3. --host-key at peer add: the first delivery works, 4511
#   4. host key changed: blocked (4508 with both fingerprints), queued,
#      nothing lost; trust-host the new key: delivered, old key gone
#   5. identity file readable by others: refused (mode, chmod 600), nothing
#      sent; an identity the server does not accept: refused login
#   6. the sender daemon delivers to an sftp:// peer (after a back-off)
#   7. a server without fsync@openssh.com: delivered, 4509, sender.log
#   8. another key pinned in advance: refused; the remote folder missing:
#      4501 names it; delivered once the address is fixed
# Scenarios with many files, a killed server, several addresses and a
# lossy link are in t_sftp_faults.sh; local paths in t_sftp_local.sh.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ssh.sh"
. "$(dirname "$0")/lib_sftp.sh"
ssh_env_check
netns_setup

# --- 1. host key not pinned
s_unpinned() {
  sshd_start
  sftp_sites
  local fp url; fp=$(sshd_host_fp); url=$(sftp_url)
  "$S" -C "$T/PS1" peer add SS1 --inbox "$url" >/dev/null
  mkfiles "$T/src" 2
  send_a 75 "$T/send.out" send --to SS1 "$T/src/f001" "$T/src/f002"
  grep -q "SS1 is unreachable" "$T/send.out" || fail "send output: $(cat "$T/send.out")"
  assert_eq "$(count_all "$(receive SS1)")" 0 "entries in SS1's receive (nothing sent, not even temporary files)"
  assert_eq "$(outbox_ids)" "$(queued_ids "$T/send.out")" "pairs still queued in the outbox"
  assert_eq "$(peer_addr 0 state)" host-key-unknown "peer list --json state"
  peer_addr 0 last_error | grep -qF "$fp" || fail "peer list last_error: $(peer_addr 0 last_error)"
  assert_eq "$(peer_addr 0 host_key)" "" "peer list --json host_key before pinning"
  [ ! -f "$T/PS1/keys/known_hosts" ] || ! ssh-keygen -F "[$IP_B]:$SSHD_PORT" -f "$T/PS1/keys/known_hosts" >/dev/null ||
    fail "the host key was written to known_hosts without consent"
  # A second try is refused too: no trust on first (or second) use.
  send_a 75 "$T/flush.out" send --flush --to SS1
  assert_eq "$(count_all "$(receive SS1)")" 0 "entries in SS1's receive after a second try"
  assert_eq "$(status_count PS1 4500)" 0 "4500 messages"
  assert_eq "$(status_count PS1 4507)" 2 "one 4507 per refused attempt"
  local t; t=$(last_status PS1 4507)
  echo "$t" | grep -qF "$url" || fail "4507 does not name the address: $t"
  echo "$t" | grep -qF "$fp" || fail "4507 does not name the offered fingerprint $fp: $t"
  pass "unpinned host key: exit 75, nothing at SS1, 2 pairs queued, 4507 with $fp, state host-key-unknown"
  echo "$t" | grep -qF "sitespool peer trust-host SS1 $fp" ||
    fail "4507 does not name the command that pins the key ('sitespool peer trust-host SS1 $fp'): $t"
  pass "4507 names the command 'sitespool peer trust-host SS1 $fp'"
}

# --- 2. trust-host, then delivered; known_hosts in OpenSSH's format
s_trust_host() {
  sshd_start
  sftp_sites
  local fp kh=$T/PS1/keys/known_hosts; fp=$(sshd_host_fp)
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" >/dev/null
  mkfiles "$T/src" 3 200000
  head -c $((24 << 20)) /dev/urandom >"$T/src/f004"   # beyond the client's 8 MiB in flight
  send_a 75 "$T/send.out" send --to SS1 "$T/src"/*
  # A fingerprint the server did not offer pins nothing it has: it is
  # pinned in advance for SS1's servers, so the server's own key now
  # contradicts a pin (4508, the man-in-the-middle case), not merely new.
  local wrong
  wrong="SHA256:$(head -c 64 /dev/urandom | base64 -w0 | tr -d '=+/' | head -c 43)"
  "$S" -C "$T/PS1" peer trust-host SS1 "$wrong" \
    >"$T/trust0.out" || fail "trust-host of another fingerprint: $(cat "$T/trust0.out")"
  send_a 75 "$T/flush0.out" send --flush --to SS1
  assert_eq "$(count_all "$(receive SS1)")" 0 "entries at SS1 after pinning another fingerprint"
  assert_eq "$(peer_addr 0 state)" host-key-changed "state after pinning another fingerprint"
  status_text PS1 4508 | grep -qF "$wrong" || fail "4508 does not name the wrongly pinned $wrong"
  pass "trust-host of a fingerprint the server did not offer: refused as a changed key (4508), nothing sent"
  "$S" -C "$T/PS1" peer trust-host SS1 "$fp" >"$T/trust.out" || fail "trust-host: $(cat "$T/trust.out")"
  grep -qF "$fp" "$T/trust.out" || fail "trust-host output: $(cat "$T/trust.out")"
  assert_eq "$(status_count PS1 4511)" 1 "4511 after trust-host"
  last_status PS1 4511 | grep -qF "$fp" || fail "4511 text: $(last_status PS1 4511)"
  send_a 0 "$T/flush.out" send --flush --to SS1
  grep -q "Delivered 4 pair(s) to SS1" "$T/flush.out" || fail "flush output: $(cat "$T/flush.out")"
  assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "files left in the outbox"
  assert_eq "$(receive_ids)" "$(queued_ids "$T/send.out")" "pairs in SS1's receive"
  assert_eq "$(tmp_names "$(receive SS1)")" "" "temporary files left in SS1's receive"
  assert_eq "$(check_pairs "$(receive SS1)" "$T/SS1/inboxes/hman.box/PS1.pub")" 4 "pairs minisign verifies at SS1"
  assert_eq "$(status_count PS1 4500)" 4 "4500 messages"
  assert_eq "$(status_count PS1 4509)" 0 "4509 (internal-sftp offers fsync@openssh.com)"
  assert_eq "$(peer_addr 0 state)" ok "peer list --json state"
  assert_eq "$(peer_addr 0 last_error)" "" "peer list --json last_error"
  assert_eq "$(peer_addr 0 host_key)" "$fp" "peer list --json host_key"
  despool_sum SS1
  assert_eq "$DSP_DELIVERED $DSP_REJECTED $DSP_DUPLICATES $DSP_WAITING" "4 0 0 0" "SS1's despool summary"
  same_files "$T/src" "$(incoming SS1)" "delivered over SFTP"
  pass "trust-host: 4 pairs (one of 24 MiB) delivered (4500, 4511), content equal byte for byte after SS1's despooler"
  ssh-keygen -F "[$IP_B]:$SSHD_PORT" -f "$kh" >"$T/F.out" || fail "ssh-keygen -F finds no entry in $kh: $(cat "$kh")"
  ssh-keygen -lf "$kh" | grep -qF "$fp" || fail "ssh-keygen -lf $kh: $(ssh-keygen -lf "$kh")"
  ssh_check "$kh" >"$T/ssh.out" 2>&1 || fail "OpenSSH's ssh refuses our known_hosts: $(cat "$T/ssh.out")"
  ssh_check /dev/null >/dev/null 2>&1 && fail "ssh with an empty known_hosts succeeded: the check proves nothing"
  pass "keys/known_hosts is OpenSSH's format: ssh-keygen -F finds the host, ssh -o StrictHostKeyChecking=yes uses it"
}

# --- 3. --host-key at peer add
s_host_key_at_add() {
  sshd_start
  sftp_sites
  local fp; fp=$(sshd_host_fp)
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" --host-key "$fp" >"$T/add.out" ||
    fail "peer add --host-key: $(cat "$T/add.out")"
  mkfiles "$T/src" 1
  send_a 0 "$T/send.out" send --to SS1 "$T/src/f001"
  grep -q "Delivered 1 pair(s) to SS1" "$T/send.out" || fail "send output: $(cat "$T/send.out")"
  assert_eq "$(status_count PS1 4507)" 0 "4507 messages"
  assert_eq "$(status_count PS1 4511)" 1 "4511 messages"
  last_status PS1 4511 | grep -qF "$fp" || fail "4511 text: $(last_status PS1 4511)"
  ssh-keygen -F "[$IP_B]:$SSHD_PORT" -f "$T/PS1/keys/known_hosts" >/dev/null ||
    fail "the pinned key was not written to known_hosts"
  despool_sum SS1
  same_files "$T/src" "$(incoming SS1)" "delivered over SFTP"
  pass "--host-key at peer add: first delivery without trust-host, 4511, known_hosts written"
  expect_eq "$(peer_addr 0 host_key)" "$fp" "peer list --json host_key"
  expect_eq "$(peer_addr 0 state)" ok "peer list --json state of the address that just delivered"
  expect_eq "$(peer_addr 0 last_error)" "" "peer list --json last_error of the address that just delivered"
  [ -s "$T/failed_later" ] || pass "peer list: the address is ok, no last error"
}

# --- 4. host key changed
s_host_key_changed() {
  sshd_start
  sftp_sites
  local old new kh=$T/PS1/keys/known_hosts oldb64 newb64
  old=$(sshd_host_fp); oldb64=$(cut -d' ' -f2 "$(sshd_host_pub)")
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" --host-key "$old" >/dev/null
  mkfiles "$T/src" 4
  mkdir "$T/first" "$T/later"
  cp "$T/src/f001" "$T/first/"; cp "$T/src/f002" "$T/src/f003" "$T/src/f004" "$T/later/"
  send_a 0 "$T/send1.out" send --to SS1 "$T/first/f001"
  sshd_new_host_key
  new=$(sshd_host_fp); newb64=$(cut -d' ' -f2 "$(sshd_host_pub)")
  [ "$new" != "$old" ] || fail "sshd_new_host_key kept the fingerprint"
  ssh_check "$kh" >/dev/null 2>&1 && fail "ssh still accepts the server: its host key did not change"
  send_a 75 "$T/send2.out" send --to SS1 "$T/later"/*
  assert_eq "$(receive_ids)" "$(queued_ids "$T/send1.out")" "pairs in SS1's receive (only the first)"
  assert_eq "$(tmp_names "$(receive SS1)")" "" "temporary files in SS1's receive"
  assert_eq "$(outbox_ids)" "$(queued_ids "$T/send2.out")" "pairs queued while blocked"
  assert_eq "$(status_count PS1 4508)" 1 "4508 messages"
  local t; t=$(last_status PS1 4508)
  echo "$t" | grep -qF "$new" || fail "4508 does not name the offered key $new: $t"
  if echo "$t" | grep -qF "$old"; then pass "4508 names the pinned key $old"
  else fail_later "4508 does not name the pinned key $old: $t"; fi
  assert_eq "$(peer_addr 0 state)" host-key-changed "peer list --json state"
  grep -qF "$oldb64" "$kh" || fail "the old key left known_hosts before the administrator decided"
  grep -qF "$newb64" "$kh" && fail "the changed key was written to known_hosts without consent"
  # Still blocked on the next try.
  send_a 75 "$T/flush1.out" send --flush --to SS1
  assert_eq "$(outbox_ids)" "$(queued_ids "$T/send2.out")" "pairs queued after a second try"
  pass "changed host key: blocked (exit 75), 4508 names $new, 3 pairs queued, state host-key-changed"
  "$S" -C "$T/PS1" peer trust-host SS1 "$new" >"$T/trust.out" || fail "trust-host: $(cat "$T/trust.out")"
  send_a 0 "$T/flush2.out" send --flush --to SS1
  grep -q "Delivered 3 pair(s) to SS1" "$T/flush2.out" || fail "flush output: $(cat "$T/flush2.out")"
  assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "files left in the outbox"
  assert_eq "$(peer_addr 0 state)" ok "peer list --json state after trust-host"
  assert_eq "$(peer_addr 0 host_key)" "$new" "peer list --json host_key after trust-host"
  ssh-keygen -F "[$IP_B]:$SSHD_PORT" -f "$kh" | grep -v '^#' >"$T/F.out" || true
  assert_eq "$(wc -l <"$T/F.out")" 1 "known_hosts entries for [$IP_B]:$SSHD_PORT"
  grep -qF "$newb64" "$T/F.out" || fail "known_hosts entry is not the new key: $(cat "$T/F.out")"
  grep -qF "$oldb64" "$kh" && fail "the old key is still in known_hosts: $(cat "$kh")"
  ssh_check "$kh" >"$T/ssh.out" 2>&1 || fail "OpenSSH's ssh refuses the new known_hosts: $(cat "$T/ssh.out")"
  despool_sum SS1
  assert_eq "$DSP_DELIVERED $DSP_DUPLICATES" "4 0" "SS1's despool: delivered, duplicates"
  same_files "$T/src" "$(incoming SS1)" "delivered before and after the key change"
  pass "trust-host the new key: the 3 queued pairs delivered, nothing lost; known_hosts holds only the new key"
}

# --- 5. identity readable by others; nothing sent
s_identity_mode() {
  sshd_start
  sftp_sites
  local id=$T/PS1/keys/sftp_id accepted
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" --host-key "$(sshd_host_fp)" >/dev/null
  chmod 0644 "$id"
  accepted=$(grep -c "^Accepted publickey" "$SSHD_LOG" || true)
  mkfiles "$T/src" 1
  local rc=0
  in_a "$S" -C "$T/PS1" send --to SS1 "$T/src/f001" >"$T/send.out" 2>&1 || rc=$?
  [ "$rc" != 0 ] || fail "send with a 0644 identity succeeded: $(cat "$T/send.out")"
  assert_eq "$(count_all "$(receive SS1)")" 0 "entries in SS1's receive"
  assert_eq "$(outbox_ids)" "$(queued_ids "$T/send.out")" "pair queued"
  assert_eq "$(grep -c "^Accepted publickey" "$SSHD_LOG" || true)" "$accepted" "logins at sshd"
  local why; why="$(last_status PS1 4501) $(peer_addr 0 last_error) $(cat "$T/send.out")"
  echo "$why" | grep -q "0644" || fail "no message names the mode 0644: $why"
  echo "$why" | grep -q "chmod 600" || fail "no message names 'chmod 600': $why"
  pass "identity with mode 0644: refused (exit $rc), message names 0644 and chmod 600, nothing sent"
  chmod 0600 "$id"
  send_a 0 "$T/flush.out" send --flush --to SS1
  despool_sum SS1
  same_files "$T/src" "$(incoming SS1)" "delivered after chmod 600"
  pass "after chmod 600: delivered"
  # An identity the server does not know: refused login, told as such.
  rm -f "$id" "$id.pub"
  "$S" -C "$T/PS1" peer ssh-key >/dev/null   # not added to authorized_keys
  mkfiles "$T/src2" 1
  send_a 75 "$T/send2.out" send --to SS1 "$T/src2/f001"
  assert_eq "$(tmp_names "$(receive SS1)")" "" "temporary files at SS1 after the refused login"
  assert_eq "$(outbox_ids)" "$(queued_ids "$T/send2.out")" "pair queued after the refused login"
  last_status PS1 4501 | grep -q "refused the SSH login of user root" ||
    fail "4501 after a refused login: $(last_status PS1 4501)"
  pass "identity not authorized at the peer: exit 75, queued, 4501 says the login was refused"
}

# --- 6. the sender daemon
s_sender_daemon() {
  sshd_start
  sftp_sites "send_retry_interval = 1s" "send_retry_max_interval = 2s"
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" --host-key "$(sshd_host_fp)" >/dev/null
  mkfiles "$T/src" 3
  sshd_stop   # connection refused: the peer is down
  send_a 75 "$T/send1.out" send --to SS1 "$T/src/f001"
  assert_eq "$(peer_addr 0 state)" unreachable "peer list --json state with sshd stopped"
  [ -n "$(peer_addr 0 last_error)" ] || fail "no last_error for the stopped server"
  ip netns exec "$NS_A" "$S" -C "$T/PS1" sender >"$T/daemon.out" 2>&1 &
  local dpid=$!
  DAEMONS+=("$dpid")
  sleep 2.5   # at least one retry against the stopped server
  kill -0 "$dpid" 2>/dev/null || fail "sender daemon died: $(cat "$T/daemon.out")"
  [ "$(status_count PS1 4501)" -ge 2 ] || fail "the daemon did not retry: $(status_count PS1 4501) x 4501"
  assert_eq "$(outbox_ids)" "$(queued_ids "$T/send1.out")" "pair queued while sshd is down"
  sshd_start "$SSHD_PORT"
  outbox_empty() { [ "$(count_files "$(outbox PS1 SS1)")" = 0 ]; }
  wait_for 30 outbox_empty || fail "the daemon did not deliver after sshd came back: $(ls "$(outbox PS1 SS1)")"
  assert_eq "$(receive_ids)" "$(queued_ids "$T/send1.out")" "pair delivered by the daemon"
  [ "$(status_count PS1 4502)" -ge 1 ] || fail "no 4502 after the peer came back"
  pass "sender daemon: retried with back-off while sshd was down, delivered when it came back, 4502"
  # A pair queued without delivering is taken by the daemon too.
  "$S" -C "$T/PS1" send --queue-only --to SS1 "$T/src/f002" "$T/src/f003" >"$T/send2.out" ||
    fail "send --queue-only: $(cat "$T/send2.out")"
  wait_for 30 outbox_empty || fail "the daemon did not deliver queued pairs: $(ls "$(outbox PS1 SS1)")"
  kill -TERM "$dpid"
  local rc=0; wait "$dpid" || rc=$?
  assert_eq "$rc" 0 "sender exit code on SIGTERM"
  grep -q "Sender stopped for site PS1" "$T/PS1/logs/sender.log" || fail "no stop line in sender.log"
  assert_eq "$(status_count PS1 4500)" 3 "4500 messages"
  despool_sum SS1
  same_files "$T/src" "$(incoming SS1)" "delivered by the daemon"
  pass "sender daemon: queued pairs delivered over SFTP, stops on SIGTERM"
}

# --- 7. a server without fsync@openssh.com (internal-sftp -P fsync)
s_no_fsync() {
  sshd_start
  sftp_sites
  # A listener of our own, as lib_ssh.sh makes them but with the fsync
  # request denied, which makes OpenSSH leave the extension out.
  local port=2230 cfg=$SSHD_DIR/sshd_config.2230 i
  _sshd_config "$port"
  sed -i 's/^Subsystem sftp .*/Subsystem sftp internal-sftp -P fsync/' "$cfg"
  "$SSHD_BIN" -t -f "$cfg" || fail "sshd rejects $cfg"
  ip netns exec "$NS_B" "$SSHD_BIN" -D -e -f "$cfg" </dev/null >>"$SSHD_LOG" 2>&1 &
  DAEMONS+=("$!")
  listening() { [ -n "$(ss -N "$NS_B" -Hltn "sport = :$port" 2>/dev/null)" ]; }
  wait_until 5 listening || fail "sshd on port $port did not listen"
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url "$port")" --host-key "$(sshd_host_fp)" >/dev/null
  mkfiles "$T/src" 2
  send_a 0 "$T/send.out" send --to SS1 "$T/src"/*
  assert_eq "$(status_count PS1 4509)" 1 "4509 messages"
  last_status PS1 4509 | grep -qF "$(sftp_url "$port")" || fail "4509 text: $(last_status PS1 4509)"
  grep -q "offers no fsync@openssh.com" "$T/PS1/logs/sender.log" || fail "sender.log does not say fsync is missing"
  despool_sum SS1
  same_files "$T/src" "$(incoming SS1)" "without fsync@openssh.com"
  pass "server without fsync@openssh.com: delivered, 4509 and a line in sender.log"
}

# --- 8. a wrong pin in advance; a missing remote folder
s_wrong_pin_and_path() {
  sshd_start
  sftp_sites
  local other
  other="SHA256:$(head -c 32 /dev/urandom | base64 | tr -d '=' | head -c 43)"
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" --host-key "$other" >/dev/null
  mkfiles "$T/src" 1
  send_a 75 "$T/send.out" send --to SS1 "$T/src/f001"
  assert_eq "$(count_all "$(receive SS1)")" 0 "entries at SS1 with another key pinned in advance"
  assert_eq "$(outbox_ids)" "$(queued_ids "$T/send.out")" "pair queued"
  [ "$(status_count PS1 4507)" -ge 1 ] || [ "$(status_count PS1 4508)" -ge 1 ] ||
    fail "no 4507/4508 with another key pinned: $("$S" -C "$T/PS1" status | tail -3)"
  echo "# a key pinned in advance that the server does not have: $(status_count PS1 4507) x 4507, $(status_count PS1 4508) x 4508"
  pass "--host-key of another key: refused, nothing sent, pair queued"
  # The right address, but its folder is missing on the server.
  "$S" -C "$T/PS1" peer add SS1 --inbox "sftp://root@$IP_B:$SSHD_PORT$T/nowhere/receive" \
    --host-key "$(sshd_host_fp)" >/dev/null
  send_a 75 "$T/flush1.out" send --flush --to SS1
  last_status PS1 4501 | grep -qF "$T/nowhere/receive" || fail "4501 does not name the missing folder: $(last_status PS1 4501)"
  assert_eq "$(outbox_ids)" "$(queued_ids "$T/send.out")" "pair queued"
  [ ! -e "$T/nowhere" ] || fail "the sender created $T/nowhere at the peer"
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" >/dev/null
  send_a 0 "$T/flush2.out" send --flush --to SS1
  despool_sum SS1
  same_files "$T/src" "$(incoming SS1)" "after fixing the address"
  pass "remote folder missing: exit 75, 4501 names it, nothing created; delivered once the address is right"
}

scenario "1 host key not pinned" s_unpinned
scenario "2 trust-host then delivered" s_trust_host
scenario "3 --host-key at peer add" s_host_key_at_add
scenario "4 host key changed" s_host_key_changed
scenario "5 identity mode 0644" s_identity_mode
scenario "6 sender daemon" s_sender_daemon
scenario "7 no fsync@openssh.com" s_no_fsync
scenario "8 wrong pin in advance, missing remote folder" s_wrong_pin_and_path
sftp_done
