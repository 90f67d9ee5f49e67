#!/usr/bin/env bash
# SFTP delivery (issue 10) when things go wrong, across real network
# namespaces (see t_sftp.sh):
#   1. sshd killed during a 500-pair flush, twice (after a batch's renames,
#      during uploads): exit 75, nothing lost (every pair in the outbox or
#      at the peer); after the restart everything is delivered, each file
#      exactly once at SS1
#   2. two addresses, the first refuses connections: delivered through the
#      second, 4510, peer list shows the first unreachable and the second ok
#   3. two addresses, the first never answers (a firewalled host): the
#      same, within sftp_timeout
#   4. round robin over two live listeners: four deliveries alternate ports
#   5. slow and lossy link (50 ms, 1% loss): 100 files delivered exactly once
#   6. the link goes silent mid-flush (no RST): the flush gives up within
#      about sftp_timeout, nothing lost; delivered when the link is back
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ssh.sh"
. "$(dirname "$0")/lib_sftp.sh"
ssh_env_check
netns_setup

# --- 1. sshd killed mid-flush
# flush_bg OUT: `send --flush --to SS1` in NS_A in the background (FPID).
flush_bg() {
  ip netns exec "$NS_A" "$S" -C "$T/PS1" send --flush --to SS1 >"$1" 2>&1 &
  FPID=$!
  DAEMONS+=("$FPID")
}
# kill_check OUT: after sshd_kill (or link_down), the flush FPID ends
# with 75 and every pair is complete in the outbox or at SS1 (or both,
# when the kill fell between the renames at SS1 and the removal here), or
# was despooled by SS1 already ($T/despooled.ids).  Sets AT_PEER, QUEUED.
kill_check() {
  local rc=0 at_peer queued all
  wait "$FPID" || rc=$?
  at_peer=$(receive_ids | wc -l); queued=$(outbox_ids | wc -l)
  [ "$queued" -gt 0 ] || fail "the flush was over before sshd was killed ($at_peer at SS1): the test proves nothing"
  assert_eq "$rc" 75 "exit code of the interrupted flush (output: $(tail -2 "$1"))"
  grep -q "SS1 is unreachable" "$1" || fail "flush output: $(cat "$1")"
  all=$( (outbox_ids; receive_ids; cat "$T/despooled.ids") | sort -u | diff "$T/all.ids" - || true)
  [ -z "$all" ] || fail "pairs neither queued nor at SS1 (<) or unknown (>) after the kill: $(echo "$all" | head -10)"
  [ "$(receive_ids | wc -l)" = "$(n_ins "$(receive SS1)")" ] || fail "an instruction at SS1 without its package"
  AT_PEER=$at_peer QUEUED=$queued
}
s_kill_mid_flush() {
  sshd_start
  # Small batches and a 20 ms link: the flush takes seconds, so each kill
  # lands in its middle (the test fails, rather than passing vacuously,
  # if the flush was over before the kill).
  sftp_sites "sftp_batch_max = 25"
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" --host-key "$(sshd_host_fp)" >/dev/null
  local R Q; R=$(receive SS1); Q=$(outbox PS1 SS1)
  mkfiles "$T/src" 500 2048
  "$S" -C "$T/PS1" send --queue-only --to SS1 "$T/src"/* >"$T/queue.out" ||
    fail "send --queue-only: $(tail -3 "$T/queue.out")"
  queued_ids "$T/queue.out" >"$T/all.ids"
  assert_eq "$(wc -l <"$T/all.ids")" 500 "pairs queued"
  : >"$T/despooled.ids"
  netem_on 20ms
  # First kill: as soon as instructions show at SS1, i.e. mostly between
  # a batch's renames there and its removal from the outbox.
  flush_bg "$T/flush1.out"
  some_arrived() { [ "$(n_ins "$R")" -ge 30 ]; }
  wait_until 120 some_arrived || fail "no pairs arrived within 120 s: $(tail -3 "$T/flush1.out")"
  sshd_kill
  kill_check "$T/flush1.out"
  pass "sshd killed mid-flush (after a batch's renames): exit 75, $AT_PEER pair(s) at SS1, $QUEUED queued, none lost"
  # SS1 takes what arrived before sshd comes back, so a pair sent again
  # reaches its despooler a second time.
  receive_ids >"$T/despooled.ids"
  despool_sum SS1
  local d1=$DSP_DELIVERED dup1=$DSP_DUPLICATES
  assert_eq "$DSP_REJECTED $DSP_WAITING" "0 0" "SS1's first despool: rejected, waiting"
  # Second kill: while files are being uploaded (a temporary name shows).
  sshd_start "$SSHD_PORT"
  tmp_names "$R" | sort >"$T/tmp0"
  flush_bg "$T/flush2.out"
  uploading() { [ -n "$(tmp_names "$R" | sort | comm -13 "$T/tmp0" -)" ]; }
  wait_until 120 uploading || fail "no upload seen within 120 s: $(tail -3 "$T/flush2.out")"
  sshd_kill
  kill_check "$T/flush2.out"
  pass "sshd killed mid-upload: exit 75, $AT_PEER pair(s) at SS1, $QUEUED queued, none lost"
  echo "# temporary uploads left at SS1 by the killed sessions: $(tmp_names "$R" | wc -l)"
  netem_off
  sshd_start "$SSHD_PORT"
  send_a 0 "$T/flush3.out" send --flush --to SS1
  assert_eq "$(count_files "$Q")" 0 "files left in the outbox"
  assert_eq "$(status_count PS1 4500)" 500 "4500 messages (each pair reported delivered once)"
  despool_sum SS1
  local d2=$DSP_DELIVERED dup2=$DSP_DUPLICATES
  echo "# SS1 despooled $d1 + $d2, duplicates $dup1 + $dup2"
  assert_eq "$DSP_REJECTED $DSP_WAITING" "0 0" "SS1's second despool: rejected, waiting"
  assert_eq "$((d1 + d2))" 500 "pairs delivered by SS1's despooler"
  assert_eq "$(status_count SS1 4402)" "$((dup1 + dup2))" "4402 at SS1 (one per duplicate)"
  assert_eq "$(count_files "$R")" 0 "files left in SS1's receive"
  assert_eq "$(count_all "$(rejected SS1)")" 0 "entries in SS1's rejected"
  same_files "$T/src" "$(incoming SS1)" "after the restart"
  pass "after restart: all 500 delivered, each file exactly once at SS1 ($((dup1 + dup2)) resent pair(s) caught by SS1's ledger, 4402), no temporary file delivered"
}

# --- 2. failover: the first address refuses connections
s_failover_refused() {
  sshd_start
  sftp_sites
  local dead url1 url2; dead=$(sshd_unused_port)
  url1=$(sftp_url "$dead"); url2=$(sftp_url)
  "$S" -C "$T/PS1" peer add SS1 --inbox "$url1" --inbox "$url2" --host-key "$(sshd_host_fp)" >/dev/null
  mkfiles "$T/src" 3
  send_a 0 "$T/send.out" send --to SS1 "$T/src"/*
  grep -q "Delivered 3 pair(s) to SS1" "$T/send.out" || fail "send output: $(cat "$T/send.out")"
  assert_eq "$(receive_ids)" "$(queued_ids "$T/send.out")" "pairs at SS1"
  assert_eq "$(status_count PS1 4510)" 1 "4510 messages"
  local t; t=$(last_status PS1 4510)
  echo "$t" | grep -qF "skipped address $url1 " || fail "4510 does not name the first address: $t"
  echo "$t" | grep -qF "Trying $url2 next" || fail "4510 does not name the next address: $t"
  assert_eq "$(status_count PS1 4501)" 0 "4501 messages"
  despool_sum SS1
  assert_eq "$DSP_DELIVERED $DSP_DUPLICATES" "3 0" "SS1's despool: delivered, duplicates"
  same_files "$T/src" "$(incoming SS1)" "through the second address"
  pass "first address refused: delivered once through the second, 4510 names both addresses"
  # peer list: what each address is in (a wrong state does not stop the story)
  expect_eq "$(peer_addr 0 state)" unreachable "peer list --json state of the first address"
  peer_addr 0 last_error | grep -q "cannot connect to \[$IP_B\]:$dead" ||
    fail_later "peer list --json last_error of the first address: '$(peer_addr 0 last_error)'"
  expect_eq "$(peer_addr 1 state)" ok "peer list --json state of the second address"
  expect_eq "$(peer_addr 1 last_error)" "" "peer list --json last_error of the second address"
  [ "$(peer_addr 1 last_success)" -gt 0 ] || fail_later "peer list --json: no last_success for the second address"
  "$S" -C "$T/PS1" peer list >"$T/list.out"
  grep -q "state unreachable" "$T/list.out" && grep -q "state ok" "$T/list.out" ||
    fail_later "peer list text: $(cat "$T/list.out")"
  [ -s "$T/failed_later" ] || pass "peer list: first address unreachable with its last error, second ok"
  # Both down: queued, 4510 for the first, 4501 names the last one tried.
  sshd_stop
  mkfiles "$T/src2" 1
  send_a 75 "$T/send2.out" send --to SS1 "$T/src2/f001"
  assert_eq "$(outbox_ids)" "$(queued_ids "$T/send2.out")" "pair queued with both addresses down"
  assert_eq "$(status_count PS1 4510)" 2 "4510 messages"
  assert_eq "$(status_count PS1 4501)" 1 "4501 messages"
  last_status PS1 4501 | grep -qF "at $url2: " || fail "4501 with both down: $(last_status PS1 4501)"
  expect_eq "$(peer_addr 0 state) $(peer_addr 1 state)" "unreachable unreachable" "states with both down"
  pass "both addresses down: exit 75, pair queued, 4510 then 4501"
}

# --- 3. failover: the first address never answers
s_failover_timeout() {
  sshd_start
  sftp_sites "sftp_timeout = 3s"
  local url1 url2 t0 took
  url1="sftp://root@$IP_DEAD:$SSHD_PORT$(receive SS1)"; url2=$(sftp_url)
  "$S" -C "$T/PS1" peer add SS1 --inbox "$url1" --inbox "$url2" --host-key "$(sshd_host_fp)" >/dev/null
  mkfiles "$T/src" 2
  t0=$(date +%s%N)
  send_a 0 "$T/send.out" send --to SS1 "$T/src"/*
  took=$((($(date +%s%N) - t0) / 1000000))
  echo "# send took $took ms with sftp_timeout = 3s"
  [ "$took" -lt 20000 ] || fail "send took $took ms: sftp_timeout (3 s) not honoured"
  assert_eq "$(receive_ids)" "$(queued_ids "$T/send.out")" "pairs at SS1"
  assert_eq "$(status_count PS1 4510)" 1 "4510 messages"
  last_status PS1 4510 | grep -qF "$url1" || fail "4510: $(last_status PS1 4510)"
  despool_sum SS1
  same_files "$T/src" "$(incoming SS1)" "through the second address"
  pass "first address silent: delivered through the second after the timeout ($took ms)"
  expect_eq "$(peer_addr 0 state)" unreachable "peer list --json state of the silent address"
  expect_eq "$(peer_addr 1 state)" ok "peer list --json state of the second address"
  expect_eq "$(peer_addr 1 last_error)" "" "peer list --json last_error of the second address"
  [ -s "$T/failed_later" ] || pass "peer list: silent address unreachable, second ok"
}

# --- 4. round robin over two live listeners
s_round_robin() {
  sshd_start
  sshd_start_second 2223
  sftp_sites
  local p1=$SSHD_PORT p2=$SSHD2_PORT
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url "$p1")" --inbox "$(sftp_url "$p2")" \
    --round-robin --host-key "$(sshd_host_fp)" >/dev/null
  mkfiles "$T/src" 4
  local i used=() c1 c2
  for i in 1 2 3 4; do
    c1=$(connections "$p1"); c2=$(connections "$p2")
    send_a 0 "$T/send$i.out" send --to SS1 "$T/src/f00$i"
    c1=$(($(connections "$p1") - c1)); c2=$(($(connections "$p2") - c2))
    case "$c1 $c2" in
      "1 0") used+=("$p1") ;;
      "0 1") used+=("$p2") ;;
      *) fail "delivery $i: $c1 connection(s) to port $p1, $c2 to port $p2" ;;
    esac
  done
  echo "# ports used: ${used[*]}"
  assert_eq "${used[*]}" "$p1 $p2 $p1 $p2" "ports of four deliveries in turn"
  [ "$(peer_addr 0 last_success)" -gt 0 ] && [ "$(peer_addr 1 last_success)" -gt 0 ] ||
    fail "peer list last_success: $(peer_json)"
  assert_eq "$(peer_addr 0 state) $(peer_addr 1 state)" "ok ok" "states of both addresses"
  assert_eq "$(status_count PS1 4510)" 0 "4510 messages"
  despool_sum SS1
  same_files "$T/src" "$(incoming SS1)" "round robin"
  pass "round robin: deliveries alternate between ports $p1 and $p2, each file once"
}

# --- 5. slow and lossy link
s_netem() {
  sshd_start
  sftp_sites "sftp_timeout = 30s"
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" --host-key "$(sshd_host_fp)" >/dev/null
  mkfiles "$T/src" 99 20000
  head -c 1048576 /dev/urandom >"$T/src/f100"
  netem_on 50ms 1%
  echo "# netem mode: $NETEM_MODE"
  local t0=$SECONDS
  send_a 0 "$T/send.out" send --to SS1 "$T/src"/*
  echo "# 100 files over the slow link in $((SECONDS - t0)) s"
  netem_off
  grep -q "Delivered 100 pair(s) to SS1" "$T/send.out" || fail "send output: $(tail -3 "$T/send.out")"
  assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "files left in the outbox"
  assert_eq "$(receive_ids)" "$(queued_ids "$T/send.out")" "pairs at SS1"
  assert_eq "$(status_count PS1 4500)" 100 "4500 messages"
  despool_sum SS1
  assert_eq "$DSP_DELIVERED $DSP_REJECTED $DSP_DUPLICATES" "100 0 0" "SS1's despool summary"
  same_files "$T/src" "$(incoming SS1)" "over a 50 ms, 1% loss link"
  pass "slow lossy link (50 ms, 1% loss, $NETEM_MODE): 100 files delivered exactly once"
}

# --- 6. the link goes silent mid-flush (a pulled cable: no RST)
s_link_down() {
  sshd_start
  sftp_sites "sftp_batch_max = 25" "sftp_timeout = 3s"
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(sftp_url)" --host-key "$(sshd_host_fp)" >/dev/null
  local R; R=$(receive SS1)
  mkfiles "$T/src" 200 2048
  "$S" -C "$T/PS1" send --queue-only --to SS1 "$T/src"/* >"$T/queue.out" ||
    fail "send --queue-only: $(tail -3 "$T/queue.out")"
  queued_ids "$T/queue.out" >"$T/all.ids"
  : >"$T/despooled.ids"
  netem_on 20ms
  flush_bg "$T/flush1.out"
  some_arrived() { [ "$(n_ins "$R")" -ge 1 ]; }
  wait_until 120 some_arrived || fail "no pairs arrived within 120 s: $(tail -3 "$T/flush1.out")"
  link_down
  local t0=$SECONDS
  flush_over() { ! kill -0 "$FPID" 2>/dev/null; }
  wait_until 60 flush_over || fail "the flush still runs 60 s after the link went silent (sftp_timeout = 3s)"
  local took=$((SECONDS - t0))
  echo "# the flush gave up $took s after the link went silent"
  kill_check "$T/flush1.out"
  [ "$took" -le 20 ] || fail "the flush took $took s to give up with sftp_timeout = 3s"
  grep -q "SS1 is unreachable" "$T/flush1.out" || fail "flush output: $(cat "$T/flush1.out")"
  pass "link silent mid-flush: gave up after $took s (sftp_timeout 3 s), exit 75, $AT_PEER at SS1, $QUEUED queued, none lost"
  link_up
  netem_off
  send_a 0 "$T/flush2.out" send --flush --to SS1
  assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "files left in the outbox"
  assert_eq "$(status_count PS1 4500)" 200 "4500 messages"
  despool_sum SS1
  assert_eq "$DSP_DELIVERED $DSP_REJECTED $DSP_WAITING" "200 0 0" "SS1's despool: delivered, rejected, waiting"
  same_files "$T/src" "$(incoming SS1)" "after the link came back"
  pass "link back: all 200 delivered, each file exactly once"
  # Again in the middle of one large upload (writes waiting on a full window).
  mkdir "$T/big"
  head -c $((32 << 20)) /dev/urandom >"$T/big/large"
  "$S" -C "$T/PS1" send --queue-only --to SS1 "$T/big/large" >"$T/queue2.out" ||
    fail "send --queue-only: $(cat "$T/queue2.out")"
  queued_ids "$T/queue2.out" >"$T/all.ids"
  receive_ids >"$T/despooled.ids"   # none: SS1 took them all
  tmp_names "$R" | sort >"$T/tmp0"
  netem_on 20ms
  flush_bg "$T/flush3.out"
  uploading() { [ -n "$(tmp_names "$R" | sort | comm -13 "$T/tmp0" -)" ]; }
  wait_until 60 uploading || fail "the large upload did not start: $(tail -3 "$T/flush3.out")"
  sleep 0.5
  link_down
  t0=$SECONDS
  wait_until 60 flush_over || fail "the flush still runs 60 s after the link went silent during a large upload"
  took=$((SECONDS - t0))
  echo "# the large upload gave up $took s after the link went silent"
  kill_check "$T/flush3.out"
  [ "$took" -le 20 ] || fail "the flush took $took s to give up with sftp_timeout = 3s"
  link_up
  netem_off
  send_a 0 "$T/flush4.out" send --flush --to SS1
  despool_sum SS1
  assert_eq "$DSP_DELIVERED $DSP_DUPLICATES" "1 0" "SS1's despool of the large file"
  cmp -s "$T/big/large" "$(incoming SS1)/large" || fail "the large file differs at SS1"
  pass "link silent during a 32 MiB upload: gave up after $took s, queued, then delivered intact"
}

scenario "1 sshd killed mid-flush" s_kill_mid_flush
scenario "2 failover, first address refused" s_failover_refused
scenario "3 failover, first address silent" s_failover_timeout
scenario "4 round robin" s_round_robin
scenario "5 slow lossy link" s_netem
scenario "6 link silent mid-flush" s_link_down
sftp_done
