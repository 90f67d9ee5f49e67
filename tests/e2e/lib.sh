# lib.sh - shared helpers for the end-to-end tests (sourced by t_*.sh).
# Each test gets a fresh temporary folder $T with real site trees made by
# the real sitespool binary ($SITESPOOL, set by ctest).
set -euo pipefail
: "${SITESPOOL:?run through ctest, or set SITESPOOL to the sitespool binary}"
S=$SITESPOOL
T=$(mktemp -d "${TMPDIR:-/tmp}/sitespool-e2e.XXXXXX")
DAEMONS=()
cleanup() {
  local pid
  for pid in "${DAEMONS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${DAEMONS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok - $*"; }
assert_eq() { [ "$1" = "$2" ] || fail "${3:-values differ}: expected '$2', got '$1'"; }
assert_file() { [ -f "$1" ] || fail "missing file $1"; }
assert_no_file() { [ ! -e "$1" ] || fail "unexpected file $1"; }
# Files in a folder, without dot-names.
count_files() { find "$1" -maxdepth 1 -type f ! -name '.*' | wc -l; }

# mksite CODE [setting lines...]: creates $T/CODE and applies settings.
mksite() {
  local code=$1; shift
  "$S" -C "$T/$code" init --site "$code" >/dev/null
  local line key
  for line in "$@"; do
    key=${line%%=*}; key=${key// /}
    sed -i "s|^$key = .*|$line|" "$T/$code/site.conf"
    grep -q "^$line\$" "$T/$code/site.conf" || fail "setting $line not applied"
  done
}
receive() { echo "$T/$1/inboxes/despoolr.box/receive"; }
rejected() { echo "$T/$1/inboxes/despoolr.box/rejected"; }
incoming() { echo "$T/$1/inboxes/${2:-replmgr.box}/incoming"; }
hman() { echo "$T/$1/inboxes/hman.box"; }
# peer A B: A delivers to B (no keys exchanged).
peer() { "$S" -C "$T/$1" peer add "$2" --inbox "$(receive "$2")" >/dev/null; }
# exchange A B: the manual way, both directions (export, drop into hman.box).
exchange() {
  "$S" -C "$T/$1" key export -o "$(hman "$2")/$1.pub" >/dev/null 2>&1
  "$S" -C "$T/$2" key export -o "$(hman "$1")/$2.pub" >/dev/null 2>&1
}
# pair A B: peers both ways with keys exchanged.
pair() { peer "$1" "$2"; peer "$2" "$1"; exchange "$1" "$2"; }
despool_once() { "$S" -C "$T/$1" despool --once; }
# status_count SITE ID: how many status messages with that id are stored.
status_count() { "$S" -C "$T/$1" status --id "$2" --json | wc -l; }
status_text() { "$S" -C "$T/$1" status --id "$2"; }

# ---- sender helpers (appended for the t_sender_*.sh scripts) ----
# outbox A B: where A queues pairs for B.
outbox() { echo "$T/$1/inboxes/schedule.box/outbox/$2"; }
# tc_field FILE KEY: value of KEY in the fields line of an instruction
# (signed: the trusted comment; unsigned: the single line).
tc_field() {
  sed -n -e '/^sitespool\/1 /p' -e 's/^trusted comment: //p' "$1" |
    tr ' ' '\n' | sed -n "s/^$2=//p"
}
# verify_pair PUB PCK INS: stock minisign check; prints minisign's output.
verify_pair() { minisign -V -p "$1" -m "$2" -x "$3"; }
# check_pairs DIR PUB: every non-dot file in DIR is part of a complete pair
# named <32 hex>.pck/.ins (or <seq>-<32 hex> in an outbox) that stock
# minisign verifies.  Prints the number of pairs.
check_pairs() {
  local dir=$1 pub=$2 f base n=0
  for f in $(find "$dir" -maxdepth 1 -type f ! -name '.*' -printf '%f\n' | sort); do
    [[ $f =~ ^([0-9]{12}-)?[0-9a-f]{32}\.(pck|ins)$ ]] || fail "unexpected name $dir/$f"
    base=${f%.*}
    [ -f "$dir/$base.pck" ] || fail "$dir/$f has no package"
    [ -f "$dir/$base.ins" ] || fail "$dir/$f has no instruction"
    if [ "${f##*.}" = ins ]; then
      verify_pair "$pub" "$dir/$base.pck" "$dir/$base.ins" >/dev/null ||
        fail "minisign rejects $dir/$base"
      n=$((n + 1))
    fi
  done
  echo "$n"
}
# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
  local limit=$1 i; shift
  for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}

# ---- helpers for the despooler tests (t_despool_*.sh) ----
# count_all DIR: every entry, dot-names included; 0 if DIR does not exist.
count_all() { if [ -d "$1" ]; then find "$1" -mindepth 1 -maxdepth 1 | wc -l; else echo 0; fi; }
# new_id: a fresh instruction id (32 lowercase hex digits).
new_id() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }
# zpack IN OUT: OUT is the zlib stream of IN, made by python3 (not sitespool).
zpack() {
  python3 -c 'import sys, zlib; open(sys.argv[2], "wb").write(zlib.compress(open(sys.argv[1], "rb").read()))' "$1" "$2"
}
# fields ID [key=value...]: the trusted comment of an instruction PS1 -> SS1
# (dest replmgr.box, name x, size 0, seq 1, expiring in an hour); each
# key=value argument replaces one field's (already encoded) value.
fields() {
  local id=$1; shift
  local now; now=$(date +%s)
  local -A f=([id]=$id [from]=PS1 [to]=SS1 [type]=data [dest]=replmgr.box [name]=x [size]=0
              [zip]=zlib [seq]=1 [created]=$now [expires]=$((now + 3600)))
  local kv k out="sitespool/1"
  for kv in "$@"; do f[${kv%%=*}]=${kv#*=}; done
  for k in id from to type dest name size zip seq created expires; do out+=" $k=${f[$k]}"; done
  echo "$out"
}
# sign_ins SIGNER DIR ID COMMENT: stock minisign signs DIR/ID.pck with the
# SIGNER site's secret key into DIR/ID.ins with COMMENT as trusted comment.
sign_ins() {
  minisign -S -s "$T/$1/keys/$1.key" -m "$2/$3.pck" -x "$2/$3.ins" -t "$4" </dev/null >/dev/null ||
    fail "minisign could not sign $2/$3.pck"
}
# forge DIR PAYLOAD [key=value...]: a pair PS1 -> SS1 for PAYLOAD made with
# python3's zlib and stock minisign in DIR (size = PAYLOAD's size unless
# overridden); prints the id.
forge() {
  local dir=$1 payload=$2; shift 2
  local id; id=$(new_id)
  zpack "$payload" "$dir/$id.pck"
  sign_ins PS1 "$dir" "$id" "$(fields "$id" "size=$(stat -c %s "$payload")" "$@")"
  echo "$id"
}
# ledger_count SITE: rows in the delivery ledger of SITE's site.db.
ledger_count() { sqlite3 -readonly "$T/$1/site.db" 'SELECT count(*) FROM ledger'; }
# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s; fails after SECONDS.
wait_until() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}
# start_despooler SITE: runs the despooler daemon in the background; its pid
# is left in DPID (and registered for cleanup).  Returns once it has started
# (status 4401 stored).
start_despooler() {
  local ss_site=$1 ss_before
  ss_before=$(status_count "$1" 4401)
  "$S" -C "$T/$1" despool >>"$T/$1.despool.out" 2>&1 &
  DPID=$!
  DAEMONS+=("$DPID")
  wait_until 20 eval '[ "$(status_count "$ss_site" 4401)" -gt "$ss_before" ]' ||
    fail "the despooler of $1 did not start"
}
# stop_despooler PID: SIGTERM, then its exit status in DRC.  A daemon that
# is already gone is a failure, told with the end of its output.
stop_despooler() {
  if ! kill -0 "$1" 2>/dev/null; then
    DRC=0; wait "$1" || DRC=$?
    fail "despooler $1 exited before it was told to stop (exit $DRC): $(tail -n 5 "$T"/*.despool.out 2>/dev/null)"
  fi
  kill -TERM "$1"
  DRC=0
  wait "$1" || DRC=$?
}

# ---- helpers for the documentation tests (t_manpages.sh, t_completion.sh) ----
# help_commands: every command 'sitespool --help' lists, one per line (the
# first column of its commands table; "sign FILE / verify FILE" names two).
help_commands() {
  "$S" --help | awk '/^commands:/ { f = 1; next } f && /^$/ { exit }
    f { sub(/^ +/, ""); sub(/  .*/, ""); n = split($0, w, " "); print w[1]
        for (i = 2; i < n; i++) if (w[i] == "/") print w[i + 1] }'
}
# help_subcommands GROUP: the subcommands of key or peer that the usage
# lines of 'sitespool GROUP --help' name.
help_subcommands() {
  "$S" -C "$T" "$1" --help | grep -E '^(usage:| +sitespool)' |
    grep -oE "(^| )$1 [a-z][a-z-]*" | awk '{ print $2 }' | sort -u
}
