#!/usr/bin/env bash
# A site shared by root and its service user (issue 16, defect 3).  The
# sites belong to a real non-root user (sitespoolci, as under systemd's
# User=); root runs the administrator's commands on them.  Root's commands
# must leave nothing the owner cannot use (they run as the owner), the
# owner's daemons and status keep working, a pair root queued is seen and
# sent by the owner's sender, and a third user is refused with a message
# naming the owner and the sudo -u / runuser to use (exit 77).
# Needs root (to be root and another user at once); as a non-root user the
# test says why it skips.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
  echo "SKIP: a site shared by root and its owner: needs root and setpriv (this run is $(id -un))"
  exit 0
fi
U=${SS_TEST_USER:-sitespoolci}
getent passwd "$U" >/dev/null ||
  useradd --system --no-create-home --shell /usr/sbin/nologin "$U" >/dev/null 2>&1 || true
if ! getent passwd "$U" >/dev/null; then
  echo "SKIP: a site shared by root and its owner: no user $U and useradd failed"
  exit 0
fi
# The binary where the user can run it (the build folder may be private).
chmod 0755 "$T"
cp "$S" "$T/sitespool"; chmod 0755 "$T/sitespool"
S=$T/sitespool
as_owner() { setpriv --reuid="$U" --regid="$(id -g "$U")" --init-groups -- "$@"; }
mkdir "$T/PS1" "$T/SS1"; chown "$U:" "$T/PS1" "$T/SS1"
as_owner "$S" -C "$T/PS1" init --site PS1 >/dev/null
as_owner "$S" -C "$T/SS1" init --site SS1 >/dev/null
# Nothing in either site may belong to anyone but the owner.
foreign() { find "$T/PS1" "$T/SS1" ! -user "$U" -printf '%u %p\n' | head -n 5; }
assert_clean() { local f; f=$(foreign); [ -z "$f" ] || fail "$1 left files the owner does not own: $f"; }

# Root's commands, as an administrator types them.
"$S" -C "$T/PS1" peer add SS1 --inbox "$(receive SS1)" >/dev/null
"$S" -C "$T/SS1" peer add PS1 --inbox "$(receive PS1)" >/dev/null
"$S" -C "$T/PS1" key export -o - >"$T/PS1.pub"
"$S" -C "$T/SS1" key import "$T/PS1.pub" >/dev/null
"$S" -C "$T/PS1" status >/dev/null
"$S" -C "$T/SS1" check --quiet >/dev/null || fail "root's check of SS1: $("$S" -C "$T/SS1" check 2>&1 | grep -v '^ok' | head -n 3)"
echo "queued by root" >"$T/root.txt"
rc=0; "$S" -C "$T/PS1" send --queue-only --to SS1 "$T/root.txt" >/dev/null || rc=$?
assert_eq "$rc" 0 "root's send --queue-only"
assert_clean "root's peer add, key export/import, status, check and send"
pass "root's commands on a site its service user owns leave only files of that user"

# The owner sees the pair root queued, and its sender sends it.
queued=$(as_owner "$S" -C "$T/PS1" peer list --json | python3 -c 'import json,sys; print([p for p in json.load(sys.stdin) if p["site"]=="SS1"][0]["queued"])')
assert_eq "$queued" 1 "pairs queued for SS1 as the owner's peer list sees them"
rc=0; as_owner "$S" -C "$T/PS1" sender --once >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 0 "the owner's sender --once"
as_owner "$S" -C "$T/SS1" despool --once >/dev/null
cmp -s "$T/root.txt" "$(incoming SS1)/root.txt" || fail "root's pair was not delivered at SS1"
pass "a pair root queued is listed by the owner's peer list and sent by the owner's sender"

# Root runs the despooler and the sender once more: still nothing of root's.
echo "second" >"$T/second.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/second.txt" >/dev/null
"$S" -C "$T/SS1" despool --once >/dev/null
"$S" -C "$T/PS1" sender --once >/dev/null 2>&1 || true
cmp -s "$T/second.txt" "$(incoming SS1)/second.txt" || fail "the pair root sent was not delivered by root's despool --once"
assert_clean "root's send, despool --once and sender --once"
# The owner's status and daemon are unharmed.
as_owner "$S" -C "$T/SS1" status --limit 1 >/dev/null || fail "the owner's status after root's commands"
as_owner "$S" -C "$T/SS1" despool --once >/dev/null || fail "the owner's despooler after root's commands"
pass "root's despool and sender run as the owner too; the owner's status and despooler still work"

# A file only root can read: a clear refusal, and standard input works.
mkdir -m 0700 "$T/root"; echo "root only" >"$T/root/private.txt"
rc=0; "$S" -C "$T/PS1" send --queue-only --to SS1 "$T/root/private.txt" >"$T/out" 2>&1 || rc=$?
assert_eq "$rc" 1 "send of a file the owner cannot read"
grep -q "is not readable by $U, the site's owner" "$T/out" || fail "no hint for an unreadable file: $(cat "$T/out")"
grep -q "standard input ('-')" "$T/out" || fail "the hint does not name standard input: $(cat "$T/out")"
rc=0; "$S" -C "$T/PS1" send --queue-only --to SS1 --name private.txt - <"$T/root/private.txt" >/dev/null || rc=$?
assert_eq "$rc" 0 "send of the same file on standard input"
assert_clean "root's send from standard input"
pass "a file the owner cannot read: named, with the way round it (standard input)"

# A third user is refused, with the command to use.
rc=0
setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups -- \
  "$S" -C "$T/SS1" status --limit 1 >"$T/out" 2>&1 || rc=$?
assert_eq "$rc" 77 "status by a user who neither owns the site nor is root"
grep -q "belongs to $U" "$T/out" || fail "the refusal does not name the owner: $(cat "$T/out")"
grep -qF "sudo -u $U sitespool -C $T/SS1 status --limit 1" "$T/out" ||
  fail "the refusal does not give the sudo -u command: $(cat "$T/out")"
grep -qF "runuser -u $U -- sitespool" "$T/out" || fail "the refusal does not give runuser: $(cat "$T/out")"
assert_clean "a refused command"
pass "another user: refused with exit 77, naming the owner, sudo -u and runuser"

# Root initialising a site in a folder its service user made for it.
mkdir "$T/SS3"; chown "$U:" "$T/SS3"
"$S" -C "$T/SS3" init --site SS3 >/dev/null
f=$(find "$T/SS3" ! -user "$U" -printf '%u %p\n' | head -n 3)
[ -z "$f" ] || fail "root's init in the owner's folder made files of another user: $f"
pass "root's init in a folder the service user owns: the whole site is that user's"
