#!/usr/bin/env bash
# SFTP delivery beside rsync -e ssh and scp (issue 10's benchmark): the same
# files, the same link, the same sshd, in the same run.  Not a timed test
# (ctest does not run it): it prints figures, then a summary table (case,
# sitespool, rsync, scp, ratios, targets).  Usage: tests/bench/sftp.sh [RUNS]
#
# Set-up (tests/e2e/lib.sh and lib_ssh.sh): two network namespaces joined
# by a veth pair, a real OpenSSH server in NS_B, every client in NS_A.  The
# sender sites PSB (defaults: small files of one send share tar bundles of
# up to bundle_max_files = 256) and PSP (bundle_max_files = 1: one pair per
# file) deliver to SS1's receive inbox at sftp://root@IP_B:PORT/...; rsync
# and scp copy the same files with the same key and host key into a folder
# next to it.  Every case runs at no added delay and again with DELAY each
# way (netem; a python relay where the kernel has no netem qdisc).
#
# sitespool is timed in two steps: queue (`send --queue-only`: compress,
# hash, sign into the outbox; local, no network) and delivery (`send --flush`
# in NS_A: one SSH session, pipelined SFTP).  The side-by-side ratios compare
# the delivery with rsync and scp moving the same files; queue times are
# reported beside them.  sitespool makes every file durable at the peer
# (fsync@openssh.com per file, then the folder); rsync and scp do not, so
# `rsync --fsync` is measured too as the durable reference.  A `sync` runs
# (untimed) before each timed step, so no step pays for the previous one's
# writeback.  Figures are medians of RUNS runs (default 3).
#
# scp, "per file": scp copies the files of one invocation one after another
# (a round-trip set per file), so the target compares sitespool with ONE scp
# invocation for all the files (OpenSSH >= 9 scp speaks SFTP; `scp -O`, the
# legacy protocol, is measured too, and the target uses the faster of the
# two).  One scp connection per file is reported as well, on a subset,
# extrapolated.  Under delay a one-invocation scp of all the files would
# take many minutes, so it is timed for 1 file and for BENCH_SCP_DELAY_FILES
# files and extrapolated linearly (setup once, then the per-file cost).
#
# The link: the round-trip time (TCP connect) and one plain TCP stream are
# measured and printed for each series; where the delay comes from the
# python relay, its own capacity (TCP stream, rsync of the large file, at
# 0 ms added) is measured too, so a figure bound by the relay shows as such.
# The durable rsync reference is skipped for the large file under delay
# (the link hides the fsync).  Small files delivered are moved aside, not
# deleted, between runs (see fresh_dst).  On a shared or virtual machine the
# per-file fsync latency varies from run to run: each line gives the runs.
#
# Needs root (namespaces, sshd), openssh-server/client, rsync, iproute2;
# skips otherwise.  Environment (defaults in brackets):
#   BENCH_RUNS=N              runs per figure, also the first argument [3]
#   BENCH_FILES=N             small files [2000]
#   BENCH_FILE_KIB=N          size of each small file [4]
#   BENCH_BIG_MIB=N           the large file, from /dev/urandom [256]; 0 skips it
#   BENCH_DELAY=D             one-way delay of the slow link [50ms]; 0 skips that series
#   BENCH_SCP_EACH=N          files for one-scp-connection-per-file, no delay [100]
#   BENCH_SCP_EACH_DELAY=N    ... under delay [10] (both in the first run only)
#   BENCH_SCP_DELAY_FILES=N   files timed for the one-invocation scp under delay [10];
#                             "all" times every file (slow: about 1 s per file)
#   BENCH_LEVELS="L..."       extra compression_level values timed for queueing
#                             the large file, once each [1 0]
#   BENCH_RSYNC_FSYNC=0       skip the durable rsync --fsync reference
#   BENCH_DIR=DIR             work folder parent [$TMPDIR or /tmp]
#   SITESPOOL=BIN             the binary [build/tools/sitespool, built first]
#   SS_NETEM=relay            force the python relay even where netem exists
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-${BENCH_RUNS:-3}}
NFILES=${BENCH_FILES:-2000}
FILE_KIB=${BENCH_FILE_KIB:-4}
BIG_MIB=${BENCH_BIG_MIB:-256}
DELAY=${BENCH_DELAY:-50ms}
SCP_EACH=${BENCH_SCP_EACH:-100}
SCP_EACH_DELAY=${BENCH_SCP_EACH_DELAY:-10}
SCP_DELAY_FILES=${BENCH_SCP_DELAY_FILES:-10}
LEVELS=${BENCH_LEVELS-1 0}
RSYNC_FSYNC=${BENCH_RSYNC_FSYNC:-1}
[ "$DELAY" = 0 ] && DELAY=
if [ -z "${SITESPOOL:-}" ]; then
  [ -f build/CMakeCache.txt ] || cmake -S . -B build >/dev/null
  cmake --build build -j2 >/dev/null 2>&1 || { cmake --build build 2>&1 | tail -20; echo "build failed"; exit 1; }
  SITESPOOL=$PWD/build/tools/sitespool
fi
export SITESPOOL
for p in rsync scp python3; do command -v "$p" >/dev/null || { echo "SKIP: $p not installed"; exit 0; }; done
[ -z "${BENCH_DIR:-}" ] || export TMPDIR=$BENCH_DIR
. "$PWD/tests/e2e/lib.sh"
. "$PWD/tests/e2e/lib_ssh.sh"
ssh_env_check
cp "$SITESPOOL" "$T/sitespool"; S=$T/sitespool # a rebuild during the run changes nothing

median() { tr ' ' '\n' | awk NF | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
met() { awk -v r="$1" -v t="$2" 'BEGIN {print (r == "n/a") ? "?" : (r + 0 >= t) ? "met" : "MISSED"}'; } # met RATIO TARGET
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b}'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
per_s() { awk -v n="$1" -v t="$2" 'BEGIN {if (t == "" || t + 0 == 0) print ""; else printf "%.1f", n / t}'; } # per_s COUNT SECONDS
now() { date +%s.%N; }
section() { echo "-- $* (at ${SECONDS} s)" >&2; }
# timed CMD...: runs CMD (output discarded), prints its wall-clock seconds;
# a failure ends the benchmark.
timed() {
  local t0 t1 out
  sync
  t0=$(now)
  out=$("$@" 2>&1) || { echo "failed: $* -> ${out: -300}" >&2; return 1; }
  t1=$(now)
  secs "$t0" "$t1"
}
# SAMPLE[key]: space-separated samples (seconds) of one measurement.
declare -A SAMPLE
add() { SAMPLE[$1]+="$2 "; }
med() { echo "${SAMPLE[$1]:-}" | median; }

MB=$(awk -v m="$BIG_MIB" 'BEGIN {printf "%.6f", m * 1048576 / 1e6}') # the large file in MB (10^6)

# ---- namespaces, sshd, sites ------------------------------------------------
section "set-up"
netns_setup
sshd_start 2222
mksite PSB
mksite PSP "bundle_max_files = 1"
mksite SS1
for p in PSB PSP; do
  "$S" -C "$T/$p" peer ssh-key | tail -1 >>"$SSHD_AUTH"
  peer "$p" SS1; peer SS1 "$p"; exchange "$p" SS1
  "$S" -C "$T/$p" peer add SS1 --inbox "sftp://root@$IP_B:$SSHD_PORT$(receive SS1)" --host-key "$(sshd_host_fp)" >/dev/null
done
KEY=$T/PSB/keys/sftp_id # rsync and scp log in with PSB's identity
sshd_known_hosts_line "$SSHD_PORT" >"$T/known_hosts"
SSH_OPTS=(-F /dev/null -i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes
          -o UserKnownHostsFile="$T/known_hosts" -o GlobalKnownHostsFile=/dev/null)
RSH="ssh ${SSH_OPTS[*]} -p $SSHD_PORT"
DST='' REMOTE='' NDIR=0 # rsync's and scp's destination (fresh_dst), beside SS1 on the same filesystem
RECV=$(receive SS1)
OUTBOX_B=$(outbox PSB SS1)
OUTBOX_P=$(outbox PSP SS1)

# ---- data ----------------------------------------------------------------------
mkdir -p "$T/small"
python3 - "$T/small" "$NFILES" "$FILE_KIB" <<'PY'
import os, sys
d, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(1, n + 1):
    with open("%s/f%05d" % (d, i), "wb") as f:
        f.write(os.urandom(kib * 1024))
PY
SMALL=("$T"/small/f*)
(cd "$T/small" && sha256sum f*) >"$T/small.sha256"
if [ "$BIG_MIB" != 0 ]; then head -c $((BIG_MIB << 20)) /dev/urandom >"$T/big"; fi

same_small() { # same_small DIR: exactly the small inputs, byte for byte
  [ "$(count_files "$1")" = "$NFILES" ] && (cd "$1" && sha256sum --quiet --strict -c "$T/small.sha256" >/dev/null 2>&1)
}
# Delivered small files are not deleted between runs but moved aside with
# their folder: on ext4 without a journal, creating files right after
# deleting others costs a scan of the recently freed inodes (see README,
# Performance), which would charge one tool for another's clean-up.
# Large files are deleted (one inode each).
fresh_dst() {
  [ -z "$DST" ] || find "$DST" -maxdepth 1 -type f -size +1M -delete
  NDIR=$((NDIR + 1)); DST=$T/dst/$NDIR; REMOTE=root@$IP_B:$DST/
  mkdir -p "$DST"
}
clear_peer() { # what one sitespool run delivered goes aside (no despooler runs)
  local d mode
  for d in "$RECV" "$(incoming SS1)"; do
    [ -n "$(ls -A "$d")" ] || continue
    find "$d" -maxdepth 1 -type f -size +1M -delete
    mode=$(stat -c %a "$d"); NDIR=$((NDIR + 1)); mkdir -p "$T/aside"
    mv "$d" "$T/aside/$NDIR"; mkdir -m "$mode" "$d"
  done
}
# delivered N: the receive inbox holds N complete pairs and nothing else.
delivered() {
  local ins pck all
  ins=$(find "$RECV" -maxdepth 1 -type f -name '*.ins' | wc -l)
  pck=$(find "$RECV" -maxdepth 1 -type f -name '*.pck' | wc -l)
  all=$(count_all "$RECV")
  if [ "$ins" != "$1" ] || [ "$pck" != "$1" ] || [ "$all" != $((2 * $1)) ]; then
    fail "expected $1 pairs in SS1's receive inbox, found $ins .ins, $pck .pck, $all entries"
  fi
}
queued() { find "$1" -maxdepth 1 -name '*.ins' | wc -l; }
flush() { in_a "$S" -C "$T/$1" send --flush --to SS1; }

# rtt_ms: median of 5 TCP connects from NS_A to sshd (one round trip each).
rtt_ms() {
  in_a python3 - "$IP_B" "$SSHD_PORT" <<'PY'
import socket, sys, time
t = []
for _ in range(5):
    t0 = time.monotonic(); s = socket.create_connection((sys.argv[1], int(sys.argv[2]))); t.append(time.monotonic() - t0); s.close()
print("%.2f" % (sorted(t)[2] * 1000))
PY
}
# tcp_mbs MiB: one plain TCP stream NS_A -> NS_B (no SSH): MB/s, the link's own limit.
tcp_mbs() {
  local port=5001 pid out
  in_b python3 -c '
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(1)
print("ready", flush=True)
c, _ = l.accept()
while c.recv(1 << 20): pass
c.sendall(b"k")
' "$IP_B" "$port" >"$T/tcp.out" &
  pid=$!
  wait_until 5 grep -q ready "$T/tcp.out" || fail "tcp sink did not start"
  out=$(in_a python3 -c '
import socket, sys, time
n = int(sys.argv[3]) << 20; buf = bytes(1 << 20)
t0 = time.monotonic(); s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
for _ in range(n >> 20): s.sendall(buf)
s.shutdown(socket.SHUT_WR); s.recv(1)
print("%.1f" % (n / 1e6 / (time.monotonic() - t0)))
' "$IP_B" "$port" "$1")
  wait "$pid" 2>/dev/null || true
  echo "$out"
}

echo "sitespool SFTP delivery beside rsync -e ssh and scp: $(nproc) cores, $RUNS runs each (medians)"
echo "$(ssh -V 2>&1), $(rsync --version | head -1 | awk '{print "rsync", $3}'), sitespool $SITESPOOL"
echo "link: veth $NS_A -> $NS_B, sshd on $IP_B:$SSHD_PORT; work folder on $(df --output=source,fstype "$T" | tail -1 | tr -s ' ')"
echo "data: $NFILES x $FILE_KIB KiB and one $BIG_MIB MiB file, from /dev/urandom (incompressible)"
# The figures are only as quiet as the machine: say what else runs.
busy() {
  local others
  others=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -cvxF -e "$NS_A" -e "$NS_B" || true)
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $others other network namespaces (other tests running?)"
}
echo "machine at the start: $(busy)"

# ---- the cases ------------------------------------------------------------------
# small_run TAG SCP_FULL EACH: one run of every small-file case.  SCP_FULL:
# "all" (every file in one scp) or a count N (1 file and N files, for the
# extrapolation).  EACH: files sent with one scp connection each.
small_run() {
  local tag=$1 scp_n=$2 each=$3 first=$4 t v site box n
  for v in bundled pairs; do
    if [ "$v" = bundled ]; then site=PSB box=$OUTBOX_B; else site=PSP box=$OUTBOX_P; fi
    clear_peer
    t=$(timed "$S" -C "$T/$site" send --to SS1 --queue-only "${SMALL[@]}"); add "$tag.queue.$v" "$t"
    n=$(queued "$box"); PAIRS[$v]=$n
    t=$(timed flush "$site"); add "$tag.flush.$v" "$t"
    delivered "$n"
    [ "$(queued "$box")" = 0 ] || fail "$v: pairs left in the outbox after the flush"
    if [ -z "${CHECKED[$tag.$v]:-}" ]; then # once: the peer's despooler gets every file intact
      despool_once SS1 >/dev/null; same_small "$(incoming SS1)" || fail "$v: files not delivered intact"
      CHECKED[$tag.$v]=1
    fi
  done
  clear_peer
  fresh_dst; t=$(timed in_a rsync -a -e "$RSH" "$T/small/" "$REMOTE"); add "$tag.rsync" "$t"
  if [ -z "${CHECKED[$tag.rsync]:-}" ]; then same_small "$DST" || fail "rsync: files not copied intact"; CHECKED[$tag.rsync]=1; fi
  if [ "$RSYNC_FSYNC" != 0 ]; then
    fresh_dst; t=$(timed in_a rsync -a --fsync -e "$RSH" "$T/small/" "$REMOTE"); add "$tag.rsyncfs" "$t"
  fi
  local mode
  for mode in sftp legacy; do
    local flag=(); [ "$mode" = legacy ] && flag=(-O)
    if [ "$scp_n" = all ]; then
      fresh_dst; t=$(timed in_a scp "${flag[@]}" -q "${SSH_OPTS[@]}" -P "$SSHD_PORT" "${SMALL[@]}" "$REMOTE"); add "$tag.scp.$mode" "$t"
      if [ -z "${CHECKED[$tag.scp.$mode]:-}" ]; then same_small "$DST" || fail "scp ($mode): files not copied intact"; CHECKED[$tag.scp.$mode]=1; fi
    else
      fresh_dst; t=$(timed in_a scp "${flag[@]}" -q "${SSH_OPTS[@]}" -P "$SSHD_PORT" "${SMALL[0]}" "$REMOTE"); add "$tag.scp1.$mode" "$t"
      fresh_dst; t=$(timed in_a scp "${flag[@]}" -q "${SSH_OPTS[@]}" -P "$SSHD_PORT" "${SMALL[@]:0:scp_n}" "$REMOTE"); add "$tag.scpn.$mode" "$t"
      [ "$(count_files "$DST")" = "$scp_n" ] || fail "scp ($mode): $scp_n files not copied"
    fi
  done
  if [ "$each" -gt 0 ] && [ "$first" = 1 ]; then # a reference: once
    fresh_dst
    t=$(timed scp_each "${SMALL[@]:0:each}")
    add "$tag.scpeach" "$t"
    [ "$(count_files "$DST")" = "$each" ] || fail "scp per connection: $each files not copied"
  fi
  fresh_dst
}
# scp_each FILE...: one scp (one SSH connection) per file.
scp_each() {
  local f
  for f; do in_a scp -q "${SSH_OPTS[@]}" -P "$SSHD_PORT" "$f" "$REMOTE" || return 1; done
}

# big_run TAG: sitespool (queue at the default level, flush), rsync, scp of the large file.
big_run() {
  local tag=$1 t
  clear_peer
  t=$(timed "$S" -C "$T/PSB" send --to SS1 --queue-only "$T/big"); add "$tag.bigqueue" "$t"
  PCK_BYTES=$(stat -c %s "$OUTBOX_B"/*.pck)
  t=$(timed flush PSB); add "$tag.bigflush" "$t"
  delivered 1
  if [ -z "${CHECKED[$tag.big]:-}" ]; then
    despool_once SS1 >/dev/null; cmp -s "$T/big" "$(incoming SS1)/big" || fail "large file not delivered intact"
    CHECKED[$tag.big]=1
  fi
  clear_peer
  fresh_dst; t=$(timed in_a rsync -a -e "$RSH" "$T/big" "$REMOTE"); add "$tag.bigrsync" "$t"
  cmp -s "$T/big" "$DST/big" || fail "rsync: large file differs"
  if [ "$RSYNC_FSYNC" != 0 ] && [ "$tag" = d0 ]; then # under delay the link hides the fsync
    fresh_dst; t=$(timed in_a rsync -a --fsync -e "$RSH" "$T/big" "$REMOTE"); add "$tag.bigrsyncfs" "$t"
  fi
  fresh_dst; t=$(timed in_a scp -q "${SSH_OPTS[@]}" -P "$SSHD_PORT" "$T/big" "$REMOTE"); add "$tag.bigscp" "$t"
  cmp -s "$T/big" "$DST/big" || fail "scp: large file differs"
  fresh_dst
}

declare -A PAIRS CHECKED
ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5|$6"); } # case | sitespool | rsync | scp | ratios | target

# report_small TAG LABEL SCP_N EACH: lines and summary rows for one link.
report_small() {
  local tag=$1 label=$2 scp_n=$3 each=$4 v q f r rf s sl best bestname e mode t1 tn per
  r=$(med "$tag.rsync"); rf=$(med "$tag.rsyncfs")
  declare -A SCPT
  for mode in sftp legacy; do
    if [ "$scp_n" = all ]; then SCPT[$mode]=$(med "$tag.scp.$mode")
    else
      t1=$(med "$tag.scp1.$mode"); tn=$(med "$tag.scpn.$mode")
      per=$(awk -v a="$t1" -v b="$tn" -v n="$scp_n" 'BEGIN {printf "%.4f", (b - a) / (n - 1)}')
      SCPT[$mode]=$(awk -v a="$t1" -v p="$per" -v n="$NFILES" 'BEGIN {printf "%.3f", a + (n - 1) * p}')
      echo "$label: scp ($mode) of 1 file $t1 s, of $scp_n files $tn s: $per s per further file; $NFILES files extrapolated: ${SCPT[$mode]} s"
    fi
  done
  s=${SCPT[sftp]}; sl=${SCPT[legacy]}
  if awk -v a="$s" -v b="$sl" 'BEGIN {exit !(a <= b)}'; then best=$s bestname="scp"; else best=$sl bestname="scp -O"; fi
  local scp_how; [ "$scp_n" = all ] && scp_how="one invocation" || scp_how="one invocation, extrapolated from $scp_n"
  echo "$label: rsync -e ssh $r s (runs: ${SAMPLE[$tag.rsync]% }) = $(per_s "$NFILES" "$r") files/s$( [ -n "$rf" ] && echo "; rsync --fsync $rf s = $(per_s "$NFILES" "$rf") files/s")"
  echo "$label: scp ($scp_how) $s s = $(per_s "$NFILES" "$s") files/s; scp -O (legacy protocol) $sl s = $(per_s "$NFILES" "$sl") files/s"
  if [ "$each" -gt 0 ]; then
    e=$(awk -v t="$(med "$tag.scpeach")" -v m="$each" -v n="$NFILES" 'BEGIN {printf "%.3f", t / m * n}')
    echo "$label: scp, one connection per file ($each files, extrapolated to $NFILES): $e s = $(per_s "$NFILES" "$e") files/s"
  fi
  for v in bundled pairs; do
    q=$(med "$tag.queue.$v"); f=$(med "$tag.flush.$v")
    local what; [ "$v" = bundled ] && what="bundled, ${PAIRS[$v]} pairs" || what="bundle_max_files = 1, ${PAIRS[$v]} pairs"
    echo "$label: sitespool ($what): queue $q s = $(per_s "$NFILES" "$q") files/s; flush $f s (runs: ${SAMPLE[$tag.flush.$v]% }) = $(per_s "$NFILES" "$f") files/s = $(ratio "$r" "$f") x rsync (target >= 1), $(ratio "$best" "$f") x $bestname (target >= 3)$( [ -n "$rf" ] && echo ", $(ratio "$rf" "$f") x rsync --fsync"); queue + flush: $(ratio "$r" "$(awk -v a="$q" -v b="$f" 'BEGIN {print a + b}')") x rsync"
    row "$NFILES x $FILE_KIB KiB, $label, $v (${PAIRS[$v]} pairs)" \
        "$(per_s "$NFILES" "$f") files/s ($f s)" \
        "$(per_s "$NFILES" "$r") files/s ($r s)" \
        "$(per_s "$NFILES" "$best") files/s ($bestname)" \
        "x rsync $(ratio "$r" "$f"), x scp $(ratio "$best" "$f")" \
        ">= 1 x rsync: $(met "$(ratio "$r" "$f")" 1), >= 3 x scp: $(met "$(ratio "$best" "$f")" 3)"
  done
  [ -n "$rf" ] && row "  (reference) rsync --fsync, $label" "" "$(per_s "$NFILES" "$rf") files/s ($rf s)" "" "sitespool bundled/pairs: x $(ratio "$rf" "$(med "$tag.flush.bundled")") / x $(ratio "$rf" "$(med "$tag.flush.pairs")")" ""
  row "  (reference) scp -O / scp, $label" "" "" "$(per_s "$NFILES" "$sl") / $(per_s "$NFILES" "$s") files/s" "" ""
  [ "$each" -gt 0 ] && row "  (reference) scp one connection per file, $label" "" "" "$(per_s "$NFILES" "$e") files/s" "pairs: x $(ratio "$e" "$(med "$tag.flush.pairs")")" ""
  row "  (reference) sitespool queue, bundled / pairs" "$(per_s "$NFILES" "$(med "$tag.queue.bundled")") / $(per_s "$NFILES" "$(med "$tag.queue.pairs")") files/s" "" "" "" ""
  return 0
}

report_big() {
  local tag=$1 label=$2 q f r rf s
  q=$(med "$tag.bigqueue"); f=$(med "$tag.bigflush"); r=$(med "$tag.bigrsync"); rf=$(med "$tag.bigrsyncfs"); s=$(med "$tag.bigscp")
  echo "$label: $BIG_MIB MiB: sitespool queue (compression_level 6, the default) $q s = $(per_s "$MB" "$q") MB/s, package $PCK_BYTES bytes ($(ratio "$PCK_BYTES" "$((BIG_MIB << 20))") x the file)"
  echo "$label: $BIG_MIB MiB: sitespool flush $f s (runs: ${SAMPLE[$tag.bigflush]% }) = $(per_s "$MB" "$f") MB/s; rsync $r s = $(per_s "$MB" "$r") MB/s; scp $s s = $(per_s "$MB" "$s") MB/s$( [ -n "$rf" ] && echo "; rsync --fsync $rf s = $(per_s "$MB" "$rf") MB/s"); sitespool = $(ratio "$r" "$f") x rsync (target >= 0.8), $(ratio "$s" "$f") x scp"
  row "$BIG_MIB MiB, $label" "$(per_s "$MB" "$f") MB/s ($f s)" "$(per_s "$MB" "$r") MB/s ($r s)" "$(per_s "$MB" "$s") MB/s ($s s)" \
      "x rsync $(ratio "$r" "$f"), x scp $(ratio "$s" "$f")" ">= 0.8 x rsync: $(met "$(ratio "$r" "$f")" 0.8)"
  [ -n "$rf" ] && row "  (reference) rsync --fsync, $label" "" "$(per_s "$MB" "$rf") MB/s ($rf s)" "" "x $(ratio "$rf" "$f")" ""
  row "  (reference) sitespool queue, level 6" "$(per_s "$MB" "$q") MB/s ($q s)" "" "" "" ""
  return 0
}

# run_series TAG LABEL SCP_N EACH
run_series() {
  local tag=$1 label=$2 scp_n=$3 each=$4 i
  section "$label: small files"
  for ((i = 1; i <= RUNS; i++)); do small_run "$tag" "$scp_n" "$each" "$i"; done
  report_small "$tag" "$label" "$scp_n" "$each"
  if [ "$BIG_MIB" != 0 ]; then
    section "$label: $BIG_MIB MiB"
    for ((i = 1; i <= RUNS; i++)); do big_run "$tag"; done
    report_big "$tag" "$label"
  fi
}

# ---- no added delay --------------------------------------------------------------
RTT0=$(rtt_ms)
TCP0=$( [ "$BIG_MIB" != 0 ] && tcp_mbs 1024 || echo "")
echo "no added delay: RTT $RTT0 ms (TCP connect), one plain TCP stream ${TCP0:-?} MB/s"
row "link: no added delay" "RTT $RTT0 ms" "TCP stream ${TCP0:-?} MB/s" "" "" ""
run_series d0 "no delay" all "$SCP_EACH"

# compression levels for the large file (queue only; the flush is the same size)
if [ "$BIG_MIB" != 0 ] && [ -n "$LEVELS" ]; then
  section "compression levels"
  for lv in $LEVELS; do
    sed -i "s/^compression_level = .*/compression_level = $lv/" "$T/PSB/site.conf"
    t=$(timed "$S" -C "$T/PSB" send --to SS1 --queue-only "$T/big")
    sz=$(stat -c %s "$OUTBOX_B"/*.pck)
    f=$(timed flush PSB); delivered 1; clear_peer
    echo "large file queued at compression_level $lv: $t s = $(per_s "$MB" "$t") MB/s, package $sz bytes; its flush $f s = $(per_s "$MB" "$f") MB/s"
    row "  (reference) sitespool queue, level $lv (once)" "$(per_s "$MB" "$t") MB/s ($t s), flush $(per_s "$MB" "$f") MB/s" "" "" "" ""
  done
  sed -i "s/^compression_level = .*/compression_level = 6/" "$T/PSB/site.conf"
fi

# ---- DELAY each way ----------------------------------------------------------------
if [ -n "$DELAY" ]; then
  if [ "$BIG_MIB" != 0 ]; then # what the emulation itself can carry, without delay
    netem_on 0ms
    if [ "$NETEM_MODE" = relay ]; then
      section "relay capacity"
      RELAY_TCP=$(tcp_mbs 512)
      rr=(); for ((i = 1; i <= RUNS; i++)); do fresh_dst; rr+=("$(timed in_a rsync -a -e "$RSH" "$T/big" "$REMOTE")"); done; fresh_dst
      RELAY_RSYNC=$(printf '%s\n' "${rr[@]}" | median)
      echo "relay (no netem qdisc in this kernel: packets go through a python3 relay), 0 ms: TCP stream $RELAY_TCP MB/s, rsync of $BIG_MIB MiB $RELAY_RSYNC s = $(per_s "$MB" "$RELAY_RSYNC") MB/s"
      row "link: python relay, 0 ms added" "" "$(per_s "$MB" "$RELAY_RSYNC") MB/s" "" "TCP stream $RELAY_TCP MB/s" ""
    fi
  fi
  netem_on "$DELAY"
  RTT1=$(rtt_ms)
  TCP1=$( [ "$BIG_MIB" != 0 ] && tcp_mbs 256 || echo "")
  echo "$DELAY each way ($NETEM_MODE): RTT $RTT1 ms (TCP connect), one plain TCP stream ${TCP1:-?} MB/s"
  row "link: $DELAY each way ($NETEM_MODE)" "RTT $RTT1 ms" "TCP stream ${TCP1:-?} MB/s" "" "" ""
  run_series d1 "RTT ${RTT1%.*} ms" "$SCP_DELAY_FILES" "$SCP_EACH_DELAY"
  netem_off
fi

# ---- summary ------------------------------------------------------------------------
echo "machine at the end: $(busy)"
echo
echo "summary ($RUNS runs, medians; $((SECONDS / 60)) min $((SECONDS % 60)) s in all); sitespool = send --flush (delivery only), x = sitespool's rate / the other's:"
printf '%s\n' "case|sitespool|rsync -e ssh|scp (one invocation)|ratios|target" "${ROWS[@]}" | awk -F'|' '
  {for (i = 1; i <= NF; i++) {c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i)}; n = NR}
  END {for (r = 1; r <= n; r++) {line = ""; for (i = 1; i <= 6; i++) line = line sprintf("%-" w[i] "s", c[r, i]) (i < 6 ? " | " : ""); sub(/ +$/, "", line); print line}}'
