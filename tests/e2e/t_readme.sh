#!/usr/bin/env bash
# The README stays true: its status table is exactly the catalogue, its
# settings table names exactly the settings a new site.conf holds, and the
# commands it names exist.
. "$(dirname "$0")/lib.sh"
README=$SS_SOURCE_DIR/README.md
sed -n '/<!-- catalogue:begin -->/,/<!-- catalogue:end -->/p' "$README" | sed '1d;$d' > "$T/readme.md"
"$S" status --catalogue --markdown > "$T/catalogue.md"
diff -u "$T/catalogue.md" "$T/readme.md" || fail "README status table differs from 'sitespool status --catalogue --markdown'"
pass "README status table equals the catalogue"

mksite PS1
grep -E '^[a-z_]+ = ' "$T/PS1/site.conf" | cut -d' ' -f1 | sort > "$T/conf.keys"
sed -n '/<!-- settings:begin -->/,/<!-- settings:end -->/p' "$README" | sed '1d;$d' > "$T/readme-settings.md"
"$S" settings --markdown > "$T/settings.md"
diff -u "$T/settings.md" "$T/readme-settings.md" ||
  fail "README settings table differs from 'sitespool settings --markdown'"
sed -n 's/^| `\([a-z_]*\)` |.*/\1/p' "$T/settings.md" | sort > "$T/readme.keys"
diff -u "$T/conf.keys" "$T/readme.keys" || fail "the settings listed differ from a new site.conf"
pass "README settings table is 'sitespool settings --markdown', naming exactly the site.conf settings"

for f in tools/quickstart tools/test; do
  grep -q "^$f" "$README" || fail "README does not show $f"
  [ -x "$SS_SOURCE_DIR/$f" ] || fail "$f is not executable"
done
grep -q 'tools/test' "$SS_SOURCE_DIR/.ci/run" || fail ".ci/run does not call tools/test"
pass "the two commands exist and CI runs the test command"
