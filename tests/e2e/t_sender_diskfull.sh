#!/usr/bin/env bash
# A sending site on a full disk stays usable.  PS1 lives on a real 2 MiB
# tmpfs, its peer SS1 on another filesystem; three pairs are queued and the
# tmpfs is filled to the last block.  Then:
#   - `status` and `peer list` work (read only);
#   - `send` fails with "no space left on device" naming the outbox, and
#     leaves nothing behind;
#   - `send --flush` delivers the queued pairs (copying them out frees the
#     space) and stores their 4500 messages; the receiver gets each once.
# The same again for a site.db whose site.db-shm is missing (a site last
# used by an older sitespool, or the file removed): SQLite cannot make it
# on the full disk, and the commands fall back to keeping it in memory.
. "$(dirname "$0")/lib.sh"
FULL=$T/full
mkdir "$FULL"
if ! mount -t tmpfs -o size=2m tmpfs "$FULL" 2>"$T/mount.err"; then
  echo "SKIP: cannot mount a 2 MiB tmpfs here (needs root or CAP_SYS_ADMIN): $(cat "$T/mount.err")"
  exit 0
fi
trap 'umount "$FULL" 2>/dev/null || true; cleanup' EXIT
P=$FULL/PS1
"$S" -C "$P" init --site PS1 >/dev/null
# One pair per file: the counts below are of pairs queued one by one.
sed -i 's/^bundle_max_files = .*/bundle_max_files = 1/' "$P/site.conf"
grep -q '^bundle_max_files = 1$' "$P/site.conf" || fail "bundle_max_files not set"
mksite SS1
"$S" -C "$P" peer add SS1 --inbox "$(receive SS1)" >/dev/null
"$S" -C "$T/SS1" peer add PS1 --inbox "$P/inboxes/despoolr.box/receive" >/dev/null
"$S" -C "$P" key export -o "$(hman SS1)/PS1.pub" 2>/dev/null
Q=$P/inboxes/schedule.box/outbox/SS1
mkdir "$T/src"
for i in 1 2 3 4 5 6; do head -c 60000 /dev/urandom > "$T/src/q$i"; done
head -c 60000 /dev/urandom > "$T/src/new"

fill() {
  dd if=/dev/zero of="$FULL/fill.$1" bs=4k status=none 2>/dev/null || true
  dd if=/dev/zero of="$FULL/fill.$1.b" bs=512 status=none 2>/dev/null || true
  [ "$(df --output=avail -B1 "$FULL" | tail -1 | tr -d ' ')" = 0 ] || fail "the tmpfs is not full: $(df "$FULL")"
}

# checks LABEL N FILES...: with the disk full and N pairs queued (FILES).
checks() {
  local label=$1 n=$2; shift 2
  local out rc
  out=$("$S" -C "$P" status 2>&1) || fail "$label: status fails on a full disk: $out"
  grep -q " 4504 " <<<"$out" || fail "$label: status shows no 4504: $out"
  rc=0; out=$("$S" -C "$P" peer list 2>&1) || rc=$?
  assert_eq "$rc" 0 "$label: peer list on a full disk ($out)"
  grep -Eq "^SS1 +$n " <<<"$out" || fail "$label: peer list does not show $n queued: $out"
  out=$("$S" -C "$P" peer list --json 2>&1) || fail "$label: peer list --json fails: $out"
  grep -q "\"queued\":$n," <<<"$out" || fail "$label: peer list --json: $out"
  pass "$label: status and peer list work on a full disk"

  local before; before=$(count_all "$Q")
  rc=0; "$S" -C "$P" send --to SS1 "$T/src/new" >"$T/out" 2>"$T/err" || rc=$?
  assert_eq "$rc" 1 "$label: exit code of a send on a full disk"
  grep -qi "no space left on device" "$T/err" || fail "$label: send does not say the disk is full: $(cat "$T/err")"
  grep -qF "$Q" "$T/err" || fail "$label: send does not say where: $(cat "$T/err")"
  grep -q "^Queued instruction" "$T/out" && fail "$label: send claims to have queued: $(cat "$T/out")"
  assert_eq "$(count_all "$Q")" "$before" "$label: files in the outbox after the failed send"
  echo "# $label: send said: $(head -1 "$T/err")"
  pass "$label: send says 'no space left on device' and where, and leaves nothing"

  local n4500; n4500=$(status_count PS1 4500 2>/dev/null || true)
  rc=0; "$S" -C "$P" send --flush >"$T/out" 2>"$T/err" || rc=$?
  assert_eq "$rc" 0 "$label: exit code of send --flush on a full disk ($(cat "$T/err"))"
  grep -q "Delivered $n pair(s) to SS1" "$T/out" || fail "$label: flush output: $(cat "$T/out") $(cat "$T/err")"
  assert_eq "$(count_files "$Q")" 0 "$label: outbox empty after the flush"
  assert_eq "$("$S" -C "$P" status --id 4500 --json | wc -l)" $((n4500 + n)) "$label: 4500 stored for each delivery"
  despool_once SS1 >/dev/null
  local f
  for f in "$@"; do cmp -s "$f" "$(incoming SS1)/${f##*/}" || fail "$label: ${f##*/} did not arrive intact"; done
  pass "$label: send --flush delivers what was queued and records it"
}
status_count() { "$S" -C "$P" status --id "$2" --json | wc -l; }

# --- site.db-shm in place (every site made or opened by this sitespool)
"$S" -C "$P" send --queue-only --to SS1 "$T/src/q1" "$T/src/q2" "$T/src/q3" >/dev/null
fill 1
checks "full disk" 3 "$T/src/q1" "$T/src/q2" "$T/src/q3"

# --- site.db-shm missing: it cannot be made on the full disk
rm -f "$FULL"/fill.1*
"$S" -C "$P" send --queue-only --to SS1 "$T/src/q4" "$T/src/q5" >/dev/null
rm -f "$P/site.db-shm" "$P/site.db-wal"
fill 2
checks "full disk, no site.db-shm" 2 "$T/src/q4" "$T/src/q5"

# --- the disk has room again: everything works as before
rm -f "$FULL"/fill.*
"$S" -C "$P" send --to SS1 "$T/src/q6" >"$T/out" || fail "send after space came back"
grep -q "^Queued instruction .* for SS1: q6$" "$T/out" || fail "send output: $(cat "$T/out")"
despool_once SS1 >/dev/null
cmp -s "$T/src/q6" "$(incoming SS1)/q6" || fail "q6 did not arrive"
assert_eq "$(count_all "$(incoming SS1)")" 6 "files at SS1"
pass "with space again, send works as before"
