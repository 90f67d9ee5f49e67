#!/usr/bin/env bash
# Benchmarks of the sender and the despooler, each printed beside the
# machine limit measured in the same run and beside NNCP doing the same work
# on the same files (medians of RUNS runs, default 5; the backlog series
# runs once).  Not a timed test: it prints figures, then a summary table
# (figure, beside, ratio, target).  Usage: tests/bench/run.sh [RUNS]
#
# Work happens under build-bench/ (the repository's filesystem) unless
# BENCH_DIR names another folder on the disk to measure.  Environment:
#   BENCH_SETTLE=S        pause after the sync before each timed sitespool or
#                         NNCP step (default 0: figures as a daemon sees them
#                         in continuous operation, the previous run's files
#                         still being discarded by the device)
#   BENCH_LIMIT_SETTLE=S  pause before each disk-limit measurement and the
#                         large payload deliveries compared with it (default 6)
#   BENCH_NNCP=0          skip NNCP (installed with apt-get when missing)
#   BENCH_NEIGHBOUR=0     skip the despool beside a 3 GB unsynced writer
#   BENCH_BACKLOG=0       skip the 10k/50k/100k backlog series (slow)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
for try in 1 2 3 4 5; do # someone else may be rebuilding build-bench right now
  if cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-bench -j"$(nproc)" >/dev/null; then break; fi
  [ "$try" = 5 ] && { echo "build failed"; exit 1; }
  echo "build failed, retrying in 60 s" >&2; sleep 60
done
S=$PWD/build-bench/tools/sitespool
L=$PWD/build-bench/tests/bench_limits
. "$PWD/tests/bench/nncp.sh"
mkdir -p "${BENCH_DIR:-$PWD/build-bench}"
W=$(mktemp -d "${BENCH_DIR:-$PWD/build-bench}/run.XXXXXX")
NEIGHBOUR_PID=
trap '[ -n "$NEIGHBOUR_PID" ] && kill "$NEIGHBOUR_PID" 2>/dev/null; pkill -f "$W/" 2>/dev/null || true; rm -rf "$W"' EXIT

median() { tr ' ' '\n' | awk NF | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b}'; }
secs() { local t0=$1 t1=$2; awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'; }
rate() { awk -v n="$1" -v d="$(secs "$2" "$3")" 'BEGIN {printf "%.1f", n / d}'; } # rate COUNT T0 T1
now() { date +%s.%N; }
peak_rss_kib() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
count() { find "$1" -mindepth 1 -maxdepth 1 -name "${2:-*}" | wc -l; }
MB256=268.435456 # 256 MiB in MB

# Deleting the previous run's files costs the device work after rm returns
# (online discard), and ext4 skips inodes freed in the last seconds when it
# allocates new ones.  The machine limits start on a settled disk (and so do
# the large deliveries compared with the disk limit); the side-by-side
# figures by default do not, as in continuous operation.
settle() { sync; sleep "${BENCH_SETTLE:-0}"; }
settle_limit() { sync; sleep "${BENCH_LIMIT_SETTLE:-6}"; }

section() { echo "-- $* (at ${SECONDS} s)" >&2; }

# Summary rows: figure | value | beside | ratio | target
ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5"); }

# Bundles (several small files of one send in one package) are controlled
# by the sender site's bundle_max_files; 1 is one file per pair.  A build
# without the setting refuses a site.conf naming it, and a site.conf naming
# a setting twice is refused too: the line init wrote is replaced.
BUNDLE_OFF=
VARIANTS=(pairs)
unbundle() { # unbundle SITE: one file per pair
  if grep -q '^[[:space:]]*bundle_max_files[[:space:]]*=' "$1/site.conf"; then
    sed -i 's/^[[:space:]]*bundle_max_files[[:space:]]*=.*/bundle_max_files = 1/' "$1/site.conf"
  else echo "bundle_max_files = 1" >> "$1/site.conf"; fi
}
fresh_sites() { # fresh_sites DIR [pairs|bundled]: PS1 -> SS1 with keys exchanged
  rm -rf "$1"; mkdir -p "$1"
  "$S" -C "$1/PS1" init --site PS1 >/dev/null; "$S" -C "$1/SS1" init --site SS1 >/dev/null
  "$S" -C "$1/PS1" peer add SS1 --inbox "$1/SS1/inboxes/despoolr.box/receive" >/dev/null
  "$S" -C "$1/PS1" key export -o "$1/SS1/inboxes/hman.box/PS1.pub" 2>/dev/null
  if [ "${2:-}" = pairs ] && [ -n "$BUNDLE_OFF" ]; then unbundle "$1/PS1"; fi
}
compressible() { # compressible FILE MiB: log-like text
  python3 - "$1" "$2" <<'PY'
import random, sys
random.seed(7)
words = "despooler sender instruction package site inbox key verified stored queued".split()
with open(sys.argv[1], "w") as f:
    left = int(sys.argv[2]) << 20
    while left > 0:
        line = "%08d %s %s\n" % (random.randrange(10**8), " ".join(random.choice(words) for _ in range(8)), "x" * random.randrange(40))
        f.write(line[:left]); left -= len(line)
PY
}
RECV=SS1/inboxes/despoolr.box/receive
INC=SS1/inboxes/replmgr.box/incoming

echo "sitespool benchmarks, $(nproc) cores, $RUNS runs each, work folder on: $(df --output=source,fstype "$W" | tail -1)"
echo "settle: ${BENCH_SETTLE:-0} s before side-by-side steps, ${BENCH_LIMIT_SETTLE:-6} s before disk limits and large deliveries"

fresh_sites "$W/probe"; unbundle "$W/probe/PS1"
if "$S" -C "$W/probe/PS1" peer list >/dev/null 2>&1; then
  BUNDLE_OFF=1; VARIANTS=(pairs bundled)
  echo "bundles: supported; small files run with 'bundle_max_files = 1' (pairs) and with the defaults (bundled)"
else
  echo "bundles: not supported by this build"
fi
rm -rf "$W/probe"
NNCP=
if [ "${BENCH_NNCP:-1}" != 0 ]; then
  if nncp_available; then NNCP=1; echo "nncp: $(nncp_version), durable (fsync on), packets moved by nncp-xfer through a directory"
  else echo "nncp: not available, side-by-side figures skipped"; fi
fi

# ---- machine limits, measured now -------------------------------------------
section "machine limits"
fs=(); for _ in $(seq "$RUNS"); do rm -rf "$W/base"; mkdir "$W/base"; settle_limit; fs+=("$("$L" fsync-baseline "$W/base" 500 4096)"); done
BASE=$(printf '%s\n' "${fs[@]}" | median)
VERIFY=$(for _ in $(seq "$RUNS"); do "$L" verify 20000; done | median)
rm -rf "$W/base"
echo "limit: create+fsync+rename+fsync-dir one 4 KiB file at a time: $BASE files/s"
echo "limit: Ed25519 verify in memory: $VERIFY /s"

# ---- data sets ----------------------------------------------------------------
mkdir -p "$W/small"
for i in $(seq -w 1 2000); do head -c 4096 /dev/urandom > "$W/small/f$i"; done
(cd "$W/small" && sha256sum f*) > "$W/small.sha256"
compressible "$W/big256" 256
head -c $((256 << 20)) /dev/urandom > "$W/rand256"
same_small() { # same_small INCOMING: exactly the 2,000 inputs, byte for byte
  [ "$(count "$1")" = 2000 ] && (cd "$1" && sha256sum --quiet --strict -c "$W/small.sha256" >/dev/null 2>&1)
}

# ---- small files: 2,000 x 4 KiB, sitespool (each variant) and NNCP, interleaved --
section "small files"
declare -A SEND DESP PAIRS DMED
NF=(); NX=(); NT=()
for _ in $(seq "$RUNS"); do
  if [ -n "$NNCP" ]; then
    nncp_nodes "$W/n"; settle
    t0=$(now); nncp_file_each "$W/n" "$W"/small/f*; t1=$(now); NF+=("$(rate 2000 "$t0" "$t1")")
    t0=$(now); nncp_move "$W/n"; t1=$(now); NX+=("$(rate 2000 "$t0" "$t1")")
    [ "$(nncp_rx_count "$W/n")" = 2000 ] || { echo "nncp-xfer lost packets"; exit 1; }
    settle; t0=$(now); nncp_toss "$W/n"; t1=$(now); NT+=("$(rate 2000 "$t0" "$t1")")
    same_small "$W/n/B/incoming" || { echo "nncp-toss did not deliver the 2,000 files intact"; exit 1; }
    rm -rf "$W/n"
  fi
  for v in "${VARIANTS[@]}"; do
    fresh_sites "$W/s" "$v"; settle
    t0=$(now); "$S" -C "$W/s/PS1" send --to SS1 "$W"/small/f* >/dev/null; t1=$(now)
    SEND[$v]+="$(rate 2000 "$t0" "$t1") "
    p=$(count "$W/s/$RECV" '*.ins')
    { [ "$p" = "$(count "$W/s/$RECV" '*.pck')" ] && { [ "$v" = bundled ] || [ "$p" = 2000 ]; }; } || { echo "sender ($v) lost pairs"; exit 1; }
    PAIRS[$v]=$p
    settle; t0=$(now); "$S" -C "$W/s/SS1" despool --once >/dev/null; t1=$(now)
    same_small "$W/s/$INC" || { echo "despooler ($v) did not deliver the 2,000 files intact"; exit 1; }
    DESP[$v]+="$(rate 2000 "$t0" "$t1") "
  done
done
rm -rf "$W/s"
if [ -n "$NNCP" ]; then
  NFILE=$(printf '%s\n' "${NF[@]}" | median); NXFER=$(printf '%s\n' "${NX[@]}" | median); NTOSS=$(printf '%s\n' "${NT[@]}" | median)
  echo "nncp-file: 2,000 x 4 KiB, one process per file, durable: $NFILE files/s = $(ratio "$NFILE" "$BASE") x the one-at-a-time limit"
  echo "nncp-xfer: A -> directory -> B, 2,000 packets (not in any figure): $NXFER packets/s"
  echo "nncp-toss: 2,000 x 4 KiB packets, durable: $NTOSS packets/s = $(ratio "$NTOSS" "$BASE") x the one-at-a-time limit, $(ratio "$NTOSS" "$VERIFY") x the Ed25519 verify rate"
  row "nncp-file, 2,000 x 4 KiB, a process per file" "$NFILE files/s" "one-at-a-time limit $BASE/s" "$(ratio "$NFILE" "$BASE")" ""
  row "nncp-toss, 2,000 x 4 KiB packets" "$NTOSS packets/s" "one-at-a-time limit $BASE/s" "$(ratio "$NTOSS" "$BASE")" ""
fi
for v in "${VARIANTS[@]}"; do
  s=$(echo "${SEND[$v]}" | median); d=$(echo "${DESP[$v]}" | median)
  if [ "$v" = pairs ]; then what="one file per pair"; unit=pairs; else what="bundled into ${PAIRS[$v]} pairs"; unit=files; fi
  DMED[$v]=$d
  echo "sender ($v): 2,000 x 4 KiB, one call, $what, durable: $s files/s = $(ratio "$s" "$BASE") x the one-at-a-time limit (target >= 2), $(ratio "$s" "${NFILE:-}") x nncp-file per file (target >= 50)"
  echo "despooler ($v): 2,000 x 4 KiB, $what, durable: $d $unit/s delivered = $(ratio "$d" "$BASE") x the one-at-a-time limit (target >= 3), $(ratio "$d" "$VERIFY") x the Ed25519 verify rate (target >= 0.25), $(ratio "$d" "${NTOSS:-}") x nncp-toss (target >= 10)"
  row "send 2,000 x 4 KiB, one call ($v)" "$s files/s" "one-at-a-time limit $BASE/s" "$(ratio "$s" "$BASE")" ">= 2"
  [ -n "$NNCP" ] && row "send 2,000 x 4 KiB, one call ($v)" "$s files/s" "nncp-file $NFILE files/s" "$(ratio "$s" "$NFILE")" ">= 50"
  row "despool 2,000 x 4 KiB ($v)" "$d $unit/s" "one-at-a-time limit $BASE/s" "$(ratio "$d" "$BASE")" ">= 3"
  row "despool 2,000 x 4 KiB ($v)" "$d $unit/s" "Ed25519 verify $VERIFY/s" "$(ratio "$d" "$VERIFY")" ">= 0.25"
  [ -n "$NNCP" ] && row "despool 2,000 x 4 KiB ($v)" "$d $unit/s" "nncp-toss $NTOSS packets/s" "$(ratio "$d" "$NTOSS")" ">= 10"
done

# ---- despooler beside a neighbour writing 3 GB of unsynced data ---------------------
section "neighbour"
if [ "${BENCH_NEIGHBOUR:-1}" != 0 ]; then
  declare -A NB
  for _ in $(seq "$RUNS"); do
    for v in "${VARIANTS[@]}"; do
      fresh_sites "$W/s" "$v"; "$S" -C "$W/s/PS1" send --to SS1 "$W"/small/f* >/dev/null; settle
      dd if=/dev/zero of="$W/neighbour" bs=1M count=3072 status=none & NEIGHBOUR_PID=$!
      # the timed step starts once the neighbour is well under way (256 MiB written)
      while kill -0 "$NEIGHBOUR_PID" 2>/dev/null && [ "$(stat -c %s "$W/neighbour" 2>/dev/null || echo 0)" -lt $((256 << 20)) ]; do sleep 0.01; done
      t0=$(now); "$S" -C "$W/s/SS1" despool --once >/dev/null; t1=$(now)
      kill "$NEIGHBOUR_PID" 2>/dev/null || true; wait "$NEIGHBOUR_PID" 2>/dev/null || true; NEIGHBOUR_PID=
      rm -f "$W/neighbour"
      same_small "$W/s/$INC" || { echo "despooler ($v) beside the neighbour did not deliver the 2,000 files intact"; exit 1; }
      NB[$v]+="$(rate 2000 "$t0" "$t1") "
      sync
    done
  done
  rm -rf "$W/s"
  for v in "${VARIANTS[@]}"; do
    n=$(echo "${NB[$v]}" | median); d=${DMED[$v]}
    [ "$v" = pairs ] && unit=pairs || unit=files
    echo "despooler ($v) while a neighbour writes 3 GB unsynced to the same filesystem: $n $unit/s = $(ratio "$n" "$d") x without the neighbour ($d)"
    row "despool 2,000 x 4 KiB ($v) beside a 3 GB writer" "$n $unit/s" "without the writer $d/s" "$(ratio "$n" "$d")" ""
  done
fi

# ---- sender: one 256 MiB compressible file --------------------------------------
section "sender 256 MiB"
DEFL=$(for _ in $(seq "$RUNS"); do "$L" deflate-hash "$W/big256" 6; done | median)
r=(); for _ in $(seq "$RUNS"); do
  fresh_sites "$W/s"; settle; t0=$(now); "$S" -C "$W/s/PS1" send --to SS1 "$W/big256" >/dev/null; t1=$(now)
  r+=("$(rate "$MB256" "$t0" "$t1")")
done
rm -rf "$W/s"
SEND_MB=$(printf '%s\n' "${r[@]}" | median)
echo "sender: 256 MiB compressible file: $SEND_MB MB/s = $(ratio "$SEND_MB" "$DEFL") x in-memory deflate+BLAKE2b ($DEFL MB/s) (target >= 0.60)"
row "send 256 MiB compressible" "$SEND_MB MB/s" "deflate+BLAKE2b $DEFL MB/s" "$(ratio "$SEND_MB" "$DEFL")" ">= 0.60"

# ---- large payloads: despooler, the disk limit and nncp-toss, interleaved ----------
section "large payloads"
# The sender stores at zlib level 6 (the default): the random payload's
# package is as large as the payload.
declare -A BIG INFL NBIG
WF=()
for _ in $(seq "$RUNS"); do
  rm -rf "$W/base"; mkdir "$W/base"; settle_limit
  WF+=("$("$L" write-fsync "$W/base" $((256 << 20)))"); rm -rf "$W/base"
  for p in big256 rand256; do
    fresh_sites "$W/d"; "$S" -C "$W/d/PS1" send --to SS1 "$W/$p" >/dev/null; settle_limit
    INFL[$p]+="$("$L" hash-inflate "$(ls "$W"/d/$RECV/*.pck)") "
    t0=$(now); "$S" -C "$W/d/SS1" despool --once >/dev/null; t1=$(now)
    cmp -s "$W/$p" "$W/d/$INC/$p" || { echo "payload $p differs"; exit 1; }
    BIG[$p]+="$(rate "$MB256" "$t0" "$t1") "
    rm -rf "$W/d"
    if [ -n "$NNCP" ]; then
      nncp_nodes "$W/n"; nncp_file_each "$W/n" "$W/$p"; nncp_move "$W/n"; settle_limit
      t0=$(now); nncp_toss "$W/n"; t1=$(now)
      cmp -s "$W/$p" "$W/n/B/incoming/$p" || { echo "nncp-toss: payload $p differs"; exit 1; }
      NBIG[$p]+="$(rate "$MB256" "$t0" "$t1") "
      rm -rf "$W/n"
    fi
  done
done
WFSYNC=$(printf '%s\n' "${WF[@]}" | median)
echo "limit: write+fsync+rename+fsync-dir one 256 MiB file: $WFSYNC MB/s"
row "limit: write+fsync one 256 MiB file" "$WFSYNC MB/s" "" "" ""
for p in big256 rand256; do
  [ "$p" = big256 ] && what=compressible || what="incompressible (urandom)"
  b=$(echo "${BIG[$p]}" | median); i=$(echo "${INFL[$p]}" | median)
  echo "despooler: 256 MiB $what payload: $b MB/s delivered = $(ratio "$b" "$WFSYNC") x the disk's write+fsync (target >= 0.9), $(ratio "$b" "$i") x in-memory BLAKE2b+inflate ($i MB/s) (target >= 0.50)"
  row "despool 256 MiB $what" "$b MB/s" "write+fsync $WFSYNC MB/s" "$(ratio "$b" "$WFSYNC")" ">= 0.9"
  row "despool 256 MiB $what" "$b MB/s" "BLAKE2b+inflate $i MB/s" "$(ratio "$b" "$i")" ">= 0.50"
  if [ -n "$NNCP" ]; then
    n=$(echo "${NBIG[$p]}" | median)
    echo "nncp-toss: 256 MiB $what payload: $n MB/s delivered = $(ratio "$n" "$WFSYNC") x the disk's write+fsync; despooler = $(ratio "$b" "$n") x nncp-toss (target >= 1)"
    row "despool 256 MiB $what" "$b MB/s" "nncp-toss $n MB/s" "$(ratio "$b" "$n")" ">= 1"
  fi
done

# ---- peak memory with 1 GiB ------------------------------------------------------------
section "peak memory"
rm -f "$W/big256" "$W/rand256" "$W"/small/*
compressible "$W/big1g" 1024
fresh_sites "$W/m"
SEND_RSS=$(peak_rss_kib "$S" -C "$W/m/PS1" send --to SS1 "$W/big1g")
DESPOOL_RSS=$(peak_rss_kib "$S" -C "$W/m/SS1" despool --once)
cmp -s "$W/big1g" "$W/m/$INC/big1g" || { echo "1 GiB payload differs"; exit 1; }
echo "peak RSS with a 1 GiB payload: send $((SEND_RSS / 1024)) MiB, despool $((DESPOOL_RSS / 1024)) MiB (target <= 16 MiB)"
row "peak RSS, 1 GiB payload" "send $((SEND_RSS / 1024)) MiB, despool $((DESPOOL_RSS / 1024)) MiB" "" "" "<= 16 MiB"
rm -rf "$W/m" "$W/big1g"

# ---- latency: rename into receive -> delivered file visible, idle daemon ----------------
section "latency"
fresh_sites "$W/l" pairs # the latency is that of one pair
for i in $(seq -w 1 200); do echo "latency sample $i" > "$W/small/l$i"; done
"$S" -C "$W/l/PS1" send --to SS1 --queue-only "$W"/small/l* >/dev/null
mkdir "$W/stage"
for ins in "$W"/l/PS1/inboxes/schedule.box/outbox/SS1/*.ins; do
  id=$(basename "$ins" .ins); id=${id#*-}
  mv "${ins%.ins}.pck" "$W/stage/$id.pck"; mv "$ins" "$W/stage/$id.ins"
  sed -n 's/^trusted comment: .* name=\([^ ]*\) .*/\1/p' "$W/stage/$id.ins" > "$W/stage/$id.name"
done
settle_limit
"$S" -C "$W/l/SS1" despool & DPID=$!
sleep 0.5
read -r n p50 p99 < <("$L" latency "$W/l/$RECV" "$W/l/$INC" "$W/stage" 200)
kill -TERM "$DPID"; wait "$DPID" || true
echo "despooler latency, rename into receive -> file visible, idle daemon, $n pairs: p50 $p50 ms, p99 $p99 ms (targets 2 / 10 ms)"
row "latency receive -> visible, idle daemon" "p50 $p50 ms, p99 $p99 ms" "" "" "2 / 10 ms"
rm -rf "$W/l" "$W/stage" "$W/small"

# ---- backlog: 10k, 50k, 100k queued pairs drained by one despool --once (runs once) -----
section "backlog"
if [ "${BENCH_BACKLOG:-1}" != 0 ]; then
  mkdir "$W/tiny"
  python3 - "$W/tiny" <<'PY'
import sys
for i in range(1, 100001):
    with open("%s/t%06d" % (sys.argv[1], i), "w") as f:
        f.write(("backlog sample %06d " % i).ljust(99, "x") + "\n")
PY
  declare -A BT
  for n in 10000 50000 100000; do
    fresh_sites "$W/b" pairs # one file per pair: the backlog is made of pairs
    g0=$(now); seq -f "$W/tiny/t%06g" 1 "$n" | xargs -n 5000 "$S" -C "$W/b/PS1" send --to SS1 >/dev/null; g1=$(now)
    [ "$(count "$W/b/$RECV" '*.ins')" = "$n" ] || { echo "backlog: the sender did not queue $n pairs"; exit 1; }
    settle
    t0=$(now); rss=$(peak_rss_kib "$S" -C "$W/b/SS1" despool --once); t1=$(now)
    [ "$(count "$W/b/$INC")" = "$n" ] || { echo "backlog: $n pairs, $(count "$W/b/$INC") delivered"; exit 1; }
    BT[$n]=$(secs "$t0" "$t1")
    echo "backlog: $n pairs of 100 bytes drained by despool --once in $(printf %.1f "${BT[$n]}") s: $(rate "$n" "$t0" "$t1") pairs/s, peak RSS $((rss / 1024)) MiB (queued by send in calls of 5,000 files: $(rate "$n" "$g0" "$g1") files/s)"
    row "backlog $n pairs, despool --once" "$(printf %.1f "${BT[$n]}") s, $(rate "$n" "$t0" "$t1") pairs/s" "peak RSS $((rss / 1024)) MiB" "" ""
    rm -rf "$W/b"
  done
  echo "backlog: time(100k) / time(10k) = $(ratio "${BT[100000]}" "${BT[10000]}") (linear = 10)"
  row "backlog time(100k) / time(10k)" "" "10000 pairs: linear = 10" "$(ratio "${BT[100000]}" "${BT[10000]}")" "~10"
  rm -rf "$W/tiny"
fi

# ---- summary ------------------------------------------------------------------------------
echo
echo "summary ($RUNS runs, medians; backlog once; $((SECONDS / 60)) min $((SECONDS % 60)) s in all):"
printf '%s\n' "figure|value|beside|ratio|target" "${ROWS[@]}" | awk -F'|' '
  {for (i = 1; i <= NF; i++) {c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i)}; n = NR}
  END {for (r = 1; r <= n; r++) {line = ""; for (i = 1; i <= 5; i++) line = line sprintf("%-" w[i] "s", c[r, i]) (i < 5 ? " | " : ""); sub(/ +$/, "", line); print line}}'
