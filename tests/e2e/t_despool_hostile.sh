#!/usr/bin/env bash
# Hostile and broken pairs in the receive inbox: forged or damaged
# signatures, wrong recipient, expired, replayed, disallowed or traversing
# destinations, bad names, symlinks, oversized packages, decompression
# bombs, truncated packages, malformed instructions and badly named files.
# Each case asserts its own status id, where the files went, and that
# nothing was delivered (or written outside the site) that should not be.
. "$(dirname "$0")/lib.sh"
mksite PS1; mksite SS1; mksite SS2 "max_package_bytes = 1k"
pair PS1 SS1; peer PS1 SS2; exchange PS1 SS2
despool_once SS1 >/dev/null; despool_once SS2 >/dev/null # import the keys
F=$T/forge; mkdir -p "$F"
R=$(receive SS1); J=$(rejected SS1); I=$(incoming SS1)
declare -A seen=()
delivered=0 # files expected in SS1's incoming

# drop ID: moves a forged pair from $F into SS1's receive (package first).
drop() { mv "$F/$1.pck" "$R/"; mv "$F/$1.ins" "$R/"; }
last_ins() { ls -t "$R"/*.ins | head -n 1 | xargs -n 1 basename; }
# expect SITE CODE WHAT KEY: after one --once run, exactly one more status
# CODE whose text names KEY, every other count unchanged, KEY's files out of
# receive and into rejected with a .why file, nothing new delivered, no
# temporary file left in incoming.
expect() {
  local site=$1 code=$2 what=$3 key=$4 c n before_all after_all
  before_all=$("$S" -C "$T/$site" status --component despooler --json | wc -l)
  despool_once "$site" >/dev/null
  after_all=$("$S" -C "$T/$site" status --component despooler --json | wc -l)
  n=$(status_count "$site" "$code")
  assert_eq "$n" "$(( ${seen[$site.$code]:-0} + 1 ))" "$what: one more $code"
  seen[$site.$code]=$n
  assert_eq "$after_all" "$((before_all + 1))" "$what: exactly one despooler message"
  "$S" -C "$T/$site" status --id "$code" --json | tail -n 1 | grep -qF -- "$key" ||
    fail "$what: the newest $code does not name $key"
  assert_eq "$(find "$(receive "$site")" -maxdepth 1 -name "$key*" | wc -l)" 0 "$what: left receive"
  assert_file "$(rejected "$site")/${key%.ins}.why"
  grep -q "^status $code " "$(rejected "$site")/${key%.ins}.why" || fail "$what: .why does not say $code"
  [ -e "$(rejected "$site")/$key" ] || [ -e "$(rejected "$site")/$key.ins" ] ||
    [ -L "$(rejected "$site")/$key.ins" ] || fail "$what: instruction not in rejected"
  if [ "$site" = SS1 ]; then
    assert_eq "$(count_all "$I")" "$delivered" "$what: nothing delivered"
  else
    assert_eq "$(count_all "$(incoming "$site")")" 0 "$what: nothing delivered"
  fi
  assert_eq "$(status_count "$site" 4400)" "$([ "$site" = SS1 ] && echo "$delivered" || echo 0)" \
    "$what: no 4400"
  pass "$what -> $code"
}

# ---- signatures ----
head -c 3000 /dev/urandom > "$T/sig.bin"
"$S" -C "$T/PS1" send --to SS1 "$T/sig.bin" >/dev/null
ins=$(last_ins)
python3 - "$R/${ins%.ins}.pck" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 1
open(p, 'wb').write(b)
PY
expect SS1 4407 "package modified after signing" "${ins%.ins}"

printf 'tampered fields\n' > "$T/tc.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/tc.txt" >/dev/null
ins=$(last_ins)
sed -i 's/^\(trusted comment: .*\) name=tc.txt /\1 name=evil.txt /' "$R/$ins"
grep -q 'name=evil.txt' "$R/$ins" || fail "could not edit the trusted comment"
expect SS1 4407 "trusted comment edited" "${ins%.ins}"
assert_no_file "$I/evil.txt"; assert_no_file "$I/tc.txt"

# ---- fields ----
printf 'for somebody else\n' > "$T/p.txt"
id=$(forge "$F" "$T/p.txt" to=SS2 name=p.txt); drop "$id"
expect SS1 4408 "wrong recipient" "$id"

now=$(date +%s)
id=$(forge "$F" "$T/p.txt" name=p.txt created=$((now - 7200)) expires=$((now - 3600))); drop "$id"
expect SS1 4409 "expired" "$id"

id=$(forge "$F" "$T/p.txt" name=p.txt dest=other.box); drop "$id"
expect SS1 4410 "destination other.box not allowed" "$id"
assert_no_file "$T/SS1/inboxes/other.box"

# Duplicate: the same pair again after a successful delivery.
printf 'deliver me once\n' > "$T/dup.txt"
"$S" -C "$T/PS1" send --to SS1 "$T/dup.txt" >/dev/null
ins=$(last_ins); cp -p "$R/${ins%.ins}.pck" "$R/$ins" "$F/"
despool_once SS1 >/dev/null
delivered=$((delivered + 1))
cmp "$T/dup.txt" "$I/dup.txt" || fail "dup.txt not delivered"
assert_eq "$(status_count SS1 4400)" 1 "first copy delivered"
mv "$F/${ins%.ins}.pck" "$R/"; mv "$F/$ins" "$R/"
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4402)" 1 "duplicate reported"
"$S" -C "$T/SS1" status --id 4402 --json | grep -qF "${ins%.ins}" || fail "4402 names the id"
assert_eq "$(status_count SS1 4400)" 1 "not delivered twice"
assert_eq "$(count_all "$I")" 1 "only one dup.txt (no dup.txt.<id>)"
assert_eq "$(count_all "$R")" 0 "the duplicate pair was removed from receive"
pass "duplicate -> 4402, delivered once"

# ---- destinations and names the parser refuses (4403), nothing written outside ----
for bad in 'dest=../x' 'dest=%2E%2E%2Fx' 'dest=..%2F..%2F..%2Fevil.box' 'dest=%2Fetc.box' \
           'name=a/b' 'name=..%2F..%2F..%2Fevil-up' 'name=%2Ftmp%2Fevil-abs' 'name=.evil-dot' \
           'name=%2Eevil-dot' 'name=..' 'name=' 'name=a%00b'; do
  id=$(forge "$F" "$T/p.txt" "$bad"); drop "$id"
  expect SS1 4403 "parser refuses $bad" "$id"
done
[ -z "$(find "$T" -name 'evil*' ! -path "$(rejected SS1)/*")" ] || fail "something named evil* was written"
[ -z "$(find / -xdev -maxdepth 2 -name 'evil-*' 2>/dev/null)" ] || fail "something escaped to /"
assert_eq "$(ls "$T/SS1/inboxes" | tr '\n' ' ')" "despoolr.box hman.box replmgr.box schedule.box " \
  "no new inbox folders"

# ---- symlinks ----
mkdir -p "$T/elsewhere"
id=$(forge "$T/elsewhere" "$T/p.txt" name=via-link.txt)
cp "$T/elsewhere/$id.ins" "$T/ins.orig"
cp "$T/elsewhere/$id.pck" "$R/"
ln -s "$T/elsewhere/$id.ins" "$R/$id.ins"
expect SS1 4411 "symlinked .ins" "$id"
cmp "$T/ins.orig" "$T/elsewhere/$id.ins" || fail "the symlink target changed"
[ -L "$J/$id.ins" ] || fail "the symlink itself was not quarantined"
assert_file "$T/elsewhere/$id.pck"

id=$(forge "$T/elsewhere" "$T/p.txt" name=via-link2.txt)
cp "$T/elsewhere/$id.pck" "$T/pck.orig"
cp "$T/elsewhere/$id.ins" "$R/"
ln -s "$T/elsewhere/$id.pck" "$R/$id.pck"
expect SS1 4411 "symlinked .pck" "$id"
cmp "$T/pck.orig" "$T/elsewhere/$id.pck" || fail "the .pck symlink target changed"
assert_eq "$(find "$T/elsewhere" -type f | wc -l)" 4 "symlink targets all still there"

# ---- sizes ----
head -c 5000 /dev/urandom > "$T/big.bin"
"$S" -C "$T/PS1" send --to SS2 "$T/big.bin" >/dev/null
ins=$(ls "$(receive SS2)" | grep '\.ins$')
expect SS2 4412 "payload over max_package_bytes = 1k" "${ins%.ins}"
# Declared size small, but the package file itself is over the limit.
F2=$T/forge2; mkdir -p "$F2"
id=$(new_id); zpack "$T/big.bin" "$F2/$id.pck"
sign_ins PS1 "$F2" "$id" "$(fields "$id" to=SS2 name=big2.bin size=100)"
mv "$F2/$id.pck" "$F2/$id.ins" "$(receive SS2)/"
expect SS2 4412 "package file over max_package_bytes = 1k" "$id"

# Decompression bomb: declares 1000 bytes, inflates to 50 MB.
head -c 50000000 /dev/zero > "$T/zeros"
id=$(new_id); zpack "$T/zeros" "$F/$id.pck"
sign_ins PS1 "$F" "$id" "$(fields "$id" name=bomb.bin size=1000)"
drop "$id"
expect SS1 4413 "decompression bomb (declared 1000, inflates to 50 MB)" "$id"
"$S" -C "$T/SS1" status --id 4413 --json | tail -n 1 | grep -q 'beyond its declared size' ||
  fail "4413 does not say the package expands beyond its size"
assert_no_file "$I/bomb.bin"
# And the other way: declared larger than what it inflates to.
id=$(forge "$F" "$T/p.txt" name=short.txt size=999); drop "$id"
expect SS1 4413 "package smaller than its declared size" "$id"

# ---- truncation ----
# Truncated in transit (after signing): the signature covers every byte of
# the .pck and is checked before the inflater's verdict, so it is 4407.
head -c 100000 /dev/urandom > "$T/trunc.bin"
"$S" -C "$T/PS1" send --to SS1 "$T/trunc.bin" >/dev/null
ins=$(last_ins)
truncate -s 50000 "$R/${ins%.ins}.pck"
expect SS1 4407 "package truncated after signing" "${ins%.ins}"
# A truncated zlib stream that the sender signed as it was: 4413.
id=$(new_id); zpack "$T/trunc.bin" "$F/$id.pck"; truncate -s 50000 "$F/$id.pck"
sign_ins PS1 "$F" "$id" "$(fields "$id" name=trunc2.bin size=100000)"
drop "$id"
expect SS1 4413 "signed truncated zlib stream" "$id"
"$S" -C "$T/SS1" status --id 4413 --json | tail -n 1 | grep -q 'ends early' || fail "4413 does not say truncated"

# ---- malformed instruction files ----
id=$(new_id); head -c 600 /dev/urandom > "$R/$id.ins"; cp "$T/p.txt" "$R/$id.pck"
expect SS1 4403 "random bytes as .ins" "$id"
id=$(new_id); : > "$R/$id.ins"
expect SS1 4403 "empty .ins" "$id"
# A truncated signature file may still be being written by a peer: it is
# left alone for a few seconds (WRITER_GRACE_S), then refused.
cut_case() {
  local what=$1 id; shift
  id=$(forge "$F" "$T/p.txt" name=cut.txt); "$@" "$F/$id.ins" > "$F/$id.ins.cut"
  mv "$F/$id.ins.cut" "$F/$id.ins"; drop "$id"
  local before; before=$("$S" -C "$T/SS1" status --component despooler --json | wc -l)
  despool_once SS1 >/dev/null
  assert_file "$R/$id.ins"
  assert_eq "$("$S" -C "$T/SS1" status --component despooler --json | wc -l)" "$before" \
    "$what: a fresh truncated instruction waits quietly"
  touch -d '-30 seconds' "$R/$id.ins" "$R/$id.pck"
  expect SS1 4403 "$what" "$id"
}
cut_case "signature file cut after two lines" head -n 2
cut_case "signature file missing its last 40 bytes" head -c -40
# The file name and the signed id disagree.
id=$(forge "$F" "$T/p.txt" name=renamed.txt); other=$(new_id)
mv "$F/$id.pck" "$R/$other.pck"; mv "$F/$id.ins" "$R/$other.ins"
expect SS1 4403 "file name is not the signed id" "$other"

# ---- instruction file names that are not <32 hex>.ins ----
for name in notanid.ins "$(new_id | tr a-f A-F).ins" "$(new_id | cut -c 2-).ins" \
            "$(new_id)0.ins" "$(new_id | sed 's/^./g/').ins"; do
  forged=$(forge "$F" "$T/p.txt" name=badname.txt)
  mv "$F/$forged.pck" "$R/${name%.ins}.pck"; mv "$F/$forged.ins" "$R/$name"
  expect SS1 4403 "instruction file named $name" "$name"
  assert_file "$J/$name"; assert_file "$J/${name%.ins}.pck"
done

assert_eq "$(count_all "$R")" 0 "receive empty at the end"
assert_eq "$(count_all "$I")" "$delivered" "only the legitimate delivery in incoming"
assert_eq "$(ledger_count SS1)" 1 "one ledger row"
