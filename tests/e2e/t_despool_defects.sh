#!/usr/bin/env bash
# Known despooler defects, one check (or a few) per defect, each a separate
# ok/FAIL line; the script fails at the end if any check failed.
#   1. disk full read as a bad package (4413)   -> t_despool_faults.sh
#   2. final-name collision: the payload must land under the name that 4400
#      and the ledger name, never lost, nothing pre-existing changed
#   3. a ledger row that cannot be written: nothing delivered, pair kept
#   4. attacker text in .why files and in `sitespool status` output
#   5. seq = 2^64-1 must not be stored as -1 or make a 0..2^64-2 gap
#   6. created far in the future / expires beyond any sane lifetime
#   7. hard-linked files in receive; quarantined files keep the peer's mode
. "$(dirname "$0")/lib.sh"

NFAIL=0 FAILED=()
bad() { echo "FAIL: $*" >&2; NFAIL=$((NFAIL + 1)); FAILED+=("$*"); }
# ctl_bytes FILE: prints a description of control bytes (other than \n) in
# FILE and fails if there are any.
ctl_bytes() {
  python3 - "$1" <<'PY'
import sys
b = open(sys.argv[1], 'rb').read()
bad = sorted({c for c in b if (c < 0x20 and c != 0x0a) or c == 0x7f})
if bad:
    print(' '.join('0x%02x' % c for c in bad)); sys.exit(1)
PY
}
# forged_status_lines FILE: lines after the first that start like a status line.
forged_status_lines() { tail -n +2 "$1" | grep -a '^status [0-9]' || true; }
# last_msg SITE: the newest despooler status message, without its date.
last_msg() { "$S" -C "$T/$1" status --component despooler --limit 1 | cut -d ' ' -f 3- | cut -c 1-220; }
despooler_msgs() { "$S" -C "$T/$1" status --component despooler --json | wc -l; }

mksite PS1; mksite SS1; pair PS1 SS1
despool_once SS1 >/dev/null # import PS1's key
F=$T/forge; mkdir -p "$F"
R=$(receive SS1); J=$(rejected SS1); I=$(incoming SS1)
drop() { mv "$F/$1.pck" "$R/"; mv "$F/$1.ins" "$R/"; }

echo "# defect 1 (disk full -> 4413 instead of 4416) is checked in t_despool_faults.sh"

# ---- 2. name collision: x, x.<id>, x.<id>.<id> already exist ----
id=$(new_id)
printf 'the payload of %s\n' "$id" > "$T/x.payload"
zpack "$T/x.payload" "$F/$id.pck"
sign_ins PS1 "$F" "$id" "$(fields "$id" name=x "size=$(stat -c %s "$T/x.payload")")"
mkdir -p "$T/pre"
for n in x "x.$id" "x.$id.$id"; do
  printf 'pre-existing %s, not the payload\n' "$n" > "$I/$n"
  cp -p "$I/$n" "$T/pre/$n"
done
drop "$id"
despool_once SS1 >/dev/null || true
ledger_path=$(sqlite3 -readonly "$T/SS1/site.db" "SELECT path FROM ledger WHERE id='$id'")
status_path=$("$S" -C "$T/SS1" status --id 4400 --json | grep -F "$id" |
  python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["istr"][2])' 2>/dev/null || true)
echo "# collision: ledger names '$ledger_path', 4400 names '$status_path'"
if [ -n "$ledger_path" ] && [ "$ledger_path" = "$status_path" ]; then
  pass "collision: the ledger and 4400 name the same file ($ledger_path)"
else
  bad "collision: ledger path '$ledger_path' and 4400 path '$status_path' differ or are missing"
fi
changed=""
for n in x "x.$id" "x.$id.$id"; do cmp -s "$T/pre/$n" "$I/$n" || changed+=" $n"; done
if [ -z "$changed" ]; then
  pass "collision: the three pre-existing files are unchanged"
else
  bad "collision: pre-existing file(s) changed or removed:$changed"
fi
if [ -n "$ledger_path" ] && [ -f "$T/SS1/$ledger_path" ] && cmp -s "$T/x.payload" "$T/SS1/$ledger_path"; then
  pass "collision: the payload is in incoming under the name the ledger records"
else
  where=$(grep -rlF "the payload of $id" "$I" 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ' || true)
  bad "collision: '$ledger_path' does not hold the payload (payload found in: '${where:-nowhere}'; incoming: $(ls -A "$I" | tr '\n' ' '))"
fi
new=$(find "$I" -maxdepth 1 -type f | wc -l)
if [ "$new" = 4 ] && [ -z "$(find "$I" -name '.sitespool-*')" ]; then
  pass "collision: exactly one new file in incoming, no temporary file left"
else
  bad "collision: expected 4 files in incoming (3 pre-existing + payload), found: $(ls -A "$I" | tr '\n' ' ')"
fi
[ "$(count_all "$R")" = 0 ] && [ "$(status_count SS1 4400)" = 1 ] ||
  echo "# collision: receive holds $(count_all "$R") file(s), $(status_count SS1 4400) x 4400"
rm -f "$I"/*

# ---- 3. the ledger row cannot be written (a trigger aborts inserts) ----
printf 'ledger must come first\n' > "$T/ledger.txt"
id=$(forge "$F" "$T/ledger.txt" name=ledger.txt); drop "$id"
sqlite3 "$T/SS1/site.db" "CREATE TRIGGER ss_test_no_ledger BEFORE INSERT ON ledger BEGIN SELECT RAISE(ABORT, 'ledger write refused by test'); END;"
n4400=$(status_count SS1 4400)
despool_once SS1 >/dev/null 2>&1 || true
if [ ! -e "$I/ledger.txt" ] && [ "$(status_count SS1 4400)" = "$n4400" ]; then
  pass "ledger write fails: nothing delivered, no 4400"
else
  bad "ledger write fails: delivered anyway (incoming: $(ls -A "$I" | tr '\n' ' '); 4400 count $n4400 -> $(status_count SS1 4400); ledger rows for it: $(sqlite3 -readonly "$T/SS1/site.db" "SELECT count(*) FROM ledger WHERE id='$id'"))"
fi
if [ -f "$R/$id.ins" ] && [ -f "$R/$id.pck" ] && [ ! -e "$J/$id.ins" ]; then
  pass "ledger write fails: the pair stays in receive"
else
  bad "ledger write fails: the pair left receive (receive: $(ls -A "$R" | tr '\n' ' '); rejected: $(ls -A "$J" | grep -c "$id" || true) file(s))"
fi
sqlite3 "$T/SS1/site.db" "DROP TRIGGER ss_test_no_ledger"
despool_once SS1 >/dev/null 2>&1 || true
rows=$(sqlite3 -readonly "$T/SS1/site.db" "SELECT count(*) FROM ledger WHERE id='$id'")
copies=$(find "$I" -maxdepth 1 -name 'ledger.txt*' | wc -l)
if [ "$copies" = 1 ] && cmp -s "$T/ledger.txt" "$I/ledger.txt" && [ "$rows" = 1 ] &&
   [ "$(status_count SS1 4400)" = "$((n4400 + 1))" ] && [ "$(count_all "$R")" = 0 ]; then
  pass "ledger writable again: delivered exactly once, with its ledger row"
else
  bad "ledger writable again: $copies copies in incoming, $rows ledger row(s), 4400 count $n4400 -> $(status_count SS1 4400), receive holds $(count_all "$R")"
fi
rm -f "$I"/*

# ---- 4. attacker text in .why files and in status output ----
# Unsigned one-line instructions: the parser refuses each (4403) and the
# refusal quotes the hostile field.
hostile_case() { # WHAT LINE-BYTES [FILE-NAME]
  local what=$1 line=$2 name=${3:-} id why forged ctl
  id=$(new_id)
  [ -n "$name" ] || name=$id.ins
  printf '%b\n' "${line//@ID@/$id}" > "$R/$name"
  printf 'payload\n' > "$R/${name%.ins}.pck"
  touch "$T/stamp"; sleep 0.01
  despool_once SS1 >/dev/null 2>&1 || true
  why=""
  IFS= read -r -d '' why < <(find "$J" -maxdepth 1 -name '*.why' -newer "$T/stamp" -print0) || true
  if [ -z "$why" ]; then bad "$what: no new .why file in rejected/"; return; fi
  forged=$(forged_status_lines "$why")
  if [ -z "$forged" ]; then
    pass "$what: the .why has no forged status line"
  else
    bad "$what: the .why carries a forged line: $(printf '%s' "$forged" | head -n 1 | cat -v)"
  fi
  if ctl=$(ctl_bytes "$why"); then
    pass "$what: no raw control bytes in the .why"
  else
    bad "$what: raw control bytes in the .why ($ctl): $(head -c 300 "$why" | cat -v | tr '\n' '|')"
  fi
}
hostile_case "newline-forged status line in dest" \
  'sitespool/1 id=@ID@ from=PS1 to=SS1 type=data dest=x%0AFORGED%0Astatus%204400%20(I):%20Despooler%20stored%20package name=x size=8 zip=zlib seq=1 created=1 expires=9999999999'
hostile_case "ESC/BEL/CR in a field value" \
  'sitespool/1 id=@ID@ from=%1B[2J%1B]0;pwn%07%0DPS1 to=SS1 type=data dest=replmgr.box name=x size=8 zip=zlib seq=1 created=1 expires=9999999999'
hostile_case "raw ESC/BEL/CR in a field key" \
  'sitespool/1 id=@ID@ \x1b[31m\x07\rk\x1b[0m=1 from=PS1 to=SS1 type=data dest=replmgr.box name=x size=8 zip=zlib seq=1 created=1 expires=9999999999'
hostile_case "invalid UTF-8 and CR in a field value" \
  'sitespool/1 id=@ID@ from=PS1 to=SS1 type=%FF%FEdata%0Dstatus%204400 dest=replmgr.box name=x size=8 zip=zlib seq=1 created=1 expires=9999999999'
hostile_case "invalid UTF-8 in a field key" \
  'sitespool/1 id=@ID@ \xff\xfe=1 from=PS1 to=SS1 type=data dest=replmgr.box name=x size=8 zip=zlib seq=1 created=1 expires=9999999999'
hostile_case "newline, ESC and invalid UTF-8 in the instruction file name" \
  'not an instruction' $'n\nstatus 4400 (I): forged\e[2J\a\xff.ins'

"$S" -C "$T/SS1" status > "$T/status.txt"
"$S" -C "$T/SS1" status --json > "$T/status.json"
if ctl=$(ctl_bytes "$T/status.txt"); then
  pass "sitespool status: no raw control bytes"
else
  bad "sitespool status: raw control bytes ($ctl) in its output"
fi
if [ "$(wc -l < "$T/status.txt")" = "$(wc -l < "$T/status.json")" ]; then
  pass "sitespool status: one line per message ($(wc -l < "$T/status.json"))"
else
  bad "sitespool status: $(wc -l < "$T/status.txt") lines for $(wc -l < "$T/status.json") messages (forged lines): $(grep -av '^[0-9]\{4\}-' "$T/status.txt" | head -n 2 | cat -v | tr '\n' '|')"
fi
if msg=$(python3 - "$T/status.json" <<'PY'
import json, sys
for i, raw in enumerate(open(sys.argv[1], 'rb'), 1):
    try:
        json.loads(raw.decode('utf-8'))
    except Exception as ex:
        print('line %d: %s: %r' % (i, ex, raw[:160])); sys.exit(1)
PY
); then
  pass "sitespool status --json: every line is valid UTF-8 JSON"
else
  bad "sitespool status --json: $msg"
fi

# ---- 5. seq = 2^64 - 1 in a validly signed instruction ----
# A fresh site SS2: PS1's first instruction there (no sites row yet).
mksite SS2; peer PS1 SS2; exchange PS1 SS2
despool_once SS2 >/dev/null
printf 'huge seq\n' > "$T/seq.txt"
id=$(forge "$F" "$T/seq.txt" to=SS2 name=seq.txt seq=18446744073709551615)
mv "$F/$id.pck" "$F/$id.ins" "$(receive SS2)/"
despool_once SS2 >/dev/null 2>&1 || true
lseq=$(sqlite3 -readonly "$T/SS2/site.db" "SELECT seq FROM ledger WHERE id='$id'")
sseq=$(sqlite3 -readonly "$T/SS2/site.db" "SELECT last_seq_in FROM sites WHERE site='PS1'")
if [ -f "$(incoming SS2)/seq.txt" ]; then
  echo "# seq 2^64-1: accepted and delivered; ledger seq '$lseq', sites.last_seq_in '$sseq'"
else
  echo "# seq 2^64-1: not delivered; $(cat "$(rejected SS2)/$id.why" 2>/dev/null | head -n 1)"
fi
if [ "$lseq" != -1 ] && [ "$sseq" != -1 ]; then
  pass "seq 2^64-1 is not stored as -1"
else
  bad "seq 2^64-1 stored as -1 (ledger seq '$lseq', sites.last_seq_in '$sseq')"
fi
gap=$("$S" -C "$T/SS2" status --id 4415 | grep -F '0 to 18446744073709551614' || true)
if [ -z "$gap" ]; then
  pass "seq 2^64-1: no 4415 gap '0 to 18446744073709551614'"
else
  bad "seq 2^64-1: $gap"
fi
if [ -f "$(incoming SS2)/seq.txt" ]; then
  : # accepted: the number it was stored as is checked above
elif [ -f "$(rejected SS2)/$id.why" ] && grep -q 'seq' "$(rejected SS2)/$id.why"; then
  pass "seq 2^64-1 rejected with a status message naming the field: $(head -n 1 "$(rejected SS2)/$id.why")"
else
  bad "seq 2^64-1 neither delivered nor rejected with a status message naming seq: $(head -n 1 "$(rejected SS2)/$id.why" 2>/dev/null || echo 'no .why')"
fi
# EXTRA (found while writing 5): an ordinary gap 1 -> 5 must raise 4415
# naming 2 to 4 (dsp_note_sequence compares with the already-updated value).
mksite SS3; peer PS1 SS3; exchange PS1 SS3
despool_once SS3 >/dev/null
for s in 1 5; do
  printf 'seq %s\n' "$s" > "$T/gap$s.txt"
  id=$(forge "$F" "$T/gap$s.txt" to=SS3 "name=gap$s.txt" "seq=$s")
  mv "$F/$id.pck" "$F/$id.ins" "$(receive SS3)/"
  despool_once SS3 >/dev/null 2>&1 || true
done
if "$S" -C "$T/SS3" status --id 4415 | grep -q 'numbers 2 to 4 '; then
  pass "EXTRA seq gap 1 -> 5 raises 4415 (2 to 4)"
else
  bad "EXTRA seq gap 1 -> 5: no 4415 naming 2 to 4 (4415 count $(status_count SS3 4415); delivered: $(ls "$(incoming SS3)" | tr '\n' ' '))"
fi

# ---- 6. time fields: created far in the future, expires far ahead ----
now=$(date +%s)
time_case() { # WHAT NAME FIELDS...
  local what=$1 name=$2 id before after; shift 2
  printf '%s\n' "$what" > "$T/$name"
  id=$(forge "$F" "$T/$name" "name=$name" "$@"); drop "$id"
  before=$(despooler_msgs SS1)
  despool_once SS1 >/dev/null 2>&1 || true
  after=$(despooler_msgs SS1)
  local seen; seen=$(head -n 1 "$J/$id.why" 2>/dev/null | cut -c 1-160 || true)
  if [ ! -e "$I/$name" ] && [ -f "$J/$id.ins" ] && [ -f "$J/$id.why" ] && [ "$after" -gt "$before" ]; then
    pass "$what: not delivered, quarantined with a .why ($seen)"
  else
    bad "$what: $([ -e "$I/$name" ] && echo delivered || echo 'not delivered'), in rejected: $([ -f "$J/$id.ins" ] && echo yes || echo no), .why: ${seen:-none}, new despooler messages: $((after - before)) (last: $(last_msg SS1))"
  fi
  rm -f "$I/$name"
}
time_case "created ten years in the future" future.txt \
  "created=$((now + 10 * 31557600))" "expires=$((now + 10 * 31557600 + 3600))"
time_case "expires 50 years ahead" longlived.txt "created=$now" "expires=$((now + 50 * 31557600))"
# Control: what sitespool itself sends (created a minute ago, 30 days) is delivered.
printf 'normal lifetime\n' > "$T/normal.txt"
id=$(forge "$F" "$T/normal.txt" name=normal.txt "created=$((now - 60))" "expires=$((now + 2592000))"); drop "$id"
despool_once SS1 >/dev/null 2>&1 || true
if cmp -s "$T/normal.txt" "$I/normal.txt"; then
  pass "control: created 60 s ago, expires in 30 days: delivered"
else
  bad "control: an ordinary instruction (created 60 s ago, expires in 30 days) was not delivered: $(head -n 1 "$J/$id.why" 2>/dev/null)"
fi
rm -f "$I"/*

# ---- 7. hard links into receive; quarantined files' mode ----
mkdir -p "$T/outside"
hardlink_case() { # pck|ins
  local which=$1 id before after o n
  printf 'hard-linked %s\n' "$which" > "$T/hl-$which.txt"
  id=$(forge "$T/outside" "$T/hl-$which.txt" "name=hl-$which.txt")
  chmod 0644 "$T/outside/$id.pck" "$T/outside/$id.ins"
  cp -p "$T/outside/$id.$which" "$T/outside.copy"
  o=pck; [ "$which" = pck ] && o=ins
  cp "$T/outside/$id.$o" "$R/"
  ln "$T/outside/$id.$which" "$R/$id.$which"
  before=$(despooler_msgs SS1)
  despool_once SS1 >/dev/null 2>&1 || true
  after=$(despooler_msgs SS1)
  if [ ! -e "$I/hl-$which.txt" ] && ! "$S" -C "$T/SS1" status --id 4400 --json | grep -qF "$id" &&
     [ "$after" -gt "$before" ]; then
    pass "hard-linked .$which: not delivered, status raised: $(last_msg SS1)"
  else
    bad "hard-linked .$which (link to a file outside receive): $([ -e "$I/hl-$which.txt" ] && echo 'delivered' || echo 'not delivered'); new despooler messages: $((after - before)) (last: $(last_msg SS1))"
  fi
  n=$(stat -c %a "$T/outside/$id.$which")
  if [ "$n" = 644 ] && cmp -s "$T/outside.copy" "$T/outside/$id.$which"; then
    pass "hard-linked .$which: the outside file keeps its mode (644) and content"
  else
    bad "hard-linked .$which: the outside file changed (mode $n, content $(cmp -s "$T/outside.copy" "$T/outside/$id.$which" && echo same || echo differs))"
  fi
  rm -f "$I"/*
}
hardlink_case pck
hardlink_case ins # EXTRA: the instruction hard-linked
# A pair the peer wrote with mode 0666 is quarantined (wrong recipient):
# in rejected/ it must not stay world-writable.
printf 'mode\n' > "$T/mode.txt"
id=$(forge "$F" "$T/mode.txt" name=mode.txt to=SS9)
chmod 0666 "$F/$id.pck" "$F/$id.ins"; drop "$id"
despool_once SS1 >/dev/null 2>&1 || true
mp=$(stat -c %a "$J/$id.pck" 2>/dev/null || echo missing)
mi=$(stat -c %a "$J/$id.ins" 2>/dev/null || echo missing)
mw=$(stat -c %a "$J/$id.why" 2>/dev/null || echo missing)
if [ "$mp" = 640 ] && [ "$mi" = 640 ] && [ "$mw" = 640 ]; then
  pass "quarantined pair written with 0666: 0640 in rejected/"
else
  bad "quarantined pair written with 0666: modes in rejected/ are .pck $mp, .ins $mi, .why $mw (want 640)"
fi

if [ "$NFAIL" -gt 0 ]; then
  printf '  failed: %s\n' "${FAILED[@]}" >&2
  fail "$NFAIL check(s) failed"
fi
