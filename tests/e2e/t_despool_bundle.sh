#!/usr/bin/env bash
# Bundles (files=N) at the despooler, made independently of sitespool's
# sender: Python's tarfile and zlib build the package, stock minisign signs
# it.  A good bundle delivers every member exactly once (a ledger row and a
# 4400 per member, contents byte for byte, name collisions resolved per
# member); a replayed one is 4402; every bad member refuses the whole bundle
# with 4427 (nothing delivered, no temporary file left, the pair in
# rejected/); a tampered bundle is a bad signature (4407) and a bad stream
# 4413, whatever its tar says; a despooler killed while publishing members
# finishes them after a restart, each exactly once; large packages (read on
# a thread of their own) arrive intact or, changed, as bad signatures.
. "$(dirname "$0")/lib.sh"
mksite PS1; mksite SS1; pair PS1 SS1
despool_once SS1 >/dev/null # imports PS1's key
R=$(receive SS1) IN=$(incoming SS1)
mkdir "$T/w"

# bundle ID SPEC [key=value...]: DIR $T/w/ID.pck is the zlib stream of a tar
# made by tar_spec.py from SPEC; signed with the fields (files= defaults to
# the member count, size= to the tar length).
cat > "$T/tar_spec.py" <<'PY'
import io, sys, tarfile, time, zlib
# SPEC: ';'-separated members "kind:name[:data]"; kind f (file), l (symlink),
# h (hard link), d (directory), s (file whose header claims 5 bytes more).
out, spec = sys.argv[1], sys.argv[2]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    for item in spec.split(";"):
        kind, name, *rest = item.split(":", 2)
        data = (rest[0] if rest else "payload of " + name + "\n").encode()
        ti = tarfile.TarInfo(name)
        ti.mtime = int(time.time()); ti.mode = 0o640
        if kind == "f":
            ti.size = len(data); t.addfile(ti, io.BytesIO(data))
        elif kind == "l":
            ti.type = tarfile.SYMTYPE; ti.linkname = "/etc/passwd"; t.addfile(ti)
        elif kind == "h":
            ti.type = tarfile.LNKTYPE; ti.linkname = "a"; t.addfile(ti)
        elif kind == "d":
            ti.type = tarfile.DIRTYPE; t.addfile(ti)
raw = buf.getvalue()
if "s:" in spec:  # a header that claims more data than follows: cut the stream
    raw = raw[:1024 + 3]
open(out + ".tar", "wb").write(raw)
open(out, "wb").write(zlib.compress(raw))
print(len(raw), spec.count(";") + 1)
PY
bundle() {
  local id=$1 spec=$2; shift 2
  local len n
  read -r len n < <(python3 "$T/tar_spec.py" "$T/w/$id.pck" "$spec")
  sign_ins PS1 "$T/w" "$id" "$(fields "$id" "name=bundle.tar" "size=$len" "$@") files=${FILES:-$n}"
}
deliver() { cp "$T/w/$1.pck" "$T/w/$1.ins" "$R/"; despool_once SS1 >/dev/null; }
rows() { sqlite3 -readonly "$T/SS1/site.db" "$1"; }

# ---- a good bundle ---------------------------------------------------------------
id=$(new_id)
echo "already here" > "$IN/b.txt"
bundle "$id" "f:a.txt:alpha;f:b.txt:beta;f:Grüße €.txt:unicode;f:empty:;f:d.txt:delta" seq=1
deliver "$id"
assert_eq "$(cat "$IN/a.txt")" alpha "member a.txt"
assert_eq "$(cat "$IN/b.txt")" "already here" "an existing file is never replaced"
assert_eq "$(cat "$IN/b.txt.$id#2")" beta "member 2 took the collision name"
assert_eq "$(cat "$IN/Grüße €.txt")" unicode "a pax (UTF-8) name"
assert_file "$IN/empty"; assert_eq "$(stat -c %s "$IN/empty")" 0 "an empty member"
assert_eq "$(cat "$IN/d.txt")" delta "member d.txt"
assert_eq "$(count_all "$IN")" 6 "files in incoming (5 members + the one already there)"
assert_eq "$(count_all "$R")" 0 "the pair left receive"
assert_eq "$(rows "SELECT count(*) FROM ledger_files WHERE id='$id'")" 5 "a ledger row per member"
assert_eq "$(rows "SELECT path FROM ledger_files WHERE id='$id' AND member=2")" \
  "inboxes/replmgr.box/incoming/b.txt.$id#2" "the ledger names the collision name"
assert_eq "$(rows "SELECT count(*) FROM status WHERE msg_id=4400 AND istr LIKE '%$id#%'")" 5 "a 4400 per member"
grep -q "stored package $id#3 from site PS1 in inboxes/replmgr.box/incoming/Grüße €.txt" "$T/SS1/logs/despool.log" ||
  fail "despool.log does not name member 3"
pass "a bundle of 5 delivers 5 files, each with its ledger row and 4400"

# ---- a replay of it ----------------------------------------------------------------
deliver "$id"
assert_eq "$(status_count SS1 4402)" 1 "the replayed bundle is 4402"
assert_eq "$(count_all "$IN")" 6 "nothing more delivered"
pass "a replayed bundle is refused as a duplicate"

# ---- a member whose rename fails after the commit is kept, then finished ----------------
# Every candidate name of member 2 is taken: its rename fails (4416), its
# committed data must stay under the temporary name with the pair kept,
# and once a name is free the next scan publishes it - never lost.
id=$(new_id)
bundle "$id" "f:a2.txt:alpha2;f:x.txt:precious" seq=10
touch "$IN/x.txt" "$IN/x.txt.$id#2"
for i in $(seq 2 999); do touch "$IN/x.txt.$id#2.$i"; done
deliver "$id"
assert_eq "$(cat "$IN/a2.txt")" alpha2 "member 1 published"
assert_file "$R/$id.ins"
assert_eq "$(find "$IN" -name ".sitespool-$id-2.tmp" | wc -l)" 1 "member 2 kept under its temporary name"
rm -f "$IN/x.txt"
despool_once SS1 >/dev/null
assert_eq "$(cat "$IN/x.txt")" precious "member 2 published once a name was free"
assert_no_file "$R/$id.ins"
assert_eq "$(find "$IN" -name '.sitespool-*' | wc -l)" 0 "no temporary file left"
rm -f "$IN"/x.txt* "$IN/a2.txt" # as a consumer would: the counts below are of the other cases
pass "a member that cannot be renamed after the commit stays and is finished later"

# ---- bad members: each refuses the whole bundle -------------------------------------
refused=0
for spec in "f:ok1;l:evil" "f:ok1;h:evil" "f:ok1;d:sub" "f:ok1;f:../escape" "f:ok1;f:.hidden" \
            "f:ok1;f:dir/x" "f:ok1;f:ok1" "f:ok1;f:bad$(printf '\033')name" "f:ok1;s:short"; do
  id=$(new_id)
  bundle "$id" "$spec" seq=$((refused + 2))
  deliver "$id"
  refused=$((refused + 1))
  assert_eq "$(status_count SS1 4427)" "$refused" "4427 for $spec"
  assert_file "$(rejected SS1)/$id.pck"
  assert_no_file "$IN/ok1"
done
id=$(new_id); FILES=3 bundle "$id" "f:ok1;f:ok2" seq=20; deliver "$id"
assert_eq "$(status_count SS1 4427)" $((refused + 1)) "fewer members than files="
id=$(new_id); FILES=1 bundle "$id" "f:ok1;f:ok2" seq=21; deliver "$id"
assert_eq "$(status_count SS1 4427)" $((refused + 2)) "more members than files="
assert_eq "$(count_all "$IN")" 6 "no bad bundle delivered anything"
assert_eq "$(find "$IN" -name '.sitespool-*' | wc -l)" 0 "no temporary member left"
"$S" -C "$T/SS1" status --id 4427 | grep -q "member evil: it is not a regular file" ||
  fail "4427 does not say which member and why"
pass "links, folders, paths, dot-names, duplicates, control characters, short data and wrong counts are 4427"

# ---- tampering and bad streams --------------------------------------------------------
id=$(new_id); bundle "$id" "f:t1:original" seq=30
python3 - "$T/w/$id.pck" <<'PY'
import sys, zlib
p = sys.argv[1]; raw = bytearray(zlib.decompress(open(p, "rb").read()))
i = raw.find(b"original"); raw[i:i + 8] = b"tampered"
open(p, "wb").write(zlib.compress(bytes(raw)))
PY
deliver "$id"
assert_eq "$(status_count SS1 4407)" 1 "a tampered bundle is a bad signature"
id=$(new_id); bundle "$id" "f:t2" seq=31
head -c 40 "$T/w/$id.pck" > "$T/w/$id.cut"; mv "$T/w/$id.cut" "$T/w/$id.pck"
sign_ins PS1 "$T/w" "$id" "$(sed -n 's/^trusted comment: //p' "$T/w/$id.ins")"
deliver "$id"
assert_eq "$(status_count SS1 4413)" 1 "a signed but truncated stream is 4413"
id=$(new_id); len=$(python3 "$T/tar_spec.py" "$T/w/$id.pck" "f:t3" | cut -d' ' -f1)
sign_ins PS1 "$T/w" "$id" "$(fields "$id" "name=bundle.tar" "size=$((len - 512))" seq=32) files=1"
deliver "$id"
assert_eq "$(status_count SS1 4413)" 2 "a stream longer than size= is 4413"
assert_eq "$(count_all "$IN")" 6 "nothing delivered"
assert_eq "$(find "$IN" -name '.sitespool-*' | wc -l)" 0 "no temporary member left"
pass "tampering is 4407, a bad stream or size 4413"

# ---- killed while publishing members ---------------------------------------------------
if command -v strace >/dev/null && strace -f -o /dev/null -e inject=getpid:error=EPERM true 2>/dev/null; then
  for n in 1 3 5; do
    cp -a "$T/SS1" "$T/K$n"
    id=$(new_id)
    bundle "$id" "f:k1:one;f:k2:two;f:k3:three;f:k4:four;f:k5:five" seq=$((40 + n))
    cp "$T/w/$id.pck" "$T/w/$id.ins" "$T/K$n/inboxes/despoolr.box/receive/"
    strace -f -o /dev/null -e inject=renameat2:signal=KILL:when=$n \
      "$S" -C "$T/K$n" despool --once >/dev/null 2>&1 && fail "the despooler was not killed at rename $n"
    "$S" -C "$T/K$n" despool --once >/dev/null || fail "restart after rename $n"
    for i in 1 2 3 4 5; do
      assert_eq "$(find "$T/K$n/inboxes/replmgr.box/incoming" -name "k$i*" | wc -l)" 1 "k$i once after rename $n"
    done
    assert_eq "$(cat "$T/K$n/inboxes/replmgr.box/incoming/k3")" three "k3 content after rename $n"
    assert_eq "$(sqlite3 -readonly "$T/K$n/site.db" "SELECT count(*) FROM status WHERE msg_id=4400 AND istr LIKE '%$id#%'")" 5 "a 4400 per member after rename $n"
    assert_eq "$(find "$T/K$n/inboxes/replmgr.box/incoming" -name '.sitespool-*' | wc -l)" 0 "no tmp after rename $n"
    assert_eq "$(count_all "$T/K$n/inboxes/despoolr.box/receive")" 0 "receive empty after rename $n"
    assert_eq "$(sqlite3 -readonly "$T/K$n/site.db" "SELECT count(*) FROM status WHERE msg_id=4402 AND istr LIKE '%$id%'")" 0 "no 4402 after rename $n"
  done
  pass "killed at the 1st, 3rd and 5th member rename: each member exactly once after a restart"
else
  echo "SKIP: strace cannot inject faults here (not installed or ptrace not permitted)"
fi

# ---- large packages: read and hashed on a thread of their own ------------------------
# (stage.c: packages of 8 MiB and more).  A good one arrives byte for byte;
# one with a byte changed near its end is a bad signature (4407), never data.
head -c $((12 << 20)) /dev/urandom > "$T/large.bin"
id=$(forge "$T/w" "$T/large.bin" name=large.bin seq=60)
deliver "$id"
cmp -s "$T/large.bin" "$IN/large.bin" || fail "the 12 MiB payload differs"
before=$(status_count SS1 4407)
id=$(forge "$T/w" "$T/large.bin" name=large2.bin seq=61)
python3 - "$T/w/$id.pck" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); size = os.fstat(fd).st_size
b = os.pread(fd, 1, size - 100); os.pwrite(fd, bytes([b[0] ^ 1]), size - 100); os.close(fd)
PY
deliver "$id"
assert_eq "$(status_count SS1 4407)" $((before + 1)) "a large package changed near its end is 4407"
assert_no_file "$IN/large2.bin"
assert_eq "$(find "$IN" -name '.sitespool-*' | wc -l)" 0 "no temporary file left"
pass "a 12 MiB package arrives intact; one changed near its end is a bad signature"
