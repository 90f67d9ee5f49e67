#!/usr/bin/env bash
# Every command tells the truth (issue 16, items 7 and 8): nothing is
# written over without --force (key export -o, init into a folder that
# holds files), a send to a site that is no peer leaves nothing behind and
# names the peers and 'peer add', a local inbox that does not exist is
# added with a warning; tools/quickstart takes a relative folder from where
# it runs and its closing hint works from anywhere; errors say what is
# wrong (a --name with a '/', a site code in lower case, a mistyped command
# or subcommand: "did you mean"); key export prints the key id on stdout.
. "$(dirname "$0")/lib.sh"

# ---- key export -o never replaces another file without --force ----------------
mksite PS1; mksite SS1
echo "not a key" >"$T/PS1.pub"
rc=0; "$S" -C "$T/PS1" key export -o "$T/PS1.pub" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "key export -o over another file"
assert_eq "$(cat "$T/PS1.pub")" "not a key" "the file key export refused to replace"
grep -qF "$T/PS1.pub" "$T/err" && grep -q -- "--force" "$T/err" ||
  fail "the refusal does not name the file and --force: $(cat "$T/err")"
"$S" -C "$T/PS1" key export -o "$T/PS1.pub" --force >/dev/null || fail "key export --force"
cmp -s "$T/PS1.pub" "$T/PS1/keys/PS1.pub" || fail "--force did not write the key"
"$S" -C "$T/SS1" key export -o "$T/PS1.pub" >/dev/null 2>&1 && fail "SS1's key went over PS1.pub"
cmp -s "$T/PS1.pub" "$T/PS1/keys/PS1.pub" || fail "PS1.pub was changed by a refused export"
# The same key again is no overwrite: it is there already, exit 0.
"$S" -C "$T/PS1" key export -o "$T/PS1.pub" >"$T/out" || fail "exporting the same key again"
grep -q "already holds" "$T/out" || fail "exporting the same key again: $(cat "$T/out")"
pass "key export -o: an existing different file is refused (naming it and --force); --force replaces"

# The key id goes to standard output (the README says key export prints it);
# with -o - standard output is the key alone.
id=$("$S" -C "$T/PS1" key list --json | grep -o '"site":"PS1","key_id":"[0-9A-F]*"' | cut -d'"' -f8)
[ -n "$id" ] || fail "no key id for PS1"
"$S" -C "$T/PS1" key export -o "$T/again.pub" >"$T/out" 2>"$T/err" || fail "key export"
grep -q "$id" "$T/out" || fail "key export -o FILE does not print the key id on stdout: $(cat "$T/out")"
"$S" -C "$T/PS1" key export -o - >"$T/stdout.pub" 2>/dev/null || fail "key export -o -"
cmp -s "$T/stdout.pub" "$T/PS1/keys/PS1.pub" || fail "key export -o - printed more than the key"
pass "key export prints the key id on stdout; with -o - stdout is the key alone"

# ---- init: a new or empty folder, or --force --------------------------------------
mkdir -p "$T/busy" "$T/empty/lost+found"
echo "someone's notes" >"$T/busy/notes.txt"
rc=0; "$S" -C "$T/busy" init --site BSY >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "init into a folder that holds a file"
grep -qF "$T/busy" "$T/err" && grep -q -- "--force" "$T/err" && grep -q "notes.txt" "$T/err" ||
  fail "the refusal does not name the folder, what it holds and --force: $(cat "$T/err")"
assert_eq "$(ls -A "$T/busy")" "notes.txt" "what a refused init left in the folder"
"$S" -C "$T/busy" init --site BSY --force >/dev/null || fail "init --force into a folder with files"
assert_file "$T/busy/site.conf"
assert_eq "$(cat "$T/busy/notes.txt")" "someone's notes" "the file init --force found"
"$S" -C "$T/empty" init --site EMP >/dev/null || fail "init into an empty folder (lost+found aside)"
rc=0; "$S" -C "$T/busy" init --site BSY --force >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "init --force over a site"
grep -q "already holds a site" "$T/err" || fail "init --force over a site: $(cat "$T/err")"
pass "init refuses a folder holding files unless --force; an existing site even with --force"

# ---- send to a site that is no peer: an error naming the peers, nothing made -------
"$S" -C "$T/PS1" peer add SS1 --inbox "$(receive SS1)" >/dev/null
echo data >"$T/f.txt"
rc=0; "$S" -C "$T/PS1" send --to SS9 "$T/f.txt" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "send to a site that is no peer"
assert_no_file "$(outbox PS1 SS9)"
grep -q "SS9 is not a peer" "$T/err" && grep -q "SS1" "$T/err" && grep -q "peer add SS9" "$T/err" ||
  fail "the error does not name the known peers and 'peer add': $(cat "$T/err")"
assert_eq "$(status_count PS1 4504)" 0 "status 4504 for a send to no peer"
rc=0; "$S" -C "$T/PS1" send --flush --to SS9 >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "send --flush --to a site that is no peer"
assert_no_file "$(outbox PS1 SS9)"
pass "send --to a site that is no peer: exit 1, its peers and 'peer add' named, no outbox left"

# ---- peer add: a local inbox that does not exist is added, with a warning -----------
"$S" -C "$T/PS1" peer add SS2 --inbox "$T/nowhere/receive" >"$T/out" 2>"$T/err" ||
  fail "peer add with a missing inbox: $(cat "$T/err")"
grep -q "warning" "$T/err" && grep -qF "$T/nowhere/receive" "$T/err" && grep -q "queued" "$T/err" ||
  fail "no warning naming the missing inbox and what happens: $(cat "$T/err")"
"$S" -C "$T/PS1" peer list | grep -q "^SS2 " || fail "the peer with a missing inbox was not added"
"$S" -C "$T/PS1" peer add SS1 --inbox "$(receive SS1)" >/dev/null 2>"$T/err"
[ ! -s "$T/err" ] || fail "a warning for an inbox that exists: $(cat "$T/err")"
"$S" -C "$T/PS1" peer add SS3 --inbox sftp://spool@ss3.example.org/srv/receive >/dev/null 2>"$T/err"
[ ! -s "$T/err" ] || fail "an sftp:// address was checked on this host: $(cat "$T/err")"
pass "peer add: a missing local inbox is added with a warning; sftp:// is not checked here"

# ---- what is wrong with a --name ---------------------------------------------------
rc=0; "$S" -C "$T/PS1" send --to SS1 --name ../../etc/x "$T/f.txt" >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 2 "send --name ../../etc/x"
grep -q "(use --name)" "$T/err" && fail "tells to use --name although it was used: $(cat "$T/err")"
grep -q "'/'" "$T/err" || fail "does not say the name holds a '/': $(cat "$T/err")"
rc=0; "$S" -C "$T/PS1" send --to SS1 --name .hidden "$T/f.txt" >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 2 "send --name .hidden"
grep -q "starts with '.'" "$T/err" || fail "does not say the name starts with '.': $(cat "$T/err")"
assert_eq "$(count_all "$(outbox PS1 SS1)")" 0 "pairs queued by refused sends"
pass "send --name: says what is wrong with the name"

# ---- site codes typed in lower case: "did you mean" --------------------------------
check_hint() { # check_hint WANT COMMAND...: exit 2 and "did you mean WANT?"
  local want=$1 rc=0; shift
  "$@" >/dev/null 2>"$T/err" || rc=$?
  assert_eq "$rc" 2 "exit code of '$*'"
  grep -q "did you mean $want?" "$T/err" || fail "'$*' gives no hint $want: $(cat "$T/err")"
}
check_hint SS1 "$S" -C "$T/PS1" send --to ss1 "$T/f.txt"
check_hint SS1 "$S" -C "$T/PS1" send --flush --to ss1
check_hint PS2 "$S" -C "$T/new" init --site ps2
check_hint SS4 "$S" -C "$T/PS1" peer add ss4 --inbox "$(receive SS1)"
check_hint SS1 "$S" -C "$T/PS1" peer remove ss1
check_hint SS1 "$S" -C "$T/PS1" peer trust-host Ss1 SHA256:oAfHRzxbx8mY8U4qKh8mKFMj3YyHqQ3EaYdm/9ju8Tg
assert_no_file "$T/new"
pass "a site code in lower case: 'did you mean PS1?', exit 2"

# ---- mistyped commands and subcommands: "did you mean", anywhere --------------------
cd "$T" || exit 1 # not a site folder: the hint comes before any site is opened
check_hint "'send'" "$S" sned "$T/f.txt"
check_hint "'status'" "$S" stauts
check_hint "'list'" "$S" key lst
check_hint "'export'" "$S" key exprot -o x.pub
check_hint "'list'" "$S" peer lsit
check_hint "'remove'" "$S" peer remvoe SS1
rc=0; "$S" frobnicate >/dev/null 2>"$T/err" || rc=$?
assert_eq "$rc" 2 "an unknown command nothing resembles"
grep -q "did you mean" "$T/err" && fail "a hint for a command nothing resembles: $(cat "$T/err")"
grep -q "frobnicate" "$T/err" && grep -q "usage: sitespool" "$T/err" ||
  fail "an unknown command is not named with the usage: $(cat "$T/err")"
pass "a mistyped command or subcommand: 'did you mean ...?', exit 2, in or out of a site"

# ---- tools/quickstart: a relative folder is the caller's; the hint works anywhere ---
# The script runs as shipped; only its build step and the package check are
# stood in for (cmake links the sitespool under test, dpkg-query says
# installed): what is tested is where it puts the sites and what it prints.
mkdir -p "$T/repo/tools" "$T/stub" "$T/work"
cp "$SS_SOURCE_DIR/tools/quickstart" "$T/repo/tools/quickstart"
cat >"$T/stub/cmake" <<EOF
#!/bin/sh
for a; do [ "\$a" = --build ] && exit 0; done
mkdir -p build-demo/tools && ln -sf "$S" build-demo/tools/sitespool
EOF
printf '#!/bin/sh\necho "install ok installed"\n' >"$T/stub/dpkg-query"
chmod +x "$T/stub/cmake" "$T/stub/dpkg-query" "$T/repo/tools/quickstart"
(cd "$T/work" && PATH="$T/stub:$PATH" bash "$T/repo/tools/quickstart" rel-demo) >"$T/qs.out" 2>&1 ||
  fail "quickstart rel-demo failed: $(tail -20 "$T/qs.out")"
[ -f "$T/work/rel-demo/PS1/site.conf" ] || fail "quickstart did not make the sites in ./rel-demo"
assert_no_file "$T/repo/rel-demo"
hint=$(grep -A1 "Try, from any folder" "$T/qs.out" | tail -1)
[ -n "$hint" ] || fail "no closing hint: $(tail -5 "$T/qs.out")"
(cd / && eval "$hint") >"$T/hint.out" 2>&1 || fail "the closing hint '$hint' fails from /: $(cat "$T/hint.out")"
grep -q "^PS1 " "$T/hint.out" || fail "the closing hint shows no keys: $(cat "$T/hint.out")"
pass "tools/quickstart RELATIVE makes the sites there; its closing hint works from anywhere"
