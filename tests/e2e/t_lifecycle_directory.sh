#!/usr/bin/env bash
# The key directory (the Active Directory role of the seed): `key publish`
# writes a site's record into a shared folder; a first record for a site is
# trusted as an administrator's act; a key published while data waits for it
# releases that data at once (daemon mode); a changed record for a trusted
# site goes through the change-blocking rule.
. "$(dirname "$0")/lib.sh"
keyid() { sed -n 2p "$T/$1/keys/$1.pub" | base64 -d | tail -c +3 | head -c 8 | od -An -tx1 |
          tr -d ' \n' | fold -w2 | tac | tr -d '\n' | tr a-f A-F; }
mkdir "$T/directory"
for site in PS1 SS1 SS2; do mksite "$site" "directory = $T/directory"; done
peer SS1 PS1; peer SS2 PS1

"$S" -C "$T/SS1" key publish >/dev/null
assert_file "$T/directory/SS1.pub"
echo "via directory" > "$T/a.txt"
"$S" -C "$T/SS1" send --to PS1 "$T/a.txt" >/dev/null
despool_once PS1 >/dev/null
cmp "$T/a.txt" "$(incoming PS1)/a.txt" || fail "key not found in the directory"
"$S" -C "$T/PS1" key list | grep -q "^SS1 *$(keyid SS1) trusted *directory" || fail "not trusted from directory"
pass "a first directory record is trusted; data flows"

# Daemon mode: SS2's data waits (4405) until SS2 publishes its key.
"$S" -C "$T/PS1" despool & DAEMONS+=($!)
sleep 0.3
echo "waiting for the directory" > "$T/b.txt"
"$S" -C "$T/SS2" send --to PS1 "$T/b.txt" >/dev/null
for _ in $(seq 1 100); do [ "$(status_count PS1 4405)" = 1 ] && break; sleep 0.05; done
assert_eq "$(status_count PS1 4405)" 1 "missing key reported"
"$S" -C "$T/SS2" key publish >/dev/null
for _ in $(seq 1 100); do [ -f "$(incoming PS1)/b.txt" ] && break; sleep 0.05; done
cmp "$T/b.txt" "$(incoming PS1)/b.txt" || fail "publishing the key did not release the waiting data at once"
status_text PS1 3300 | grep -q "for site SS2 from $T/directory/SS2.pub" || fail "import from the directory not recorded"
# 4417 is raised when the periodic recheck finds the key first; a scan already
# under way finds it through the instruction's own lookup. Either way: at once.
kill -TERM "${DAEMONS[0]}"; wait "${DAEMONS[0]}"; DAEMONS=()
pass "a key published in the directory retries the waiting instructions at once"

# SS1 gets a new key (no rollover) and publishes it: PS1 must not follow silently.
old=$(keyid SS1)
rm "$T/SS1/keys/SS1.key" "$T/SS1/keys/SS1.pub"
"$S" -C "$T/TMP" init --site SS1 >/dev/null
cp "$T/TMP/keys/SS1.key" "$T/TMP/keys/SS1.pub" "$T/SS1/keys/"
new=$(keyid SS1)
"$S" -C "$T/SS1" key publish >/dev/null
echo "changed record" > "$T/c.txt"
"$S" -C "$T/SS1" send --to PS1 "$T/c.txt" >/dev/null
despool_once PS1 >/dev/null
assert_no_file "$(incoming PS1)/c.txt"
assert_eq "$(status_count PS1 3303)" 1 "changed directory record blocks the site"
status_text PS1 3303 | grep -q "$old" || fail "3303 does not name the trusted key"
"$S" -C "$T/PS1" key list | grep -q "^SS1 *$new pending *directory" || fail "new key must be pending"
"$S" -C "$T/PS1" key trust SS1 "$new" >/dev/null
despool_once PS1 >/dev/null
cmp "$T/c.txt" "$(incoming PS1)/c.txt" || fail "not delivered after key trust"
pass "a changed directory record blocks the site until an administrator trusts it"
