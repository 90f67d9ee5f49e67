#!/usr/bin/env bash
# make_corpus.sh - regenerates the seed corpora in tests/fuzz/corpus/ and the
# fixed test key tests/fuzz/ps1_key.h from real files made by the sitespool
# binary (not needed for fuzzing: the results are committed; run it again
# only when a file format changes).
#
#   tests/fuzz/make_corpus.sh [SITESPOOL_BINARY]     (default build/tools/sitespool)
#
# It creates a primary PS1 and a secondary SS1 in a temporary folder, sends
# PS1 -> SS1 a zlib package, a stored (zip=none) package, a name that needs
# percent-encoding, an unsigned instruction, a key exchange and a rollover,
# and turns what lands in SS1's inbox into seeds.  PS1's original key pair
# becomes the fixed fuzzing key of fuzz_pair (ps1_key.h): the signed seeds
# verify with it, so the fuzzer starts from pairs the despooler delivers.
# That key is a TEST key, published in this repository: never trust it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
SP=${1:-$top/build/tools/sitespool}
SP=$(cd "$(dirname "$SP")" && pwd)/$(basename "$SP")
[ -x "$SP" ] || { echo "make_corpus.sh: no sitespool binary at $SP (build first)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "make_corpus.sh: needs python3" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$SP" -C PS1 init --site PS1 >/dev/null
"$SP" -C SS1 init --site SS1 >/dev/null
# Signed seeds as long-lived as a receiver accepts (max_package_lifetime,
# 400 days); the fuzz_pair seeds with flag bit 7 never expire (the harness
# refreshes their times and signs them itself).
sed -i -e 's/^package_lifetime = .*/package_lifetime = 399d/' PS1/site.conf
cp PS1/keys/PS1.key PS1/keys/PS1.pub .
mkdir drop
"$SP" -C PS1 peer add SS1 --inbox "$work/drop" >/dev/null

mkdir -p out/data out/none out/pct out/unsigned out/key out/rollover out/bundle
send_into() { # folder, sitespool send arguments...
  local dir=$1; shift
  "$SP" -C PS1 send --to SS1 "$@" >/dev/null
  mv drop/*.ins drop/*.pck "$dir"/
}
printf 'site,count\nPS1,3\n' > report.csv
send_into out/data report.csv
printf 'stored, not compressed\n' > plain.txt
sed -i 's/^compression_level = .*/compression_level = 0/' PS1/site.conf
send_into out/none plain.txt
sed -i 's/^compression_level = .*/compression_level = 6/' PS1/site.conf
printf 'x' > x
send_into out/pct --name 'q 1%+é.txt' x
send_into out/unsigned --unsigned report.csv
printf 'caf\xc3\xa9\n' > 'résumé.txt'; : > empty
send_into out/bundle report.csv 'résumé.txt' empty # one bundle of three (files=3)
"$SP" -C PS1 key send-to SS1 >/dev/null
mv drop/*.ins drop/*.pck out/key/
"$SP" -C PS1 key rotate >/dev/null
mv drop/*.ins drop/*.pck out/rollover/

python3 - "$here" "$work" <<'EOF'
import os, struct, sys, zlib, glob, shutil
here, work = sys.argv[1], sys.argv[2]
corpus = os.path.join(here, "corpus")
for t in ("instr", "sig", "keyfile", "inflate", "conf", "pair"):
    d = os.path.join(corpus, t)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)

def put(target, name, data):
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)

def pair(kind):
    ins = glob.glob(os.path.join(work, "out", kind, "*.ins"))[0]
    return open(ins, "rb").read(), open(ins[:-4] + ".pck", "rb").read()

for kind in ("data", "none", "pct", "unsigned", "key", "rollover", "bundle"):
    ins, pck = pair(kind)
    lines = ins.split(b"\n")
    if ins.startswith(b"untrusted comment: "):
        put("instr", kind, lines[2][len(b"trusted comment: "):])
        put("sig", kind + ".ins", ins)
    else:
        put("instr", kind, lines[0])
    # fuzz_pair input: flags, u16 LE instruction length, instruction, package
    flags = 1 if kind == "unsigned" else 0
    put("pair", kind, bytes([flags]) + struct.pack("<H", len(ins)) + ins + pck)
    # the same fields, signed by the harness with fresh times (bits 6, 7)
    fields = lines[2][len(b"trusted comment: "):] if flags == 0 else lines[0]
    flags = 0x81 if kind == "unsigned" else 0xC0
    put("pair", kind + "-fresh", bytes([flags]) + struct.pack("<H", len(fields)) + fields + pck)
    if kind in ("data", "pct", "key"):
        # fuzz_inflate input: flags (1 = zlib), chunk, u32 LE declared size, stream
        size = len(zlib.decompress(pck))
        put("inflate", kind, bytes([1, 0]) + struct.pack("<I", size) + pck)
    if kind == "none":
        put("inflate", kind, bytes([2, 7]) + struct.pack("<I", len(pck)) + pck)
    if kind == "key":
        put("keyfile", "offer", b"\x01" + zlib.decompress(pck))
    if kind == "rollover":
        put("keyfile", "rollover", b"\x02" + zlib.decompress(pck))
# a bomb: 64 KiB of zeros declared as 1000 bytes
put("inflate", "bomb", bytes([1, 3]) + struct.pack("<I", 1000) + zlib.compress(bytes(65536), 9))
put("keyfile", "ps1.pub", b"\x00" + open(os.path.join(work, "PS1.pub"), "rb").read())
put("keyfile", "ss1.pub", b"\x00" + open(os.path.join(work, "SS1/keys/SS1.pub"), "rb").read())
put("conf", "site.conf", open(os.path.join(work, "PS1/site.conf"), "rb").read())
put("conf", "small.conf",
    b"site_code = SS1\nrequire_secure_key_exchange = no\nallowed_dest = replmgr.box,sms_data.box\n"
    b"max_package_bytes = 16M\nrescan_interval = 5m\nbatch_max = 4\n# comment\n")

def cstr(b):
    return "\n".join('    "%s\\n"' % l for l in b.decode().splitlines())
with open(os.path.join(here, "ps1_key.h"), "w") as h:
    h.write("/*\n * ps1_key.h - generated by make_corpus.sh: the fixed PS1 key pair of fuzz_pair,\n"
            " * which signed the seeds in corpus/pair.  A TEST key, published: never trust it.\n */\n"
            "#ifndef SS_FUZZ_PS1_KEY_H\n#define SS_FUZZ_PS1_KEY_H\n\n")
    h.write("static const char fuzz_ps1_pub[] =\n%s;\n\n" % cstr(open(os.path.join(work, "PS1.pub"), "rb").read()))
    h.write("static const char fuzz_ps1_key[] =\n%s;\n\n#endif\n" % cstr(open(os.path.join(work, "PS1.key"), "rb").read()))
EOF
du -sh "$here"/corpus/* | sed 's/^/make_corpus.sh: /'
