# lib_seal.sh - helpers for the sealed-package tests (t_sealed*.sh), sourced
# after lib.sh.  oracle ARGS...: seal_oracle.py (python3-nacl, an
# independent implementation of the sealed format) run by a python3 that
# has the Debian package python3-nacl (the system one when python3 on PATH
# is another installation).
SEAL_ORACLE=$(dirname "${BASH_SOURCE[0]}")/seal_oracle.py
SEAL_PY=python3
"$SEAL_PY" -c 'import nacl.bindings' 2>/dev/null || SEAL_PY=/usr/bin/python3
"$SEAL_PY" -c 'import nacl.bindings' 2>/dev/null ||
  fail "python3-nacl is not installed (Debian package python3-nacl)"
oracle() { "$SEAL_PY" "$SEAL_ORACLE" "$@"; }
# keyid_of FILE: the key id of a minisign .pub or .key file.
keyid_of() { oracle keyid "$1"; }
# pin_of PCK: the pin of a sealed package's header (the instruction's seal=).
pin_of() { oracle pin "$1"; }
# sealed_comment ID PCK KEYID [key=value...]: the trusted comment of a
# sealed data instruction PS1 -> SS1 for package PCK (size= its length
# unless a size=N follows; seal= its header's pin); see fields in lib.sh.
sealed_comment() {
  local id=$1 pck=$2 key=$3; shift 3
  echo "$(fields "$id" name=sealed zip=none "size=$(stat -c %s "$pck")" "$@") enc=$key seal=$(pin_of "$pck")"
}
