#!/usr/bin/env bash
# Despooler and keys: unsigned instructions (4404, or delivered when secure
# key exchange is off), a missing key (4405, kept, retried, with its exact
# wording), the key dropped into hman.box while the daemon runs (3300, 4417,
# delivered at once), retries running out (4406, quarantined, never deleted)
# and the retry count surviving a restart.
. "$(dirname "$0")/lib.sh"

# json_last SITE ID EXPR: EXPR over m, the newest status message ID (JSON).
json_last() {
  "$S" -C "$T/$1" status --id "$2" --json | tail -n 1 |
    python3 -c 'import json, sys; m = json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$3"
}
only_ins() { find "$1" -maxdepth 1 -name '*.ins' -printf '%f\n'; }

# ---- 1. unsigned, secure key exchange required (the default) -> 4404 ----
mksite PS1; mksite SS1; mksite SS2 "require_secure_key_exchange = no"
peer PS1 SS1; peer PS1 SS2; exchange PS1 SS1; exchange PS1 SS2
despool_once SS1 >/dev/null; despool_once SS2 >/dev/null # import the keys
printf 'unsigned payload\n' > "$T/u.txt"
"$S" -C "$T/PS1" send --unsigned --to SS1 "$T/u.txt" >/dev/null
ins=$(only_ins "$(receive SS1)"); id=${ins%.ins}
[ -n "$id" ] || fail "no instruction reached SS1"
head -c 12 "$(receive SS1)/$ins" | grep -q '^sitespool/1 ' || fail "$ins is not the unsigned form"
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4404)" 1 "one 4404"
assert_eq "$(json_last SS1 4404 'm["istr"][0]')" "$ins" "4404 names the instruction"
assert_eq "$(json_last SS1 4404 'm["severity"]')" E "4404 severity"
assert_file "$(rejected SS1)/$id.ins"; assert_file "$(rejected SS1)/$id.pck"
grep -q '^status 4404 (E): ' "$(rejected SS1)/$id.why" || fail ".why does not hold the 4404 text"
assert_eq "$(count_all "$(receive SS1)")" 0 "receive emptied"
assert_eq "$(count_all "$(incoming SS1)")" 0 "nothing delivered at SS1"
assert_eq "$(status_count SS1 4400)" 0 "no 4400 at SS1"
grep -q 'STATMSG: ID=4404 SEV=E' "$T/SS1/logs/despool.log" || fail "no 4404 line in despool.log"
pass "unsigned instruction rejected with 4404 into rejected/ with a .why file"

# ---- 1b. require_secure_key_exchange = no: the unsigned pair is delivered ----
"$S" -C "$T/PS1" send --unsigned --to SS2 "$T/u.txt" >/dev/null
despool_once SS2 >/dev/null
cmp "$T/u.txt" "$(incoming SS2)/u.txt" || fail "unsigned payload not delivered at SS2"
assert_eq "$(status_count SS2 4400)" 1 "one 4400 at SS2"
assert_eq "$(status_count SS2 4404)" 0 "no 4404 at SS2"
assert_eq "$(count_all "$(receive SS2)")" 0 "SS2 receive emptied"
assert_eq "$(count_all "$(rejected SS2)")" 0 "nothing rejected at SS2"
pass "with require_secure_key_exchange = no the unsigned pair is delivered"

# ---- 2. missing key -> 4405 with the default numbers, kept in receive ----
mksite SS3; peer PS1 SS3
printf 'waits for a key\n' > "$T/k.txt"
"$S" -C "$T/PS1" send --to SS3 "$T/k.txt" >/dev/null
ins=$(only_ins "$(receive SS3)"); id=${ins%.ins}
despool_once SS3 >/dev/null
assert_eq "$(status_count SS3 4405)" 1 "one 4405"
text=$(json_last SS3 4405 'm["text"]')
# The key id as minisign shows it: bytes 2..9 of the key, little-endian, hex.
pskey=$(python3 -c 'import base64, sys; b = base64.b64decode(open(sys.argv[1]).read().split("\n")[1]); print(b[2:10][::-1].hex().upper())' "$T/PS1/keys/PS1.pub")
expected="Despooler received instruction $ins with replication data from site PS1 but did not process it because no valid public key (id $pskey) for that site was found. It will retry 99 more times, next retry in about 5 minutes."
assert_eq "$text" "$expected" "4405 text with default settings"
assert_eq "$(json_last SS3 4405 'm["severity"]')" W "4405 severity"
grep -q 'STATMSG: ID=4405 SEV=W .*ISTR3="99" ISTR4="5"' "$T/SS3/logs/despool.log" ||
  fail "despool.log has no 4405 STATMSG with 99 and 5"
assert_file "$(receive SS3)/$id.ins"; assert_file "$(receive SS3)/$id.pck"
assert_eq "$(count_all "$(incoming SS3)")" 0 "nothing delivered without a key"
assert_eq "$(count_all "$(rejected SS3)")" 0 "nothing rejected while retrying"
# Within the interval, another run neither counts an attempt nor reports again.
despool_once SS3 >/dev/null
assert_eq "$(status_count SS3 4405)" 1 "no second 4405 within key_lookup_interval"
pass "missing key: 4405 'will retry 99 more times ... about 5 minutes', files kept in receive"

# ---- 2b. daemon: the key dropped into hman.box is used at once ----
start_despooler SS3
sleep 0.5
assert_eq "$(count_all "$(incoming SS3)")" 0 "no delivery before the key arrives"
assert_eq "$(status_count SS3 4405)" 1 "the daemon's start-up scan did not count a retry early"
"$S" -C "$T/PS1" key export -o "$T/PS1.pub" 2>/dev/null
t0=$SECONDS
cp "$T/PS1.pub" "$(hman SS3)/PS1.pub"
wait_until 10 test -f "$(incoming SS3)/k.txt" ||
  fail "not delivered within 10 s of the key arriving (interval is 300 s, rescan 60 s)"
pass "delivered $((SECONDS - t0)) s after the key was dropped into hman.box"
cmp "$T/k.txt" "$(incoming SS3)/k.txt" || fail "delivered content differs"
wait_until 5 eval '[ "$(count_all "$(receive SS3)")" = 0 ]' || fail "receive not emptied"
assert_file "$(hman SS3)/pubkey/PS1.pub"
assert_no_file "$(hman SS3)/PS1.pub"
cmp "$T/PS1.pub" "$(hman SS3)/pubkey/PS1.pub" || fail "archived key differs"
assert_eq "$(status_count SS3 3300)" 1 "one 3300 (key imported)"
assert_eq "$(status_count SS3 4417)" 1 "one 4417 (waiting instructions retried)"
assert_eq "$(json_last SS3 4417 'm["istr"]')" "['PS1', '1']" "4417 insertion strings"
assert_eq "$(status_count SS3 4400)" 1 "one 4400"
assert_eq "$(status_count SS3 4405)" 1 "no further 4405"
assert_eq "$(sqlite3 -readonly "$T/SS3/site.db" 'SELECT count(*) FROM retries')" 0 "retry row cleared"
stop_despooler "$DPID"
assert_eq "$DRC" 0 "despooler exit status after SIGTERM"
assert_eq "$(status_count SS3 4418)" 1 "one 4418 (stopped)"
grep -q 'STATMSG: ID=4418 SEV=I' "$T/SS3/logs/despool.log" || fail "no 4418 line in despool.log"
pass "daemon: key from hman.box imported (3300), archived to pubkey/, 4417, delivered; SIGTERM -> exit 0 and 4418"

# ---- 3. retries run out -> 4406, quarantined, never deleted ----
mksite SS4 "key_lookup_retries = 2" "key_lookup_interval = 1s"; peer PS1 SS4
printf 'nobody has my key\n' > "$T/r.txt"
"$S" -C "$T/PS1" send --to SS4 "$T/r.txt" >/dev/null
ins=$(only_ins "$(receive SS4)"); id=${ins%.ins}
despool_once SS4 >/dev/null
assert_eq "$(status_count SS4 4405)" 1 "first lookup: 4405"
case "$(json_last SS4 4405 'm["text"]')" in
  *"It will retry 1 more times, next retry in about 1 second.") ;;
  *) fail "first 4405 with key_lookup_retries = 2: $(json_last SS4 4405 'm["text"]')" ;;
esac
sleep 1.2
despool_once SS4 >/dev/null
assert_eq "$(status_count SS4 4405)" 1 "the last lookup does not announce another retry"
assert_eq "$(status_count SS4 4406)" 1 "second lookup (of 2): 4406"
assert_eq "$(json_last SS4 4406 'm["istr"][3]')" 2 "4406 counts 2 attempts"
assert_file "$(rejected SS4)/$id.ins"; assert_file "$(rejected SS4)/$id.pck"
grep -q '^status 4406 (E): ' "$(rejected SS4)/$id.why" || fail ".why does not hold 4406"
zlib_ok=$(python3 -c 'import sys, zlib; print(zlib.decompress(open(sys.argv[1], "rb").read()) == open(sys.argv[2], "rb").read())' "$(rejected SS4)/$id.pck" "$T/r.txt")
assert_eq "$zlib_ok" True "the quarantined package is intact"
assert_eq "$(count_all "$(receive SS4)")" 0 "receive emptied"
assert_eq "$(count_all "$(incoming SS4)")" 0 "nothing delivered"
assert_eq "$(sqlite3 -readonly "$T/SS4/site.db" 'SELECT count(*) FROM retries')" 0 "retry row cleared"
despool_once SS4 >/dev/null
assert_eq "$(status_count SS4 4406)" 1 "4406 raised once"
pass "key_lookup_retries = 2: 4405 then 4406 after 2 lookups, pair quarantined intact"

# ---- 4. a restart keeps the retry count ----
mksite SS5 "key_lookup_retries = 5" "key_lookup_interval = 1s"; peer PS1 SS5
"$S" -C "$T/PS1" send --to SS5 "$T/r.txt" >/dev/null
despool_once SS5 >/dev/null
sleep 1.2
despool_once SS5 >/dev/null # a new process: the count comes from site.db
sleep 1.2
start_despooler SS5 # and a daemon's start-up scan
stop_despooler "$DPID"
assert_eq "$DRC" 0 "daemon exit status"
"$S" -C "$T/SS5" status --id 4405 --json |
  python3 -c 'import json, sys; print(" ".join(json.loads(l)["istr"][3] for l in sys.stdin))' > "$T/left"
assert_eq "$(cat "$T/left")" "4 3 2" "retries left announced by successive runs"
assert_eq "$(sqlite3 -readonly "$T/SS5/site.db" 'SELECT attempts FROM retries')" 3 "attempts stored"
assert_eq "$(count_files "$(receive SS5)")" 2 "pair still waiting"
pass "restarts keep the retry count (4 3 2 more)"
