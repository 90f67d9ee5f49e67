#!/usr/bin/env bash
# Sealed packages (issue 15), end to end with real sites and independent
# oracles: stock minisign verifies every sealed pair, python3-nacl
# (seal_oracle.py: libsodium's primitives, nothing of sitespool) opens it
# with the receiver's secret key and not with a third site's; the package
# and instruction bytes hold neither the content nor the file name (a
# control run unsealed shows that grep would find them); single files, a
# file of many chunks and a bundle arrive intact under their names; a third
# site given the pair reads nothing.  Key rollover and hostile packages are
# t_sealed_keys.sh and t_sealed_hostile.sh; kill -9 t_sealed_killnine.sh.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_seal.sh"
# Stored, not deflated: unsealed, the content would appear in the package
# as it is (the control below), so a grep that finds nothing in the sealed
# package means something.
mksite PS1 "compression_level = 0"; mksite SS1; mksite TS1
pair PS1 SS1; pair PS1 TS1
for s in PS1 SS1 TS1; do despool_once "$s" >/dev/null; done # the keys in hman.box

marker="SEALED-CONTENT-$(new_id)"
name="secret-name-$(new_id).txt"
{ echo "$marker"; head -c 3000 /dev/urandom | base64; echo "$marker"; } > "$T/$name"
newest_pair() { ls -t "$(receive "$1")"/*.ins | head -1; }

# Control: the same file unsealed (seal = no) to TS1 shows both.
sed -i 's/^seal = .*/seal = no/' "$T/PS1/site.conf"
"$S" -C "$T/PS1" send --to TS1 "$T/$name" >/dev/null
ins=$(newest_pair TS1); pck=${ins%.ins}.pck
assert_eq "$(grep -c -a -F "$marker" "$pck")" 2 "control: the unsealed package shows the content"
assert_eq "$(grep -c -F "name=$name" "$ins")" 1 "control: the unsealed instruction names the file"
[ -z "$(tc_field "$ins" enc)" ] || fail "control: seal = no still sealed"
rm -f "$ins" "$pck"
sed -i 's/^seal = .*/seal = yes/' "$T/PS1/site.conf"
pass "control: unsealed, grep finds the content in the package and the name in the instruction"

# The sealed pair: nothing of the file in either file.
"$S" -C "$T/PS1" send --to SS1 "$T/$name" >/dev/null
ins=$(newest_pair SS1); pck=${ins%.ins}.pck; id=$(basename "$ins" .ins)
for f in "$pck" "$ins"; do
  assert_eq "$(grep -c -a -F "$marker" "$f")" 0 "content in $(basename "$f")"
  assert_eq "$(grep -c -a -F "$name" "$f")" 0 "file name in $(basename "$f")"
  assert_eq "$(grep -c -a -F "secret-name" "$f")" 0 "part of the file name in $(basename "$f")"
done
ss1_key=$(oracle keyid "$T/SS1/keys/SS1.pub")
assert_eq "$(tc_field "$ins" enc)" "$ss1_key" "enc= names SS1's key"
assert_eq "$(tc_field "$ins" name)" sealed "name=sealed"
assert_eq "$(tc_field "$ins" zip)" none "zip=none"
assert_eq "$(tc_field "$ins" size)" "$(stat -c %s "$pck")" "size= is the sealed length"
assert_eq "$(head -c 8 "$pck")" SSSEAL01 "the package starts with the sealed magic"
pass "the sealed pair holds neither the content nor the name (enc=$ss1_key, name=sealed)"

out=$(verify_pair "$T/PS1/keys/PS1.pub" "$pck" "$ins") || fail "stock minisign rejects the sealed pair"
grep -q "^Trusted comment: sitespool/1 id=$id .* name=sealed .* enc=$ss1_key" <<<"$out" ||
  fail "minisign shows another trusted comment: $out"
pass "stock minisign -V verifies the sealed pair without decrypting it"

meta=$(oracle open "$T/SS1/keys/SS1.key" "$pck" "$T/oracle.out") ||
  fail "python3-nacl cannot open the package with SS1's key"
cmp "$T/$name" "$T/oracle.out" || fail "python3-nacl opened other content"
grep -q "^sitespool-sealed/1 name=$name size=$(stat -c %s "$T/$name") zip=" <<<"$meta" ||
  fail "metadata line: $meta"
if oracle open "$T/TS1/keys/TS1.key" "$pck" "$T/oracle.ts1" 2>"$T/oracle.err"; then
  fail "python3-nacl opened the package with TS1's key"
fi
# Even told to ignore the key id, TS1's key derives another stream key.
ts1_key=$(oracle keyid "$T/TS1/keys/TS1.pub")
oracle tamper "$pck" "$T/relabelled.pck" "keyid=$ts1_key"
if oracle open "$T/TS1/keys/TS1.key" "$T/relabelled.pck" "$T/oracle.ts1" 2>"$T/oracle.err"; then
  fail "python3-nacl opened the package with TS1's key once relabelled"
fi
grep -q "chunk 1 does not authenticate" "$T/oracle.err" || fail "TS1: $(cat "$T/oracle.err")"
pass "python3-nacl opens it with SS1's secret key (metadata: $meta), not with TS1's"

# A third site given the pair reads nothing: as addressed (4408), and
# re-addressed to it and re-signed by PS1 (4444: not its key).
cp "$pck" "$ins" "$(receive TS1)/"
despool_once TS1 >/dev/null
assert_eq "$(status_count TS1 4408)" 1 "TS1: the pair is addressed to SS1 (4408)"
id2=$(new_id); cp "$pck" "$(receive TS1)/$id2.pck"
sign_ins PS1 "$(receive TS1)" "$id2" "$(sealed_comment "$id2" "$pck" "$ss1_key" to=TS1)"
despool_once TS1 >/dev/null
assert_eq "$(status_count TS1 4444)" 1 "TS1: sealed to a key that is not TS1's (4444)"
status_text TS1 4444 | grep -q "sealed to key $ss1_key, which is not a key of this site" ||
  fail "4444 text: $(status_text TS1 4444)"
assert_eq "$(count_all "$(incoming TS1)")" 0 "TS1 delivered nothing"
assert_eq "$(count_all "$(receive TS1)")" 0 "TS1 quarantined both pairs"
pass "a third site given the pair reads nothing (4408 as addressed, 4444 re-addressed)"

# Round trips: the file above (stored), a file of many chunks and a bundle
# of small ones (deflated: the sealed payload is a zlib stream then).
sed -i 's/^compression_level = .*/compression_level = 6/' "$T/PS1/site.conf"
head -c $((9 * 1024 * 1024 + 12345)) /dev/urandom > "$T/large.bin" # read on a reader thread (>= 8 MiB)
mkdir "$T/small"
for i in $(seq 1 20); do echo "small file $i $(new_id)" > "$T/small/s$i.txt"; done
"$S" -C "$T/PS1" send --to SS1 "$T/large.bin" >/dev/null
"$S" -C "$T/PS1" send --to SS1 "$T/small"/* >/dev/null
assert_eq "$(ls "$(receive SS1)"/*.ins | wc -l)" 3 "three sealed pairs (file, large file, bundle)"
for i in "$(receive SS1)"/*.ins; do
  [ -n "$(tc_field "$i" enc)" ] || fail "$(basename "$i") is not sealed"
  [ -z "$(tc_field "$i" files)" ] || fail "$(basename "$i") shows files= of a bundle"
done
chunks=$(($(stat -c %s "$(ls -S "$(receive SS1)"/*.pck | head -1)") / 65553))
[ "$chunks" -ge 80 ] || fail "the large package has only $chunks chunks"
despool_once SS1 >/dev/null
I=$(incoming SS1)
cmp "$T/$name" "$I/$name" || fail "$name differs"
cmp "$T/large.bin" "$I/large.bin" || fail "large.bin differs"
for i in $(seq 1 20); do cmp "$T/small/s$i.txt" "$I/s$i.txt" || fail "s$i.txt differs"; done
assert_eq "$(count_all "$I")" 22 "files in incoming"
assert_eq "$(count_all "$(receive SS1)")" 0 "receive emptied"
assert_eq "$(count_all "$(rejected SS1)")" 0 "nothing rejected"
assert_eq "$(status_count SS1 4400)" 22 "4400 per file"
status_text SS1 4400 | grep -q "in inboxes/replmgr.box/incoming/$name\." ||
  fail "4400 does not name the decrypted file: $(status_text SS1 4400)"
assert_eq "$(sqlite3 -readonly "$T/SS1/site.db" "SELECT size FROM ledger WHERE id='$id'")" \
  "$(stat -c %s "$T/$name")" "the ledger records the real size"
pass "a file, a file of $chunks chunks and a bundle of 20 arrive intact under their names"
