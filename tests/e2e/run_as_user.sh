#!/usr/bin/env bash
# run_as_user.sh BUILD_DIR - the end-to-end suite (tests/e2e/t_*.sh) as a
# non-root user (issue 13: running every test as root hides permission
# mistakes).  Run as root; tools/test calls it after the normal build's
# ctest.
#
#  - makes sure the system user $SS_TEST_USER (default sitespoolci) exists:
#    no home, no login shell, no supplementary groups;
#  - gives it a private work folder /tmp/sitespool-nonroot.XXXXXX/{tmp,home}
#    (TMPDIR and HOME, mode 0700, owned by the user); the tests' $T folders
#    are made there;
#  - checks that the user can reach BUILD_DIR/tools/sitespool and the
#    repository (every folder on the way must be searchable by others);
#    where it cannot, the binary and the repository's files (without .git
#    and build folders) are copied into the work folder and it says so;
#  - runs every tests/e2e/t_*.sh as that user (setpriv --reuid --regid
#    --init-groups, clean environment with SITESPOOL, SS_SOURCE_DIR,
#    SS_SANITIZE, TMPDIR, HOME), $SS_JOBS (default 2) at a time, each under
#    a timeout of $SS_TEST_TIMEOUT seconds (default 600);
#  - prints one line per script (ok / SKIP / FAIL, with the SKIP lines the
#    script printed, and the end of its output when it failed) and exits 1
#    if any script failed or timed out.
#
# Scripts that need root for real (network namespaces and sshd, mounts,
# other users) print "SKIP: ..." for those parts when not root.  Logs are kept in the work
# folder when something failed (KEEP=1: always), removed otherwise.
# Optional arguments after BUILD_DIR: script names to run instead of all.
set -euo pipefail

die() { echo "run_as_user.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: tests/e2e/run_as_user.sh BUILD_DIR [t_NAME.sh...]"
[ "$(id -u)" = 0 ] || die "must run as root (it creates the test user and drops to it)"
command -v setpriv >/dev/null || die "setpriv not found (Debian: util-linux)"

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "$1" && pwd) || die "no build folder $1"
shift
BIN=$BUILD/tools/sitespool
[ -x "$BIN" ] || die "$BIN not found: build first (cmake --build $BUILD)"
RUSER=${SS_TEST_USER:-sitespoolci}
JOBS=${SS_JOBS:-2}
LIMIT=${SS_TEST_TIMEOUT:-600}
SANITIZE=$(sed -n 's/^SITESPOOL_SANITIZE:BOOL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)

# ---- the user ----
if ! id -u "$RUSER" >/dev/null 2>&1; then
  # A concurrent run may create it at the same moment: only fail if it
  # still does not exist afterwards.
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
          --shell /usr/sbin/nologin --comment "sitespool tests (tests/e2e/run_as_user.sh)" \
          "$RUSER" 2>/dev/null || id -u "$RUSER" >/dev/null 2>&1 ||
    die "cannot create user $RUSER"
fi
RUID=$(id -u "$RUSER"); RGID=$(id -g "$RUSER")
[ "$RUID" != 0 ] && [ "$RGID" != 0 ] || die "user $RUSER has uid or gid 0"
for g in $(id -G "$RUSER"); do
  [ "$g" != 0 ] || die "user $RUSER is in group root"
done

# ---- its work folder ----
WORK=$(mktemp -d /tmp/sitespool-nonroot.XXXXXX)
chmod 0755 "$WORK"
mkdir "$WORK/tmp" "$WORK/home" "$WORK/logs"
chown "$RUSER:" "$WORK/tmp" "$WORK/home"
chmod 0700 "$WORK/tmp" "$WORK/home"
FAILED=0
finish() {
  local f
  # Interrupted: TERM to the timeout(1) of every script still running (it
  # passes it on to the script's process group).
  for f in "$WORK"/logs/*.pid; do
    [ -e "$f" ] && [ ! -e "${f%.pid}.rc" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$FAILED" = 0 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "logs kept in $WORK/logs"; fi
}
trap finish EXIT
trap 'echo "run_as_user.sh: interrupted" >&2; exit 130' INT TERM

# USER_CMD: the command prefix that runs something as the test user in a
# clean environment (rebuilt when BIN or SRC change).
user_cmd() {
  USER_CMD=(setpriv --reuid="$RUID" --regid="$RGID" --init-groups
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        HOME="$WORK/home" TMPDIR="$WORK/tmp" USER="$RUSER" LOGNAME="$RUSER" LANG=C.UTF-8
        SITESPOOL="$BIN" SS_SOURCE_DIR="$SRC" SS_SANITIZE="$SANITIZE")
  [ -z "${ASAN_OPTIONS:-}" ] || USER_CMD+=(ASAN_OPTIONS="$ASAN_OPTIONS")
  [ -z "${UBSAN_OPTIONS:-}" ] || USER_CMD+=(UBSAN_OPTIONS="$UBSAN_OPTIONS")
  [ -z "${KEEP:-}" ] || USER_CMD+=(KEEP="$KEEP")
}
as_user() { (cd "$WORK/tmp" && "${USER_CMD[@]}" "$@"); }

# ---- can the user reach the binary and the repository? ----
# (reading the tests, sourcing lib.sh, README.md, doc/ and dist/ for the
# documentation tests, checking .ci/run and tools/ for t_readme.sh)
reachable() {
  user_cmd
  as_user sh -c 'test -x "$SITESPOOL" && "$SITESPOOL" --version >/dev/null 2>&1' 2>/dev/null
}
if ! reachable; then
  echo "run_as_user.sh: $RUSER cannot run $BIN (a folder on the way is not searchable by others): copying it to $WORK/bin"
  mkdir "$WORK/bin"
  cp "$BIN" "$WORK/bin/sitespool"
  chmod 0755 "$WORK/bin" "$WORK/bin/sitespool"
  BIN=$WORK/bin/sitespool
  reachable || die "$RUSER cannot run $BIN either"
fi
if ! as_user sh -c 'test -r "$SS_SOURCE_DIR/tests/e2e/lib.sh" && test -r "$SS_SOURCE_DIR/README.md" && test -x "$SS_SOURCE_DIR/tools"' 2>/dev/null; then
  echo "run_as_user.sh: $RUSER cannot read $SRC: copying the repository's files (no .git, no build folders) to $WORK/src"
  mkdir "$WORK/src"
  tar -C "$SRC" --exclude=./.git --exclude='./build*' -cf - . | tar -C "$WORK/src" -xf -
  chmod -R go+rX "$WORK/src"
  chmod 0755 "$WORK/src"
  SRC=$WORK/src
  user_cmd
fi

# ---- the scripts ----
if [ $# -gt 0 ]; then
  SCRIPTS=()
  for s in "$@"; do s=${s##*/}; [ -f "$SRC/tests/e2e/$s" ] || die "no script tests/e2e/$s"; SCRIPTS+=("$s"); done
else
  mapfile -t SCRIPTS < <(cd "$SRC/tests/e2e" && ls t_*.sh)
fi
[ ${#SCRIPTS[@]} -gt 0 ] || die "no tests/e2e/t_*.sh scripts found"

echo "== end-to-end suite as user $RUSER (uid $RUID), ${#SCRIPTS[@]} scripts, $JOBS at a time, ${LIMIT}s limit each =="

# run_one SCRIPT: one script as the user; its output in logs/SCRIPT.log,
# its exit status and seconds in logs/SCRIPT.rc.  timeout(1) puts the test
# in its own process group and signals that whole group on expiry.
run_one() {
  local s=$1 start=$SECONDS rc=0 tp
  cd "$WORK/tmp"
  timeout -k 15 "$LIMIT" "${USER_CMD[@]}" bash "$SRC/tests/e2e/$s" \
    </dev/null >"$WORK/logs/$s.log" 2>&1 &
  tp=$!
  echo "$tp" >"$WORK/logs/$s.pid"
  wait "$tp" || rc=$?
  # Whatever the script left running in its process group (a daemon it did
  # not stop; zombies waiting for their reaper do not count) is killed, and
  # said.
  local left
  left=$(ps -eo pid=,pgid=,stat=,args= | awk -v g="$tp" '$2 == g && $3 !~ /^Z/ { $2 = $3 = ""; print }')
  if [ -n "$left" ]; then
    echo "run_as_user.sh: left running, killed: $(echo "$left" | tr -s ' ' | tr '\n' ';')" >>"$WORK/logs/$s.log"
    kill -KILL -- "-$tp" 2>/dev/null || true
  fi
  echo "$rc $((SECONDS - start))" >"$WORK/logs/$s.rc"
}

# report SCRIPT: its one line (and, when it failed, the end of its output).
report() {
  local s=$1 rc secs skips oks
  read -r rc secs <"$WORK/logs/$s.rc"
  # SKIP lines (and the older "skip - ..." form), joined with " | "
  skips=$(grep -iE '^skip' "$WORK/logs/$s.log" | awk 'NR > 1 { printf " | " } { printf "%s", $0 }' || true)
  oks=$(grep -c '^ok' "$WORK/logs/$s.log" || true)
  grep -q '^run_as_user.sh: left running' "$WORK/logs/$s.log" && skips+="${skips:+ | }processes left running, killed"
  if [ "$rc" = 0 ]; then
    if [ -n "$skips" ] && [ "$oks" = 0 ]; then
      printf 'SKIP  %-34s %4ss  %s\n' "$s" "$secs" "$skips"
    elif [ -n "$skips" ]; then
      printf 'ok    %-34s %4ss  (%s ok; %s)\n' "$s" "$secs" "$oks" "$skips"
    else
      printf 'ok    %-34s %4ss  (%s ok)\n' "$s" "$secs" "$oks"
    fi
  else
    FAILED=$((FAILED + 1))
    if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ "$secs" -ge "$LIMIT" ]; }; then
      printf 'FAIL  %-34s %4ss  timed out after %ss\n' "$s" "$secs" "$LIMIT"
    else
      printf 'FAIL  %-34s %4ss  exit %s\n' "$s" "$secs" "$rc"
    fi
    tail -n 25 "$WORK/logs/$s.log" | sed 's/^/    | /'
  fi
}

T0=$SECONDS
declare -A JOB_OF=()
for s in "${SCRIPTS[@]}"; do
  while [ ${#JOB_OF[@]} -ge "$JOBS" ]; do
    done_pid=
    wait -n -p done_pid "${!JOB_OF[@]}" || true
    [ -n "$done_pid" ] || continue
    report "${JOB_OF[$done_pid]}"; unset "JOB_OF[$done_pid]"
  done
  run_one "$s" &
  JOB_OF[$!]=$s
done
while [ ${#JOB_OF[@]} -gt 0 ]; do
  done_pid=
  wait -n -p done_pid "${!JOB_OF[@]}" || true
  [ -n "$done_pid" ] || continue
  report "${JOB_OF[$done_pid]}"; unset "JOB_OF[$done_pid]"
done

if [ "$FAILED" -gt 0 ]; then
  echo "run_as_user.sh: $FAILED of ${#SCRIPTS[@]} scripts FAILED as user $RUSER ($((SECONDS - T0))s)"
  exit 1
fi
echo "run_as_user.sh: all ${#SCRIPTS[@]} scripts passed as user $RUSER ($((SECONDS - T0))s)"
