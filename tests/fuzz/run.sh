#!/usr/bin/env bash
# run.sh - the fuzz smoke run: builds the libFuzzer targets with clang in
# build-fuzz/ (ASan + UBSan + libFuzzer, see README.md here) and runs each
# target for SECONDS (default 30) from a copy of its seed corpus, two at a
# time.  Prints per target the executions and what it found; exits non-zero
# on any crash, leak, timeout or out-of-memory, whose reproducer stays in
# build-fuzz/findings/<target>/.  Without clang or its libFuzzer runtime
# (Debian: clang, libclang-rt-14-dev) it says why and exits 0.
#
#   tests/fuzz/run.sh [SECONDS]
#   FUZZ_TARGETS="pair inflate" tests/fuzz/run.sh 300     # some targets only
#   FUZZ_JOBS=1 tests/fuzz/run.sh                         # one at a time
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-30}
targets=(${FUZZ_TARGETS:-instr sig keyfile inflate conf pair report seal})
jobs=${FUZZ_JOBS:-2}

cc=
for c in clang clang-14; do
  if command -v "$c" >/dev/null; then cc=$(command -v "$c"); break; fi
done
if [ -z "$cc" ]; then
  echo "tests/fuzz/run.sh: skipped: no clang (Debian: apt-get install clang libclang-rt-14-dev)"
  exit 0
fi
probe=$(mktemp -d)
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
  > "$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
  echo "tests/fuzz/run.sh: skipped: $cc cannot link libFuzzer (Debian: apt-get install libclang-rt-14-dev):"
  sed 's/^/  /' "$probe/err" | head -5
  rm -rf "$probe"
  exit 0
fi
rm -rf "$probe"

start=$(date +%s)
build=build-fuzz
echo "== fuzz: building ${targets[*]} with $cc in $build =="
cmake -S . -B "$build" -DCMAKE_C_COMPILER="$cc" -DSITESPOOL_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target "${targets[@]/#/fuzz_}" >"$build/fuzz-build.log" 2>&1 ||
  { tail -40 "$build/fuzz-build.log"; echo "tests/fuzz/run.sh: build failed"; exit 1; }
echo "   built in $(($(date +%s) - start)) s"

# Scratch sites on tmpfs where there is one (despooler fsyncs are free there).
if [ -w /dev/shm ]; then scratch=$(mktemp -d /dev/shm/ssfuzz-run-XXXXXX); else scratch=$(mktemp -d); fi
trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

run_one() { # target
  local t=$1 dir="$scratch/$1"
  mkdir -p "$dir/corpus" "$dir/tmp" "$build/findings/$t"
  cp tests/fuzz/corpus/"$t"/* "$dir/corpus/"
  touch "$dir/start"
  local rc=0 dict=()
  case $t in
    instr | sig | pair) dict=(-dict=tests/fuzz/fields.dict) ;;
    keyfile | conf | report) dict=(-dict=tests/fuzz/$t.dict) ;;
  esac
  SS_FUZZ_TMPDIR="$dir/tmp" "$build/tests/fuzz_$t" "$dir/corpus" -max_total_time="$seconds" "${dict[@]}" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/findings/$t/" >"$dir/log" 2>&1 || rc=$?
  echo "$rc" >"$dir/rc"
}

failed=0
report() { # target
  local t=$1 dir="$scratch/$1" rc execs found
  rc=$(cat "$dir/rc")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  found=$(find "$build/findings/$t" -maxdepth 1 -type f -newer "$dir/start" \
            \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \
               -o -name 'slow-unit-*' \) -printf '%f\n')
  cp "$dir/log" "$build/findings/$t/last-run.log"
  if [ "$rc" = 0 ]; then
    printf '   %-8s %10s executions  nothing found\n' "$t" "${execs:-?}"
    for f in $found; do echo "      note: $build/findings/$t/$f"; done
  else
    failed=1
    printf '   %-8s %10s executions  FOUND (exit %s):\n' "$t" "${execs:-?}" "$rc"
    grep -E '==FUZZ INVARIANT==|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY:' \
      "$dir/log" | head -5 | sed 's/^/      /'
    for f in $found; do
      echo "      reproducer: $build/findings/$t/$f   (rerun: $build/tests/fuzz_$t $build/findings/$t/$f)"
    done
    echo "      log: $build/findings/$t/last-run.log"
  fi
}

echo "== fuzz: ${seconds} s per target, $jobs at a time =="
i=0
while [ $i -lt ${#targets[@]} ]; do
  batch=("${targets[@]:i:jobs}")
  for t in "${batch[@]}"; do run_one "$t" & done
  wait
  for t in "${batch[@]}"; do report "$t"; done
  i=$((i + jobs))
done
echo "== fuzz: done in $(($(date +%s) - start)) s =="
if [ "$failed" != 0 ]; then
  echo "tests/fuzz/run.sh: a fuzz target found a problem (see above)"
  exit 1
fi
