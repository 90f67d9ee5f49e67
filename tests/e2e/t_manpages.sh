#!/usr/bin/env bash
# The man pages stay true: their generated parts (status messages in
# sitespool.8, settings in sitespool.conf.5, the version) are what the
# binary generates now (doc/regenerate.sh); man and groff render both
# without a warning; every command of 'sitespool --help', every key and
# peer subcommand and every long option of each command's --help is in
# sitespool.8.  (man --warnings=w is groff -ww, every warning; groff's
# warning set "all" leaves out undefined macros.)
. "$(dirname "$0")/lib.sh"
DOC=$SS_SOURCE_DIR/doc
PAGES=(sitespool.8 sitespool.conf.5)
command -v man >/dev/null || fail "man is missing (Debian: man-db)"
command -v groff >/dev/null || fail "groff is missing (Debian: groff-base)"

# ---- generated parts -------------------------------------------------------
mkdir "$T/doc"
for p in "${PAGES[@]}"; do cp "$DOC/$p" "$T/doc/$p"; done
"$DOC/regenerate.sh" "$S" "${PAGES[@]/#/$T/doc/}" >/dev/null
for p in "${PAGES[@]}"; do
  diff -u "$DOC/$p" "$T/doc/$p" ||
    fail "doc/$p differs from what the binary generates: run doc/regenerate.sh build/tools/sitespool"
  grep -q '^\.\\" generated:[a-z]*:begin$' "$DOC/$p" || fail "doc/$p has no generated part"
done
grep -q '^\.TH SITESPOOL 8 ' "$DOC/sitespool.8" || fail "sitespool.8 has no .TH SITESPOOL 8"
grep -q '^\.TH SITESPOOL.CONF 5 ' "$DOC/sitespool.conf.5" || fail "sitespool.conf.5 has no .TH"
pass "the generated parts of both pages equal the binary's output"

# The generated lists hold every status message and every setting.
for id in $("$S" status --catalogue --json | grep -o '"id":[0-9]*' | cut -d: -f2); do
  grep -q "^\\\\fB$id\\\\fR " "$DOC/sitespool.8" || fail "sitespool.8 lacks status message $id"
done
mksite PS1
for key in $(grep -E '^[a-z_]+ = ' "$T/PS1/site.conf" | cut -d' ' -f1); do
  grep -q "^\\\\fB${key}\\\\fR = " "$DOC/sitespool.conf.5" || fail "sitespool.conf.5 lacks $key"
done
pass "every status message is in sitespool.8, every site.conf setting in sitespool.conf.5"

# ---- rendering without warnings --------------------------------------------
for p in "${PAGES[@]}"; do
  for loc in C C.UTF-8; do
    out=$(LC_ALL=$loc MANWIDTH=80 man --warnings=w -l "$DOC/$p" 2>&1 >/dev/null) ||
      fail "man -l $p failed ($loc): $out"
    [ -z "$out" ] || fail "man -l $p warns ($loc): $out"
  done
  out=$(groff -man -Tutf8 -ww -z "$DOC/$p" 2>&1) || fail "groff failed on $p: $out"
  [ -z "$out" ] || fail "groff -ww warns on $p: $out"
  LC_ALL=C MANWIDTH=80 man -l "$DOC/$p" > "$T/$p.txt" 2>/dev/null
  [ "$(wc -l < "$T/$p.txt")" -gt 50 ] || fail "man -l $p rendered almost nothing"
  # The source is ASCII: no preconv surprises in any locale.
  ! LC_ALL=C grep -n '[^ -~]' "$DOC/$p" || fail "$p holds characters beyond ASCII"
done
pass "man --warnings and groff -ww render both pages without a warning"

# ---- every command, subcommand and option is documented ---------------------
# Rendered wide, so that no entry's tag wraps; tags start at column 8.
LC_ALL=C MANWIDTH=250 man -l "$DOC/sitespool.8" 2>/dev/null > "$T/wide.txt"
sed -n '/^COMMANDS/,/^FILES/p' "$T/wide.txt" > "$T/commands.txt"
has_entry() { grep -qE "^ {7}$1( |$)" "$T/commands.txt"; }
# Every long option a help text names appears in the page.
check_options() {
  local opt
  for opt in $(grep -oE -- '--[a-z][a-z-]*[a-z]' | sort -u); do
    grep -qE -- "$opt([^a-z-]|$)" "$T/wide.txt" || fail "sitespool.8 does not mention $opt ($1)"
  done
}

commands=$(help_commands)
[ "$(wc -w <<< "$commands")" -ge 10 ] || fail "found too few commands in sitespool --help: $commands"
for cmd in $commands; do
  has_entry "$cmd" || has_entry "$cmd [a-z-]+" || fail "sitespool.8 has no entry for '$cmd'"
  "$S" -C "$T/PS1" "$cmd" --help > "$T/help.txt" 2>&1 || fail "$cmd --help failed"
  check_options "$cmd --help" < "$T/help.txt"
done
"$S" --help | check_options "sitespool --help"
pass "every command of sitespool --help and its options are in sitespool.8"

for group in key peer; do
  subs=$(help_subcommands "$group")
  [ -n "$subs" ] || fail "no $group subcommands found in $group --help"
  for sub in $subs; do
    has_entry "$group $sub" || fail "sitespool.8 has no entry for '$group $sub'"
  done
done
pass "every key and peer subcommand of their --help is in sitespool.8"
