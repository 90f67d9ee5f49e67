#!/usr/bin/env bash
# The README's walkthrough is true: its command blocks - the ```sh blocks
# between <!-- walkthrough:begin --> and <!-- walkthrough:end --> - run
# literally, in order, in one shell, as an administrator would type them:
# `sitespool` on the PATH (the binary under test), ~ a fresh home folder,
# the current folder holding the files the walkthrough sends.  Then what
# the README says happened is checked: both sites made, the keys exchanged
# by the drop into hman.box (the key id export printed is the one the
# despooler logged, 3300), despoolers and senders started in the
# background and stopped by its last step, the files delivered intact,
# the output of send in the form the README shows, and its ids in the
# status messages (4504 at the sender, 4400 at the receiver).
#
# The walkthrough runs as an ordinary user: what needs root (the package,
# init --system, systemctl) is in its prose and in t_deb/t_service, not in
# these blocks.  t_readme.sh checks the README's generated tables.
. "$(dirname "$0")/lib.sh"
README=$SS_SOURCE_DIR/README.md

# ---- the blocks, as written --------------------------------------------------
awk '/<!-- walkthrough:begin -->/ { on = 1; next }
     /<!-- walkthrough:end -->/ { on = 0 }
     on && /^```sh$/ { inside = 1; n++; print "#### block " n; next }
     inside && /^```$/ { inside = 0; print "after_block " n; next }
     inside { print }' "$README" >"$T/blocks.sh"
nblocks=$(grep -c '^#### block' "$T/blocks.sh" || true)
[ "$nblocks" -ge 5 ] || fail "found $nblocks walkthrough blocks in the README (markers missing?)"
grep -q '^after_block' "$T/blocks.sh" || fail "a walkthrough block is not closed"
for step in ' init ' ' key export ' ' peer add ' ' despool &' ' sender &' ' send --to ' ' status' 'kill '; do
  grep -qF -- "$step" "$T/blocks.sh" || fail "the walkthrough has no '$step' command"
done

# ---- an administrator's shell: sitespool on the PATH, a home, files to send ----
mkdir -p "$T/bin" "$T/home" "$T/work"
ln -s "$S" "$T/bin/sitespool"
cd "$T/work" || exit 1
# Files of at least 64 KiB each (bundle_below): each gets a pair of its own,
# as in the README's sample output.
head -c 100000 /dev/urandom | base64 >report.csv
head -c 90000 /dev/urandom | base64 >inventory.xml
head -c 300000 /dev/urandom >backup.tar

# Between blocks: the pause of a person reading the output - while daemons
# run, until no site has a pair left in receive or a key file in hman.box.  Every
# background job is recorded (the test's cleanup stops whatever the
# walkthrough's last step did not).
cat >"$T/hooks.sh" <<'EOF'
settled() {
  [ -z "$(find "$SITES"/*/inboxes/despoolr.box/receive -maxdepth 1 -type f ! -name '.*' \
          -print -quit)" ] &&
    [ -z "$(find "$SITES"/*/inboxes/hman.box -maxdepth 1 -type f \
            \( -name '*.pub' -o -name '*.ct4' -o -name '*.ct5' \) -print -quit)" ]
}
after_block() {
  jobs -p >>"$WALK_PIDS"
  [ -n "$(jobs -pr)" ] || return 0
  local i
  for ((i = 0; i < 300; i++)); do settled && return 0; sleep 0.1; done
  echo "walkthrough: block $1 left files unprocessed for 30 s" >&2
  return 1
}
EOF
{
  echo 'set -e'
  echo ". '$T/hooks.sh'"
  cat "$T/blocks.sh"
  echo 'echo "walkthrough: finished"'
} >"$T/walk.sh"
rc=0
env HOME="$T/home" PATH="$T/bin:$PATH" WALK_PIDS="$T/walk.pids" SITESPOOL_SITE= \
  bash "$T/walk.sh" >"$T/walk.out" 2>"$T/walk.err" || rc=$?
while read -r pid; do DAEMONS+=("$pid"); done <"$T/walk.pids"
[ "$rc" -eq 0 ] && grep -q '^walkthrough: finished$' "$T/walk.out" ||
  fail "the walkthrough stopped (exit $rc): $(tail -5 "$T/walk.err")"
pass "the README walkthrough's $nblocks command blocks run as written, as an ordinary user"

# ---- what it says happened -------------------------------------------------------
SITES=$T/home/sitespool-sites
for site in PS1 SS1; do
  assert_file "$SITES/$site/site.conf"
  assert_file "$SITES/$site/keys/$site.key"
done
# Step 2: the key id export printed (on stdout) is the one the despooler logged.
for pair in PS1:SS1 SS1:PS1; do
  from=${pair%:*} to=${pair#*:}
  id=$(sed -n "s/^Wrote public key \([0-9A-F]\{16\}\) of site $from to $from.pub$/\1/p" "$T/walk.out")
  [ -n "$id" ] || fail "key export printed no key id of $from on standard output"
  "$S" -C "$SITES/$to" status --id 3300 | grep -q "Imported public key $id for site $from" ||
    fail "$to did not log the import of $from's key $id (3300)"
done
pass "key export prints the key id; the despooler imports the dropped key and logs the same id (3300)"

# Step 4: despoolers and senders ran, and step 7 stopped them.
for site in PS1 SS1; do
  grep -q "Sender started for site $site" "$SITES/$site/logs/sender.log" ||
    fail "the sender of $site did not start"
  grep -q "Sender stopped for site $site" "$SITES/$site/logs/sender.log" ||
    fail "the sender of $site was not stopped by the walkthrough's last step"
done
while read -r pid; do
  kill -0 "$pid" 2>/dev/null && fail "a daemon of the walkthrough still runs (pid $pid)"
done <"$T/walk.pids"
pass "the despoolers and senders start in the background and the last step stops them"

# Step 5: the files arrive intact; send's output has the README's form.
in=$SITES/SS1/inboxes/replmgr.box/incoming
for f in report.csv inventory.xml backup.tar; do
  cmp -s "$T/work/$f" "$in/$f" || fail "$f did not arrive intact in SS1's incoming"
done
# The comment of the walkthrough's `ls` of incoming/ names what is there.
claimed=$(sed -n 's|^ls .*replmgr.box/incoming/ *# *||p' "$T/blocks.sh" | tr -s ' ')
[ -n "$claimed" ] || fail "the walkthrough does not list SS1's incoming/"
assert_eq "$(ls "$in" | tr '\n' ' ' | sed 's/ $//')" "$claimed" "files in SS1's incoming (the README's ls comment)"
sample=$(awk '/<!-- walkthrough:begin -->/ { on = 1 } /<!-- walkthrough:end -->/ { on = 0 }
              on && /^```text$/ { t = 1; next } t && /^```$/ { exit } t { print }' "$README")
[ -n "$sample" ] || fail "no sample output of send in the walkthrough"
while IFS= read -r line; do
  pattern=$(sed -E 's/[0-9a-f]{32}/[0-9a-f]{32}/g; s/[().]/\\&/g' <<<"$line")
  grep -qE "^$pattern\$" "$T/walk.out" || fail "send printed no line like the README's '$line'"
done <<<"$sample"
pass "the files arrive intact and send prints what the README shows"

# The ids send printed are in the status messages, at both ends.
ids=$(sed -n 's/^Queued instruction \([0-9a-f]\{32\}\) for SS1: .*/\1/p' "$T/walk.out")
assert_eq "$(wc -w <<<"$ids")" 3 "instructions queued by the walkthrough"
for id in $ids; do
  "$S" -C "$SITES/PS1" status --id 4504 | grep -q "Sender queued package $id" ||
    fail "PS1 has no 4504 for $id"
  "$S" -C "$SITES/SS1" status --id 4400 | grep -q "Despooler stored package $id" ||
    fail "SS1 has no 4400 for $id"
done
grep -q "Despooler stored package" "$T/walk.out" || fail "step 6 showed no 4400"
pass "each id send printed has its 4504 at PS1 and its 4400 at SS1"
