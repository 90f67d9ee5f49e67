#!/usr/bin/env bash
# Scale: a 1 GiB file is sent in flat memory (peak RSS <= 16 MiB), and 2,000
# small files in one call arrive as 8 bundles (the defaults), or, with
# bundle_max_files = 1, as 2,000 pairs numbered in the order given.
. "$(dirname "$0")/lib.sh"
mksite PS1; mksite SS1; mksite SS2
peer PS1 SS1; peer PS1 SS2
PUB="$T/PS1.pub"
"$S" -C "$T/PS1" key export -o "$PUB" 2>/dev/null
R=$(receive SS1)

# --- 1 GiB, compressible, flat memory
yes 'sitespool flat memory test line' | head -c 1G > "$T/big" || true
assert_eq "$(stat -c %s "$T/big")" 1073741824 "generated file size"
/usr/bin/time -f %M -o "$T/rss" "$S" -C "$T/PS1" send --to SS1 "$T/big" >/dev/null ||
  fail "send of 1 GiB failed"
rss=$(tail -1 "$T/rss")
echo "# peak RSS of send for 1 GiB: $rss KiB"
assert_eq "$(check_pairs "$R" "$PUB")" 1 "one pair for the 1 GiB file"
ins=$(ls "$R"/*.ins)
assert_eq "$(tc_field "$ins" size)" 1073741824 "size field"
python3 - "${ins%.ins}.pck" "$T/big" <<'PY' || fail "1 GiB payload differs"
import hashlib, sys, zlib
d = zlib.decompressobj(); h1 = hashlib.sha256(); h2 = hashlib.sha256()
with open(sys.argv[1], 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
        h1.update(d.decompress(chunk))
h1.update(d.flush())
assert d.eof and not d.unused_data, "not exactly one zlib stream"
with open(sys.argv[2], 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
        h2.update(chunk)
assert h1.digest() == h2.digest()
PY
rm -f "$T/big"; find "$R" -mindepth 1 -delete
if [ "${SS_SANITIZE:-OFF}" = ON ]; then
  echo "skip - RSS limit under the sanitizers"
else
  [ "$rss" -le 16384 ] || fail "peak RSS $rss KiB > 16 MiB"
fi
pass "1 GiB file delivered, verifies, payload intact"

# --- a sparse 1 GiB file (reads as zeros) is flat too
truncate -s 1G "$T/sparse"
/usr/bin/time -f %M -o "$T/rss" "$S" -C "$T/PS1" send --to SS2 "$T/sparse" >/dev/null ||
  fail "send of a sparse file failed"
rss=$(tail -1 "$T/rss")
echo "# peak RSS of send for a sparse 1 GiB: $rss KiB"
assert_eq "$(check_pairs "$(receive SS2)" "$PUB")" 1 "one pair for the sparse file"
assert_eq "$(tc_field "$(ls "$(receive SS2)"/*.ins)" size)" 1073741824 "sparse size field"
[ "${SS_SANITIZE:-OFF}" = ON ] || [ "$rss" -le 16384 ] || fail "peak RSS $rss KiB > 16 MiB"
rm -f "$T/sparse"; find "$(receive SS2)" -mindepth 1 -delete
pass "sparse 1 GiB file"

# --- 2,000 small files in one call, bundled (the defaults: bundles of at
# most 256 files below 64 KiB): 8 pairs, seq 2..9 on SS1 (the 1 GiB file
# was seq 1), every file in one of them, in the order given.
mkdir "$T/many"
for i in $(seq 1 2000); do echo "file $i" > "$T/many/f$i.txt"; done
"$S" -C "$T/PS1" send --to SS1 "$T"/many/f*.txt > "$T/out" || fail "send of 2000 files failed"
grep -q "^Queued 2000 file(s) for SS1 in 8 pair(s)$" "$T/out" || fail "send output: $(tail -3 "$T/out")"
grep -q "^Delivered 8 pair(s) to SS1$" "$T/out" || fail "send output: $(tail -3 "$T/out")"
for f in "$T"/many/f*.txt; do echo "${f##*/}"; done > "$T/want"
sed -n 's/^Queued instruction [0-9a-f]\{32\} (bundle of [0-9]* files) for SS1: //p' "$T/out" > "$T/told"
cmp -s "$T/told" "$T/want" || fail "one line per file, in order: $(diff "$T/want" "$T/told" | head -5)"
assert_eq "$(find "$R" -name '*.ins' | wc -l)" 8 "8 instructions"
assert_eq "$(find "$R" -name '*.pck' | wc -l)" 8 "8 packages"
assert_eq "$(find "$R" -name '.*' | wc -l)" 0 "no temporary names"
assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "outbox empty"
assert_eq "$(check_pairs "$R" "$PUB")" 8 "the 8 bundles verify with minisign"
python3 - "$R" "$T/many" "$T/want" <<'PY' || fail "bundles of the 2000 files"
import io, os, re, sys, tarfile, zlib
r, src, want = sys.argv[1], sys.argv[2], open(sys.argv[3]).read().split()
pairs = []
for f in os.listdir(r):
    if f.endswith('.ins'):
        tc = re.search(r'^trusted comment: (.*)$', open(os.path.join(r, f)).read(), re.M).group(1)
        pairs.append(dict([x.split('=', 1) for x in tc.split(' ')[1:]], ins=f))
pairs.sort(key=lambda kv: int(kv['seq']))
assert [int(kv['seq']) for kv in pairs] == list(range(2, 10)), [kv['seq'] for kv in pairs]
assert [int(kv['files']) for kv in pairs] == [256] * 7 + [208]
names = []
for kv in pairs:
    assert kv['name'] == 'bundle-%s-files.tar' % kv['files'], kv['name']
    data = zlib.decompress(open(os.path.join(r, kv['ins'][:-4] + '.pck'), 'rb').read())
    assert len(data) == int(kv['size']), (len(data), kv['size'])
    t = tarfile.open(fileobj=io.BytesIO(data))
    members = t.getmembers()
    assert len(members) == int(kv['files'])
    for m in members:
        assert m.isreg() and m.mode == 0o640, m.name
        assert t.extractfile(m).read() == open(os.path.join(src, m.name), 'rb').read(), m.name
        names.append(m.name)
assert names == want, 'files not in the order given'
PY
pass "2000 files in one call: 8 bundles, seq 2..9, each file once, in order"

# --- the same 2,000 files with bundle_max_files = 1: 2,000 pairs, numbered
# 2..2001 on SS2 (the sparse file was seq 1)
sed -i 's/^bundle_max_files = .*/bundle_max_files = 1/' "$T/PS1/site.conf"
R=$(receive SS2)
"$S" -C "$T/PS1" send --to SS2 "$T"/many/f*.txt > "$T/out" || fail "send of 2000 files failed"
grep -q "^Queued 2000 file(s) for SS2$" "$T/out" || fail "send output: $(tail -3 "$T/out")"
grep -q "^Delivered 2000 pair(s) to SS2$" "$T/out" || fail "send output: $(tail -3 "$T/out")"
assert_eq "$(find "$R" -name '*.ins' | wc -l)" 2000 "2000 instructions"
assert_eq "$(find "$R" -name '*.pck' | wc -l)" 2000 "2000 packages"
assert_eq "$(find "$R" -name '.*' | wc -l)" 0 "no temporary names"
assert_eq "$(count_files "$(outbox PS1 SS2)")" 0 "outbox empty"
# seq 2..2001, no gaps or duplicates, and each seq belongs to the file
# given at that position.
# (one awk for all files: a process per file is slow here)
find "$R" -name '*.ins' -print0 | xargs -0 awk '/^trusted comment: / {
    seq = ""; name = ""
    for (i = 3; i <= NF; i++) {
      if ($i ~ /^seq=/) seq = substr($i, 5)
      if ($i ~ /^name=/) name = substr($i, 6)
    }
    print seq, name
  }' | sort -n > "$T/seqs"
assert_eq "$(cut -d' ' -f1 "$T/seqs" | uniq | wc -l)" 2000 "distinct seq numbers"
assert_eq "$(head -1 "$T/seqs" | cut -d' ' -f1)-$(tail -1 "$T/seqs" | cut -d' ' -f1)" 2-2001 "seq range"
i=2; for f in "$T"/many/f*.txt; do echo "$i ${f##*/}"; i=$((i + 1)); done > "$T/want"
cmp -s "$T/seqs" "$T/want" || fail "seq/name mapping differs: $(diff "$T/want" "$T/seqs" | head -5)"
# Verify a sample with minisign (all 2000 would take long), all with python.
for ins in $(ls "$R"/*.ins | shuf -n 50); do
  verify_pair "$PUB" "${ins%.ins}.pck" "$ins" >/dev/null || fail "minisign rejects $ins"
done
python3 - "$R" "$T/many" <<'PY' || fail "payloads of the 2000 files"
import os, re, sys, zlib
r, src = sys.argv[1], sys.argv[2]
n = 0
for f in os.listdir(r):
    if not f.endswith('.ins'):
        continue
    text = open(os.path.join(r, f)).read()
    name = re.search(r' name=(\S+) ', text).group(1)
    data = zlib.decompress(open(os.path.join(r, f[:-4] + '.pck'), 'rb').read())
    assert data == open(os.path.join(src, name), 'rb').read(), name
    n += 1
assert n == 2000, n
PY
assert_eq "$(status_count PS1 4500)" 2010 "4500 per delivered pair"
pass "2000 files in one call, bundle_max_files = 1: 2000 pairs, seq 2..2001 without gaps"
