#!/usr/bin/env bash
# Bash completion (dist/bash-completion/sitespool), sourced into plain bash
# without the bash-completion package: commands, subcommands and options
# as the --help texts name them, -C folders, site codes and key ids of the
# site named on the line (or by SITESPOOL_SITE), file names for send.
. "$(dirname "$0")/lib.sh"
# shellcheck source=../../dist/bash-completion/sitespool
. "$SS_SOURCE_DIR/dist/bash-completion/sitespool"
[[ $(complete -p sitespool) == "complete -F _sitespool sitespool" ]] ||
  fail "the script does not register _sitespool for sitespool"

# comp LINE: what completing the end of LINE offers (bash's word split: a
# trailing space starts an empty word, "--opt=" gives "--opt" "="), sorted,
# one per line.  Runs the way an interactive shell does (no errexit), but
# with nounset; anything on standard error fails the test.
comp() {
  local line=$1 words
  read -ra words <<< "${line//=/ = }"
  [[ $line == *' ' ]] && words+=('')
  (
    set +e +o pipefail
    COMP_WORDS=("$S" "${words[@]:1}")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE=$line
    COMP_POINT=${#line}
    COMPREPLY=()
    _sitespool
    printf '%s\n' "${COMPREPLY[@]}"
  ) 2> "$T/comp.err" | sed '/^$/d' | sort
  [ ! -s "$T/comp.err" ] || fail "completing '$line' wrote to stderr: $(cat "$T/comp.err")"
}
# expect LINE WORD...: completing LINE offers exactly WORD...
expect() {
  local line=$1; shift
  local want got
  want=$(printf '%s\n' "$@" | sed '/^$/d' | sort)
  got=$(comp "$line")
  [ "$got" = "$want" ] || fail "completing '$line': expected [${want//$'\n'/ }], got [${got//$'\n'/ }]"
}
# offers LINE WORD...: completing LINE offers at least WORD...
offers() {
  local line=$1 w got; shift
  got=$(comp "$line")
  for w in "$@"; do grep -qxF -- "$w" <<< "$got" || fail "completing '$line' does not offer '$w' (got: ${got//$'\n'/ })"; done
}

# ---- commands, subcommands, options from the help texts -------------------
mksite PS1
commands=$(help_commands)
# shellcheck disable=SC2086
offers "sitespool " $commands
expect "sitespool se" send sender settings
expect "sitespool -" -C -h --help -V --version
for group in key peer; do
  subs=$(help_subcommands "$group")
  # shellcheck disable=SC2086
  expect "sitespool $group " $subs
done
for cmd in $commands; do
  # The options of its usage lines (the help text's first paragraph).
  opts=$("$S" -C "$T/PS1" "$cmd" --help | awk '/^$/ { exit } { print }' |
    grep -oE -- '--[a-z][a-z-]*[a-z]' | sort -u || true)
  case $cmd in key | peer) continue ;; esac # per subcommand, below
  # shellcheck disable=SC2086
  [ -z "$opts" ] || offers "sitespool $cmd --" $opts
done
expect "sitespool key import x --" --site --shared-key
expect "sitespool key send-to SS1 --" --unsigned
expect "sitespool peer add SS9 --" --inbox --round-robin --host-key
expect "sitespool peer list --" --json
expect "sitespool status --component " despooler hman sender
expect "sitespool status --component=h" hman
offers "sitespool status --id 440" 4400 4404 4405
pass "commands, key and peer subcommands and each command's options complete"

# ---- -C folders ----------------------------------------------------------------
mkdir -p "$T/PS2dir" "$T/Pfiles"
touch "$T/Pplain"
expect "sitespool -C $T/P" "$T/PS1" "$T/PS2dir" "$T/Pfiles"
expect "sitespool -C $T/PS1/k" "$T/PS1/keys"
pass "-C completes folders only"

# ---- site codes and key ids ------------------------------------------------------
mksite SS1; mksite SS2; mksite SS3
pair PS1 SS1
peer PS1 SS2
"$S" -C "$T/SS3" key export -o "$T/SS3.pub" 2>/dev/null
"$S" -C "$T/PS1" key import "$T/SS3.pub" >/dev/null
"$S" -C "$T/PS1" despool --once >/dev/null 2>&1 || true # imports SS1's key from hman.box
id_of() { "$S" -C "$T/$1" key list --json | grep -o "\"site\":\"$2\",\"key_id\":\"[0-9A-F]*\"" | cut -d'"' -f8; }
ps1_id=$(id_of PS1 PS1); ss1_id=$(id_of PS1 SS1); ss3_id=$(id_of PS1 SS3)
[ -n "$ps1_id" ] && [ -n "$ss1_id" ] && [ -n "$ss3_id" ] || fail "PS1 does not hold the keys this test needs"

expect "sitespool -C $T/PS1 send --to " SS1 SS2
expect "sitespool -C $T/PS1 send --to S" SS1 SS2
expect "sitespool -C $T/PS1 send --to=" SS1 SS2
expect "sitespool -C$T/PS1 send --to SS" SS1 SS2
expect "sitespool -C $T/PS1 peer remove " SS1 SS2
expect "sitespool -C $T/PS1 peer trust-host " SS1 SS2
expect "sitespool -C $T/PS1 peer trust-host SS1 " SHA256:
expect "sitespool -C $T/PS1 key trust " SS1 SS2 SS3
expect "sitespool -C $T/PS1 key approve " SS1 SS2 SS3
expect "sitespool -C $T/PS1 key untrust S" SS1 SS2 SS3
expect "sitespool -C $T/PS1 key send-to " SS1 SS2 SS3
expect "sitespool -C $T/PS1 key trust SS1 " "$ss1_id"
expect "sitespool -C $T/PS1 key trust SS3 " "$ss3_id"
expect "sitespool -C $T/PS1 key trust SS1 $ss1_id " ""
expect "sitespool -C $T/PS1 key revoke " "$ps1_id" "$ss1_id" "$ss3_id"
expect "sitespool -C $T/PS1 key revoke $ss1_id --site " SS1 SS2 SS3
expect "sitespool -C $T/PS1 verify x --site " SS1 SS2 SS3
expect "sitespool -C $T/SS2 send --to " ""
SITESPOOL_SITE=$T/PS1 expect "sitespool peer remove " SS1 SS2
SITESPOOL_SITE=$T/SS1 expect "sitespool key trust " PS1
SITESPOOL_SITE=$T/SS1 expect "sitespool -C $T/PS1 send --to " SS1 SS2
(cd "$T/PS1" && unset SITESPOOL_SITE && expect "sitespool send --to " SS1 SS2)
expect "sitespool -C $T/nothing send --to " ""
expect "sitespool -C $T/nothing key revoke " ""
pass "site codes and key ids come from the site on the line, SITESPOOL_SITE or the current folder"

# ---- ids of quarantined and held pairs ---------------------------------------------
echo data > "$T/data.txt"
"$S" -C "$T/PS1" send --to SS1 --unsigned "$T/data.txt" >/dev/null 2>&1
"$S" -C "$T/SS1" despool --once >/dev/null 2>&1 || true
qid=$(find "$(rejected SS1)" -name '*.ins' -printf '%f\n' | sed 's/\.ins$//')
[[ $qid =~ ^[0-9a-f]{32}$ ]] || fail "the unsigned pair was not quarantined at SS1 ($qid)"
expect "sitespool -C $T/SS1 release " "$qid"
expect "sitespool -C $T/SS1 delete ${qid:0:4}" "$qid"
expect "sitespool -C $T/PS1 release " ""
pass "release and delete complete the ids of quarantined (and held) pairs"

# ---- file names ----------------------------------------------------------------------
mkdir "$T/files"
touch "$T/files/report.csv" "$T/files/report.xml" "$T/files/other.txt"
expect "sitespool -C $T/PS1 send --to SS1 $T/files/rep" "$T/files/report.csv" "$T/files/report.xml"
expect "sitespool -C $T/PS1 send --to SS1 $T/files/report.csv $T/files/o" "$T/files/other.txt"
expect "sitespool -C $T/PS1 key import $T/SS3." "$T/SS3.pub"
expect "sitespool -C $T/PS1 peer add SS9 --inbox $T/P" "$T/PS1" "$T/PS2dir" "$T/Pfiles"
expect "sitespool -C $T/PS1 send --to SS1 --name " ""
pass "file names for send and key import, folders for --inbox"
