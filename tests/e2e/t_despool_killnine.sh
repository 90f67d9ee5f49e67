#!/usr/bin/env bash
# Exactly once under kill -9: 1,000 small pairs in SS1's receive, the
# despooler (daemon and --once, alternately) killed with SIGKILL at random
# moments and restarted until receive is empty; then every payload must be
# in incoming exactly once, under its own name, with nothing left over, and
# the ledger must hold exactly 1,000 deliveries.  KILLNINE_BUNDLE=K makes
# the sender pack the files into bundles of K (t_despool_killnine_bundles.sh):
# then every member is delivered exactly once.  KILLNINE_SEALED=1 seals
# every package to SS1 (t_sealed_killnine.sh); otherwise they are not.
. "$(dirname "$0")/lib.sh"
N=${KILLNINE_PAIRS:-1000}
B=${KILLNINE_BUNDLE:-1}
P=$(((N + B - 1) / B)) # pairs
SEAL=no; [ "${KILLNINE_SEALED:-0}" = 1 ] && SEAL=yes
# batch_max = 50 (a site.conf setting; default 256) puts more batch
# commits, renames and removals inside the kill windows.
mksite PS1 "bundle_max_files = $B" "seal = $SEAL"; mksite SS1 "batch_max = ${KILLNINE_BATCH:-50}"
pair PS1 SS1
# The sender seals only to a key it trusts: SS1's, from PS1's hman.box.
[ "$SEAL" = no ] || despool_once PS1 >/dev/null
mkdir "$T/src"
for i in $(seq 1 "$N"); do
  printf 'seq %d %s\n' "$i" "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$T/src/p$i.txt"
done
"$S" -C "$T/PS1" send --to SS1 "$T/src"/* >/dev/null
R=$(receive SS1); I=$(incoming SS1)
assert_eq "$(find "$R" -name '*.ins' | wc -l)" "$P" "$P instructions in receive"
assert_eq "$(find "$R" -name '*.pck' | wc -l)" "$P" "$P packages in receive"
assert_eq "$(grep -l ' enc=[0-9A-F]\{16\} seal=[0-9a-f]\{64\}$' "$R"/*.ins | wc -l)" "$([ "$SEAL" = yes ] && echo "$P" || echo 0)" \
  "sealed instructions (seal = $SEAL)"
pass "$N files in $P pairs queued and delivered into SS1's receive"

left() { find "$R" -maxdepth 1 -name '*.ins' | wc -l; }
kills=0 midway=0 round=0 prev=$P window=30
while [ "$(left)" -gt 0 ]; do
  round=$((round + 1))
  [ "$round" -le 400 ] || fail "receive not empty after 400 rounds"
  if [ $((round % 2)) = 1 ]; then
    "$S" -C "$T/SS1" despool >>"$T/daemon.out" 2>&1 &
  else
    "$S" -C "$T/SS1" despool --once >>"$T/once.out" 2>&1 &
  fi
  pid=$!
  # A random moment within the window; the window starts at 30 ms (a drain
  # of all pairs takes a few hundred ms on a fast build, so a wider start
  # let it finish in 4 rounds, too few kills) and widens whenever a round
  # made no progress, so slow builds (sanitizers) are killed mid-work too.
  delay=$((10 + RANDOM % window))
  sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
  if kill -KILL "$pid" 2>/dev/null; then
    kills=$((kills + 1))
  fi
  wait "$pid" 2>/dev/null || true
  now=$(left)
  # Killed while it was working through receive (some delivered, some left).
  if [ "$now" -gt 0 ] && [ "$now" -lt "$prev" ]; then midway=$((midway + 1)); fi
  # Gently: in steps of 100 ms a sanitizer build went from "killed during
  # start-up" straight to "one round drains everything" (1 midway kill).
  if [ "$now" -eq "$prev" ] && [ "$window" -lt 4000 ]; then window=$((window + 40)); fi
  prev=$now; [ -z "${KN_DEBUG:-}" ] || echo "# round $round left $now"
done
echo "# $round rounds, $kills SIGKILLs, $midway of them in the middle of the work"
[ "$kills" -ge 5 ] || fail "only $kills kills landed; the test did not test anything"
[ "$midway" -ge 2 ] || fail "only $midway kills landed in the middle of the work"

# One clean run: finishes anything staged but not yet published.
despool_once SS1 >/dev/null

# Every payload exactly once, by name and by content.
assert_eq "$(count_all "$R")" 0 "receive empty"
assert_eq "$(count_all "$(rejected SS1)")" 0 "nothing rejected"
# The despooler's own temporary files (staging in incoming, receive) must
# all be gone.  Not the outbox: a kill while a receipt is being packed for
# PS1 leaves the packer's temporary file there, which the sender's tidy
# removes after a day like any packer's (a live packer may be writing it).
leftovers=$(find "$T/SS1/inboxes" -path "$T/SS1/inboxes/schedule.box" -prune -o \
  \( -name '.sitespool-*' -o -name '*.tmp' \) -print | head -n 5)
[ -z "$leftovers" ] || fail "temporary files left: $leftovers"
assert_eq "$(count_all "$I")" "$N" "files in incoming"
python3 - "$T/src" "$I" <<'PY' || fail "incoming does not hold every payload exactly once"
import collections, os, sys
src, inc = sys.argv[1], sys.argv[2]
want = {n: open(os.path.join(src, n), 'rb').read() for n in os.listdir(src)}
got = {n: open(os.path.join(inc, n), 'rb').read() for n in os.listdir(inc)}
extra = sorted(set(got) - set(want))
missing = sorted(set(want) - set(got))
if extra or missing:
    print("extra names:", extra[:10], "missing names:", missing[:10]); sys.exit(1)
bad = [n for n in want if got[n] != want[n]]
if bad:
    print("content differs:", bad[:10]); sys.exit(1)
dups = [c for c, k in collections.Counter(got.values()).items() if k > 1]
if dups:
    print("duplicate contents:", dups[:3]); sys.exit(1)
PY
pass "all $N payloads in incoming exactly once, under their own names, no leftovers"
assert_eq "$(ledger_count SS1)" "$P" "ledger rows (one per pair)"
# Delivered paths: single files in ledger, bundle members in ledger_files.
assert_eq "$(sqlite3 -readonly "$T/SS1/site.db" "SELECT count(DISTINCT path) FROM (
  SELECT path FROM ledger WHERE outcome='delivered' AND id NOT IN (SELECT id FROM ledger_files)
  UNION ALL SELECT path FROM ledger_files)")" "$N" "distinct delivered paths in the ledger"
assert_eq "$(status_count SS1 4400)" "$N" "4400 messages (stored with the ledger rows)"
echo "# $(grep -c 'delivered before a restart' "$T/SS1/logs/despool.log" || true) leftover pairs of" \
  "delivered instructions removed after a restart;" \
  "$(grep -c 'interrupted by a restart' "$T/SS1/logs/despool.log" || true) deliveries finished after a restart"
# Nothing was sent twice: finishing an interrupted batch is no replay.
assert_eq "$(status_count SS1 4402)" 0 "4402 (replay) warnings after kills, where nothing was resent"
pass "ledger holds exactly $N deliveries after $kills SIGKILLs"
assert_eq "$(find "$T/SS1/inboxes/despoolr.box/consumed" -mindepth 1 | wc -l)" 0 \
  "consumed/ emptied (leftovers of killed runs removed at the next start)"
assert_eq "$(find "$R" -mindepth 1 | wc -l)" 0 "receive empty"
