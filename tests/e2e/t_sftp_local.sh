#!/usr/bin/env bash
# Peer addresses without a network (issue 10): a local inbox path that is
# a symbolic link (an administrator's mount layout) is followed; an
# sftp:// address holding a password is refused.  No namespaces, no sshd:
# this runs everywhere.
#   1. the inbox path is a symlink to SS1's receive folder
#   2. a folder above the inbox is a symlink (/mnt/ss1 -> .../SS1/inboxes)
#   3. as 2, the inbox on another filesystem (a tmpfs: copied, not renamed)
#   4. sftp://root:pw@host/x is refused by peer add (exit 2), nothing stored
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_sftp.sh"

sites() {
  mksite PS1 "bundle_max_files = 1"
  mksite SS1
  pair PS1 SS1
}

# deliver_through_link ADDRESS: PS1 delivers 3 files to SS1 at ADDRESS
# (a path through a symlink); they arrive in SS1's real receive folder and
# its despooler delivers them byte for byte.
deliver_through_link() {
  "$S" -C "$T/PS1" peer add SS1 --inbox "$1" >"$T/add.out" || fail "peer add: $(cat "$T/add.out")"
  mkfiles "$T/src" 3 100000
  local rc=0
  "$S" -C "$T/PS1" send --to SS1 "$T/src"/* >"$T/send.out" 2>&1 || rc=$?
  assert_eq "$rc" 0 "exit code of send through the symlink (output: $(tail -2 "$T/send.out"))"
  grep -q "Delivered 3 pair(s) to SS1" "$T/send.out" || fail "send output: $(cat "$T/send.out")"
  assert_eq "$(receive_ids)" "$(queued_ids "$T/send.out")" "pairs in SS1's receive"
  assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "files left in the outbox"
  [ -L "$1" ] || [ -L "$(dirname "$(dirname "$1")")" ] || fail "the symlink was replaced"
  despool_sum SS1
  assert_eq "$DSP_DELIVERED $DSP_REJECTED" "3 0" "SS1's despool: delivered, rejected"
  same_files "$T/src" "$(incoming SS1)" "through the symlink"
}

s_symlink_inbox() {
  sites
  ln -s "$(receive SS1)" "$T/ss1-receive"
  deliver_through_link "$T/ss1-receive"
  pass "inbox path is a symlink to the receive folder: delivered"
}

s_symlink_parent() {
  sites
  ln -s "$T/SS1/inboxes" "$T/mnt-ss1"
  deliver_through_link "$T/mnt-ss1/despoolr.box/receive"
  pass "a folder above the inbox is a symlink: delivered"
}

# Another filesystem (delivery by copy, not rename) behind the symlink.
s_symlink_other_fs() {
  sites
  if ! mount -t tmpfs -o size=64m tmpfs "$(receive SS1)" 2>/dev/null; then
    echo "# skip - cannot mount a tmpfs here"
    return 0
  fi
  trap 'umount "$(receive SS1)" 2>/dev/null || true; _scenario_end' EXIT
  chmod 0750 "$(receive SS1)"
  ln -s "$T/SS1/inboxes" "$T/mnt-ss1"
  deliver_through_link "$T/mnt-ss1/despoolr.box/receive"
  pass "a symlinked inbox on another filesystem (copy, not rename): delivered"
}

s_password_url() {
  sites
  local before rc=0
  before=$("$S" -C "$T/PS1" peer list --json)
  "$S" -C "$T/PS1" peer add SS1 --inbox "sftp://root:s3cr3t@10.0.0.1/srv/receive" >"$T/add.out" 2>&1 || rc=$?
  assert_eq "$rc" 2 "exit code of peer add with a password in the URL"
  grep -qi "password" "$T/add.out" || fail "peer add does not say why: $(cat "$T/add.out")"
  assert_eq "$("$S" -C "$T/PS1" peer list --json)" "$before" "peer list after the refused add"
  sqlite3 -readonly "$T/PS1/site.db" .dump | grep -q s3cr3t && fail "the password was stored in site.db"
  grep -rq s3cr3t "$T/PS1/logs" "$T/PS1/site.conf" 2>/dev/null && fail "the password was written to the logs or site.conf"
  rc=0
  "$S" -C "$T/PS1" peer add SS1 --inbox "$(receive SS1)" --inbox "sftp://root:s3cr3t@10.0.0.1/srv/receive" \
    >"$T/add2.out" 2>&1 || rc=$?
  assert_eq "$rc" 2 "exit code of peer add with a password in the second URL"
  assert_eq "$("$S" -C "$T/PS1" peer list --json)" "$before" "peer list after the second refused add"
  pass "a password in an sftp:// URL: peer add exits 2, says why, stores nothing"
}

scenario "1 inbox is a symlink" s_symlink_inbox
scenario "2 a parent folder is a symlink" s_symlink_parent
scenario "3 a symlinked inbox on another filesystem" s_symlink_other_fs
scenario "4 password in the URL" s_password_url
sftp_done
