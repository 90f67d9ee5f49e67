#!/usr/bin/env bash
# t_deb.sh BUILD_DIR - the Debian package: built with CPack from the build
# folder, installed on this machine (root only; it is removed again at the
# end), and used from the installed files alone: the postinst made the
# sitespool user and the folders, `sitespool --version` answers, the units
# verify, and a one-site smoke runs the despooler the way its unit does -
# as the sitespool user, no new privileges, no capabilities - while a
# stand-in for systemd's notify socket records READY, WATCHDOG, RELOADING
# and STOPPING.  (Where systemd is PID 1 the unit itself could be started;
# on this machine it is not, so the same command line runs under setpriv.)
set -euo pipefail
B=${1:?usage: t_deb.sh BUILD_DIR}
skip() { echo "SKIP: $*"; exit 0; }
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok - $*"; }
[ "$(id -u)" = 0 ] || skip "installing a package needs root"
command -v cpack >/dev/null && command -v dpkg >/dev/null || skip "cpack or dpkg missing"
command -v setpriv >/dev/null || skip "setpriv missing (util-linux)"
if dpkg-query -W -f='${Status}' sitespool 2>/dev/null | grep -q "install ok installed"; then
  skip "a sitespool package is already installed here; not replacing it"
fi
T=$(mktemp -d /tmp/sitespool-deb.XXXXXX)
SITE=D$((RANDOM % 90000 + 10000))
NOTIFY_PID=
cleanup() {
  [ -n "$NOTIFY_PID" ] && kill "$NOTIFY_PID" 2>/dev/null || true
  pkill -u sitespool -f "sitespool -C /var/lib/sitespool/$SITE" 2>/dev/null || true
  rm -rf "/var/lib/sitespool/$SITE" "/etc/sitespool/$SITE.conf"
  dpkg -r sitespool >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT

# ---- build and inspect
(cd "$B" && cpack -G DEB -B "$T/pkg" >"$T/cpack.out" 2>&1) || fail "cpack: $(tail -5 "$T/cpack.out")"
DEB=$(ls "$T"/pkg/sitespool_*.deb)
dpkg-deb -c "$DEB" >"$T/contents"
for f in ./usr/bin/sitespool ./usr/lib/systemd/system/sitespool-despool@.service \
         ./usr/lib/systemd/system/sitespool-sender@.service \
         ./usr/share/man/man8/sitespool.8.gz ./usr/share/man/man5/sitespool.conf.5.gz \
         ./usr/share/bash-completion/completions/sitespool ./usr/share/sitespool/ldap/sitespool.ldif; do
  grep -q " $f\$" "$T/contents" || fail "$f is not in the package"
done
dpkg-deb -f "$DEB" Depends | grep -q libsodium || fail "Depends lacks the shared libraries"
pass "cpack -G DEB builds $(basename "$DEB"): binary, both units, both man pages, completion"

# ---- install: the postinst makes the user and the folders
dpkg -i "$DEB" >"$T/dpkg.out" 2>&1 || fail "dpkg -i: $(cat "$T/dpkg.out")"
getent passwd sitespool >/dev/null || fail "postinst made no sitespool user"
[ "$(stat -c '%U:%G %a' /var/lib/sitespool)" = "sitespool:sitespool 750" ] ||
  fail "/var/lib/sitespool is $(stat -c '%U:%G %a' /var/lib/sitespool)"
[ "$(stat -c '%U:%G %a' /etc/sitespool)" = "root:sitespool 750" ] ||
  fail "/etc/sitespool is $(stat -c '%U:%G %a' /etc/sitespool)"
v=$(/usr/bin/sitespool --version)
[[ $v =~ ^sitespool\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version says '$v'"
if command -v man >/dev/null; then
  MANWIDTH=80 man sitespool 2>&1 | grep -q "sitespool" || fail "man sitespool does not show the installed page"
fi
pass "installed: $v; postinst made the sitespool user, /var/lib/sitespool and /etc/sitespool; man sitespool works"

# ---- the units
if command -v systemd-analyze >/dev/null; then
  for u in despool sender; do
    cp "/usr/lib/systemd/system/sitespool-$u@.service" "$T/sitespool-$u@$SITE.service"
    out=$(cd "$T" && systemd-analyze verify "$T/sitespool-$u@$SITE.service" 2>&1 |
          grep -v "Command 'man sitespool" || true)
    [ -z "$out" ] || fail "systemd-analyze verify sitespool-$u@: $out"
    score=$(systemd-analyze security --offline=yes "$T/sitespool-$u@$SITE.service" 2>/dev/null |
            sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }' ||
      fail "sitespool-$u@: exposure $score (want <= 2.0)"
    echo "# systemd-analyze security sitespool-$u@: $score"
  done
  pass "both units verify; exposure scores within 2.0"
else
  echo "SKIP: systemd-analyze missing: units not verified"
fi

# ---- one site from the installed files, run as its unit runs it
/usr/bin/sitespool init --site "$SITE" --system >"$T/init.out" || fail "init --system: $(cat "$T/init.out")"
[ "$(stat -c '%U' "/var/lib/sitespool/$SITE/site.db")" = sitespool ] || fail "site.db is not the user's"
[ "$(stat -c '%U:%G %a' "/etc/sitespool/$SITE.conf")" = "root:sitespool 640" ] ||
  fail "$SITE.conf is $(stat -c '%U:%G %a' "/etc/sitespool/$SITE.conf")"
exec_start=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/sitespool-despool@.service)
exec_start=${exec_start//%i/$SITE}
# systemd's notify socket, stood in for by a datagram socket that logs.
python3 - "$T/notify" >"$T/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
import os; os.chmod(sys.argv[1], 0o777)
while True:
    msg = s.recv(4096).decode()
    print(msg.replace("\n", " | "), flush=True)
PY
NOTIFY_PID=$!
for _ in $(seq 50); do [ -S "$T/notify" ] && break; sleep 0.1; done
chmod 0711 "$T"
# The unit's identity and restrictions: User=/Group=sitespool, UMask=0027,
# NoNewPrivileges, an empty capability bounding set; WatchdogSec made short.
(umask 0027; cd /; exec env -i PATH=/usr/bin:/bin NOTIFY_SOCKET="$T/notify" \
   WATCHDOG_USEC=400000 \
   setpriv --reuid=sitespool --regid=sitespool --init-groups --no-new-privs \
     --bounding-set=-all --inh-caps=-all -- bash -c "export WATCHDOG_PID=\$\$; exec $exec_start") \
  >"$T/daemon.out" 2>&1 &
D=$!
wait_for() { for _ in $(seq 100); do grep -q "$1" "$T/notify.log" && return 0; sleep 0.1; done; return 1; }
wait_for "READY=1" || fail "no READY=1 from the despooler ($(cat "$T/daemon.out"))"
wait_for "WATCHDOG=1" || fail "no WATCHDOG=1 within 10 s"
pass "the despooler runs as sitespool (no privileges) and tells READY=1, then WATCHDOG=1"

# A peer site sends one file to it.  It writes receive as the site's own
# user would over SFTP (the login user the site's administrator set up):
# files another user writes there must be readable by sitespool.
P=$T/peer/PEER1
mkdir -p "$T/peer" && chown sitespool: "$T/peer"
as_site() { (cd / && setpriv --reuid=sitespool --regid=sitespool --init-groups -- "$@"); }
as_site /usr/bin/sitespool -C "$P" init --site PEER1 >/dev/null
as_site /usr/bin/sitespool -C "$P" key export -o "/var/lib/sitespool/$SITE/inboxes/hman.box/PEER1.pub" 2>/dev/null
as_site /usr/bin/sitespool -C "$P" peer add "$SITE" --inbox "/var/lib/sitespool/$SITE/inboxes/despoolr.box/receive" >/dev/null
head -c 100000 /dev/urandom >"$T/payload.bin"
chmod 0644 "$T/payload.bin"
as_site /usr/bin/sitespool -C "$P" send --to "$SITE" "$T/payload.bin" >/dev/null || fail "send"
got=/var/lib/sitespool/$SITE/inboxes/replmgr.box/incoming/payload.bin
for _ in $(seq 100); do [ -f "$got" ] && break; sleep 0.1; done
cmp -s "$got" "$T/payload.bin" || fail "the file did not arrive intact"
[ "$(stat -c %U "$got")" = sitespool ] || fail "the delivered file is not the user's"
# The site's user reads its status (the installed default site: no -C).
n=$(as_site /usr/bin/sitespool status --id 4400 --json | wc -l)
[ "$n" = 1 ] || fail "status as sitespool shows $n deliveries"
pass "a file sent to the installed site is delivered as the sitespool user; status works without -C"

kill -HUP "$D"
wait_for "RELOADING=1" || fail "no RELOADING=1 after SIGHUP"
kill -TERM "$D"
wait "$D" || fail "the despooler exited with $?"
wait_for "STOPPING=1" || fail "no STOPPING=1 after SIGTERM"
pass "SIGHUP: RELOADING=1 then READY=1; SIGTERM: STOPPING=1 and exit 0"
