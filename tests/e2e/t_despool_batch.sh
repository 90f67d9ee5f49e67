#!/usr/bin/env bash
# Batching sanity: 300 pairs (more than one batch of batch_max = 256) are
# all delivered by a single `despool --once`.
. "$(dirname "$0")/lib.sh"
mksite PS1 "bundle_max_files = 1"; mksite SS1; pair PS1 SS1
mkdir "$T/src"
for i in $(seq 1 300); do printf 'batch item %d %s\n' "$i" "$RANDOM$RANDOM" > "$T/src/b$i.txt"; done
"$S" -C "$T/PS1" send --to SS1 "$T/src"/* >/dev/null
assert_eq "$(find "$(receive SS1)" -name '*.ins' | wc -l)" 300 "300 instructions in receive"
out=$(despool_once SS1)
assert_eq "$out" "delivered 300, rejected 0, duplicates 0, waiting 0" "--once summary"
assert_eq "$(status_count SS1 4400)" 300 "4400 count"
assert_eq "$(ledger_count SS1)" 300 "ledger rows"
assert_eq "$(count_all "$(receive SS1)")" 0 "receive empty"
assert_eq "$(count_all "$(incoming SS1)")" 300 "300 files, no temporary ones"
for i in $(seq 1 300); do cmp -s "$T/src/b$i.txt" "$(incoming SS1)/b$i.txt" || fail "b$i.txt differs"; done
pass "one --once run delivered all 300 pairs (4400 x 300)"
