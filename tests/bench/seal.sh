#!/usr/bin/env bash
# Sealed packages against unsealed ones (issue 15's benchmark), in the same
# run on the same machine.  Not a timed test (ctest does not run it): it
# prints each run, then a summary table with the medians, each sealed/
# unsealed ratio beside its target (>= 0.9), and the peak RSS.
# Usage: tests/bench/seal.sh [RUNS]
#
# Two sender sites deliver to one receiver SS1 through its local receive
# inbox: PSS seals (seal = yes, the default) and PSU does not (seal = no);
# both send one package per file (bundle_max_files = 1) at the default
# compression level.  Each case is timed on its own side:
#   sender      `send --to SS1 FILES`: read, deflate, (seal,) hash, sign,
#               write the pairs into the outbox and move them into receive;
#   despooler   `despool --once` over the pairs in receive: read and hash
#               (a reader thread for packages of 8 MiB or more), (open,)
#               inflate, write, make durable, commit the ledger, publish.
# Cases: BENCH_FILES small files of BENCH_FILE_KIB KiB (pairs/s), and one
# file of BENCH_BIG_MIB MiB from /dev/urandom (incompressible; MB/s of
# payload).  Peak RSS (VmHWM, /usr/bin/time -v) of the sender and the
# despooler is taken on the large file, sealed and unsealed.  A `sync`
# runs (untimed) before each timed step; delivered files are removed
# between runs.  Medians of RUNS runs (default 3).
#
# Environment (defaults in brackets):
#   BENCH_RUNS=N        runs per figure, also the first argument [3]
#   BENCH_FILES=N       small files [2000]
#   BENCH_FILE_KIB=N    size of each small file [4]
#   BENCH_BIG_MIB=N     the large file [1024]; 0 skips it
#   BENCH_DIR=DIR       work folder parent [$TMPDIR or /tmp]
#   SITESPOOL=BIN       the binary [build/tools/sitespool, built first]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-${BENCH_RUNS:-3}}
FILES=${BENCH_FILES:-2000}
KIB=${BENCH_FILE_KIB:-4}
BIG=${BENCH_BIG_MIB:-1024}
if [ -z "${SITESPOOL:-}" ]; then
  [ -f build/CMakeCache.txt ] || cmake -S . -B build >/dev/null
  cmake --build build -j2 >/dev/null 2>&1 || { cmake --build build 2>&1 | tail -20; echo "build failed"; exit 1; }
  SITESPOOL=$PWD/build/tools/sitespool
fi
[ -x /usr/bin/time ] || { echo "seal.sh: needs /usr/bin/time (Debian package time)"; exit 0; }
T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/sitespool-bench-seal.XXXXXX")
trap 'rm -rf "$T"' EXIT
cp "$SITESPOOL" "$T/sitespool"; S=$T/sitespool # a rebuild during the run changes nothing

median() { tr ' ' '\n' | awk NF | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
now() { date +%s.%N; }
declare -A SAMPLE
note() { SAMPLE[$1]="${SAMPLE[$1]:-} $2"; }
med() { echo "${SAMPLE[$1]:-}" | median; }

site() { # CODE [setting lines...]
  local code=$1; shift
  "$S" -C "$T/$code" init --site "$code" >/dev/null
  local line
  for line in "$@"; do sed -i "s|^${line%% =*} = .*|$line|" "$T/$code/site.conf"; done
}
site PSS "bundle_max_files = 1" "seal = yes"
site PSU "bundle_max_files = 1" "seal = no"
site SS1 "max_package_bytes = 8589934592"
R=$T/SS1/inboxes/despoolr.box/receive
I=$T/SS1/inboxes/replmgr.box/incoming
for p in PSS PSU; do
  "$S" -C "$T/$p" peer add SS1 --inbox "$R" >/dev/null
  "$S" -C "$T/SS1" peer add "$p" --inbox "$T/$p/inboxes/despoolr.box/receive" >/dev/null
  "$S" -C "$T/$p" key export -o "$T/SS1/inboxes/hman.box/$p.pub" >/dev/null 2>&1
  "$S" -C "$T/SS1" key export -o "$T/$p/inboxes/hman.box/SS1.pub" >/dev/null 2>&1
  "$S" -C "$T/$p" despool --once >/dev/null
done
"$S" -C "$T/SS1" despool --once >/dev/null

mkdir "$T/small"
for i in $(seq 1 "$FILES"); do head -c $((KIB * 1024)) /dev/urandom > "$T/small/f$i.bin"; done
[ "$BIG" = 0 ] || head -c $((BIG * 1024 * 1024)) /dev/urandom > "$T/big.bin"

# timed KEY CMD...: runs CMD, notes its seconds under KEY.
timed() {
  local key=$1; shift
  sync
  local t0; t0=$(now)
  "$@" >/dev/null
  note "$key" "$(echo "$(now) - $t0" | bc -l)"
}
check_sealed() { # MODE: every instruction in receive is (not) sealed
  local n; n=$({ grep -l ' enc=' "$R"/*.ins 2>/dev/null || true; } | wc -l)
  if [ "$1" = sealed ]; then [ "$n" -gt 0 ] || { echo "PSS did not seal"; exit 1; }
  else [ "$n" = 0 ] || { echo "PSU sealed"; exit 1; }; fi
}
run_case() { # CASE MODE SITE FILES...
  local case=$1 mode=$2 p=$3; shift 3
  timed "$case.$mode.send" "$S" -C "$T/$p" send --to SS1 "$@"
  check_sealed "$mode"
  timed "$case.$mode.despool" "$S" -C "$T/SS1" despool --once
  [ -z "$(ls -A "$R")" ] || { echo "receive not empty after a $mode $case run"; exit 1; }
  find "$I" -mindepth 1 -delete
}
rss() { # MODE SITE: peak RSS (KiB) of sender and despooler on the large file
  /usr/bin/time -v "$S" -C "$T/$2" send --to SS1 "$T/big.bin" 2>"$T/time.send" >/dev/null
  check_sealed "$1"
  /usr/bin/time -v "$S" -C "$T/SS1" despool --once 2>"$T/time.despool" >/dev/null
  cmp -s "$T/big.bin" "$I/big.bin" || { echo "the large file differs after a $1 run"; exit 1; }
  find "$I" -mindepth 1 -delete
  RSS_SEND[$1]=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time.send")
  RSS_DESPOOL[$1]=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time.despool")
}

echo "sealed vs unsealed: $FILES x $KIB KiB files, ${BIG} MiB file, $RUNS runs, $(nproc) CPUs"
for r in $(seq 1 "$RUNS"); do
  # Alternating which goes first, so neither always meets a warm cache.
  order="sealed unsealed"; [ $((r % 2)) = 0 ] && order="unsealed sealed"
  for mode in $order; do
    p=PSS; [ "$mode" = unsealed ] && p=PSU
    run_case small "$mode" "$p" "$T/small"/*
    [ "$BIG" = 0 ] || run_case big "$mode" "$p" "$T/big.bin"
  done
  printf 'run %d:' "$r"
  for k in small.sealed.send small.unsealed.send small.sealed.despool small.unsealed.despool \
    big.sealed.send big.unsealed.send big.sealed.despool big.unsealed.despool; do
    v=$(echo "${SAMPLE[$k]:-}" | awk '{print $NF}')
    [ -z "$v" ] || printf ' %s=%.2fs' "$k" "$v"
  done
  echo
done

declare -A RSS_SEND RSS_DESPOOL
if [ "$BIG" != 0 ]; then rss sealed PSS; rss unsealed PSU; fi

echo
printf '%-28s %12s %12s %7s %7s\n' case sealed unsealed ratio target
line() { # LABEL KEY UNIT AMOUNT: rates from the median seconds
  local s u rs ru
  s=$(med "$2.sealed.$3"); u=$(med "$2.unsealed.$3")
  rs=$(echo "$4 / $s" | bc -l); ru=$(echo "$4 / $u" | bc -l)
  printf '%-28s %12.1f %12.1f %7.2f %7s\n' "$1" "$rs" "$ru" "$(echo "$rs / $ru" | bc -l)" ">=0.90"
}
line "small, sender (pairs/s)" small send "$FILES"
line "small, despooler (pairs/s)" small despool "$FILES"
if [ "$BIG" != 0 ]; then
  mb=$(echo "$BIG * 1.048576" | bc -l)
  line "large, sender (MB/s)" big send "$mb"
  line "large, despooler (MB/s)" big despool "$mb"
  echo
  printf '%-28s %12s %12s\n' "peak RSS, ${BIG} MiB file" sealed unsealed
  printf '%-28s %10s K %10s K\n' sender "${RSS_SEND[sealed]}" "${RSS_SEND[unsealed]}"
  printf '%-28s %10s K %10s K\n' despooler "${RSS_DESPOOL[sealed]}" "${RSS_DESPOOL[unsealed]}"
fi
