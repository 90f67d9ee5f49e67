#!/usr/bin/env bash
# The operator commands (issue 13) through the real binary:
#  check   - a clean site passes (exit 0); a bad setting, a secret key of
#            mode 0644, a missing folder, a symbolic link for a folder, a peer
#            inbox that does not exist and an SFTP peer without a pinned host
#            key each fail (exit 1) naming the command that fixes them; it
#            survives a broken site.conf and a missing site.db; --json.
#  queue   - a pair waiting for a key, a held pair, a quarantined (unsigned)
#            pair, half a pair, a blocked-free site and pairs queued for an
#            unreachable peer, each in its state in text and --json.
#  release - a pair quarantined after its key lookups ran out goes back once
#            the key is there and is delivered byte for byte (4428); refusals.
#  delete  - a quarantined and a held pair are removed with 4429; a pair the
#            despooler may be working on, or an unknown id, is refused.
. "$(dirname "$0")/lib.sh"

# run_rc VAR CMD...: runs CMD with stdout+stderr in $T/out, its exit code in VAR.
run_rc() {
  local __var=$1; shift
  local __rc=0
  "$@" >"$T/out" 2>&1 || __rc=$?
  printf -v "$__var" '%s' "$__rc"
}
expect_out() { grep -qF -- "$1" "$T/out" || fail "${2:-output} lacks '$1': $(cat "$T/out")"; }
# qjson SITE EXPR: EXPR over q, the array 'queue --json' prints (strict JSON).
qjson() {
  "$S" -C "$T/$1" queue --json > "$T/q.json" || fail "queue --json failed at $1"
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$T/q.json" ||
    fail "queue --json is not JSON: $(cat "$T/q.json")"
  python3 -c 'import json, sys; q = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
    "$T/q.json" "$2"
}
# entry SITE ID KEY: KEY of the queue entry with that id.
entry() { qjson "$1" "[e['$3'] for e in q if e['id'] == '$2']"; }
only_ins() { find "$1" -maxdepth 1 -name '*.ins' -printf '%f\n'; }

# ---- --help of each command ----
for cmd in check queue release delete; do
  run_rc rc "$S" "$cmd" --help
  assert_eq "$rc" 0 "$cmd --help exit code"
  expect_out "usage: sitespool [-C SITE_ROOT] $cmd" "$cmd --help"
  expect_out "Exit codes:" "$cmd --help"
done
run_rc rc "$S" release
assert_eq "$rc" 2 "release without ID"
run_rc rc "$S" delete not-an-id
assert_eq "$rc" 2 "delete with a malformed ID"
run_rc rc "$S" check --bogus
assert_eq "$rc" 2 "check with an unknown option"
pass "--help (exit 0) and usage errors (exit 2) for check, queue, release, delete"

# ---- check ----
# PS1 sends unsealed: the queue and delete texts below name the files, which
# a sealed pair quarantined before it was opened cannot (it is listed as
# "sealed"; t_sealed*.sh cover sealing).
mksite PS1 "seal = no"; mksite SS1; pair PS1 SS1
despool_once PS1 >/dev/null; despool_once SS1 >/dev/null # import each other's keys
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 0 "check of a clean site: $(cat "$T/out")"
grep -q '^error:' "$T/out" && fail "a clean site has errors: $(cat "$T/out")"
expect_out "ok: keys/PS1.key:" "clean check"
expect_out "ok: peer SS1: inbox $(receive SS1) is a folder" "clean check"
expect_out "check: 0 error(s)" "clean check"
"$S" -C "$T/PS1" check --json > "$T/check.json"
python3 -c 'import json, sys; f = json.load(open(sys.argv[1])); assert f and all(set(x) == {"severity", "area", "subject", "message", "fix"} for x in f); assert not [x for x in f if x["severity"] == "error"]' "$T/check.json" ||
  fail "check --json: $(cat "$T/check.json")"
pass "check: a clean site passes (exit 0), text and JSON"

conf="$T/PS1/site.conf"
cp "$conf" "$T/site.conf.good"
sed -i 's/^key_lookup_retries = .*/key_lookup_retries = many/' "$conf"
line=$(grep -n '^key_lookup_retries = many' "$conf" | cut -d: -f1)
echo "sign_instructions = yes" >> "$conf" # set twice: found although an earlier line is bad
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 1 "check with a bad setting"
expect_out "error: site.conf: line $line: bad value 'many' for key_lookup_retries" "bad setting"
expect_out "fix: edit $T/PS1/site.conf (line $line)" "bad setting"
expect_out "'sign_instructions' is set twice" "duplicate setting"
expect_out "ok: keys/PS1.key:" "check with a broken site.conf (the other checks still run)"
cp "$T/site.conf.good" "$conf"
pass "check: a bad setting and a duplicate, each with its line (exit 1); the rest still checked"

chmod 644 "$T/PS1/keys/PS1.key"
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 1 "check with key mode 0644"
expect_out "error: keys/PS1.key: mode 0644" "key mode"
expect_out "fix: chmod 600 $T/PS1/keys/PS1.key" "key mode"
chmod 600 "$T/PS1/keys/PS1.key"
pass "check: a secret key of mode 0644 (exit 1, chmod 600 named)"

rmdir "$(rejected PS1)"
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 1 "check with a missing folder"
expect_out "error: inboxes/despoolr.box/rejected: is missing" "missing folder"
expect_out "fix: mkdir -p $T/PS1/inboxes/despoolr.box/rejected" "missing folder"
mkdir "$(rejected PS1)"
mv "$(hman PS1)/pubkey" "$T/pubkey.real"; ln -s "$T/pubkey.real" "$(hman PS1)/pubkey"
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 1 "check with a symlinked folder"
expect_out "error: inboxes/hman.box/pubkey: is a symbolic link" "symlinked folder"
rm "$(hman PS1)/pubkey"; mv "$T/pubkey.real" "$(hman PS1)/pubkey"
pass "check: a missing folder (mkdir -p named) and a symbolic link instead of a folder (exit 1)"

"$S" -C "$T/PS1" peer add SS9 --inbox "$T/nowhere/receive" >/dev/null
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 1 "check with a peer inbox that does not exist"
expect_out "error: peer SS9: its inbox $T/nowhere/receive cannot be reached" "bad peer"
expect_out "sitespool -C $T/PS1 peer add SS9 --inbox" "bad peer fix"
expect_out "warning: peer SS9: no trusted public key of SS9" "unknown peer"
"$S" -C "$T/PS1" peer remove SS9 >/dev/null
"$S" -C "$T/PS1" peer add SS8 --inbox "sftp://spool@127.0.0.1:2222/srv/receive" >/dev/null
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 1 "check with an SFTP peer without a pinned host key"
expect_out "error: peer SS8: sftp://spool@127.0.0.1:2222/srv/receive: no host key is pinned for [127.0.0.1]:2222" "sftp peer"
expect_out "fix: sitespool -C $T/PS1 peer trust-host SS8 SHA256:" "sftp peer"
expect_out "error: keys/sftp_id: is missing" "sftp identity"
"$S" -C "$T/PS1" peer trust-host SS8 "SHA256:$(printf 'A%.0s' {1..43})" >/dev/null
"$S" -C "$T/PS1" peer ssh-key >/dev/null
run_rc rc "$S" -C "$T/PS1" check
grep -q '^error: peer SS8' "$T/out" && fail "a fingerprint pinned in advance still fails: $(cat "$T/out")"
expect_out "ok: peer SS8: sftp://spool@127.0.0.1:2222/srv/receive: fingerprint SHA256:AAAA" "pinned in advance"
expect_out "ok: keys/sftp_id: SSH identity" "identity"
"$S" -C "$T/PS1" peer remove SS8 >/dev/null
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 0 "check once the peers are fixed: $(cat "$T/out")"
pass "check: a peer inbox that does not exist, an SFTP peer without a pinned host key (exit 1, fixes named)"

mv "$T/PS1/site.db" "$T/site.db.away"
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 1 "check without site.db"
expect_out "error: site.db: is missing" "missing site.db"
mv "$T/site.db.away" "$T/PS1/site.db"
mv "$conf" "$T/site.conf.away"
run_rc rc "$S" -C "$T/PS1" check
assert_eq "$rc" 1 "check without site.conf"
expect_out "error: site.conf:" "missing site.conf"
mv "$T/site.conf.away" "$conf"
run_rc rc "$S" -C "$T/none" check
assert_eq "$rc" 1 "check of a folder that does not exist"
pass "check: a missing site.db, a missing site.conf, no site at all: reported, exit 1"

# As another user than the site's owner (the daemons' user under systemd):
# every folder and the secret key are named with the chown that fixes them.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1 &&
  setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups test -x "$S"; then
  mksite NR1
  chmod 755 "$T"; find "$T/NR1" -type d -exec chmod a+rx {} +; chmod a+r "$T/NR1/site.conf"
  rc=0
  setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
    "$S" -C "$T/NR1" check > "$T/out" 2>&1 || rc=$?
  chmod 700 "$T"
  assert_eq "$rc" 1 "check by a user who cannot write the site"
  expect_out "error: inboxes/despoolr.box/receive: is owned by root, mode 0755: nobody cannot write it -- fix: chown nobody $T/NR1/inboxes/despoolr.box/receive" "non-root check"
  expect_out "error: keys/NR1.key: is owned by root, not by nobody who runs sitespool -- fix: chown nobody $T/NR1/keys/NR1.key" "non-root check"
  pass "check as a user who does not own the site: each folder and the key, with the chown that fixes it"
else
  echo "SKIP: check as a user who does not own the site: needs root, and setpriv to run $S as nobody"
fi

# ---- queue: each state ----
# waiting-key: SS2's data reaches SS1, which does not have SS2's key.
mksite SS2; peer SS2 SS1
printf 'needs a key\n' > "$T/k.txt"
"$S" -C "$T/SS2" send --to SS1 "$T/k.txt" >/dev/null
wait_id=$(only_ins "$(receive SS1)"); wait_id=${wait_id%.ins}
# quarantined: an unsigned pair from PS1 (SS1 requires secure key exchange).
printf 'unsigned\n' > "$T/u.txt"
"$S" -C "$T/PS1" send --unsigned --to SS1 "$T/u.txt" >/dev/null 2>&1
quar_id=$(only_ins "$(receive SS1)" | grep -v "$wait_id"); quar_id=${quar_id%.ins}
despool_once SS1 >/dev/null
assert_eq "$(status_count SS1 4405)" 1 "SS2's pair waits for its key"
assert_eq "$(status_count SS1 4404)" 1 "the unsigned pair is quarantined"
# incomplete: an instruction whose package has not arrived yet.
printf 'half\n' > "$T/h.txt"
half_id=$(forge "$T" "$T/h.txt")
cp "$T/$half_id.ins" "$(receive SS1)/"
run_rc rc "$S" -C "$T/SS1" queue
assert_eq "$rc" 0 "queue exit code"
grep -q "^waiting-key .* 4405  $wait_id  SS2 .* k.txt$" "$T/out" || fail "queue text, waiting-key: $(cat "$T/out")"
grep -q "^quarantined .* 4404  $quar_id  PS1 .* u.txt$" "$T/out" || fail "queue text, quarantined: $(cat "$T/out")"
grep -q "^incomplete .* $half_id  PS1 " "$T/out" || fail "queue text, incomplete: $(cat "$T/out")"
expect_out "Total: 1 incomplete, 1 waiting-key, 1 quarantined" "queue summary"
assert_eq "$(entry SS1 "$wait_id" state)" "['waiting-key']" "state of the pair waiting for a key"
assert_eq "$(entry SS1 "$wait_id" status_id)" "[4405]" "status of the pair waiting for a key"
assert_eq "$(entry SS1 "$wait_id" site)" "['SS2']" "site of the pair waiting for a key"
assert_eq "$(entry SS1 "$quar_id" state)" "['quarantined']" "state of the unsigned pair"
assert_eq "$(entry SS1 "$quar_id" status_id)" "[4404]" "status of the unsigned pair"
assert_eq "$(entry SS1 "$half_id" state)" "['incomplete']" "state of half a pair"
assert_eq "$(entry SS1 "$half_id" size)" "[None]" "half a pair has no package size"
assert_eq "$(qjson SS1 'sorted(set(k for e in q for k in e))')" \
  "['age_seconds', 'detail', 'id', 'name', 'site', 'size', 'state', 'status_id']" "queue --json keys"
assert_eq "$(qjson SS1 'all(isinstance(e["age_seconds"], int) and e["age_seconds"] >= 0 for e in q)')" True "ages"
rm "$(receive SS1)/$half_id.ins"
pass "queue: waiting-key (4405), quarantined (4404) and incomplete pairs, in text and valid JSON"

# held: a site whose first key waits for approval (secure key exchange off).
mksite GS1 "require_secure_key_exchange = no"; mksite PS2; peer PS2 GS1
"$S" -C "$T/PS2" key send-to GS1 >/dev/null
printf 'held data\n' > "$T/held.txt"
"$S" -C "$T/PS2" send --to GS1 "$T/held.txt" >/dev/null
despool_once GS1 >/dev/null
assert_eq "$(status_count GS1 4420)" 1 "PS2's data is held"
held_id=$(only_ins "$(receive GS1)"); held_id=${held_id%.ins}
assert_eq "$(entry GS1 "$held_id" state)" "['held']" "state of the held pair"
assert_eq "$(entry GS1 "$held_id" status_id)" "[4420]" "status of the held pair"
assert_eq "$(entry GS1 "$held_id" name)" "['held.txt']" "name of the held pair"
# outbox: PS1 queues for a peer whose inbox is not there.
"$S" -C "$T/PS1" peer add SS7 --inbox "$T/gone/receive" >/dev/null
printf 'queued one\n' > "$T/o1.txt"; printf 'queued two\n' > "$T/o2.txt"
rc=0; "$S" -C "$T/PS1" send --to SS7 --name o1.txt "$T/o1.txt" >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 75 "send to an unreachable peer"
rc=0; "$S" -C "$T/PS1" send --to SS7 --name o2.txt "$T/o2.txt" >/dev/null 2>&1 || rc=$?
assert_eq "$(qjson PS1 "sorted(e['name'] for e in q if e['state'] == 'outbox' and e['site'] == 'SS7')")" \
  "['o1.txt', 'o2.txt']" "outbox entries"
assert_eq "$(qjson PS1 "sorted(set(e['status_id'] for e in q if e['state'] == 'outbox'))")" "[4501]" \
  "outbox entries of an unreachable peer"
assert_eq "$(qjson PS1 "all(len(e['id']) == 32 and e['size'] > 0 for e in q if e['state'] == 'outbox')")" True \
  "outbox ids and sizes"
"$S" -C "$T/PS1" queue > "$T/out"
expect_out "Total: 2 outbox" "PS1's queue"
pass "queue: a held pair (4420) and pairs queued for an unreachable peer (outbox, 4501)"

# ---- release ----
# SS4 gives up after one key lookup: PS3's pair is quarantined with 4406.
mksite SS4 "key_lookup_retries = 1"; mksite PS3; peer PS3 SS4
head -c 200000 /dev/urandom > "$T/big.bin"
"$S" -C "$T/PS3" send --to SS4 "$T/big.bin" >/dev/null
rel_id=$(only_ins "$(receive SS4)"); rel_id=${rel_id%.ins}
despool_once SS4 >/dev/null
assert_eq "$(status_count SS4 4406)" 1 "quarantined once the lookups ran out"
assert_file "$(rejected SS4)/$rel_id.why"
assert_eq "$(entry SS4 "$rel_id" status_id)" "[4406]" "queue shows the 4406"
# Refusals first: not quarantined, incomplete, name taken in receive.
run_rc rc "$S" -C "$T/SS4" release "$(new_id)"
assert_eq "$rc" 1 "release of an id that is not quarantined"
expect_out "is not quarantined" "release refusal"
run_rc rc "$S" -C "$T/SS1" release "$wait_id"
assert_eq "$rc" 1 "release of a pair waiting in receive"
expect_out "it is in the receive inbox" "release refusal"
mv "$(rejected SS4)/$rel_id.pck" "$T/$rel_id.pck"
run_rc rc "$S" -C "$T/SS4" release "$rel_id"
assert_eq "$rc" 1 "release of an incomplete pair"
expect_out "incomplete" "release refusal"
mv "$T/$rel_id.pck" "$(rejected SS4)/"
cp "$(rejected SS4)/$rel_id.ins" "$(receive SS4)/"
run_rc rc "$S" -C "$T/SS4" release "$rel_id"
assert_eq "$rc" 1 "release when receive holds the name"
expect_out "the receive inbox already holds $rel_id.ins" "release refusal"
rm "$(receive SS4)/$rel_id.ins"
assert_eq "$(count_all "$(receive SS4)")" 0 "refusals moved nothing into receive"
assert_eq "$(count_files "$(rejected SS4)")" 3 "refusals left the quarantined pair alone"
# Fix the cause (the key), release, despool: delivered byte for byte.
"$S" -C "$T/PS3" key export -o "$T/PS3.pub" 2>/dev/null
"$S" -C "$T/SS4" key import "$T/PS3.pub" >/dev/null
run_rc rc "$S" -C "$T/SS4" release "$rel_id"
assert_eq "$rc" 0 "release: $(cat "$T/out")"
expect_out "Released $rel_id (big.bin from PS3, quarantined with status 4406)" "release output"
expect_out "rescan_interval is 60s" "release output"
assert_file "$(receive SS4)/$rel_id.pck"; assert_file "$(receive SS4)/$rel_id.ins"
assert_eq "$(count_all "$(rejected SS4)")" 0 "rejected/ is empty after the release (.why removed)"
assert_eq "$(status_count SS4 4428)" 1 "4428 raised"
"$S" -C "$T/SS4" status --id 4428 | grep -q "Instruction $rel_id from site PS3, quarantined with status 4406, was moved back into the receive inbox by user " ||
  fail "4428 text: $(status_text SS4 4428)"
despool_once SS4 >/dev/null
cmp "$T/big.bin" "$(incoming SS4)/big.bin" || fail "the released pair was not delivered intact"
assert_eq "$(status_count SS4 4400)" 1 "delivered once (4400)"
run_rc rc "$S" -C "$T/SS4" release "$rel_id"
assert_eq "$rc" 1 "release of a delivered pair"
pass "release: 4406 -> key imported -> release (4428) -> delivered byte for byte; refusals exit 1"

# ---- delete ----
run_rc rc "$S" -C "$T/SS1" delete "$quar_id"
assert_eq "$rc" 0 "delete of a quarantined pair: $(cat "$T/out")"
expect_out "Deleted $quar_id (u.txt from PS1, quarantined with status 4404)" "delete output"
for ext in ins pck why; do assert_no_file "$(rejected SS1)/$quar_id.$ext"; done
assert_eq "$(status_count SS1 4429)" 1 "4429 raised"
"$S" -C "$T/SS1" status --id 4429 | grep -q "Instruction $quar_id (u.txt) from site PS1, quarantined with status 4404, was deleted by user " ||
  fail "4429 text: $(status_text SS1 4429)"
assert_eq "$(entry SS1 "$quar_id" state)" "[]" "the deleted pair is no longer queued"
run_rc rc "$S" -C "$T/SS1" delete "$quar_id"
assert_eq "$rc" 1 "delete of an id deleted already"
expect_out "neither quarantined nor held" "delete refusal"
run_rc rc "$S" -C "$T/SS1" delete "$wait_id"
assert_eq "$rc" 1 "delete of a pair waiting for its key"
expect_out "waits in the receive inbox for the public key" "delete refusal"
assert_file "$(receive SS1)/$wait_id.ins"; assert_file "$(receive SS1)/$wait_id.pck"
cp "$T/$half_id.ins" "$(receive SS1)/"; zpack "$T/h.txt" "$(receive SS1)/$half_id.pck"
run_rc rc "$S" -C "$T/SS1" delete "$half_id"
assert_eq "$rc" 1 "delete of a pair not judged yet"
expect_out "not held" "delete refusal"
assert_file "$(receive SS1)/$half_id.ins"
run_rc rc "$S" -C "$T/GS1" delete "$held_id"
assert_eq "$rc" 0 "delete of a held pair: $(cat "$T/out")"
expect_out "Deleted $held_id (held.txt from PS2, held with status 4420" "delete output"
assert_no_file "$(receive GS1)/$held_id.ins"; assert_no_file "$(receive GS1)/$held_id.pck"
assert_eq "$(sqlite3 -readonly "$T/GS1/site.db" "SELECT count(*) FROM holds WHERE id='$held_id'")" 0 "hold row gone"
assert_eq "$(status_count GS1 4429)" 1 "4429 for the held pair"
"$S" -C "$T/GS1" key approve PS2 >/dev/null
despool_once GS1 >/dev/null
assert_no_file "$(incoming GS1)/held.txt"
pass "delete: a quarantined and a held pair removed (4429); waiting, unjudged and unknown ids refused"
