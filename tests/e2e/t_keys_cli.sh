#!/usr/bin/env bash
# The administrator's commands for sites, keys and peers through the real
# binary: init (refusals, modes, a complete site.conf), key export/import/list,
# peer add/list/remove, SITESPOOL_SITE, --help everywhere, exit codes, and
# the status catalogue.
. "$(dirname "$0")/lib.sh"
mode() { stat -c %a "$1"; }

# ---- init ----
"$S" -C "$T/PS1" init --site PS1 > "$T/init.out" || fail "init PS1 failed"
grep -q 'key id [0-9A-F]\{16\}' "$T/init.out" || fail "init does not show the key id: $(cat "$T/init.out")"
assert_file "$T/PS1/site.conf"
assert_file "$T/PS1/site.db"
assert_eq "$(mode "$T/PS1/keys/PS1.key")" 600 "secret key mode"
assert_eq "$(mode "$T/PS1/keys")" 700 "keys/ mode"
for d in inboxes/despoolr.box/receive inboxes/despoolr.box/rejected inboxes/hman.box \
         inboxes/hman.box/pubkey inboxes/replmgr.box/incoming logs; do
  [ -d "$T/PS1/$d" ] || fail "init did not make $d"
done
pass "init makes the tree, the key pair (0600 in a 0700 keys/) and the database"

cp "$T/PS1/keys/PS1.key" "$T/PS1.key.before"
rc=0; "$S" -C "$T/PS1" init --site PS1 >/dev/null 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "init over an existing site succeeded"
assert_eq "$rc" 1 "exit code for an existing site (a failure, not a usage error)"
grep -q 'already holds a site' "$T/err" || fail "unclear refusal: $(cat "$T/err")"
cmp "$T/PS1.key.before" "$T/PS1/keys/PS1.key" || fail "init replaced the secret key"
for bad in ps1 P1 TOOLONGCODE 'P-1' ''; do
  rc=0; "$S" -C "$T/bad" init --site "$bad" >/dev/null 2>"$T/err" || rc=$?
  assert_eq "$rc" 2 "exit code for site code '$bad'"
  grep -q 'site code' "$T/err" || fail "unclear message for '$bad': $(cat "$T/err")"
done
assert_no_file "$T/bad/site.conf"
rc=0; "$S" -C "$T/bad" init >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "init without --site"
pass "init refuses an existing site (exit 1) and bad site codes (exit 2)"

# ---- site.conf: every setting present, uncommented, at its default ----
conf="$T/PS1/site.conf"
while IFS= read -r line; do
  case $line in ''|'#'*) continue ;; esac
  [[ $line =~ ^[a-z_]+\ =\ .*$ ]] || fail "site.conf line is not 'key = value': $line"
done < "$conf"
for setting in 'site_code = PS1' 'require_secure_key_exchange = yes' 'tofu_auto_approve = no' \
    'key_lookup_retries = 100' 'key_lookup_interval = 300s' 'rescan_interval = 60s' \
    'allowed_dest = replmgr.box' 'expiry_warning_days = 90' 'rollover_grace_days = 90'; do
  assert_eq "$(grep -cx "$setting" "$conf")" 1 "'$setting' in site.conf"
done
for key in directory max_package_bytes log_max_bytes notify_command sign_instructions; do
  assert_eq "$(grep -c "^$key = " "$conf")" 1 "'$key' in site.conf"
done
dups=$(grep -v '^#' "$conf" | grep ' = ' | cut -d' ' -f1 | sort | uniq -d)
assert_eq "$dups" "" "duplicate settings"
pass "site.conf holds every setting uncommented, with its default"

# ---- keys ----
mksite SS1; mksite CEN
"$S" -C "$T/PS1" key export -o "$T/PS1.pub" 2>/dev/null || fail "key export -o"
head -1 "$T/PS1.pub" | grep -q '^untrusted comment: .*PS1' || fail "exported comment: $(head -1 "$T/PS1.pub")"
cmp "$T/PS1.pub" "$T/PS1/keys/PS1.pub" || fail "the export differs from keys/PS1.pub"
"$S" -C "$T/PS1" key export -o - > "$T/stdout.pub" 2>/dev/null || fail "key export -o -"
cmp "$T/PS1.pub" "$T/stdout.pub" || fail "export to stdout differs"
(cd "$T" && "$S" -C "$T/CEN" key export >/dev/null 2>&1) || fail "key export to the default name"
assert_file "$T/CEN.pub"
ps1_id=$(sed -n 's/.*key id \([0-9A-F]\{16\}\).*/\1/p' "$T/init.out")
[ -n "$ps1_id" ] || fail "no key id in init's output"
pass "key export writes the public key file (-o FILE, -o -, default CODE.pub)"

# import by file name (PS1.pub names the site)
"$S" -C "$T/SS1" key import "$T/PS1.pub" > "$T/imp.out" || fail "key import PS1.pub"
grep -q "$ps1_id" "$T/imp.out" || fail "import does not show the key id: $(cat "$T/imp.out")"
# import by --site, from a file whose name says nothing
cp "$T/CEN.pub" "$T/from-the-other-admin.txt"
"$S" -C "$T/SS1" key import "$T/from-the-other-admin.txt" --site CEN >/dev/null ||
  fail "key import --site CEN"
# refusing the site's own key
rc=0; "$S" -C "$T/SS1" key import "$T/SS1/keys/SS1.pub" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "importing the site's own key succeeded"
grep -q 'this site' "$T/err" || fail "unclear refusal of the own key: $(cat "$T/err")"
rc=0; "$S" -C "$T/SS1" key import "$T/PS1.pub" --site SS1 >/dev/null 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "importing another key as the site's own code succeeded"
# a file that is not a key
printf 'not a key\n' > "$T/junk.pub"
rc=0; "$S" -C "$T/SS1" key import "$T/junk.pub" --site CEN >/dev/null 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "importing a junk file succeeded"
pass "key import by file name, by --site; the site's own key and junk are refused"

"$S" -C "$T/SS1" key list --json > "$T/keys.json" || fail "key list --json"
python3 - "$T/keys.json" "$ps1_id" <<'PY' || fail "key list --json: $(cat "$T/keys.json")"
import json, sys
keys = json.load(open(sys.argv[1]))
by_site = {k["site"]: k for k in keys}
assert set(by_site) == {"SS1", "PS1", "CEN"}, by_site
assert by_site["SS1"]["state"] == "own", by_site["SS1"]
assert by_site["PS1"]["state"] == "trusted", by_site["PS1"]
assert by_site["PS1"]["key_id"] == sys.argv[2], by_site["PS1"]
for k in keys:
    assert len(k["key_id"]) == 16 and k["key_id"] == k["key_id"].upper(), k
PY
"$S" -C "$T/SS1" key list | grep -q "^PS1 .*$ps1_id" || fail "key list text"
pass "key list --json parses and lists own and imported keys"

# ---- peers ----
"$S" -C "$T/SS1" peer add PS1 --inbox "$(receive PS1)" >/dev/null || fail "peer add"
"$S" -C "$T/SS1" peer add CEN --inbox "$(receive CEN)" >/dev/null || fail "peer add CEN"
"$S" -C "$T/SS1" peer list | grep -q "^PS1 .*$(receive PS1)" || fail "peer list text"
"$S" -C "$T/SS1" peer list --json | python3 -c '
import json, sys
peers = {p["site"]: p for p in json.load(sys.stdin)}
assert set(peers) == {"PS1", "CEN"}, peers
assert peers["PS1"]["inbox"].endswith("PS1/inboxes/despoolr.box/receive"), peers' ||
  fail "peer list --json"
"$S" -C "$T/SS1" peer remove CEN >/dev/null || fail "peer remove"
assert_eq "$("$S" -C "$T/SS1" peer list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" 1 \
  "peers after remove"
rc=0; "$S" -C "$T/SS1" peer remove CEN >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "removing an unknown peer succeeded"
pass "peer add, list (text and JSON) and remove"

# ---- SITESPOOL_SITE works like -C ----
a=$("$S" -C "$T/SS1" key list --json)
b=$(SITESPOOL_SITE="$T/SS1" "$S" key list --json)
assert_eq "$b" "$a" "key list through SITESPOOL_SITE"
(cd "$T" && SITESPOOL_SITE="$T/SS1" "$S" peer list --json) | grep -q '"PS1"' ||
  fail "peer list through SITESPOOL_SITE"
pass "SITESPOOL_SITE works like -C"

# ---- --help and exit codes ----
"$S" --help | grep -q '^usage: sitespool' || fail "sitespool --help"
for cmd in init key peer send sender despool status sign verify; do
  rc=0; out=$("$S" "$cmd" --help 2>&1) || rc=$?
  assert_eq "$rc" 0 "exit code of '$cmd --help'"
  echo "$out" | grep -q "usage: sitespool .*$cmd" || fail "'$cmd --help' shows no usage: $out"
done
rc=0; "$S" no-such-command >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 2 "exit code of an unknown command"
grep -q "no-such-command" "$T/err" || fail "the error does not name the command"
rc=0; "$S" >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "exit code without a command"
pass "--help works for every command; unknown commands exit 2"

# ---- status --catalogue ----
"$S" status --catalogue > "$T/cat.txt" || fail "status --catalogue"
for id_sev in '4400 I' '4404 E' '4405 W'; do
  grep -q "^$id_sev SITESPOOL_DESPOOLER" "$T/cat.txt" || fail "catalogue lacks $id_sev"
done
"$S" status --catalogue --json | python3 -c '
import json, sys
text = sys.stdin.read()
cat = json.loads(text)
ids = [m["id"] for m in cat]
assert len(ids) == len(set(ids)), "duplicate ids"
sev = {m["id"]: m["severity"] for m in cat}
assert sev[4400] == "I" and sev[4404] == "E" and sev[4405] == "W", sev' ||
  fail "status --catalogue --json"
pass "status --catalogue lists 4400, 4404 and 4405"
