#!/usr/bin/env bash
# Faults around a running despooler daemon.  In each case the daemon must
# survive, raise the right status message, lose and quarantine nothing, and
# deliver by itself (no restart) once the fault is gone:
#   1. the destination filesystem is full            -> 4416, not 4413
#   2. the destination filesystem is read-only       -> 4416
#   3. the destination is not writable for the (non-root) daemon -> 4416
#   4. site.db is write-locked by another program    -> 4423 in despool.log
#   5. the logs cannot be written (full, replaced by a directory)
# Each check is its own ok/FAIL line; the script fails at the end if any
# check failed.  Cases this sandbox cannot set up (mounts, users) say SKIP.
. "$(dirname "$0")/lib.sh"

NFAIL=0 FAILED=() MOUNTS=()
bad() { echo "FAIL: $*" >&2; NFAIL=$((NFAIL + 1)); FAILED+=("$*"); }
skip() { echo "SKIP: $*"; }
faults_cleanup() {
  local pid m i
  for pid in "${DAEMONS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${DAEMONS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    m=${MOUNTS[i]}
    mountpoint -q "$m" 2>/dev/null || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  cleanup
}
trap faults_cleanup EXIT
# small_fs DIR KB: mounts a KB-sized filesystem on DIR (tmpfs, else a
# loop-mounted ext4 image); fails if this sandbox cannot mount.
small_fs() {
  if mount -t tmpfs -o "size=${2}k,mode=0750" tmpfs "$1" 2>/dev/null; then
    MOUNTS+=("$1"); return 0
  fi
  local img; img=$(mktemp "$T/fs.XXXXXX")
  truncate -s "$(( $2 < 2048 ? 2048 : $2 ))k" "$img" &&
    mkfs.ext4 -q -m 0 "$img" >/dev/null 2>&1 && mount -o loop "$img" "$1" 2>/dev/null || return 1
  MOUNTS+=("$1")
}
# unmount DIR: the daemon may hold a descriptor there for a moment.
unmount() {
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do umount "$1" 2>/dev/null && return 0; sleep 0.2; done
  umount -l "$1"
}
# remount DIR OPTS: retried while the filesystem is busy.
remount() {
  local i
  for i in $(seq 1 30); do mount -o "remount,$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
alive() { kill -0 "$1" 2>/dev/null; }
newer_count() { [ "$(status_count "$1" "$2")" -gt "$3" ]; }
# copies DIR NAME: files in DIR named NAME or NAME.<anything>.
copies() { find "$1" -maxdepth 1 -type f \( -name "$2" -o -name "$2.*" \) | wc -l; }
# id_count SITE MSG ID: status messages MSG naming instruction ID.
id_count() { "$S" -C "$T/$1" status --id "$2" --json | grep -cF "$3" || true; }
# delivered_once WHAT SITE ID NAME SOURCE: ok/FAIL for an exactly-once delivery.
delivered_once() {
  local what=$1 site=$2 id=$3 name=$4 src=$5 inc rows
  inc=$(incoming "$site")
  rows=$(sqlite3 -readonly "$T/$site/site.db" "SELECT count(*) FROM ledger WHERE id='$id'" 2>/dev/null || echo '?')
  if cmp -s "$src" "$inc/$name" && [ "$(copies "$inc" "$name")" = 1 ] && [ "$rows" = 1 ] &&
     [ "$(id_count "$site" 4400 "$id")" = 1 ] && [ ! -e "$(receive "$site")/$id.ins" ] &&
     [ -z "$(find "$inc" -name '.sitespool-*')" ]; then
    pass "$what: delivered exactly once, intact"
  else
    bad "$what: not delivered exactly once: $name $(cmp -s "$src" "$inc/$name" && echo intact || echo 'missing or differs'), $(copies "$inc" "$name") copies, $rows ledger row(s), $(id_count "$site" 4400 "$id") x 4400, receive: $(ls "$(receive "$site")" | tr '\n' ' '), rejected: $(ls "$(rejected "$site")" | grep -c "$id" || true) file(s), last: $("$S" -C "$T/$site" status --component despooler --limit 1 | cut -c 21-200)"
  fi
}
# kept WHAT SITE ID: ok/FAIL for a pair kept in receive (not quarantined).
kept() {
  local R J; R=$(receive "$2"); J=$(rejected "$2")
  if [ -f "$R/$3.ins" ] && [ -f "$R/$3.pck" ] && [ -z "$(find "$J" -name "$3*")" ]; then
    pass "$1: the pair stays in receive, nothing in rejected/"
  else
    bad "$1: the pair was not kept in receive (receive: $(ls "$R" | tr '\n' ' '); rejected: $(ls "$J" | grep "$3" | tr '\n' ' '); $(head -n 1 "$J/$3.why" 2>/dev/null || true))"
  fi
}
# no_tmp WHAT DIR: no temporary file stays in DIR (a retry in progress may
# have one for a moment, so any of 30 looks over 3 s without one will do).
tmp_in() { find "$1" -name '.sitespool-*' 2>/dev/null | head -n 3; }
no_tmp() {
  local left dir=$2
  wait_until 3 eval '[ -z "$(tmp_in "$dir")" ]' || true
  left=$(tmp_in "$dir")
  if [ -z "$left" ]; then pass "$1: no temporary file left in incoming"; else bad "$1: temporary file(s) left: $left"; fi
}
survives() {
  if alive "$2"; then pass "$1: the daemon is still running"; else bad "$1: the daemon died: $(tail -n 3 "$T"/*.despool.out 2>/dev/null)"; fi
}

mksite PS1; mksite SS1 "rescan_interval = 1s"; pair PS1 SS1
despool_once SS1 >/dev/null # import PS1's key
F=$T/forge; mkdir -p "$F"
R=$(receive SS1); J=$(rejected SS1); I=$(incoming SS1)
drop() { mv "$F/$1.pck" "$2/"; mv "$F/$1.ins" "$2/"; }
start_despooler SS1
D1=$DPID

# ---- 1. destination full ----
C="disk full"
if small_fs "$I" 512; then
  dd if=/dev/zero of="$I/filler" bs=4k 2>/dev/null || true # until ENOSPC
  truncate -s -64k "$I/filler"                              # 64 KiB free
  head -c 200000 /dev/urandom > "$T/full.bin"
  n16=$(status_count SS1 4416) n13=$(status_count SS1 4413)
  id=$(forge "$F" "$T/full.bin" name=full.bin); drop "$id" "$R"
  wait_until 10 eval 'newer_count SS1 4416 "$n16" || newer_count SS1 4413 "$n13"' || true
  if newer_count SS1 4416 "$n16"; then
    pass "$C: 4416 raised ($("$S" -C "$T/SS1" status --id 4416 --limit 1 | cut -d ' ' -f 3- | cut -c 1-200))"
  else
    bad "$C: no 4416 (last: $("$S" -C "$T/SS1" status --component despooler --limit 1 | cut -d ' ' -f 3- | cut -c 1-200))"
  fi
  sleep 2 # a few rescans (rescan_interval = 1s) must not change the verdict
  if [ "$(status_count SS1 4413)" = "$n13" ]; then
    pass "$C: no 4413 (a full disk is not a bad package)"
  else
    bad "$C: 4413 raised: $("$S" -C "$T/SS1" status --id 4413 --limit 1 | cut -d ' ' -f 3- | cut -c 1-200)"
  fi
  kept "$C" SS1 "$id"
  no_tmp "$C" "$I"
  survives "$C" "$D1"
  rm -f "$I/filler"
  wait_until 15 eval 'test -f "$I/full.bin" || test -e "$J/$id.ins"' || true
  sleep 0.5
  delivered_once "$C, then space freed" SS1 "$id" full.bin "$T/full.bin"
  rm -f "$I/full.bin"*
else
  skip "$C: cannot mount a small filesystem on $I in this sandbox"
fi

echo "# ${SECONDS}s"
# ---- 2. destination read-only ----
C="read-only destination"
ro_ok=0
if mountpoint -q "$I" && remount "$I" ro; then
  ro_ok=1
elif mount --bind "$I" "$I" 2>/dev/null && MOUNTS+=("$I") && remount "$I" bind,ro; then
  ro_ok=2
fi
if [ "$ro_ok" != 0 ]; then
  printf 'read-only for a while\n' > "$T/ro.txt"
  n16=$(status_count SS1 4416)
  id=$(forge "$F" "$T/ro.txt" name=ro.txt); drop "$id" "$R"
  if wait_until 10 newer_count SS1 4416 "$n16"; then
    pass "$C: 4416 raised ($("$S" -C "$T/SS1" status --id 4416 --limit 1 | cut -d ' ' -f 3- | cut -c 1-200))"
  else
    bad "$C: no 4416 within 10 s (last: $("$S" -C "$T/SS1" status --component despooler --limit 1 | cut -d ' ' -f 3- | cut -c 1-200))"
  fi
  sleep 2
  kept "$C" SS1 "$id"
  survives "$C" "$D1"
  if [ "$ro_ok" = 1 ]; then remount "$I" rw; else remount "$I" bind,rw; fi ||
    fail "could not make $I writable again"
  wait_until 15 test -f "$I/ro.txt" || true
  sleep 0.5
  delivered_once "$C, then writable again" SS1 "$id" ro.txt "$T/ro.txt"
else
  skip "$C: cannot remount $I read-only in this sandbox"
fi
while mountpoint -q "$I"; do unmount "$I" || break; done

echo "# ${SECONDS}s"
# ---- 3. permission denied for a non-root daemon ----
# As root: SS2 belongs to the user sitespooltest, its daemon runs as that
# user (setpriv) and incoming is handed to root.  Run as a non-root user
# (tests/e2e/run_as_user.sh): the test's own user is the daemon's, and
# incoming is made read-only with chmod.
C="permission denied (non-root)"
U=sitespooltest PERM=
if [ "$(id -u)" != 0 ]; then
  PERM=self U=$(id -un)
else
  if ! getent passwd "$U" >/dev/null; then
    useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$U" >/dev/null 2>&1 || true
  fi
  getent passwd "$U" >/dev/null && command -v setpriv >/dev/null && PERM=user
fi
if [ -n "$PERM" ]; then
  if [ "$PERM" = user ]; then
    uid=$(id -u "$U") gid=$(id -g "$U")
    as_user() { setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"; }
  else
    as_user() { "$@"; }
  fi
  mksite SS2 "rescan_interval = 1s"; peer PS1 SS2; exchange PS1 SS2
  if [ "$PERM" = user ]; then chmod 0711 "$T"; chown -R "$U:" "$T/SS2"; fi
  # Everything on SS2 runs as the user from now on (a root sitespool would
  # leave root-owned site.db-wal/-shm files behind).
  ss2() { as_user "$S" -C "$T/SS2" "$@"; }
  ss2_count() { ss2 status --id "$1" --json | wc -l; }
  ss2 despool --once >/dev/null
  # Started directly, not through the as_user function: "$!" of a backgrounded
  # function is a subshell, and killing it would leave the daemon running.
  if [ "$PERM" = user ]; then
    setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$S" -C "$T/SS2" despool \
      >>"$T/SS2.despool.out" 2>&1 &
  else
    "$S" -C "$T/SS2" despool >>"$T/SS2.despool.out" 2>&1 &
  fi
  D2=$!; DAEMONS+=("$D2")
  wait_until 20 eval '[ "$(ss2_count 4401)" -gt 0 ]' || fail "the non-root despooler of SS2 did not start"
  I2=$(incoming SS2); R2=$(receive SS2)
  if [ "$PERM" = user ]; then chown root:root "$I2"; chmod 0755 "$I2"; else chmod 0555 "$I2"; fi
  printf 'not writable for the daemon\n' > "$T/perm.txt"
  n16=$(ss2_count 4416)
  id=$(forge "$F" "$T/perm.txt" to=SS2 name=perm.txt); drop "$id" "$R2"
  if wait_until 10 eval '[ "$(ss2_count 4416)" -gt "$n16" ]'; then
    pass "$C: 4416 raised ($(ss2 status --id 4416 --limit 1 | cut -d ' ' -f 3- | cut -c 1-200))"
  else
    bad "$C: no 4416 within 10 s (last: $(ss2 status --component despooler --limit 1 | cut -d ' ' -f 3- | cut -c 1-200))"
  fi
  sleep 2
  kept "$C" SS2 "$id"
  survives "$C" "$D2"
  if [ "$PERM" = user ]; then chown "$U:" "$I2"; fi
  chmod 0750 "$I2"
  wait_until 15 test -f "$I2/perm.txt" || true
  sleep 0.5
  delivered_once "$C, then writable again" SS2 "$id" perm.txt "$T/perm.txt"
  owner=$(stat -c %U "$I2/perm.txt" 2>/dev/null || echo none)
  [ "$owner" = "$U" ] || echo "# note: perm.txt is owned by $owner"
  kill -TERM "$D2"; wait "$D2" || true
else
  skip "$C: no user $U (useradd failed) or no setpriv"
fi

echo "# ${SECONDS}s"
# ---- 4. site.db write-locked by another program ----
C="site.db locked"
printf 'before the lock\n' > "$T/prelock.txt"
pre=$(forge "$F" "$T/prelock.txt" name=prelock.txt); drop "$pre" "$R"
wait_until 10 test -f "$I/prelock.txt" || fail "$C: the pair before the lock was not delivered"
python3 - "$T/SS1/site.db" "$T/locked.flag" 12 <<'PY' &
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute('BEGIN EXCLUSIVE')
open(sys.argv[2], 'w').close()
time.sleep(float(sys.argv[3]))
con.execute('COMMIT')
PY
LOCKER=$!
wait_until 30 test -f "$T/locked.flag" || fail "$C: the python3 locker did not get the lock"
log_lines=$(wc -l < "$T/SS1/logs/despool.log") lock_at=$(date +%T.%3N)
printf 'while site.db is locked\n' > "$T/locked.txt"
id=$(forge "$F" "$T/locked.txt" name=locked.txt); drop "$id" "$R"
sleep 3 # the daemon has seen the pair and is stuck on the lock
if alive "$LOCKER"; then
  if [ ! -e "$I/locked.txt" ] && [ "$(copies "$I" prelock.txt)" = 1 ]; then
    pass "$C: while locked nothing is delivered (or delivered again)"
  else
    bad "$C: while locked: locked.txt $([ -e "$I/locked.txt" ] && echo delivered || echo 'not delivered'), $(copies "$I" prelock.txt) copies of prelock.txt"
  fi
  kept "$C (while locked)" SS1 "$id"
else
  echo "# $C: the lock ended before the checks while locked could run (slow machine)"
fi
# The lock (12 s) outlasts the daemon's busy timeout (10 s): the scan fails.
in_log() { grep -q "could not finish a scan" "$T/SS1/logs/despool.log"; }
wait_until 15 eval 'in_log || ! alive "$LOCKER"' || true
alive "$LOCKER" || sleep 1
if in_log; then
  pass "$C: 4423 in despool.log ($(grep -a "could not finish a scan" "$T/SS1/logs/despool.log" | tail -n 1 | cut -c 1-160))"
else
  bad "$C: no 4423 ('could not finish a scan') in despool.log although site.db was locked for 12 s from $lock_at (busy timeout 10 s); despool.log since the lock: $(tail -n +$((log_lines + 1)) "$T/SS1/logs/despool.log" | grep -v STATMSG | sed -E 's/^(.*)  [$][$]<[^>]*><[0-9-]* ([0-9:.]+)[^>]*>.*/\2 \1/' | cut -c 1-110 | tr '\n' '|')"
fi
survives "$C" "$D1"
wait "$LOCKER" || bad "$C: the python3 locker failed"
wait_until 20 test -f "$I/locked.txt" || true
sleep 0.5
delivered_once "$C, then released" SS1 "$id" locked.txt "$T/locked.txt"
delivered_once "$C: the pair delivered before the lock" SS1 "$pre" prelock.txt "$T/prelock.txt"
survives "$C (after the lock)" "$D1"

echo "# ${SECONDS}s"
# ---- 5. logs not writable ----
C="logs not writable"
L=$T/SS1/logs
mkdir -p "$T/logsrc"
send_batch() { # TAG N: N pairs PS1 -> SS1 through the real sender
  local i
  rm -f "$T/logsrc"/*
  for i in $(seq 1 "$2"); do printf '%s %d\n' "$1" "$i" > "$T/logsrc/$1-$i.txt"; done
  "$S" -C "$T/PS1" send --to SS1 "$T/logsrc"/* >/dev/null
}
all_there() { local f; for f in "$T/logsrc"/*; do cmp -s "$f" "$I/$(basename "$f")" || return 1; done; }
# 5a. logs/ on a full filesystem (ENOSPC on every log write)
if small_fs "$L" 64; then
  dd if=/dev/zero of="$L/filler" bs=4k 2>/dev/null || true
  n00=$(status_count SS1 4400)
  send_batch full 20
  if wait_until 15 all_there; then
    pass "$C (logs/ full): all 20 pairs delivered"
  else
    bad "$C (logs/ full): only $(ls "$I" | grep -c '^full-' || true) of 20 pairs delivered"
  fi
  survives "$C (logs/ full)" "$D1"
  got=$(status_count SS1 4400)
  if [ "$got" -ge $((n00 + 20)) ]; then
    pass "$C (logs/ full): the 4400 messages are in site.db ($((got - n00)) new)"
  else
    bad "$C (logs/ full): only $((got - n00)) new 4400 messages in site.db, want 20"
  fi
  unmount "$L" || true
else
  skip "$C (logs/ full): cannot mount a small filesystem on $L"
fi
# 5b. logs/despool.log replaced by a directory (every reopen fails)
mv "$L/despool.log" "$T/despool.log.before"
mkdir "$L/despool.log"
db4400() { sqlite3 -readonly "$T/SS1/site.db" 'SELECT count(*) FROM status WHERE msg_id=4400'; }
n00=$(db4400)
send_batch dir 20
if wait_until 15 all_there; then
  pass "$C (despool.log is a directory): all 20 pairs delivered"
else
  bad "$C (despool.log is a directory): only $(ls "$I" | grep -c '^dir-' || true) of 20 pairs delivered"
fi
survives "$C (despool.log is a directory)" "$D1"
got=$(db4400)
if [ "$got" -ge $((n00 + 20)) ]; then
  pass "$C (despool.log is a directory): the 4400 messages are in site.db ($((got - n00)) new)"
else
  bad "$C (despool.log is a directory): only $((got - n00)) new 4400 messages in site.db, want 20"
fi
# EXTRA: reading the status messages does not need a writable log.
rc=0; out=$("$S" -C "$T/SS1" status --id 4400 2>&1 >/dev/null) || rc=$?
if [ "$rc" = 0 ]; then
  pass "EXTRA $C: 'sitespool status' works while despool.log cannot be opened"
else
  bad "EXTRA $C: 'sitespool status' fails while despool.log cannot be opened (exit $rc: $out)"
fi
# 5c. EXTRA: the log is writable again -> despool.log is written again.
rmdir "$L/despool.log"
send_batch again 40
wait_until 15 all_there || bad "$C (writable again): not all 40 pairs delivered"
last=$(ls "$T/logsrc" | tail -n 1)
lastid=$("$S" -C "$T/SS1" status --id 4400 --json | grep -F "incoming/$last\"" |
  python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["istr"][0])' 2>/dev/null || true)
if [ -n "$lastid" ] && [ -f "$L/despool.log" ] && grep -qF "$lastid" "$L/despool.log"; then
  pass "EXTRA $C: despool.log is written again once it can be"
else
  bad "EXTRA $C: despool.log not written again after it became writable ($([ -f "$L/despool.log" ] && echo "exists, $(wc -l < "$L/despool.log") lines, without $last's id" || echo 'not recreated'))"
fi
survives "$C (at the end)" "$D1"
stop_despooler "$D1"
assert_eq "$DRC" 0 "exit status of the SS1 daemon"

echo "# ${SECONDS}s"
# INFO: starting while despool.log cannot be opened (not a check).
mksite SS4; rm -f "$T/SS4/logs/despool.log"; mkdir "$T/SS4/logs/despool.log"
rc=0; out=$("$S" -C "$T/SS4" despool --once 2>&1) || rc=$?
echo "# info: despool --once with despool.log a directory: exit $rc: $(echo "$out" | head -n 2 | tr '\n' ' ')"

if [ "$NFAIL" -gt 0 ]; then
  printf '  failed: %s\n' "${FAILED[@]}" >&2
  fail "$NFAIL check(s) failed"
fi
