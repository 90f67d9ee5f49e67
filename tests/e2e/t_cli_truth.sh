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
