#!/usr/bin/env bash
# regenerate.sh SITESPOOL [PAGE...] - rewrites the generated parts of the
# man pages from the sitespool binary SITESPOOL (default pages: sitespool.8
# and sitespool.conf.5 beside this script).
#
# A generated part lies between two marker comments,
#   .\" generated:NAME:begin
#   .\" generated:NAME:end
# and is replaced by the output of the command NAME stands for:
#   catalogue  sitespool status --catalogue --roff   (status messages)
#   settings   sitespool settings --roff             (site.conf settings)
# The version in the .TH line becomes the one 'sitespool --version' prints.
# Everything else is written by hand.  tests/e2e/t_manpages.sh runs this on
# copies and fails if the committed pages differ.
set -euo pipefail
if [ $# -lt 1 ] || [ ! -x "$1" ]; then
  echo "usage: $0 SITESPOOL_BINARY [PAGE...]" >&2
  exit 2
fi
bin=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || set -- "$here/sitespool.8" "$here/sitespool.conf.5"
version=$("$bin" --version | sed -n 's/^sitespool //p')
[ -n "$version" ] || { echo "$0: '$bin --version' printed no version" >&2; exit 1; }

generate() {
  case $1 in
    catalogue) "$bin" status --catalogue --roff ;;
    settings) "$bin" settings --roff ;;
    *) echo "$0: unknown generated part '$1'" >&2; return 1 ;;
  esac
}

# regenerate PAGE OUT: PAGE with its generated parts replaced, into OUT.
regenerate() {
  local page=$1 out=$2 line name='' begin='^\.\\" generated:([a-z]+):begin$'
  while IFS= read -r line || [ -n "$line" ]; do
    if [ -n "$name" ]; then
      [ "$line" = ".\\\" generated:$name:end" ] || continue
      name=''
    elif [[ $line =~ $begin ]]; then
      name=${BASH_REMATCH[1]}
      printf '%s\n' "$line"
      generate "$name"
    elif [[ $line =~ ^\.TH\ [^\ ]+\ [0-9]\ [^\ ]+\ \"sitespool\ [^\"]*\" ]]; then
      line=$(printf '%s\n' "$line" | sed -E "s/\"sitespool [^\"]*\"/\"sitespool $version\"/")
    fi
    printf '%s\n' "$line"
  done < "$page" > "$out"
  if [ -n "$name" ]; then
    echo "$0: $page: generated:$name:begin has no end marker" >&2
    return 1
  fi
}

for page in "$@"; do
  tmp=$(mktemp "$page.XXXXXX")
  if ! regenerate "$page" "$tmp"; then rm -f "$tmp"; exit 1; fi
  if cmp -s "$tmp" "$page"; then
    rm -f "$tmp"
  else
    chmod --reference="$page" "$tmp"
    mv "$tmp" "$page"
    echo "regenerated $page"
  fi
done
