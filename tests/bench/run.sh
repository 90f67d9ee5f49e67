#!/usr/bin/env bash
# Benchmarks of the sender and the despooler, each printed beside the
# machine limit measured in the same run (medians of RUNS runs, default 5).
# Not a timed test: it prints figures.  Usage: tests/bench/run.sh [RUNS]
# Work happens under build-bench/ (the repository's filesystem) unless
# BENCH_DIR names another folder on the disk to measure.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
S=$PWD/build-bench/tools/sitespool
L=$PWD/build-bench/tests/bench_limits
mkdir -p "${BENCH_DIR:-$PWD/build-bench}"
W=$(mktemp -d "${BENCH_DIR:-$PWD/build-bench}/run.XXXXXX")
trap 'pkill -f "$W/" 2>/dev/null || true; rm -rf "$W"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
secs() { local t0=$1 t1=$2; awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'; }
now() { date +%s.%N; }
peak_rss_kib() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }

# Deleting the previous run's files costs the device work after rm returns
# (online discard), and ext4 skips inodes freed in the last seconds when it
# allocates new ones; each timed step starts on a settled disk, the machine
# limit as much as the figures beside it.
settle() { sync; sleep "${BENCH_SETTLE:-6}"; }
fresh_sites() { # fresh_sites DIR: PS1 -> SS1 with keys exchanged
  rm -rf "$1"; mkdir -p "$1"
  "$S" -C "$1/PS1" init --site PS1 >/dev/null; "$S" -C "$1/SS1" init --site SS1 >/dev/null
  "$S" -C "$1/PS1" peer add SS1 --inbox "$1/SS1/inboxes/despoolr.box/receive" >/dev/null
  "$S" -C "$1/PS1" key export -o "$1/SS1/inboxes/hman.box/PS1.pub" 2>/dev/null
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

echo "sitespool benchmarks, $(nproc) cores, $RUNS runs each, work folder on: $(df --output=source,fstype "$W" | tail -1)"

# ---- machine limits, measured now -------------------------------------------
fs=(); for _ in $(seq "$RUNS"); do rm -rf "$W/base"; mkdir "$W/base"; settle; fs+=("$("$L" fsync-baseline "$W/base" 500 4096)"); done
BASE=$(printf '%s\n' "${fs[@]}" | median)
VERIFY=$(for _ in $(seq "$RUNS"); do "$L" verify 20000; done | median)
echo "limit: create+fsync+rename+fsync-dir one 4 KiB file at a time: $BASE files/s"
echo "limit: Ed25519 verify in memory: $VERIFY /s"

# ---- data sets ----------------------------------------------------------------
mkdir -p "$W/small"
for i in $(seq -w 1 2000); do head -c 4096 /dev/urandom > "$W/small/f$i"; done
compressible "$W/big256" 256

# ---- sender: 2,000 x 4 KiB in one call -----------------------------------------
r=(); for _ in $(seq "$RUNS"); do
  fresh_sites "$W/s"; settle; t0=$(now); "$S" -C "$W/s/PS1" send --to SS1 "$W"/small/f* >/dev/null; t1=$(now)
  [ "$(ls "$W/s/SS1/inboxes/despoolr.box/receive" | wc -l)" = 4000 ] || { echo "sender lost pairs"; exit 1; }
  r+=("$(awk -v d="$(secs "$t0" "$t1")" 'BEGIN {printf "%.1f", 2000 / d}')")
done
SEND_FILES=$(printf '%s\n' "${r[@]}" | median)
echo "sender: 2,000 x 4 KiB, one call, durable: $SEND_FILES files/s = $(ratio "$SEND_FILES" "$BASE") x the one-at-a-time limit (target >= 2)"

# ---- sender: one 256 MiB compressible file --------------------------------------
DEFL=$(for _ in $(seq "$RUNS"); do "$L" deflate-hash "$W/big256" 6; done | median)
r=(); rss=(); for _ in $(seq "$RUNS"); do
  fresh_sites "$W/s"; settle; t0=$(now); "$S" -C "$W/s/PS1" send --to SS1 "$W/big256" >/dev/null; t1=$(now)
  r+=("$(awk -v d="$(secs "$t0" "$t1")" 'BEGIN {printf "%.1f", 268.435456 / d}')")
done
SEND_MB=$(printf '%s\n' "${r[@]}" | median)
echo "sender: 256 MiB compressible file: $SEND_MB MB/s = $(ratio "$SEND_MB" "$DEFL") x in-memory deflate+BLAKE2b ($DEFL MB/s) (target >= 0.60)"

# ---- despooler: 2,000 x 4 KiB pairs -----------------------------------------------
r=(); for _ in $(seq "$RUNS"); do
  fresh_sites "$W/d"; "$S" -C "$W/d/PS1" send --to SS1 "$W"/small/f* >/dev/null; settle
  t0=$(now); "$S" -C "$W/d/SS1" despool --once >/dev/null; t1=$(now)
  [ "$(ls "$W/d/SS1/inboxes/replmgr.box/incoming" | wc -l)" = 2000 ] || { echo "despooler lost pairs"; exit 1; }
  r+=("$(awk -v d="$(secs "$t0" "$t1")" 'BEGIN {printf "%.1f", 2000 / d}')")
done
DESPOOL_PAIRS=$(printf '%s\n' "${r[@]}" | median)
echo "despooler: 2,000 x 4 KiB pairs, durable: $DESPOOL_PAIRS pairs/s = $(ratio "$DESPOOL_PAIRS" "$BASE") x the one-at-a-time limit (target >= 3), $(ratio "$DESPOOL_PAIRS" "$VERIFY") x the Ed25519 verify rate (target >= 0.25)"

# ---- despooler: one 256 MiB payload -------------------------------------------------
r=(); lim=(); for _ in $(seq "$RUNS"); do
  fresh_sites "$W/d"; "$S" -C "$W/d/PS1" send --to SS1 "$W/big256" >/dev/null; settle
  lim+=("$("$L" hash-inflate "$(ls "$W"/d/SS1/inboxes/despoolr.box/receive/*.pck)")")
  t0=$(now); "$S" -C "$W/d/SS1" despool --once >/dev/null; t1=$(now)
  cmp -s "$W/big256" "$W/d/SS1/inboxes/replmgr.box/incoming/big256" || { echo "payload differs"; exit 1; }
  r+=("$(awk -v d="$(secs "$t0" "$t1")" 'BEGIN {printf "%.1f", 268.435456 / d}')")
done
INFL=$(printf '%s\n' "${lim[@]}" | median)
DESPOOL_MB=$(printf '%s\n' "${r[@]}" | median)
echo "despooler: 256 MiB payload: $DESPOOL_MB MB/s delivered = $(ratio "$DESPOOL_MB" "$INFL") x in-memory BLAKE2b+inflate ($INFL MB/s) (target >= 0.50)"

# ---- peak memory with 1 GiB ------------------------------------------------------------
rm -f "$W/big256" "$W"/small/*
compressible "$W/big1g" 1024
fresh_sites "$W/m"
SEND_RSS=$(peak_rss_kib "$S" -C "$W/m/PS1" send --to SS1 "$W/big1g")
DESPOOL_RSS=$(peak_rss_kib "$S" -C "$W/m/SS1" despool --once)
cmp -s "$W/big1g" "$W/m/SS1/inboxes/replmgr.box/incoming/big1g" || { echo "1 GiB payload differs"; exit 1; }
echo "peak RSS with a 1 GiB payload: send $((SEND_RSS / 1024)) MiB, despool $((DESPOOL_RSS / 1024)) MiB (target <= 16 MiB)"
rm -rf "$W/m" "$W/big1g"

# ---- latency: rename into receive -> delivered file visible, idle daemon ----------------
fresh_sites "$W/l"
for i in $(seq -w 1 200); do echo "latency sample $i" > "$W/small/l$i"; done
"$S" -C "$W/l/PS1" send --to SS1 --queue-only "$W"/small/l* >/dev/null
mkdir "$W/stage"
for ins in "$W"/l/PS1/inboxes/schedule.box/outbox/SS1/*.ins; do
  id=$(basename "$ins" .ins); id=${id#*-}
  mv "${ins%.ins}.pck" "$W/stage/$id.pck"; mv "$ins" "$W/stage/$id.ins"
  sed -n 's/^trusted comment: .* name=\([^ ]*\) .*/\1/p' "$W/stage/$id.ins" > "$W/stage/$id.name"
done
settle
"$S" -C "$W/l/SS1" despool & DPID=$!
sleep 0.5
read -r n p50 p99 < <("$L" latency "$W/l/SS1/inboxes/despoolr.box/receive" "$W/l/SS1/inboxes/replmgr.box/incoming" "$W/stage" 200)
kill -TERM "$DPID"; wait "$DPID" || true
echo "despooler latency, rename into receive -> file visible, idle daemon, $n pairs: p50 $p50 ms, p99 $p99 ms (targets 2 / 10 ms)"
