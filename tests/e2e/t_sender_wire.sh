#!/usr/bin/env bash
# The sender's wire format, checked with stock minisign and python3's zlib:
# names, trusted comment fields, --name/--dest/stdin, 0-byte files,
# per-peer sequence numbers (per pair: small files of one call share a
# bundle), and the unsigned form.
. "$(dirname "$0")/lib.sh"
mksite PS1 "package_lifetime = 3600s"; mksite SS1; mksite SS2
peer PS1 SS1; peer PS1 SS2
PUB="$T/PS1.pub"
"$S" -C "$T/PS1" key export -o "$PUB" 2>/dev/null
R=$(receive SS1)

# pyzlib PCK ORIGINAL: the package is a zlib stream of exactly ORIGINAL.
pyzlib() {
  python3 - "$1" "$2" <<'PY' || fail "python zlib disagrees: $1 vs $2"
import sys, zlib
data = zlib.decompress(open(sys.argv[1], 'rb').read())
assert data == open(sys.argv[2], 'rb').read(), "payload differs"
PY
}
# only_pair DIR: DIR holds exactly one <ID>.pck + <ID>.ins, nothing else
# (no temporary names); prints ID.
only_pair() {
  local all ids
  all=$(find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort)
  ids=$(echo "$all" | sed -n 's/^\([0-9a-f]\{32\}\)\.ins$/\1/p')
  [ "$(echo "$ids" | grep -c .)" = 1 ] || fail "expected one instruction in $1, got: $all"
  assert_eq "$all" "$ids.ins
$ids.pck" "files in $1"
  echo "$ids"
}
clear_receive() { find "$1" -mindepth 1 -delete; }

# --- 1. a file with spaces and non-ASCII in --name, a custom --dest
NAME='rapport été 2026 (v2).txt'
ENC='rapport%20%C3%A9t%C3%A9%202026%20%28v2%29.txt'
seq 1 20000 > "$T/payload.txt"
before=$(date +%s)
out=$("$S" -C "$T/PS1" send --to SS1 --dest hman.box --name "$NAME" "$T/payload.txt")
after=$(date +%s)
ID=$(only_pair "$R")
[[ $ID =~ ^[0-9a-f]{32}$ ]] || fail "id $ID is not 32 lowercase hex"
echo "$out" | grep -q "instruction $ID" || fail "send did not print the id: $out"
mout=$(verify_pair "$PUB" "$R/$ID.pck" "$R/$ID.ins") || fail "minisign rejects the pair: $mout"
tc=$(echo "$mout" | sed -n 's/^Trusted comment: //p')
size=$(stat -c %s "$T/payload.txt")
created=$(tc_field "$R/$ID.ins" created); expires=$(tc_field "$R/$ID.ins" expires)
expect="sitespool/1 id=$ID from=PS1 to=SS1 type=data dest=hman.box name=$ENC size=$size zip=zlib seq=1 created=$created expires=$expires"
assert_eq "$tc" "$expect" "trusted comment printed by minisign"
[ "$created" -ge "$before" ] && [ "$created" -le "$after" ] || fail "created=$created not in [$before,$after]"
now=$(date +%s)
[ "$created" -le "$now" ] && [ "$now" -le "$expires" ] || fail "not created <= now <= expires"
assert_eq "$((expires - created))" 3600 "expires - created = package_lifetime"
pyzlib "$R/$ID.pck" "$T/payload.txt"
assert_eq "$(count_files "$(outbox PS1 SS1)")" 0 "outbox emptied after delivery"
pass "signed pair: names, minisign, every field, zlib payload"

# --- the basename is the default name; default dest is replmgr.box
clear_receive "$R"
printf 'plain\n' > "$T/plain.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/plain.txt" >/dev/null
ID=$(only_pair "$R")
verify_pair "$PUB" "$R/$ID.pck" "$R/$ID.ins" >/dev/null || fail "minisign rejects plain.txt"
assert_eq "$(tc_field "$R/$ID.ins" name)" plain.txt "default name"
assert_eq "$(tc_field "$R/$ID.ins" dest)" replmgr.box "default dest"
assert_eq "$(tc_field "$R/$ID.ins" seq)" 2 "second file to SS1"
pyzlib "$R/$ID.pck" "$T/plain.txt"
pass "default name and dest"

# --- standard input
clear_receive "$R"
printf 'from stdin \x00\xff\n' > "$T/stdin.bin"
"$S" -C "$T/PS1" send --to SS1 --name x.txt - < "$T/stdin.bin" >/dev/null
printf x | "$S" -C "$T/PS1" send --to SS1 --name y.txt - >/dev/null
ids=$(find "$R" -name '*.ins' -printf '%f\n')
assert_eq "$(echo "$ids" | wc -l)" 2 "two pairs from stdin"
for f in $ids; do
  verify_pair "$PUB" "$R/${f%.ins}.pck" "$R/$f" >/dev/null || fail "minisign rejects stdin pair"
  case $(tc_field "$R/$f" name) in
    x.txt) pyzlib "$R/${f%.ins}.pck" "$T/stdin.bin"
           assert_eq "$(tc_field "$R/$f" size)" "$(stat -c %s "$T/stdin.bin")" "stdin size" ;;
    y.txt) printf x > "$T/y.ref"; pyzlib "$R/${f%.ins}.pck" "$T/y.ref"
           assert_eq "$(tc_field "$R/$f" size)" 1 "stdin size" ;;
    *) fail "unexpected name in $f" ;;
  esac
done
pass "standard input with --name"

# --- 0-byte file
clear_receive "$R"
: > "$T/empty"
"$S" -C "$T/PS1" send --to SS1 "$T/empty" >/dev/null
ID=$(only_pair "$R")
verify_pair "$PUB" "$R/$ID.pck" "$R/$ID.ins" >/dev/null || fail "minisign rejects the empty file"
assert_eq "$(tc_field "$R/$ID.ins" size)" 0 "size of an empty file"
pyzlib "$R/$ID.pck" "$T/empty"
pass "0-byte file delivered and verifies"

# --- 2. sequence numbers: +1 per pair, across calls, separate per peer.
# The small files of one call share a pair (a bundle; payload.txt is above
# bundle_below and travels alone), and a bundle takes one number.
clear_receive "$R"
seqs_of() { for f in "$1"/*.ins; do tc_field "$f" seq; done | sort -n | tr '\n' ' '; }
# carried DIR: "seq:name[=member,member...]" per pair, by seq (python reads
# the bundles' tar streams).
carried() {
  python3 - "$1" <<'PY'
import io, os, re, sys, tarfile, zlib
d = sys.argv[1]
out = []
for f in sorted(os.listdir(d)):
    if not f.endswith('.ins'):
        continue
    tc = re.search(r'^trusted comment: (.*)$', open(os.path.join(d, f)).read(), re.M).group(1)
    kv = dict(x.split('=', 1) for x in tc.split(' ')[1:])
    s = '%s:%s' % (kv['seq'], kv['name'])
    if 'files' in kv:
        data = zlib.decompress(open(os.path.join(d, f[:-4] + '.pck'), 'rb').read())
        s += '=' + ','.join(m.name for m in tarfile.open(fileobj=io.BytesIO(data)))
    out.append((int(kv['seq']), s))
print(' '.join(s for _, s in sorted(out)))
PY
}
"$S" -C "$T/PS1" send --to SS1 "$T/plain.txt" "$T/empty" "$T/payload.txt" >/dev/null
"$S" -C "$T/PS1" send --to SS2 "$T/plain.txt" "$T/empty" >/dev/null
"$S" -C "$T/PS1" send --to SS1 "$T/plain.txt" >/dev/null
"$S" -C "$T/PS1" send --to SS2 "$T/plain.txt" >/dev/null
# SS1 had 1..5 (payload, plain, x, y, empty) already.
assert_eq "$(seqs_of "$R")" "6 7 8 " "SS1 sequence numbers"
assert_eq "$(seqs_of "$(receive SS2)")" "1 2 " "SS2 sequence numbers"
assert_eq "$(carried "$R")" "6:bundle-2-files.tar=plain.txt,empty 7:payload.txt 8:plain.txt" \
  "what each of SS1's numbers carries"
assert_eq "$(carried "$(receive SS2)")" "1:bundle-2-files.tar=plain.txt,empty 2:plain.txt" \
  "what each of SS2's numbers carries"
assert_eq "$(check_pairs "$R" "$PUB")" 3 "SS1 pairs verify"
assert_eq "$(check_pairs "$(receive SS2)" "$PUB")" 2 "SS2 pairs verify"
pass "sequence numbers count pairs per peer, across calls; a bundle takes one"

# --- 5. unsigned: one line, a warning, 4503
clear_receive "$R"
err=$("$S" -C "$T/PS1" send --unsigned --to SS1 "$T/plain.txt" 2>&1 >/dev/null)
echo "$err" | grep -qi 'warning.*unsigned' || fail "no warning on stderr: $err"
ID=$(only_pair "$R")
assert_eq "$(wc -l < "$R/$ID.ins")" 1 "unsigned instruction is one line"
line=$(cat "$R/$ID.ins")
c=$(tc_field "$R/$ID.ins" created); x=$(tc_field "$R/$ID.ins" expires)
assert_eq "$line" "sitespool/1 id=$ID from=PS1 to=SS1 type=data dest=replmgr.box name=plain.txt size=6 zip=zlib seq=9 created=$c expires=$x" "unsigned line"
pyzlib "$R/$ID.pck" "$T/plain.txt"
verify_pair "$PUB" "$R/$ID.pck" "$R/$ID.ins" >/dev/null 2>&1 && fail "minisign accepted an unsigned instruction"
assert_eq "$(status_count PS1 4503)" 1 "one 4503"
status_text PS1 4503 | grep -q "$ID" || fail "4503 does not name $ID"
pass "unsigned: one line, warning, 4503"

# --- a signed send raises no 4503; 4504 per queued pair (a bundle's names
# its count), 4500 per delivery
assert_eq "$(status_count PS1 4504)" 11 "4504 per queued pair"
assert_eq "$(status_count PS1 4500)" 11 "4500 per delivered pair"
assert_eq "$(status_text PS1 4504 | grep -c '(2 files in bundle-2-files.tar, 2560 bytes)')" 2 \
  "4504 of a bundle names its count"
pass "status messages per pair"
