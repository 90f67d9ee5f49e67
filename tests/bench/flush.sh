#!/usr/bin/env bash
# Flush strategies for a batch of small files (issue 14), measured with
# tests/bench/bench_flush.c (see its header for what each strategy does and
# guarantees).  For N = 256 and N = 2000 files of 4 KiB, each strategy runs
# RUNS times (default 3), the medians printed:
#   quiet      nothing else writing to the filesystem (as far as we can tell:
#              a noisy machine's other users are not ours to stop);
#   neighbour  `dd if=/dev/zero of=W/neighbour bs=1M count=3072` (3 GiB,
#              never synced) started BENCH_LEAD seconds (default 1) before
#              the timed run, killed and deleted after it.
# Then the time of a one-file batch (N = 1) for the main strategies, quiet
# and with the neighbour (1RUNS runs, default 5; 0 skips it).
# The machine this was written on is shared and noisy: beside each median
# the table gives the range (min-max) of the runs.
# Work happens in a fresh folder under build-bench/ (the repository's
# filesystem) unless BENCH_DIR names another folder on the disk to measure.
# Between runs: sync, then wait BENCH_SETTLE seconds (default 5) so that no
# run inherits the previous one's writeback.  The runs' files are deleted
# only at the end: ext4 without a journal skips inodes deleted in the last
# 60 s (300 s while their inode table block is dirty) when it allocates, and
# creating 2,000 files right after deleting 10,000 was measured 6x slower
# with no flush at all - a cost that would land on whichever run came next.
# BENCH_BUILD names the build folder (default build-bench); BENCH_NS the
# batch sizes (default "256 2000").
# Usage: tests/bench/flush.sh [RUNS [1RUNS]]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
RUNS1=${2:-5}
SETTLE=${BENCH_SETTLE:-5}
LEAD=${BENCH_LEAD:-1}
# shellcheck disable=SC2206
NS=(${BENCH_NS:-256 2000})
BUILD=${BENCH_BUILD:-build-bench}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target bench_flush >/dev/null
F=$PWD/$BUILD/tests/bench_flush
mkdir -p "${BENCH_DIR:-$PWD/build-bench}"
W=$(mktemp -d "${BENCH_DIR:-$PWD/build-bench}/flush.XXXXXX")
NB=""
cleanup() {
  if [ -n "$NB" ]; then kill "$NB" 2>/dev/null || true; wait "$NB" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT

# BENCH_STRATEGIES / BENCH_STRATEGIES1 (space-separated) replace the lists.
DEFAULT_STRATEGIES="syncfs fsync-serial fsync-end sfr fsync-threads:2 fsync-threads:4 fsync-threads:8
  sfr-threads:2 sfr-threads:4 sfr-threads:8 odsync odsync-threads:4 none"
# shellcheck disable=SC2206 # words, no globs
STRATEGIES=(${BENCH_STRATEGIES:-$DEFAULT_STRATEGIES})
# shellcheck disable=SC2206
MAIN1=(${BENCH_STRATEGIES1:-syncfs fsync-serial sfr fsync-threads:4 odsync none})
SIZE=4096

# ---- the filesystem ------------------------------------------------------------
read -r DEV FSTYPE < <(df --output=source,fstype "$W" | tail -1)
echo "bench_flush: $(nproc) cores, work folder $W on $DEV ($FSTYPE)"
BDEV=$(basename "$(readlink -f "$DEV")")
if [ "$FSTYPE" = ext4 ]; then
  # tune2fs needs to open the device (not allowed in every container); the
  # kernel says the same: a journalled ext4 has a jbd2 thread
  # (/proc/fs/jbd2/<dev>-8, /sys/fs/ext4/<dev>/journal_task).
  if tune2fs -l "$DEV" >/dev/null 2>&1; then
    if tune2fs -l "$DEV" | grep -q '^Filesystem features:.*has_journal'; then J=yes; else J=no; fi
    echo "ext4 journal (tune2fs -l): $J"
  else
    jt=$(cat "/sys/fs/ext4/$BDEV/journal_task" 2>/dev/null || echo '?')
    jb=$(find /proc/fs/jbd2 -mindepth 1 -maxdepth 1 -name "$BDEV-*" -printf '%f ' 2>/dev/null || true)
    echo "ext4 journal: tune2fs -l $DEV refused; /sys/fs/ext4/$BDEV/journal_task = $jt;" \
         "/proc/fs/jbd2/$BDEV-*: ${jb:-none} => journal: $([ "$jt" = '<none>' ] && echo no || echo yes)"
  fi
  echo "mount options: $(findmnt -no OPTIONS -T "$W")"
fi
echo "device: write cache $(cat "/sys/block/$BDEV/queue/write_cache" 2>/dev/null || echo '?')," \
     "scheduler $(cat "/sys/block/$BDEV/queue/scheduler" 2>/dev/null || echo '?')"
AVAIL_KIB=$(df --output=avail -k "$W" | tail -1)
if [ "$AVAIL_KIB" -lt $((5 * 1024 * 1024)) ]; then
  echo "need 5 GiB free on $DEV for the 3 GiB neighbour, have $((AVAIL_KIB / 1024)) MiB"; exit 1
fi

# ---- helpers ---------------------------------------------------------------------
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
meminfo_mib() { awk -v k="$1:" '$1 == k {print int($2 / 1024)}' /proc/meminfo; }
settle() {
  sync
  # until the page cache holds no more than 64 MiB to write (others may be
  # writing: give up after 30 s), then the settle time
  for _ in $(seq 30); do
    [ $(( $(meminfo_mib Dirty) + $(meminfo_mib Writeback) )) -le 64 ] && break
    sleep 1
  done
  sleep "$SETTLE"
}
LOG=$W/log
# run COND N STRATEGY: one timed run in a fresh folder; files/s in RES
# (not printed: a $(run ...) subshell would hide the neighbour from cleanup)
run() {
  local cond=$1 n=$2 s=$3 d
  d=$W/d.$RANDOM$RANDOM
  mkdir "$d"
  settle
  if [ "$cond" = neighbour ]; then
    dd if=/dev/zero of="$W/neighbour" bs=1M count=3072 status=none &
    NB=$!
    sleep "$LEAD"
  fi
  local state
  state="dirty $(meminfo_mib Dirty) MiB, writeback $(meminfo_mib Writeback) MiB"
  RES=$("$F" "$d" "$n" "$SIZE" "$s" 2>>"$LOG")
  if [ -n "$NB" ]; then
    kill "$NB" 2>/dev/null || true; wait "$NB" 2>/dev/null || true; NB=""
    rm -f "$W/neighbour"
  fi
  echo "$cond N=$n $s: $RES files/s (at start: $state)" >>"$LOG"
}

declare -A R
# interleaved (run, N, strategy, condition) so that drift of the machine
# spreads over all strategies instead of landing on one
for i in $(seq "$RUNS"); do
  for n in "${NS[@]}"; do
    for s in "${STRATEGIES[@]}"; do
      for c in quiet neighbour; do
        run "$c" "$n" "$s"; R[$c,$n,$s]+="$RES "
      done
    done
  done
  echo "round $i of $RUNS done" >&2
done
for i in $(seq "$RUNS1"); do
  for s in "${MAIN1[@]}"; do
    for c in quiet neighbour; do
      run "$c" 1 "$s"; R[$c,1,$s]+="$RES "
    done
  done
done

# shellcheck disable=SC2086 # the runs are space-separated words
med() { printf '%s\n' ${R[$1]} | median; }
# shellcheck disable=SC2086
range() { printf '%s\n' ${R[$1]} | sort -g | awk -v f="${2:-1}" 'NR == 1 {a = $1} {b = $1} END {printf f == 1 ? "%.0f-%.0f" : "%.1f-%.1f", f == 1 ? a : f / b, f == 1 ? b : f / a}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo
for n in "${NS[@]}"; do
  echo "N = $n files of $SIZE B: files/s, medians of $RUNS runs (range); ratio = with-neighbour / quiet;"
  echo "  vs syncfs = this strategy's median / syncfs's median in the same condition"
  printf '%-17s %7s %11s %9s %11s %6s %9s %9s\n' strategy quiet "(range)" neighbour "(range)" ratio \
    "vs syncfs" "vs syncfs"
  printf '%-17s %7s %11s %9s %11s %6s %9s %9s\n' "" "" "" "" "" "" quiet neighbour
  qs=$(med "quiet,$n,syncfs"); bs=$(med "neighbour,$n,syncfs")
  for s in "${STRATEGIES[@]}"; do
    q=$(med "quiet,$n,$s"); b=$(med "neighbour,$n,$s")
    printf '%-17s %7.0f %11s %9.0f %11s %6s %9s %9s\n' "$s" "$q" "($(range "quiet,$n,$s"))" "$b" \
      "($(range "neighbour,$n,$s"))" "$(div "$b" "$q")" "$(div "$q" "$qs")" "$(div "$b" "$bs")"
  done
  echo
done
if [ "$RUNS1" -gt 0 ]; then
  echo "N = 1: time of a one-file batch (create, write, flush, rename, fsync dir) in ms, medians of $RUNS1 runs (range)"
  printf '%-17s %8s %13s %10s %13s\n' strategy quiet "(range)" neighbour "(range)"
  for s in "${MAIN1[@]}"; do
    printf '%-17s %8.2f %13s %10.2f %13s\n' "$s" "$(div 1000 "$(med "quiet,1,$s")")" "($(range "quiet,1,$s" 1000))" \
      "$(div 1000 "$(med "neighbour,1,$s")")" "($(range "neighbour,1,$s" 1000))"
  done
  echo
fi
echo "every run (state of the page cache when the timed run started):"
grep ' files/s ' "$LOG" || true
