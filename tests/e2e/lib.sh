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
  "$S" -C "$T/$1" key export -o "$(hman "$2")/$1.pub" 2>/dev/null
  "$S" -C "$T/$2" key export -o "$(hman "$1")/$2.pub" 2>/dev/null
}
# pair A B: peers both ways with keys exchanged.
pair() { peer "$1" "$2"; peer "$2" "$1"; exchange "$1" "$2"; }
despool_once() { "$S" -C "$T/$1" despool --once; }
# status_count SITE ID: how many status messages with that id are stored.
status_count() { "$S" -C "$T/$1" status --id "$2" --json | wc -l; }
status_text() { "$S" -C "$T/$1" status --id "$2"; }
