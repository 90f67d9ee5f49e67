#!/usr/bin/env bash
# The LDAP key directory's cost (issue 11's benchmark): look-up latency and
# the despooler's rate when every sender's key has to be found in the
# directory first, beside the same work with every key already in the
# keystore, in the same run.  Not a timed test (ctest does not run it): it
# prints figures, then a summary table.  Usage: tests/bench/ldap.sh [RUNS]
#
# Set-up (tests/e2e/lib.sh and lib_ldap.sh): a real slapd on the loopback
# (plain ldap://, a bind DN per site), 20 sender sites B01..B20, each with
# its record published (`key publish`), each sending NFILES small files
# (bundle_max_files = 1: one pair per file) to R01, into a stash folder
# (sent once; every run starts from a copy of the same pairs).  Each run
# makes a fresh receiver R01 with the directory configured, copies the
# 2,000 pairs into its receive inbox (untimed, then sync) and times
# `despool --once`:
#   directory  an empty keystore: each site's key is found in the directory
#              the first time (a look-up per site; slapd's log counts them)
#   keystore   the 20 keys imported first (`key import`), so no look-up
# The two cases alternate, RUNS times each (default 3); figures are medians.
# Target: the directory case's rate within 10% of the keystore case's.
#
# Look-up latency: `key list --directory` at a site with the 20 senders as
# peers (one search per peer, by slapd's log) against `key list` at the
# same site: the difference per search, median of RUNS*3 runs; beside it
# ldapsearch of one record (a process start included) as the reference.
#
# Environment: BENCH_RUNS (also the first argument), BENCH_SITES [20],
# BENCH_FILES per site [100], BENCH_FILE_BYTES [1024], BENCH_DIR (work
# folder parent) [$TMPDIR or /tmp], SITESPOOL (the binary; default: build/
# is built and used).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-${BENCH_RUNS:-3}}
NSITES=${BENCH_SITES:-20}
NFILES=${BENCH_FILES:-100}
FILE_BYTES=${BENCH_FILE_BYTES:-1024}
if [ -z "${SITESPOOL:-}" ]; then
  [ -f build/CMakeCache.txt ] || cmake -S . -B build >/dev/null
  cmake --build build -j2 >/dev/null 2>&1 || { cmake --build build 2>&1 | tail -20; echo "build failed"; exit 1; }
  SITESPOOL=$PWD/build/tools/sitespool
fi
export SITESPOOL
[ -z "${BENCH_DIR:-}" ] || export TMPDIR=$BENCH_DIR
. "$PWD/tests/e2e/lib.sh"
. "$PWD/tests/e2e/lib_ldap.sh"
ldap_env_check
ldap_implemented || { echo "SKIP: $SITESPOOL has no LDAP key directory"; exit 0; }
cp "$SITESPOOL" "$T/sitespool"; S=$T/sitespool # a rebuild during the run changes nothing

median() { tr ' ' '\n' | awk NF | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.3f", a / b}'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.4f", b - a}'; }
per_s() { awk -v n="$1" -v t="$2" 'BEGIN {if (t == "" || t + 0 == 0) print ""; else printf "%.1f", n / t}'; }
ms() { awk -v t="$1" 'BEGIN {printf "%.2f", t * 1000}'; }
now() { date +%s.%N; }
section() { echo "-- $* (at ${SECONDS} s)" >&2; }
declare -A SAMPLE
add() { SAMPLE[$1]+="$2 "; }
med() { echo "${SAMPLE[$1]:-}" | median; }

SITES=()
for ((i = 1; i <= NSITES; i++)); do SITES+=("$(printf 'B%02d' "$i")"); done
TOTAL=$((NSITES * NFILES))

# ---- slapd, senders, the pairs ----------------------------------------------------
section "set-up: slapd, $NSITES senders, $TOTAL pairs"
ldap_start "${SITES[@]}" R01 LAT
mkdir -p "$T/stash" "$T/keys"
for s in "${SITES[@]}"; do
  mksite "$s" "bundle_max_files = 1"
  ldap_site_conf "$s" ldap
  "$S" -C "$T/$s" key publish >/dev/null || fail "key publish from $s"
  "$S" -C "$T/$s" key export -o "$T/keys/$s.pub" >/dev/null 2>&1
  "$S" -C "$T/$s" peer add R01 --inbox "$T/stash" >/dev/null
  mkdir -p "$T/files/$s"
  python3 - "$T/files/$s" "$s" "$NFILES" "$FILE_BYTES" <<'PY'
import os, sys
d, site, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(1, n + 1):
    with open("%s/%s-f%04d" % (d, site, i), "wb") as f:
        f.write(os.urandom(size))
PY
  "$S" -C "$T/$s" send --to R01 "$T/files/$s"/* >/dev/null || fail "send from $s"
done
[ "$(pairs_in "$T/stash")" = "$TOTAL" ] || fail "expected $TOTAL pairs in the stash, found $(pairs_in "$T/stash")"
ldap_root_search '(objectClass=sitespoolSite)' dn | grep -c '^dn:' | grep -qx "$NSITES" || fail "not $NSITES records in the directory"

# receiver CASE: a fresh R01 ($T/R01, the directory configured; for the
# keystore case the senders' keys imported) with the pairs in receive.
receiver() {
  local s
  rm -rf "$T/R01"
  mksite R01
  ldap_site_conf R01 ldap "log_max_bytes = 268435456"   # one log file: lookup_latencies reads it whole
  if [ "$1" = keystore ]; then
    for s in "${SITES[@]}"; do "$S" -C "$T/R01" key import "$T/keys/$s.pub" >/dev/null || fail "key import $s"; done
  fi
  cp "$T/stash"/*.pck "$(receive R01)/"
  cp "$T/stash"/*.ins "$(receive R01)/"
}
# lookup_latencies LOGDIR: for each site whose key came from the directory,
# seconds from the despooler's first "Verifying signature ... from site S"
# (despool.log) to "Imported public key ... for site S from ldap://"
# (hman.log; each with its .lo_ when it was rotated): the look-up as the despooler made it (ms resolution), in
# the order of the imports (the first includes connect and bind).
lookup_latencies() {
  python3 - "$1/despool" "$1/hman" <<'PY'
import os, re, sys
def lines(base):  # a log passing log_max_bytes was renamed to .lo_
    for path in (base + ".lo_", base + ".log"):
        if os.path.exists(path):
            yield from open(path, errors="replace")
stamp = re.compile(r"<(\d\d)-(\d\d)-(\d{4}) (\d\d):(\d\d):(\d\d\.\d+)[+-]\d+>")
def t(line):
    m = stamp.search(line)
    return None if not m else int(m.group(4)) * 3600 + int(m.group(5)) * 60 + float(m.group(6))
first = {}
for line in lines(sys.argv[1]):
    m = re.match(r"Verifying signature for instruction \S+ from site (\S+) ", line)
    if m and m.group(1) not in first and t(line) is not None:
        first[m.group(1)] = t(line)
out = []
for line in lines(sys.argv[2]):
    m = re.match(r"Imported public key \S+ for site (\S+) from ldaps?://", line)
    if m and m.group(1) in first and t(line) is not None:
        out.append("%.4f" % (t(line) - first.pop(m.group(1))))
print(" ".join(out))
PY
}
# one_run CASE N: times despool --once at a fresh receiver.
one_run() {
  local t0 t1 n0 n1 got
  receiver "$1"
  sync
  n0=$(ldap_search_count)
  t0=$(now)
  "$S" -C "$T/R01" despool --once >"$T/despool.out" 2>&1 || fail "despool --once ($1): $(tail -3 "$T/despool.out")"
  t1=$(now)
  n1=$(ldap_search_count)
  got=$(count_files "$(incoming R01)")
  [ "$got" = "$TOTAL" ] || fail "$1 run $2: $got files delivered, expected $TOTAL: $(tail -3 "$T/despool.out")"
  add "$1.t" "$(secs "$t0" "$t1")"
  add "$1.searches" "$((n1 - n0))"
  if [ "$1" = directory ]; then
    local lat; lat=$(lookup_latencies "$T/R01/logs")
    [ -n "$lat" ] || fail "no look-up found in R01's logs (despool.log, hman.log)"
    add lookup "$lat"
    add lookup.first "${lat%% *}"
    add lookup.sum "$(echo "$lat" | tr ' ' '\n' | awk '{s += $1} END {printf "%.4f", s}')"
  fi
  echo "$1 run $2: $(secs "$t0" "$t1") s, $(per_s "$TOTAL" "$(secs "$t0" "$t1")") pairs/s, $((n1 - n0)) directory searches" >&2
}

echo "LDAP key directory: $TOTAL pairs from $NSITES sites ($NFILES x $FILE_BYTES bytes each, one pair per file), $(nproc) cores, $RUNS runs each (medians)"
echo "$("$SLAPD_BIN" -VV 2>&1 | head -1 | sed 's/^@(#) //; s/\$//g' | tr -s ' '), on $LDAP_URI; sitespool $SITESPOOL"
echo "work folder on $(df --output=source,fstype "$T" | tail -1 | tr -s ' '); load average $(cut -d' ' -f1-3 /proc/loadavg)"

section "despool: directory vs keystore"
for ((r = 1; r <= RUNS; r++)); do
  if ((r % 2)); then one_run directory "$r"; one_run keystore "$r"; else one_run keystore "$r"; one_run directory "$r"; fi
done
TD=$(med directory.t); TK=$(med keystore.t)
RD=$(per_s "$TOTAL" "$TD"); RK=$(per_s "$TOTAL" "$TK")
RATIO=$(ratio "$TK" "$TD")   # directory rate / keystore rate
echo "despool --once, keys found in the directory: $TD s (runs: ${SAMPLE[directory.t]% }) = $RD pairs/s; searches per run: ${SAMPLE[directory.searches]% }"
echo "despool --once, keys in the keystore:        $TK s (runs: ${SAMPLE[keystore.t]% }) = $RK pairs/s; searches per run: ${SAMPLE[keystore.searches]% }"
MET=$(awk -v r="$RATIO" 'BEGIN {print (r == "n/a") ? "?" : (r + 0 >= 0.9) ? "met" : "MISSED"}')
echo "directory / keystore rate: $RATIO (target >= 0.90: $MET); the directory's cost per batch of $TOTAL: $(awk -v a="$TD" -v b="$TK" 'BEGIN {printf "%.3f", a - b}') s"

# ---- look-up latency ------------------------------------------------------------------
section "look-up latency"
mksite LAT
ldap_site_conf LAT ldap
for s in "${SITES[@]}"; do "$S" -C "$T/LAT" peer add "$s" --inbox "$T/stash" >/dev/null; done
"$S" -C "$T/LAT" key list --directory >"$T/lat.out" 2>&1 || fail "key list --directory: $(tail -3 "$T/lat.out")"
for ((r = 1; r <= RUNS * 5; r++)); do
  n0=$(ldap_search_count)
  t0=$(now); "$S" -C "$T/LAT" key list --directory >/dev/null 2>&1; t1=$(now)
  n1=$(ldap_search_count)
  add list.dir "$(secs "$t0" "$t1")"; add list.searches "$((n1 - n0))"
  t0=$(now); "$S" -C "$T/LAT" key list >/dev/null 2>&1; t1=$(now)
  add list.plain "$(secs "$t0" "$t1")"
  t0=$(now); ldapsearch -x -LLL -H "$LDAP_URI" -b "$(ldap_site_dn B01)" -s base >/dev/null; t1=$(now)
  add ldapsearch "$(secs "$t0" "$t1")"
done
LD=$(med list.dir); LP=$(med list.plain); NS=$(med list.searches); LS=$(med ldapsearch)
PER=$(awk -v a="$LD" -v b="$LP" -v n="$NS" 'BEGIN {if (n + 0 == 0) print ""; else printf "%.6f", (a - b) / n}')
echo "key list --directory ($NSITES peers): $LD s, key list: $LP s, $NS searches per run: $(ms "${PER:-0}") ms per look-up (median of $((RUNS * 5)))"
LL=$(med lookup); LF=$(med lookup.first)
echo "look-up latency in the despooler (despool.log 'Verifying signature' -> hman.log 'Imported public key ... from ldap://', ms resolution): median $(ms "$LL") ms over $(echo "${SAMPLE[lookup]}" | wc -w) look-ups; the first of each run (connect + bind + search) $(ms "$LF") ms"
LSUM=$(med lookup.sum)
echo "the look-ups' own time per run (sum of the $NSITES latencies, median): $(ms "$LSUM") ms = $(awk -v a="$LSUM" -v b="$TK" 'BEGIN {printf "%.1f", 100 * a / b}')% of the keystore run's $TK s (the rate ratio it implies: $(ratio "$TK" "$(awk -v a="$LSUM" -v b="$TK" 'BEGIN {print a + b}')"); the measured ratio above also carries the machine's run-to-run noise)"
echo "reference: ldapsearch of one record (process start, connect, search): $(ms "$LS") ms"

echo
echo "summary ($RUNS runs, medians; $((SECONDS / 60)) min $((SECONDS % 60)) s in all):"
printf '%s\n' "case|time|rate|searches|target" \
  "despool, $TOTAL pairs from $NSITES sites, keys in the keystore|$TK s|$RK pairs/s|$(med keystore.searches)|" \
  "despool, the same, each key found in the directory first|$TD s|$RD pairs/s|$(med directory.searches)|rate >= 0.90 x keystore: $RATIO, $MET" \
  "one look-up, in the despooler (despool.log -> hman.log)|$(ms "$LL") ms (first: $(ms "$LF") ms)||1 per site|" \
  "all $NSITES look-ups of one run (sum)|$(ms "$LSUM") ms||$NSITES|implied rate ratio $(ratio "$TK" "$(awk -v a="$LSUM" -v b="$TK" 'BEGIN {print a + b}')")" \
  "one look-up (key list --directory, per search)|$(ms "${PER:-0}") ms||$NS per run|" \
  "  (reference) ldapsearch of one record|$(ms "$LS") ms|||" | awk -F'|' '
  {for (i = 1; i <= NF; i++) {c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i)}; n = NR}
  END {for (r = 1; r <= n; r++) {line = ""; for (i = 1; i <= 5; i++) line = line sprintf("%-" w[i] "s", c[r, i]) (i < 5 ? " | " : ""); sub(/ +$/, "", line); print line}}'
