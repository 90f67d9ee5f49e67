#!/usr/bin/env bash
# Every command tells the truth (issue 16, first part): --help works on
# every subcommand, in or out of a site folder, and exits 0; usage errors
# in status's numbers exit 2 instead of printing everything.
. "$(dirname "$0")/lib.sh"
cd "$T"   # not a site folder
for sub in export import list approve trust untrust revoke rotate publish send-to; do
  out=$("$S" key "$sub" --help) || fail "key $sub --help exits $? outside a site"
  grep -q "usage:" <<<"$out" || fail "key $sub --help prints no usage"
done
for sub in add list remove trust-host ssh-key; do
  out=$("$S" peer "$sub" --help) || fail "peer $sub --help exits $? outside a site"
  grep -q "usage:" <<<"$out" || fail "peer $sub --help prints no usage"
done
pass "key and peer subcommands: --help anywhere, exit 0"

# Every command and subcommand the help lists, found from the help itself
# (a command added later is walked too), outside any site folder, with
# SITESPOOL_SITE unset: --help and -h exit 0 and print a synopsis naming
# the command; nothing is written to the current folder.
walk() { # words...
  local flag out rc
  for flag in --help -h; do
    rc=0; out=$(env -u SITESPOOL_SITE "$S" "$@" "$flag" 2>"$T/walk.err") || rc=$?
    [ "$rc" = 0 ] || fail "sitespool $* $flag exits $rc outside a site: $(head -c 300 "$T/walk.err")"
    grep -qE "^usage: sitespool .*\b$1\b" <<<"$out" ||
      fail "sitespool $* $flag prints no synopsis naming '$1': $(head -n 3 <<<"$out")"
  done
}
walked=0
for cmd in $(help_commands); do
  walk "$cmd"; walked=$((walked + 1))
  case $cmd in key | peer)
    subs=$(help_subcommands "$cmd")
    [ -n "$subs" ] || fail "sitespool $cmd --help names no subcommand"
    for sub in $subs; do walk "$cmd" "$sub"; walked=$((walked + 1)); done ;;
  esac
done
[ "$walked" -ge 29 ] || fail "only $walked commands and subcommands found in the help"
assert_eq "$(find "$T" -mindepth 1 ! -name 'walk.err' | wc -l)" 0 "files written by --help"
pass "every command and subcommand ($walked): --help and -h anywhere, exit 0, a synopsis"
mksite PS1
rc=0; "$S" -C "$T/PS1" status --id abc >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "status --id abc"
rc=0; "$S" -C "$T/PS1" status --limit 0 >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "status --limit 0"
rc=0; "$S" -C "$T/PS1" status --id 3302 --limit 1 >"$T/one.out" || rc=$?
assert_eq "$rc" 0 "status --id 3302 --limit 1"
assert_eq "$(wc -l <"$T/one.out")" 1 "lines of status --id 3302 --limit 1"
pass "status: a bad --id or --limit is a usage error (exit 2)"

# sender --once with a peer that cannot be reached: 75, and it says so.
mksite SS1
"$S" -C "$T/PS1" peer add SS1 --inbox "$T/nowhere/receive" >/dev/null
echo data >"$T/f.txt"
"$S" -C "$T/PS1" send --queue-only --to SS1 "$T/f.txt" >/dev/null
rc=0; "$S" -C "$T/PS1" sender --once >"$T/once.out" 2>"$T/once.err" || rc=$?
assert_eq "$rc" 75 "sender --once with a pair left queued"
grep -q "1 pair(s) for SS1 stay queued (next retry " "$T/once.err" ||
  fail "sender --once does not say what waits: $(cat "$T/once.err")"
"$S" -C "$T/PS1" peer add SS1 --inbox "$(receive SS1)" >/dev/null
rc=0; "$S" -C "$T/PS1" sender --once >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 0 "sender --once once everything is delivered"
pass "sender --once: exit 75 naming what stays queued and the next retry; 0 when nothing does"

# Small untruths (defect 8): a lower-case site code gets a hint wherever
# one is typed; times in .why files are readable; durations in 4501 and
# 4405 are in proper English.
for cmd in "key approve ps1" "key untrust ps1" "key send-to ps1" "key import --site ps1 x.pub" \
           "verify x --site ps1"; do
  rc=0; "$S" -C "$T/PS1" $cmd >/dev/null 2>"$T/hint.err" || rc=$?
  assert_eq "$rc" 2 "sitespool $cmd"
  grep -q "did you mean PS1?" "$T/hint.err" || fail "sitespool $cmd gives no hint: $(cat "$T/hint.err")"
done
status_text PS1 4501 | grep -q "next retry in about 1 minute\.$" ||
  fail "4501 does not say 'about 1 minute.': $(status_text PS1 4501)"
mksite SS2; peer PS1 SS2
echo x >"$T/x.txt"
"$S" -C "$T/PS1" send --to SS2 "$T/x.txt" >/dev/null
despool_once SS2 >/dev/null
status_text SS2 4405 | grep -q "next retry in about 5 minutes\.$" ||
  fail "4405 does not say 'about 5 minutes.': $(status_text SS2 4405)"
echo y >"$T/y.txt"
"$S" -C "$T/PS1" send --to SS1 --dest nowhere.box "$T/y.txt" >/dev/null
exchange PS1 SS1; despool_once SS1 >/dev/null
why=$(find "$(rejected SS1)" -name '*.why' | head -n 1)
[ -n "$why" ] || fail "no .why file at SS1"
grep -Eq "^rejected at 20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} \+0000 \(unix [0-9]+\) by site SS1$" "$why" ||
  fail ".why time is not readable: $(cat "$why")"
"$S" -C "$T/SS1" queue --json | python3 -c '
import json,sys,time
q=[p for p in json.load(sys.stdin) if p["state"]=="quarantined"]
assert q and 0 <= q[0]["age_seconds"] < 600, q' || fail "queue does not read the .why time back"
pass "lower-case site codes get a hint everywhere; .why times readable in UTC; 1 minute, 5 minutes"
