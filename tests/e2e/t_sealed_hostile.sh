#!/usr/bin/env bash
# Hostile sealed packages (issue 15): each fault made with python3
# (seal_oracle.py: python3-nacl, independent of sitespool) and re-signed by
# the sender's key with stock minisign, so that the signature is valid and
# the seal must catch it; each gets its own status id, nothing is delivered
# and no temporary file is left in incoming.  Messages name the package
# "sealed package <id>" until its metadata is decrypted, by its name after.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_seal.sh"
mksite PS1; mksite SS1; pair PS1 SS1
despool_once PS1 >/dev/null; despool_once SS1 >/dev/null
R=$(receive SS1); I=$(incoming SS1); J=$(rejected SS1)
key=$(keyid_of "$T/SS1/keys/SS1.pub")

# A real sealed package of four chunks (three full ones and the final).
head -c 200000 /dev/urandom > "$T/payload.bin"
"$S" -C "$T/PS1" send --to SS1 --queue-only "$T/payload.bin" >/dev/null
base=$(ls "$T/PS1/inboxes/schedule.box/outbox/SS1/"*.pck)
[ "$(tc_field "${base%.pck}.ins" enc)" = "$key" ] || fail "the sender did not seal the package"
oracle open "$T/SS1/keys/SS1.key" "$base" "$T/check.bin" >/dev/null || fail "oracle cannot open it"
cmp "$T/payload.bin" "$T/check.bin" || fail "oracle opened other content"

declare -A want # id -> status
# hostile STATUS PCK [size]: a pair of PCK signed by PS1 (size= the
# package's own unless given; seal= the pin of PCK's header), expected to
# end with STATUS; its id in HID.
hostile() {
  local status=$1 pck=$2 id; id=$(new_id)
  cp "$pck" "$R/$id.pck"
  sign_ins PS1 "$R" "$id" "$(sealed_comment "$id" "$pck" "$key" ${3:+"size=$3"})"
  want[$id]=$status
  HID=$id
}
# tampered MODE: the base package with one fault.
tampered() { oracle tamper "$base" "$T/t-$1.pck" "$1"; echo "$T/t-$1.pck"; }
# sealed_plain FILE: FILE (a metadata line and a payload) sealed to SS1.
sealed_plain() { oracle seal "$T/SS1/keys/SS1.pub" "$1" "$1.pck"; echo "$1.pck"; }

hostile 4446 "$(tampered flip)"; flip=$HID
hostile 4446 "$(tampered swap)"
hostile 4447 "$(tampered dropfinal)"; before=$HID
hostile 4447 "$(tampered dropfinal)" "$(stat -c %s "$base")" # shorter than declared
hostile 4448 "$(tampered append)" "$(stat -c %s "$base")" # longer than declared
# Declared too: the bytes after the final chunk make it a chunk that does
# not authenticate (where a final chunk ends is only known by opening it).
hostile 4446 "$(tampered append)"
hostile 4445 "$(tampered magic)"; magic=$HID
hostile 4445 "$(tampered keyid=0123456789ABCDEF)"
# unsigned PCK TAMPERED: the pair of PCK (in PS1's outbox) with its own
# signed instruction, untouched, and TAMPERED as its package (not
# re-signed): its trusted comment verifies, the signature over the package
# does not (4407, checked by its text below), whatever the seal says.
declare -a pkgsig
unsigned() {
  local id; id=$(basename "$1" .pck); id=${id##*-}
  cp "$2" "$R/$id.pck"; cp "${1%.pck}.ins" "$R/$id.ins"
  want[$id]=4407; pkgsig+=("$id")
}
# queued FILE: PS1 queues FILE (sealed) for SS1; its package's path in QP.
queued() {
  local before; before=$(ls "$T/PS1/inboxes/schedule.box/outbox/SS1/")
  "$S" -C "$T/PS1" send --to SS1 --queue-only "$1" >/dev/null
  QP=$(ls "$T/PS1/inboxes/schedule.box/outbox/SS1/"*.pck | grep -vF "$before")
  [ -f "$QP" ] || fail "no new package for $1"
}
# Not re-signed: the signed pin still names the header, so the chunks
# before the flipped one are authentic; nothing is delivered.
head -c 200000 /dev/urandom > "$T/fresh.bin"
queued "$T/fresh.bin"
oracle tamper "$QP" "$T/t-fresh.pck" flip
unsigned "$QP" "$T/t-fresh.pck"
rm "$QP" "${QP%.pck}.ins"
# Another genuine package's header before this one's chunks: signed with
# the pin of this one's header (what the sender signed), the opener
# refuses the header before deriving a key (4445); not re-signed, 4407.
head -c 100000 /dev/urandom > "$T/other.bin"
queued "$T/other.bin"; other=$QP
oracle tamper "$base" "$T/t-header.pck" "header=$other"
cmp -s "$T/t-header.pck" "$base" && fail "the swapped header is the same"
id=$(new_id); cp "$T/t-header.pck" "$R/$id.pck"; want[$id]=4445; swapped=$id
sign_ins PS1 "$R" "$id" "$(fields "$id" name=sealed zip=none "size=$(stat -c %s "$base")") enc=$key seal=$(pin_of "$base")"
oracle tamper "$other" "$T/t-header2.pck" "header=$base"
unsigned "$other" "$T/t-header2.pck"
rm "$other" "${other%.pck}.ins"

# A large package (read on the despooler's reader thread while it is
# opened): a chunk near its end damaged and re-signed is 4446 after 150
# chunks were opened (nothing of them delivered); not re-signed, 4407.
head -c $((10 * 1024 * 1024)) /dev/urandom > "$T/large.bin"
queued "$T/large.bin"; large=$QP
[ "$(stat -c %s "$large")" -gt $((10 * 1024 * 1024)) ] || fail "the large package is not the large file's"
hostile 4446 "$(oracle tamper "$large" "$T/t-large.pck" flip=151; echo "$T/t-large.pck")"; large_flip=$HID
unsigned "$large" "$T/t-large.pck"
rm "$large" "${large%.pck}.ins"

# Authentic seals of bad plaintext (the sender's key signs them).
python3 - "$T" <<'PY'
import io, sys, tarfile, zlib
t = sys.argv[1]
def put(name, data): open(f"{t}/{name}", "wb").write(data)
payload = b"x" * 1000
put("meta-garbage", b"this is not metadata\n" + payload)
put("meta-long", b"sitespool-sealed/1 name=" + b"a" * 1500)
put("meta-name", b"sitespool-sealed/1 name=..%2Fetc%2Fpasswd size=1000 zip=none\n" + payload)
put("meta-bomb", b"sitespool-sealed/1 name=bomb.bin size=1099511627776 zip=zlib\n" + zlib.compress(payload))
put("meta-small", b"sitespool-sealed/1 name=small.bin size=100 zip=zlib\n" + zlib.compress(payload))
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
    for n in ("a.txt", "b.txt"):
        info = tarfile.TarInfo(n); info.size = 3; tar.addfile(info, io.BytesIO(b"abc"))
tarred = buf.getvalue()
put("meta-files", b"sitespool-sealed/1 name=bundle size=%d zip=zlib files=3\n" % len(tarred) + zlib.compress(tarred))
PY
hostile 4449 "$(sealed_plain "$T/meta-garbage")"
hostile 4449 "$(sealed_plain "$T/meta-long")"
hostile 4449 "$(sealed_plain "$T/meta-name")"
hostile 4412 "$(sealed_plain "$T/meta-bomb")"; bomb=$HID
hostile 4413 "$(sealed_plain "$T/meta-small")"
hostile 4427 "$(sealed_plain "$T/meta-files")"; bundle=$HID

despool_once SS1 >/dev/null
for id in "${!want[@]}"; do
  assert_file "$J/$id.why"
  grep -q "^status ${want[$id]} " "$J/$id.why" || fail "pair $id: expected ${want[$id]}: $(head -1 "$J/$id.why")"
done
for s in 4445 4446 4447 4448 4449; do
  [ "$(status_count SS1 "$s")" -ge 1 ] || fail "no $s stored"
done
assert_eq "$(count_all "$I")" 0 "nothing delivered"
assert_eq "$(count_all "$R")" 0 "every hostile pair quarantined"
assert_eq "$(status_count SS1 4400)" 0 "no 4400"
leftovers=$(find "$T/SS1/inboxes" -name '.sitespool-*' | head -n 3)
[ -z "$leftovers" ] || fail "temporary files left: $leftovers"
for id in "${pkgsig[@]}"; do
  grep -q "^status 4407 .*the signature does not match the package" "$J/$id.why" ||
    fail "pair $id: not refused by the signature over its package: $(head -1 "$J/$id.why")"
done
pass "${#want[@]} hostile sealed pairs: each its own status, nothing delivered, no temporary file left"

grep -q "Could not open payload.bin (sealed package $flip) from site PS1: chunk 2 " "$J/$flip.why" ||
  fail "4446 does not name the decrypted file: $(head -1 "$J/$flip.why")"
grep -q "Could not open sealed package $magic from site PS1: " "$J/$magic.why" ||
  fail "4445 before the name is known: $(head -1 "$J/$magic.why")"
grep -q "Could not open sealed package $swapped from site PS1: its sealed header is not the one its signed instruction names" "$J/$swapped.why" ||
  fail "4445 for a swapped header: $(head -1 "$J/$swapped.why")"
grep -q "Could not open payload.bin (sealed package $before) from site PS1: .*final chunk" "$J/$before.why" ||
  fail "4447: $(head -1 "$J/$before.why")"
grep -q "Package bomb.bin (sealed package $bomb) from site PS1 is too large (1099511627776 bytes" "$J/$bomb.why" ||
  fail "4412: $(head -1 "$J/$bomb.why")"
grep -q "Bundle bundle (sealed package $bundle) from site PS1 (3 files)" "$J/$bundle.why" ||
  fail "4427: $(head -1 "$J/$bundle.why")"
grep -q "Could not open large.bin (sealed package $large_flip) from site PS1: chunk 151 " "$J/$large_flip.why" ||
  fail "4446 in a large package: $(head -1 "$J/$large_flip.why")"
pass "messages name the package by its decrypted name once known, 'sealed package ID' before"

# The genuine pair still arrives.
mv "$base" "$R/"; mv "${base%.pck}.ins" "$R/"
for f in "$R"/*; do mv "$f" "$R/$(basename "$f" | sed 's/^[0-9]*-//')"; done
despool_once SS1 >/dev/null
cmp "$T/payload.bin" "$I/payload.bin" || fail "the genuine sealed pair was not delivered"
pass "the untampered sealed pair is delivered"
