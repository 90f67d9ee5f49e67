#!/usr/bin/env bash
# Bundles (issue 14, the sender): the small files of one send to one peer
# and inbox share a pair whose package is a zlib-compressed POSIX tar and
# whose instruction says files=N.  Checked with python3 (zlib + tarfile)
# as an independent oracle and with stock minisign:
#   - 10 small files: one pair, files=10, name=bundle-10-files.tar, size=
#     the exact tar length (nothing after the two end blocks), exactly the
#     10 names in the order given, regular files only, mode 0640, uid/gid 0,
#     no user/group names, the inputs' mtimes and contents; one line per
#     file on stdout with the bundle's id and count, the 4504 names the
#     count, sender.log names each file; zip=none with compression_level 0;
#   - bundle_max_files = 3: 10 files make 3+3+3 bundles and one ordinary
#     pair; a file of bundle_below bytes or more travels alone; two inputs
#     with the same base name never share a bundle; bundle_max_files = 1:
#     one pair per file;
#   - non-ASCII and long names round-trip (pax headers only for them);
#   - files still queued are named "Already queued" with the bundle that
#     holds them, and a bundle is packed again without them; --again;
#   - a file that changes size while it is read (or has grown past
#     bundle_below when it is opened) leaves its bundle and is sent on its
#     own, as read (strace holds back its read or open);
#   - a send killed (strace) at renames, site.db writes and log writes
#     leaves a true account (printed <= recorded 4504 <= queued), sending
#     again queues exactly what is missing, every file ends in exactly one
#     queued pair, and after a flush the despooler delivers each once;
#   - two bundled sends of overlapping files at once queue each file once.
. "$(dirname "$0")/lib.sh"
mksite PS1; mksite SS1; pair PS1 SS1
despool_once SS1 >/dev/null # imports PS1's key
PUB="$T/PS1.pub"
"$S" -C "$T/PS1" key export -o "$PUB" 2>/dev/null
R=$(receive SS1); Q=$(outbox PS1 SS1)

# setconf KEY VALUE: changes one setting of PS1.
setconf() {
  sed -i "s|^$1 = .*|$1 = $2|" "$T/PS1/site.conf"
  grep -q "^$1 = $2\$" "$T/PS1/site.conf" || fail "setting $1 = $2 not applied"
}
clear() { find "$R" "$Q" -mindepth 1 -maxdepth 1 ! -name .lock -delete; }
# files N PREFIX [SIZE]: N random files $T/src/PREFIX1.. of SIZE (default
# 100*i) bytes; prints their paths.
files() {
  local i
  mkdir -p "$T/src"
  for ((i = 1; i <= $1; i++)); do
    head -c "${3:-$((100 * i))}" /dev/urandom > "$T/src/$2$i"
    echo "$T/src/$2$i"
  done
}

cat > "$T/oracle.py" <<'PY'
# The independent reading of what the sender wrote (python3 only).
import io, os, re, sys, tarfile, urllib.parse, zlib

def pairs(d):
    out = []
    for f in os.listdir(d) if os.path.isdir(d) else []:
        if f.startswith('.') or not f.endswith('.ins'):
            continue
        text = open(os.path.join(d, f), 'rb').read().decode()
        m = re.search(r'^trusted comment: (.*)$', text, re.M) or re.match(r'(sitespool/1 .*)', text)
        kv = dict(x.split('=', 1) for x in m.group(1).split(' ')[1:])
        kv['ins'] = os.path.join(d, f)
        kv['id_'] = re.sub(r'^[0-9]+-', '', f[:-4])
        out.append(kv)
    return sorted(out, key=lambda kv: int(kv['seq']))

def payload(kv):
    raw = open(kv['ins'][:-4] + '.pck', 'rb').read()
    if kv['zip'] == 'zlib':
        z = zlib.decompressobj()
        data = z.decompress(raw) + z.flush()
        assert z.eof and not z.unused_data, 'not exactly one zlib stream'
    else:
        assert kv['zip'] == 'none', kv['zip']
        data = raw
    assert len(data) == int(kv['size']), ('size= is not the payload length', kv['size'], len(data))
    return data

def name_of(kv):
    return urllib.parse.unquote_to_bytes(kv['name'])

def members(kv):
    """[(name bytes, data, mtime)] of a pair: its tar members, or itself."""
    data = payload(kv)
    if 'files' not in kv:
        assert not name_of(kv).startswith(b'bundle-'), 'a bundle without files='
        return [(name_of(kv), data, None)]
    n = int(kv['files'])
    assert n >= 2, 'a bundle of fewer than 2 files'
    assert name_of(kv) == b'bundle-%d-files.tar' % n, kv['name']
    t = tarfile.open(fileobj=io.BytesIO(data), encoding='utf-8', errors='surrogateescape')
    out = []
    for m in t.getmembers():
        name = os.fsencode(m.name)
        assert m.isreg() and m.type == tarfile.REGTYPE, (name, 'not a regular file')
        assert m.mode == 0o640, (name, oct(m.mode))
        assert m.uid == 0 and m.gid == 0 and m.uname == '' and m.gname == '', (name, 'owner')
        needs_pax = len(name) > 100 or any(b > 127 for b in name)
        allowed = {'path'} | ({'hdrcharset'} if m.pax_headers.get('hdrcharset') == 'BINARY' else set())
        assert set(m.pax_headers) <= allowed and bool(m.pax_headers) == needs_pax, (name, m.pax_headers)
        if 'hdrcharset' in m.pax_headers:
            try:
                name.decode('utf-8')
                raise AssertionError((name, 'a UTF-8 name marked BINARY'))
            except UnicodeDecodeError:
                pass
        out.append((name, t.extractfile(m).read(), m.mtime))
    assert len(out) == n, ('files= says %d, the tar holds %d' % (n, len(out)))
    assert data[t.offset:] == b'\0' * 1024, 'something other than the two end blocks after the last member'
    names = [x[0] for x in out]
    assert len(set(names)) == len(names), ('a name twice in one bundle', names)
    return out

def cmd_layout(d):
    """One line per pair, by seq: seq name[=member,member...]"""
    for kv in pairs(d):
        s = '%s:%s' % (kv['seq'], os.fsdecode(name_of(kv)))
        if 'files' in kv:
            s += '=' + ','.join(os.fsdecode(m[0]) for m in members(kv))
        print(s)

def cmd_where(d, only=None):
    """name id, for every file of every pair (only='bundles': of bundles)."""
    for kv in pairs(d):
        if only and 'files' not in kv:
            continue
        for m in members(kv):
            print(os.fsdecode(m[0]), kv['id_'])

def cmd_check(d, *srcs):
    """Every source in exactly one pair of d, intact, with its mtime, in the
    order given within each pair; nothing else there."""
    used = [False] * len(srcs)
    content = [open(s, 'rb').read() for s in srcs]
    base = [os.fsencode(os.path.basename(s)) for s in srcs]
    nfiles = 0
    for kv in pairs(d):
        last = -1
        for name, data, mtime in members(kv):
            i = next((i for i in range(len(srcs))
                      if not used[i] and base[i] == name and content[i] == data), None)
            assert i is not None, ('no source for', name, kv['seq'])
            assert i > last, ('not in the order given', name)
            if mtime is not None:
                assert mtime == int(os.stat(srcs[i]).st_mtime), (name, 'mtime')
            used[i] = True
            last = i
            nfiles += 1
    missing = [srcs[i] for i in range(len(srcs)) if not used[i]]
    assert not missing, ('not in any pair', missing)
    print('%d pair(s), %d file(s)' % (len(pairs(d)), nfiles))

globals()['cmd_' + sys.argv[1]](*sys.argv[2:])
PY
oracle() { python3 "$T/oracle.py" "$@"; }
# Under strace, LeakSanitizer cannot run (ptrace): leaks are checked by the
# untraced runs.
NOLEAK=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0

# ============================================================ 10 small files
mapfile -t TEN < <(files 10 f)
"$S" -C "$T/PS1" send --to SS1 "${TEN[@]}" > "$T/out" || fail "send of 10 files"
assert_eq "$(check_pairs "$R" "$PUB")" 1 "one pair for 10 small files (stock minisign verifies it)"
ins=$(ls "$R"/*.ins); ID=$(basename "$ins" .ins)
assert_eq "$(tc_field "$ins" files)" 10 "files="
assert_eq "$(tc_field "$ins" name)" bundle-10-files.tar "name="
assert_eq "$(tc_field "$ins" type)" data "type="
assert_eq "$(tc_field "$ins" zip)" zlib "zip="
assert_eq "$(tc_field "$ins" dest)" replmgr.box "dest="
assert_eq "$(oracle layout "$R")" "$(tc_field "$ins" seq):bundle-10-files.tar=f1,f2,f3,f4,f5,f6,f7,f8,f9,f10" \
  "the tar lists exactly the 10 names, in the order given"
assert_eq "$(oracle check "$R" "${TEN[@]}")" "1 pair(s), 10 file(s)" "oracle"
size=$(tc_field "$ins" size)
want=$((1024 + 10 * 512)); for ((i = 1; i <= 10; i++)); do want=$((want + (100 * i + 511) / 512 * 512)); done
assert_eq "$size" "$want" "size= is the tar length: headers, padded data and two end blocks, no more"
for ((i = 1; i <= 10; i++)); do echo "Queued instruction $ID (bundle of 10 files) for SS1: f$i"; done > "$T/want"
echo "Queued 10 file(s) for SS1 in 1 pair(s)" >> "$T/want"
echo "Delivered 1 pair(s) to SS1" >> "$T/want"
assert_eq "$(cat "$T/out")" "$(cat "$T/want")" "send names each file with the bundle's instruction"
status_text PS1 4504 | grep -q "Sender queued package $ID (10 files in bundle-10-files.tar, $size bytes) for site SS1\." ||
  fail "4504 of the bundle: $(status_text PS1 4504)"
assert_eq "$(status_count PS1 4504)" 1 "one 4504 for the pair"
assert_eq "$(status_count PS1 4500)" 1 "one 4500 for the pair"
for ((i = 1; i <= 10; i++)); do
  assert_eq "$(grep -c "^Queued f$i ($((100 * i)) bytes) for SS1 in instruction $ID, a bundle of 10 files " "$T/PS1/logs/sender.log")" 1 \
    "sender.log names f$i once"
done
pass "10 small files: one pair, files=10, the exact tar, every file named (stdout, 4504 count, sender.log)"

# The despooler delivers them (the receiving half of issue 14).
despool_once SS1 >/dev/null
for f in "${TEN[@]}"; do cmp -s "$f" "$(incoming SS1)/${f##*/}" || fail "${f##*/} not delivered intact"; done
pass "the despooler delivers the bundle's 10 files"

# zip=none when compression_level = 0: the package is the tar itself.
clear
setconf compression_level 0
"$S" -C "$T/PS1" send --queue-only --to SS1 "${TEN[@]:0:3}" >/dev/null
assert_eq "$(check_pairs "$Q" "$PUB")" 1 "one stored bundle"
assert_eq "$(tc_field "$(ls "$Q"/*.ins)" zip)" none "zip=none"
assert_eq "$(oracle check "$Q" "${TEN[@]:0:3}")" "1 pair(s), 3 file(s)" "oracle (zip=none)"
assert_eq "$(stat -c %s "$(ls "$Q"/*.pck)")" "$(tc_field "$(ls "$Q"/*.ins)" size)" "stored package = size="
setconf compression_level 6
pass "compression_level = 0: a stored tar (zip=none)"

# ============================================================ grouping
clear
setconf bundle_max_files 3
"$S" -C "$T/PS1" send --queue-only --to SS1 "${TEN[@]}" > "$T/out"
assert_eq "$(check_pairs "$Q" "$PUB")" 4 "10 files in bundles of 3: 4 pairs"
assert_eq "$(oracle layout "$Q" | sed 's/^[0-9]*://' | tr '\n' ' ')" \
  "bundle-3-files.tar=f1,f2,f3 bundle-3-files.tar=f4,f5,f6 bundle-3-files.tar=f7,f8,f9 f10 " "3+3+3+1"
assert_eq "$(oracle check "$Q" "${TEN[@]}")" "4 pair(s), 10 file(s)" "oracle"
assert_eq "$(tc_field "$(ls "$Q"/*.ins | tail -1)" files)" "" "a group of one is an ordinary pair (no files=)"
grep -q "^Queued 10 file(s) for SS1 in 4 pair(s)$" "$T/out" || fail "summary: $(tail -1 "$T/out")"
grep -q "^Queued instruction [0-9a-f]\{32\} for SS1: f10$" "$T/out" || fail "f10's line: $(cat "$T/out")"
pass "bundle_max_files = 3: 3+3+3 bundles and one ordinary pair, in the order given"

clear
setconf bundle_max_files 256
BIG=$(files 1 big 65536); EDGE=$(files 1 edge 65535)
"$S" -C "$T/PS1" send --queue-only --to SS1 "${TEN[0]}" "$BIG" "${TEN[1]}" "$EDGE" "${TEN[2]}" >/dev/null
assert_eq "$(oracle layout "$Q" | sed 's/^[0-9]*://' | tr '\n' ' ')" \
  "bundle-4-files.tar=f1,f2,edge1,f3 big1 " "a file of bundle_below bytes goes alone, one byte less is bundled"
assert_eq "$(oracle check "$Q" "${TEN[0]}" "$BIG" "${TEN[1]}" "$EDGE" "${TEN[2]}")" "2 pair(s), 5 file(s)" "oracle"
pass "only files smaller than bundle_below are bundled; the others travel alone"

clear
mkdir -p "$T/a" "$T/b" "$T/c"
for d in a b c; do for n in x y; do echo "$d/$n $RANDOM" > "$T/$d/$n"; done; done
SAME=("$T/a/x" "$T/a/y" "$T/b/x" "$T/b/y" "$T/c/x" "$T/a/z")
echo z > "$T/a/z"
"$S" -C "$T/PS1" send --queue-only --to SS1 "${SAME[@]}" >/dev/null
assert_eq "$(oracle layout "$Q" | sed 's/^[0-9]*://' | tr '\n' ' ')" \
  "bundle-3-files.tar=x,y,z bundle-2-files.tar=x,y x " "same base names go into other bundles"
assert_eq "$(oracle check "$Q" "${SAME[@]}")" "3 pair(s), 6 file(s)" "oracle (each input once, by content)"
pass "two inputs with the same base name never share a bundle"

clear
setconf bundle_max_files 1
"$S" -C "$T/PS1" send --queue-only --to SS1 "${TEN[@]}" >/dev/null
assert_eq "$(check_pairs "$Q" "$PUB")" 10 "bundle_max_files = 1: one pair per file"
assert_eq "$(cat "$Q"/*.ins | grep -c 'files=')" 0 "no files= field"
assert_eq "$(oracle check "$Q" "${TEN[@]}")" "10 pair(s), 10 file(s)" "oracle"
setconf bundle_max_files 256
pass "bundle_max_files = 1: one ordinary pair per file"

# ============================================================ names
clear
mkdir -p "$T/names"
LONG=$(printf 'long-%.0s' $(seq 1 40))name.txt # 205 bytes
NAMES=("r$(printf '\xc3\xa9')sum$(printf '\xc3\xa9') $(printf '\xc3\xa9')t$(printf '\xc3\xa9').txt"
       "$(printf '\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e').txt" "$LONG" "caf$(printf '\xe9').bin" "plain.txt")
PATHS=()
for n in "${NAMES[@]}"; do head -c 300 /dev/urandom > "$T/names/$n"; PATHS+=("$T/names/$n"); done
"$S" -C "$T/PS1" send --to SS1 "${PATHS[@]}" >/dev/null
assert_eq "$(check_pairs "$R" "$PUB")" 1 "one bundle for the 5 names"
assert_eq "$(oracle check "$R" "${PATHS[@]}")" "1 pair(s), 5 file(s)" \
  "names round-trip byte for byte (pax path for non-ASCII and long names only; BINARY only for the one that is not UTF-8)"
despool_once SS1 >/dev/null
for p in "${PATHS[@]}"; do cmp -s "$p" "$(incoming SS1)/${p##*/}" || fail "${p##*/} not delivered under its name"; done
pass "non-ASCII and long names round-trip (pax), through the despooler too"

# ============================================================ still queued
clear
n4504=$(status_count PS1 4504)
mapfile -t FIVE < <(printf '%s\n' "${TEN[@]:0:5}")
"$S" -C "$T/PS1" send --queue-only --to SS1 "${FIVE[@]:0:3}" > "$T/out1"
ID1=$(sed -n '1s/^Queued instruction \([0-9a-f]*\) .*/\1/p' "$T/out1")
"$S" -C "$T/PS1" send --queue-only --to SS1 "${FIVE[@]}" > "$T/out2" 2>"$T/err2"
for n in 1 2 3; do
  grep -qx "Already queued instruction $ID1 (bundle of 3 files) for SS1: f$n" "$T/out2" || fail "f$n: $(cat "$T/out2")"
done
grep -q "^Queued instruction [0-9a-f]\{32\} (bundle of 2 files) for SS1: f4$" "$T/out2" || fail "f4: $(cat "$T/out2")"
grep -q "^Queued 2 file(s) for SS1 in 1 pair(s) (3 already queued)$" "$T/out2" || fail "summary: $(cat "$T/out2")"
grep -q "warning: 3 file(s) were not queued again" "$T/err2" || fail "warning: $(cat "$T/err2")"
assert_eq "$(oracle layout "$Q" | sed 's/^[0-9]*://' | tr '\n' ' ')" \
  "bundle-3-files.tar=f1,f2,f3 bundle-2-files.tar=f4,f5 " "the second bundle was packed again without f1..f3"
assert_eq "$(oracle check "$Q" "${FIVE[@]}")" "2 pair(s), 5 file(s)" "oracle"
# f1 (queued) and f4 (queued) again with a new f6: f6 alone, an ordinary pair.
F6=$(files 6 g | tail -1)
"$S" -C "$T/PS1" send --queue-only --to SS1 "${FIVE[0]}" "${FIVE[3]}" "$F6" > "$T/out3" 2>/dev/null
grep -q "^Queued instruction [0-9a-f]\{32\} for SS1: g6$" "$T/out3" || fail "g6: $(cat "$T/out3")"
assert_eq "$(grep -c '^Already queued' "$T/out3")" 2 "f1 and f4 already queued"
assert_eq "$(oracle check "$Q" "${FIVE[@]}" "$F6")" "3 pair(s), 6 file(s)" "oracle"
# --again queues them all anyway, as a new bundle.
"$S" -C "$T/PS1" send --queue-only --again --to SS1 "${FIVE[@]}" > "$T/out4"
grep -q "^Queued 5 file(s) for SS1 in 1 pair(s)$" "$T/out4" || fail "--again: $(cat "$T/out4")"
assert_eq "$(oracle layout "$Q" | tail -1 | sed 's/^[0-9]*://')" "bundle-5-files.tar=f1,f2,f3,f4,f5" "--again"
assert_eq "$(status_count PS1 4504)" $((n4504 + 4)) "one 4504 per queued pair"
pass "files still queued in a bundle are named with it; a bundle sheds them; --again"

# ============================================================ changing files
if command -v strace >/dev/null && strace -f -o /dev/null -e inject=getpid:error=EPERM true 2>/dev/null; then
  # changing_send HOW CALL: c2 is changed (HOW: shrink | grow | outgrow,
  # past bundle_below) while its first CALL (read, or openat: before it is
  # opened) is held back by strace; it must leave the bundle of c1 c2 c3.
  changing_send() {
    clear
    local c=() i
    for i in 1 2 3; do head -c 3000 /dev/urandom > "$T/src/c$i"; c+=("$T/src/c$i"); done
    : > "$T/trace"
    ASAN_OPTIONS=$NOLEAK strace -f -o "$T/trace" -P "$T/src/c2" -e trace="$2" -e inject="$2":delay_enter=700000:when=1 \
      "$S" -C "$T/PS1" send --queue-only --to SS1 "${c[@]}" > "$T/out" 2>"$T/err" & local pid=$!
    wait_until 30 grep -q "$2(" "$T/trace" || fail "$1: the $2 of c2 was not seen"
    case $1 in
      shrink) head -c 1000 /dev/urandom > "$T/src/c2" ;;
      grow) head -c 5000 /dev/urandom >> "$T/src/c2" ;;
      outgrow) head -c 70000 /dev/urandom >> "$T/src/c2" ;;
    esac
    wait "$pid" || fail "$1: send failed: $(cat "$T/err")"
    assert_eq "$(oracle layout "$Q" | sed 's/^[0-9]*://' | tr '\n' ' ')" "bundle-2-files.tar=c1,c3 c2 " \
      "$1: c2 left the bundle"
    assert_eq "$(oracle check "$Q" "${c[@]}")" "2 pair(s), 3 file(s)" "$1: c2 sent as read afterwards"
    grep -q "^Queued 3 file(s) for SS1 in 2 pair(s)$" "$T/out" || fail "$1: $(cat "$T/out")"
  }
  changing_send shrink read
  changing_send grow read
  changing_send outgrow openat
  pass "a file that shrinks or grows while read (or grows past bundle_below) leaves its bundle and is sent on its own"
else
  echo "skip - strace cannot trace here (changing files, crash points)"
fi

# ============================================================ crash points
if command -v strace >/dev/null && strace -f -o /dev/null -e inject=getpid:error=EPERM true 2>/dev/null; then
  # Fresh sites (status rows and sender.log of this section only): bundles
  # of 2 published 2 pairs per batch, so that there are crash points
  # between bundles, between batches, and inside each.
  rm -rf "${T:?}/PS1" "${T:?}/SS1"
  mksite PS1 "bundle_max_files = 2" "batch_max = 2"; mksite SS1; pair PS1 SS1
  despool_once SS1 >/dev/null
  mapfile -t NINE < <(files 9 k 700)
  mkdir "$T/tpl"; cp -a "$T/PS1" "$T/SS1" "$T/tpl/"
  reset_sites() { rm -rf "${T:?}/PS1" "${T:?}/SS1"; cp -a "$T/tpl/PS1" "$T/tpl/SS1" "$T/"; }
  ids_printed() { sed -n "s/^$2 instruction \([0-9a-f]\{32\}\) .*for SS1: .*/\1/p" "$1" | sort -u; }
  ids_queued() {
    { find "$Q" -maxdepth 1 -name '*.ins' ! -name '.*' -printf '%f\n' 2>/dev/null | sed 's/^[0-9]*-//; s/\.ins$//'
      find "$R" -maxdepth 1 -name '*.ins' ! -name '.*' -printf '%f\n' | sed 's/\.ins$//'; } | sort -u
  }
  ids_recorded() { "$S" -C "$T/PS1" status --id 4504 --json | sed -n 's/.*"istr":\["\([0-9a-f]\{32\}\)".*/\1/p' | sort; }
  n_of() { printf '%s\n' "$1" | awk 'NF' | wc -l; }
  subset() { [ -z "$(comm -23 <(printf '%s\n' "$1" | awk 'NF') <(printf '%s\n' "$2" | awk 'NF'))" ]; }
  # count_calls CALL MODE...: how often an undisturbed send makes CALL.
  count_calls() {
    local call=$1; shift
    reset_sites
    ASAN_OPTIONS=$NOLEAK strace -f -o "$T/trace" -e trace="$call" "$S" -C "$T/PS1" send "$@" --to SS1 "${NINE[@]}" >/dev/null
    grep -c " $call(" "$T/trace" || true
  }
  # files_logged: "name id" for each sender.log line naming a bundled file.
  files_logged() {
    sed -n 's/^Queued \(.*\) ([0-9]* bytes) for SS1 in instruction \([0-9a-f]\{32\}\), a bundle of [0-9]* files .*/\1 \2/p' \
      "$T/PS1/logs/sender.log" | sort
  }
  trials=0 killed=0 late=0
  for call in renameat pwrite64 write; do
    total=$(count_calls "$call" --queue-only)
    [ "$total" -gt 0 ] || fail "an undisturbed send makes no $call call: the test is out of date"
    step=$(( (total + 11) / 12 ))
    for ((n = 1; n <= total; n += step)); do
      label="killed at $call #$n of $total"
      reset_sites
      rc=0
      ASAN_OPTIONS=$NOLEAK bash -c '"$@"; exit $?' _ strace -f -o /dev/null -e inject="$call":signal=KILL:when="$n" \
        "$S" -C "$T/PS1" send --queue-only --to SS1 "${NINE[@]}" >"$T/out" 2>/dev/null || rc=$?
      trials=$((trials + 1)); [ "$rc" = 0 ] || killed=$((killed + 1))
      printed=$(ids_printed "$T/out" Queued); recorded=$(ids_recorded); queued=$(ids_queued)
      if [ "$call" = renameat ]; then
        assert_eq "$queued" "$printed" "$label: queued vs printed"
        assert_eq "$recorded" "$printed" "$label: 4504 vs printed"
      else
        subset "$printed" "$recorded" || fail "$label: printed but not recorded"
        subset "$recorded" "$queued" || fail "$label: recorded but not queued"
        [ "$(n_of "$queued")" -le $(($(n_of "$printed") + 1)) ] || fail "$label: more than one pair queued unprinted"
      fi
      # Sending again names exactly the files of the queued pairs, with
      # their pairs, and queues the others: each file in exactly one pair.
      oracle where "$Q" | sort > "$T/where"
      "$S" -C "$T/PS1" send --queue-only --to SS1 "${NINE[@]}" >"$T/again" 2>/dev/null || fail "$label: sending again"
      sed -n 's/^Already queued instruction \([0-9a-f]\{32\}\) .*for SS1: \(.*\)$/\2 \1/p' "$T/again" | sort > "$T/named"
      assert_eq "$(cat "$T/named")" "$(cat "$T/where")" "$label: sending again names the queued files with their pairs"
      assert_eq "$(oracle check "$Q" "${NINE[@]}")" "5 pair(s), 9 file(s)" "$label: every file in exactly one pair"
      assert_eq "$(ids_recorded | tr '\n' ' ')" "$(ids_queued | tr '\n' ' ')" "$label: one 4504 per queued pair"
      grep -q "^Recorded [0-9] files in bundle-[0-9]-files.tar (instruction" "$T/PS1/logs/sender.log" && late=$((late + 1))
      # sender.log names each bundled file at most once (exactly once
      # unless the kill came while it was being written).
      logged=$(files_logged); bundled=$(oracle where "$Q" bundles | sort)
      [ -z "$(printf '%s\n' "$logged" | uniq -d)" ] || fail "$label: sender.log names a file twice"
      subset "$logged" "$bundled" || fail "$label: sender.log names a file that is not in that bundle"
      [ "$call" = write ] || assert_eq "$logged" "$bundled" "$label: sender.log names each bundled file once"
      echo "# $label: exit $rc; printed $(n_of "$printed"), recorded $(n_of "$recorded"), queued $(n_of "$queued")"
    done
  done
  echo "# $trials crash points, $killed killed the sender, $late left a bundle that was recorded late"
  [ "$killed" -ge $((trials * 3 / 4)) ] || fail "only $killed of $trials crash points killed the sender"
  pass "bundled sends killed at $trials crash points: printed <= recorded <= queued; sending again completes exactly"

  # A send that delivers too, killed at each rename; the files it did not
  # print are sent again; then the despooler delivers each file once.
  total=$(count_calls renameat)
  for ((n = 1; n <= total; n++)); do
    label="send killed at renameat #$n of $total"
    reset_sites
    ASAN_OPTIONS=$NOLEAK bash -c '"$@"; exit $?' _ strace -f -o /dev/null -e inject=renameat:signal=KILL:when="$n" \
      "$S" -C "$T/PS1" send --to SS1 "${NINE[@]}" >"$T/out" 2>/dev/null || true
    again=()
    for f in "${NINE[@]}"; do grep -q "^Queued instruction .* for SS1: ${f##*/}\$" "$T/out" || again+=("$f"); done
    if [ ${#again[@]} -gt 0 ]; then
      "$S" -C "$T/PS1" send --queue-only --to SS1 "${again[@]}" >/dev/null 2>&1 || fail "$label: sending again"
    fi
    "$S" -C "$T/PS1" send --flush --to SS1 >/dev/null || fail "$label: flush"
    assert_eq "$(count_files "$Q")" 0 "$label: outbox empty"
    despool_once SS1 >/dev/null || fail "$label: despool"
    for f in "${NINE[@]}"; do cmp -s "$f" "$(incoming SS1)/${f##*/}" || fail "$label: ${f##*/} missing at SS1"; done
    assert_eq "$(count_all "$(incoming SS1)")" 9 "$label: each file once at SS1 (a second copy would be NAME.<id>)"
    assert_eq "$(ids_recorded | tr '\n' ' ')" \
      "$("$S" -C "$T/PS1" status --id 4500 --json | sed -n 's/.*"istr":\["\([0-9a-f]\{32\}\)".*/\1/p' | sort | tr '\n' ' ')" \
      "$label: a 4500 for each 4504"
  done
  pass "bundled sends killed at each of $total renames of publication and delivery: each file arrives once"
  rm -rf "$T/tpl"
  setconf bundle_max_files 256
  setconf batch_max 256
else
  echo "skip - strace cannot trace here (crash points)"
fi

# ============================================================ two at once
mapfile -t SIXTY < <(files 60 m 200)
for round in 1 2 3; do
  clear
  "$S" -C "$T/PS1" send --queue-only --to SS1 "${SIXTY[@]:0:40}" >"$T/o1" 2>/dev/null & p1=$!
  "$S" -C "$T/PS1" send --queue-only --to SS1 "${SIXTY[@]:20:40}" >"$T/o2" 2>/dev/null & p2=$!
  wait "$p1" || fail "round $round: first send"
  wait "$p2" || fail "round $round: second send"
  assert_eq "$(oracle check "$Q" "${SIXTY[@]}" | cut -d' ' -f3-)" "60 file(s)" "round $round: each file once"
  oracle where "$Q" | sort > "$T/where"
  cat "$T/o1" "$T/o2" | sed -n 's/^Queued instruction \([0-9a-f]\{32\}\) .*for SS1: \(.*\)$/\2 \1/p' | sort > "$T/lines.q"
  assert_eq "$(cat "$T/lines.q")" "$(cat "$T/where")" "round $round: each file printed Queued once, with its pair"
  cat "$T/o1" "$T/o2" | sed -n 's/^Already queued instruction \([0-9a-f]\{32\}\) .*for SS1: \(.*\)$/\2 \1/p' | sort > "$T/lines.a"
  [ -z "$(comm -23 "$T/lines.a" "$T/where")" ] || fail "round $round: an 'Already queued' line names the wrong pair"
  assert_eq "$(( $(wc -l < "$T/lines.q") + $(wc -l < "$T/lines.a") ))" 80 "round $round: 80 lines for 80 files given"
  echo "# round $round: $(oracle layout "$Q" | sed 's/=.*//; s/^[0-9]*://' | tr '\n' ' ')"
done
pass "two bundled sends of overlapping files at once: each file queued once, every line true"
