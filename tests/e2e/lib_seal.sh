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
# sealed_comment ID SIZE KEYID [key=value...]: the trusted comment of a
# sealed data instruction PS1 -> SS1 (see fields in lib.sh).
sealed_comment() {
  local id=$1 size=$2 key=$3; shift 3
  echo "$(fields "$id" name=sealed zip=none "size=$size" "$@") enc=$key"
}
