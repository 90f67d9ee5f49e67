# lib_ldap.sh - a real OpenLDAP server (Debian's slapd) on the loopback, for
# the end-to-end tests of the LDAP key directory (issue 11).  Source it
# after lib.sh:
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/lib_ldap.sh"
#   ldap_env_check                 # SKIP (exit 0) where slapd is missing
#   ldap_start PS1 SS1             # slapd with a bind DN for PS1 and SS1
#   mksite PS1; ldap_site_conf PS1 ldap   # directory settings in site.conf
#   ...
#   ldap_stop / ldap_restart       # the same data, the same ports
#
# What ldap_start makes, all in $T/ldap (LDAP_DIR), owned by the user
# running the test (slapd runs unprivileged, as that user, in the
# foreground, so it is a child of the test and is killed by pid):
#   - a throw-away CA (ca.pem) and a server certificate for 127.0.0.1 and
#     localhost signed by it (server.pem, server.key), made with openssl;
#   - cn=config in slapd.d/, made with slapadd -n0 -F: the core schema
#     (/etc/ldap/schema/core.ldif; nothing else is needed: the bind
#     entries are person objects), back_mdb loaded as a module, TLS, an
#     mdb database for dc=sitespool,dc=test in db/ with a root DN
#     (cn=admin,dc=sitespool,dc=test, password in root.pw) and the ACLs;
#     the config database may be managed over ldapi:// by this user
#     (SASL EXTERNAL, its uid/gid);
#   - sitespool's own schema (dist/ldap/sitespool.ldif) is then loaded the
#     way the README tells an administrator to: ldapadd -Y EXTERNAL over
#     ldapi://, into the running server; an equality index on
#     sitespoolSiteCode is added the same way;
#   - entries: the suffix, ou=keys (LDAP_BASE: the site records
#     sitespoolSiteCode=<SITE>,ou=keys,...) and ou=sites with one bind
#     entry per site named to ldap_start: cn=<SITE>,ou=sites,... (a person
#     with a random userPassword; the clear text in $LDAP_DIR/<SITE>.pw,
#     mode 0600, no newline);
#   - ACLs: userPassword is usable for binding only; a site's bind DN may
#     write its own record sitespoolSiteCode=<SITE>,ou=keys,... and no
#     other (any authenticated DN may add children under ou=keys, but the
#     new entry itself must be writable by it); everyone, anonymous
#     included, may read everything else.
# slapd listens on ldap://127.0.0.1:LDAP_PORT, ldaps://127.0.0.1:LDAPS_PORT
# (both above 1024, chosen free at start) and ldapi:// on a socket in
# $LDAP_DIR.  Its log (-d stats: every connection, bind, search, TLS
# handshake) is $LDAP_LOG.
#
# Exports LDAP_URI, LDAPS_URI, LDAPI_URI, LDAP_BASE, LDAP_SUFFIX, LDAP_CA,
# LDAP_ROOT_DN, LDAP_ROOT_PW_FILE, LDAP_LOG, SLAPD_PID.
#
# The client tools are always given the CA explicitly (LDAPTLS_CACERT on
# their own command line only): nothing LDAP-related is exported to the
# environment, so the sitespool processes under test see only what their
# site.conf says (libldap also reads LDAP* variables).
#
# Teardown is hooked into lib.sh's EXIT trap: slapd is stopped (TERM, then
# KILL) and waited for, then lib.sh's cleanup runs as before.  A test that
# sets its own EXIT trap must call `ldap_teardown; cleanup` from it.  A
# watchdog (one `tail --pid` per test) kills slapd should the test process
# itself be SIGKILLed, so no slapd outlives its test.

SLAPD_BIN=${SLAPD_BIN:-/usr/sbin/slapd}   # overridable to test the SKIP
SLAPADD_BIN=${SLAPADD_BIN:-/usr/sbin/slapadd}
LDAP_MODULE_PATH=${LDAP_MODULE_PATH:-/usr/lib/ldap}
LDAP_CORE_SCHEMA=${LDAP_CORE_SCHEMA:-/etc/ldap/schema/core.ldif}
LDAP_SS_SCHEMA=${LDAP_SS_SCHEMA:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/dist/ldap/sitespool.ldif}
LDAP_SUFFIX=dc=sitespool,dc=test
LDAP_BASE=ou=keys,$LDAP_SUFFIX
LDAP_SITES=ou=sites,$LDAP_SUFFIX
LDAP_ROOT_DN=cn=admin,$LDAP_SUFFIX
LDAP_DIR=$T/ldap
LDAP_LOG=$LDAP_DIR/slapd.log
LDAP_ROOT_PW_FILE=$LDAP_DIR/root.pw
LDAP_CA=$LDAP_DIR/ca.pem
LDAP_OTHER_CA=$LDAP_DIR/other-ca.pem
SLAPD_PID='' LDAP_WATCHDOG='' LDAP_PORT='' LDAPS_PORT=''
LDAP_URI='' LDAPS_URI='' LDAPI_URI=''

ldap_skip() { echo "SKIP: $*"; exit 0; }

# ldap_env_check: skips the test (exit 0) when a program it needs is
# missing (Debian: slapd, ldap-utils, openssl).
ldap_env_check() {
  local p
  for p in "$SLAPD_BIN" "$SLAPADD_BIN" ldapadd ldapsearch ldapmodify ldapdelete openssl python3; do
    command -v "$p" >/dev/null || ldap_skip "$p not installed (Debian: slapd, ldap-utils, openssl)"
  done
  [ -f "$LDAP_CORE_SCHEMA" ] || ldap_skip "no core schema $LDAP_CORE_SCHEMA (Debian: slapd)"
  [ -f "$LDAP_MODULE_PATH/back_mdb.la" ] || [ -f "$LDAP_MODULE_PATH/back_mdb.so" ] ||
    ldap_skip "no back_mdb module in $LDAP_MODULE_PATH (Debian: slapd)"
  [ -f "$LDAP_SS_SCHEMA" ] || fail "sitespool's schema $LDAP_SS_SCHEMA is missing"
}

# ---- the throw-away CA ----

# _ldap_ca NAME CN: a self-signed CA $LDAP_DIR/NAME.pem, key NAME.key.
_ldap_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$LDAP_DIR/$1.key" -out "$LDAP_DIR/$1.pem" -days 2 -subj "/O=sitespool tests/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    >>"$LDAP_DIR/openssl.log" 2>&1 || fail "openssl could not make the CA $1: $(tail -5 "$LDAP_DIR/openssl.log")"
}
# _ldap_certs: the CA, the server certificate (127.0.0.1, localhost) it
# signs, and another CA that signed nothing (for the wrong-CA tests).
_ldap_certs() {
  _ldap_ca ca "sitespool e2e CA $$"
  _ldap_ca other-ca "sitespool e2e other CA $$"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$LDAP_DIR/server.key" -out "$LDAP_DIR/server.csr" -subj "/O=sitespool tests/CN=localhost" \
    >>"$LDAP_DIR/openssl.log" 2>&1 || fail "openssl req for the server: $(tail -5 "$LDAP_DIR/openssl.log")"
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$LDAP_DIR/server.ext"
  openssl x509 -req -in "$LDAP_DIR/server.csr" -CA "$LDAP_DIR/ca.pem" -CAkey "$LDAP_DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$LDAP_DIR/server.ext" -out "$LDAP_DIR/server.pem" \
    >>"$LDAP_DIR/openssl.log" 2>&1 || fail "openssl x509 for the server: $(tail -5 "$LDAP_DIR/openssl.log")"
  chmod 0600 "$LDAP_DIR/server.key" "$LDAP_DIR/ca.key" "$LDAP_DIR/other-ca.key"
  openssl verify -CAfile "$LDAP_DIR/ca.pem" "$LDAP_DIR/server.pem" >/dev/null ||
    fail "the server certificate does not verify with its own CA"
}

# ---- cn=config and the data ----

_ldap_hash() { /usr/sbin/slappasswd -h '{SSHA}' -T "$1"; }

# _ldap_config SITE...: writes config.ldif and data.ldif.
_ldap_config() {
  local uid gid site
  uid=$(id -u); gid=$(id -g)
  openssl rand -hex 16 | tr -d '\n' >"$LDAP_ROOT_PW_FILE"
  chmod 0600 "$LDAP_ROOT_PW_FILE"
  {
    cat <<EOF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $LDAP_DIR/slapd.pid
olcArgsFile: $LDAP_DIR/slapd.args
olcTLSCACertificateFile: $LDAP_DIR/ca.pem
olcTLSCertificateFile: $LDAP_DIR/server.pem
olcTLSCertificateKeyFile: $LDAP_DIR/server.key
olcIdleTimeout: 0

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: $LDAP_MODULE_PATH
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

EOF
    grep -v '^#' "$LDAP_CORE_SCHEMA"
    cat <<EOF

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by dn.exact=gidNumber=$gid+uidNumber=$uid,cn=peercred,cn=external,cn=auth manage by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: $LDAP_SUFFIX
olcDbDirectory: $LDAP_DIR/db
olcDbMaxSize: 67108864
olcRootDN: $LDAP_ROOT_DN
olcRootPW: $(_ldap_hash "$LDAP_ROOT_PW_FILE")
olcDbIndex: objectClass eq
olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {1}to dn.base="$LDAP_BASE" attrs=children by users write by * read
olcAccess: {2}to dn.regex="^sitespoolSiteCode=([^,]+),$LDAP_BASE\$" by dn.exact,expand="cn=\$1,$LDAP_SITES" write by * read
olcAccess: {3}to * by * read
EOF
  } >"$LDAP_DIR/config.ldif"
  {
    cat <<EOF
dn: $LDAP_SUFFIX
objectClass: dcObject
objectClass: organization
dc: sitespool
o: sitespool tests

dn: $LDAP_BASE
objectClass: organizationalUnit
ou: keys
description: sitespool site records (sitespoolSite)

dn: $LDAP_SITES
objectClass: organizationalUnit
ou: sites
description: one bind DN per site

EOF
    for site in "$@"; do
      openssl rand -hex 12 | tr -d '\n' >"$LDAP_DIR/$site.pw"
      chmod 0600 "$LDAP_DIR/$site.pw"
      printf 'dn: cn=%s,%s\nobjectClass: person\ncn: %s\nsn: %s\nuserPassword: %s\n\n' \
        "$site" "$LDAP_SITES" "$site" "$site" "$(_ldap_hash "$LDAP_DIR/$site.pw")"
    done
  } >"$LDAP_DIR/data.ldif"
}

# _ldap_free_port: a TCP port on 127.0.0.1 above 1024 nothing listens on
# (the kernel picks it; a race with another process is caught at start).
_ldap_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# _ldap_launch: starts slapd on LDAP_PORT / LDAPS_PORT and the ldapi
# socket; returns 0 once it answers, 1 if it exited at start (its log says
# why), fails if it neither exits nor answers within 15 s.
_ldap_launch() {
  local i
  [ -z "$SLAPD_PID" ] || fail "slapd already running (pid $SLAPD_PID)"
  LDAP_URI=ldap://127.0.0.1:$LDAP_PORT LDAPS_URI=ldaps://127.0.0.1:$LDAPS_PORT
  export LDAP_URI LDAPS_URI LDAPI_URI
  echo "=== slapd start $(date +%T.%N) on $LDAP_URI $LDAPS_URI" >>"$LDAP_LOG"
  # -d: stays in the foreground (a child of the test: its pid is $!) and
  # logs to stderr; 256 = stats (connections, operations, TLS).
  "$SLAPD_BIN" -F "$LDAP_DIR/slapd.d" -h "$LDAP_URI/ $LDAPS_URI/ $LDAPI_URI" -d 256 \
    </dev/null >>"$LDAP_LOG" 2>&1 &
  SLAPD_PID=$!
  export SLAPD_PID
  _ldap_watchdog
  for ((i = 0; i < 150; i++)); do
    if ! kill -0 "$SLAPD_PID" 2>/dev/null; then
      wait "$SLAPD_PID" 2>/dev/null || true
      SLAPD_PID=''
      return 1
    fi
    if ldapsearch -x -LLL -H "$LDAP_URI" -b '' -s base namingContexts >/dev/null 2>&1 &&
       ldapsearch -Q -Y EXTERNAL -LLL -H "$LDAPI_URI" -b '' -s base namingContexts >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  fail "slapd (pid $SLAPD_PID) neither answered nor exited within 15 s: $(tail -n 20 "$LDAP_LOG")"
}

# _ldap_watchdog: once per test: kills whatever slapd the test started
# when the test process ($$) is gone without its EXIT trap (SIGKILL).
_ldap_watchdog() {
  [ -z "$LDAP_WATCHDOG" ] || return 0
  ( tail --pid=$$ -f /dev/null 2>/dev/null
    pid=$(cat "$LDAP_DIR/slapd.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slapd ]; then kill -KILL "$pid"; fi
  ) </dev/null >/dev/null 2>&1 &
  LDAP_WATCHDOG=$!
}

# ldap_start [SITE...]: makes and starts the server (see the top), with a
# bind DN cn=SITE,ou=sites,... for each SITE (default: PS1 PS2 SS1 SS2).
# Call it from the test's own shell, not in $(...).
ldap_start() {
  local sites=("$@") try out
  [ ${#sites[@]} -gt 0 ] || sites=(PS1 PS2 SS1 SS2)
  [ -z "$SLAPD_PID" ] || fail "ldap_start: slapd already running"
  mkdir -p "$LDAP_DIR/slapd.d" "$LDAP_DIR/db"
  chmod 0700 "$LDAP_DIR"
  LDAPI_URI="ldapi://$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$LDAP_DIR/ldapi")"
  [ ${#LDAP_DIR} -lt 100 ] || fail "the ldapi socket path $LDAP_DIR/ldapi is too long for a unix socket"
  _ldap_certs
  _ldap_config "${sites[@]}"
  "$SLAPADD_BIN" -n0 -F "$LDAP_DIR/slapd.d" -l "$LDAP_DIR/config.ldif" >"$LDAP_DIR/slapadd.out" 2>&1 ||
    fail "slapadd -n0 refuses the test's cn=config: $(tail -n 20 "$LDAP_DIR/slapadd.out")"
  "$SLAPADD_BIN" -n1 -F "$LDAP_DIR/slapd.d" -l "$LDAP_DIR/data.ldif" >>"$LDAP_DIR/slapadd.out" 2>&1 ||
    fail "slapadd -n1 refuses the test's entries: $(tail -n 20 "$LDAP_DIR/slapadd.out")"
  for try in 1 2 3; do
    LDAP_PORT=$(_ldap_free_port); LDAPS_PORT=$(_ldap_free_port)
    [ "$LDAP_PORT" != "$LDAPS_PORT" ] || continue
    _ldap_launch && break
    # Another process took a port between the choice and the bind: again.
    if grep -q 'Address already in use' "$LDAP_LOG" && [ "$try" -lt 3 ]; then continue; fi
    echo "--- slapd log ($LDAP_LOG):"; tail -n 40 "$LDAP_LOG"
    ldap_skip "slapd cannot start here (exited at start; its log is above)"
  done
  [ -n "$SLAPD_PID" ] || ldap_skip "slapd could not get a free port in 3 tries: $(tail -n 5 "$LDAP_LOG")"
  # sitespool's schema, loaded as the README says an administrator does.
  out=$(ldapadd -Q -Y EXTERNAL -H "$LDAPI_URI" -f "$LDAP_SS_SCHEMA" 2>&1) ||
    fail "ldapadd -Y EXTERNAL -H ldapi:// -f dist/ldap/sitespool.ldif: $out"
  out=$(ldapmodify -Q -Y EXTERNAL -H "$LDAPI_URI" 2>&1 <<EOF
dn: olcDatabase={1}mdb,cn=config
changetype: modify
add: olcDbIndex
olcDbIndex: sitespoolSiteCode eq
EOF
) || fail "adding the sitespoolSiteCode index: $out"
  export LDAP_BASE LDAP_SUFFIX LDAP_CA LDAP_OTHER_CA LDAP_ROOT_DN LDAP_ROOT_PW_FILE LDAP_LOG LDAP_PORT LDAPS_PORT
}

# ldap_stop: SIGTERM (slapd closes its database cleanly), then wait; KILL
# after 10 s.  The data, the config and the ports stay for ldap_restart.
ldap_stop() {
  local i
  [ -n "$SLAPD_PID" ] || fail "ldap_stop: slapd is not running"
  kill -CONT "$SLAPD_PID" 2>/dev/null || true
  kill -TERM "$SLAPD_PID" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$SLAPD_PID" 2>/dev/null || break
    [ "$(cut -d' ' -f3 "/proc/$SLAPD_PID/stat" 2>/dev/null)" != Z ] || break
    sleep 0.1
  done
  kill -KILL "$SLAPD_PID" 2>/dev/null || true
  wait "$SLAPD_PID" 2>/dev/null || true
  SLAPD_PID=''
  echo "=== slapd stopped $(date +%T.%N)" >>"$LDAP_LOG"
  # Nothing listens any more: a connection is refused at once.
  ! ldapsearch -x -LLL -H "$LDAP_URI" -b '' -s base >/dev/null 2>&1 || fail "slapd still answers after ldap_stop"
}
# ldap_restart: the same server again (same data, ports, certificates).
ldap_restart() {
  [ -z "$SLAPD_PID" ] || ldap_stop
  _ldap_launch || fail "slapd did not start again: $(tail -n 20 "$LDAP_LOG")"
}
# ldap_freeze / ldap_thaw: SIGSTOP / SIGCONT.  While frozen the kernel
# still completes TCP handshakes (the listen backlog), but nothing is
# answered: a client hangs until its own timeout, as with an overloaded
# or wedged server.
ldap_freeze() { kill -STOP "$SLAPD_PID"; }
ldap_thaw() { kill -CONT "$SLAPD_PID"; }

# ldap_teardown: stops slapd and the watchdog.  Never fails: it runs from
# the EXIT trap and must not change the test's status.
ldap_teardown() {
  local c
  if [ -n "$SLAPD_PID" ]; then
    kill -CONT "$SLAPD_PID" 2>/dev/null || true
    kill -TERM "$SLAPD_PID" 2>/dev/null || true
    for ((c = 0; c < 50; c++)); do kill -0 "$SLAPD_PID" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$SLAPD_PID/stat" 2>/dev/null)" != Z ] || break; sleep 0.1; done
    kill -KILL "$SLAPD_PID" 2>/dev/null || true
    wait "$SLAPD_PID" 2>/dev/null || true
    SLAPD_PID=''
  fi
  if [ -n "$LDAP_WATCHDOG" ]; then
    for c in $(pgrep -P "$LDAP_WATCHDOG" 2>/dev/null || true); do kill -KILL "$c" 2>/dev/null || true; done
    kill -KILL "$LDAP_WATCHDOG" 2>/dev/null || true
    wait "$LDAP_WATCHDOG" 2>/dev/null || true
    LDAP_WATCHDOG=''
  fi
  _ldap_sweep "$LDAP_DIR"
  return 0
}
# _ldap_sweep DIR: kills (by pid) any slapd still running on a cn=config
# under DIR, saying so: none should be left, but none may outlive the test.
_ldap_sweep() {
  local p cmd
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = slapd ] || continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    [[ $cmd == *"-F $1/"* ]] || continue
    echo "# warning: slapd ${p#/proc/} was still running ($cmd): killed" >&2
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
}
trap 'ldap_teardown; cleanup' EXIT

# ---- reading and writing entries by hand (the root DN, or a site) ----

# _ldap_tls_env: the environment for a client tool speaking TLS to the
# test's server (given per command; never exported).
_ldap_tls_env() { echo "LDAPTLS_CACERT=$LDAP_CA LDAPTLS_REQCERT=demand LDAPCONF=/dev/null LDAPRC=/dev/null"; }

# ldap_root_search [ldapsearch args...]: as the root DN, base LDAP_BASE,
# LDIF without wrapping; e.g. ldap_root_search '(sitespoolSiteCode=PS1)'.
ldap_root_search() {
  env $(_ldap_tls_env) ldapsearch -x -LLL -o ldif-wrap=no -H "$LDAP_URI" -D "$LDAP_ROOT_DN" \
    -y "$LDAP_ROOT_PW_FILE" -b "$LDAP_BASE" "$@"
}
# ldap_anon_search [args...]: the same anonymously.
ldap_anon_search() {
  env $(_ldap_tls_env) ldapsearch -x -LLL -o ldif-wrap=no -H "$LDAP_URI" -b "$LDAP_BASE" "$@"
}
# ldap_root_modify: ldapmodify as the root DN; the LDIF on stdin.
ldap_root_modify() {
  env $(_ldap_tls_env) ldapmodify -x -H "$LDAP_URI" -D "$LDAP_ROOT_DN" -y "$LDAP_ROOT_PW_FILE" "$@"
}
# ldap_site_modify SITE: ldapmodify bound as SITE's bind DN; LDIF on stdin.
ldap_site_modify() {
  local site=$1; shift
  env $(_ldap_tls_env) ldapmodify -x -H "$LDAP_URI" -D "$(ldap_bind_dn "$site")" -y "$LDAP_DIR/$site.pw" "$@"
}
ldap_bind_dn() { echo "cn=$1,$LDAP_SITES"; }
ldap_site_dn() { echo "sitespoolSiteCode=$1,$LDAP_BASE"; }

# ldap_attr SITE ATTR: the value(s) of ATTR in SITE's record, read as the
# root DN and decoded (LDIF gives values with a newline in base64), each
# followed by a NUL-free newline; nothing if there is no such record.
ldap_attr() {
  ldap_root_search -s base -b "$(ldap_site_dn "$1")" '(objectClass=*)' "$2" 2>/dev/null |
    python3 -c '
import base64, sys
attr = sys.argv[1].lower()
for line in sys.stdin.read().splitlines():
    name, sep, value = line.partition(":")
    if not sep or name.lower() != attr:
        continue
    if value.startswith(":"):
        value = base64.b64decode(value[1:].strip()).decode()
    else:
        value = value[1:] if value.startswith(" ") else value
    sys.stdout.write(value if value.endswith("\n") else value + "\n")
' "$2"
}
# ldap_has SITE: SITE's record exists.
ldap_has() {
  ldap_root_search -s base -b "$(ldap_site_dn "$1")" '(objectClass=sitespoolSite)' dn 2>/dev/null | grep -q '^dn:'
}
# ldap_set_attr SITE ATTR FILE: replaces ATTR of SITE's record with the
# content of FILE, as the root DN (an administrator, or an attacker with
# write access to the directory).
ldap_set_attr() {
  ldap_root_modify >/dev/null <<EOF
dn: $(ldap_site_dn "$1")
changetype: modify
replace: $2
$2:< file://$3
EOF
}
# ldap_delete_record SITE: removes SITE's record, as the root DN.
ldap_delete_record() {
  env $(_ldap_tls_env) ldapdelete -x -H "$LDAP_URI" -D "$LDAP_ROOT_DN" -y "$LDAP_ROOT_PW_FILE" "$(ldap_site_dn "$1")"
}
# ldap_search_count: how many searches slapd has logged so far (for
# counting the searches one command made: take it before and after).
ldap_search_count() { grep -c ' SRCH base=' "$LDAP_LOG" || true; }

# ---- a site's directory settings ----

# set_conf SITE "key = value"...: replaces the setting in SITE's
# site.conf, or appends it when site.conf does not name it yet.
set_conf() {
  local site=$1 line key; shift
  for line in "$@"; do
    key=${line%%=*}; key=${key// /}
    if grep -q "^$key = " "$T/$site/site.conf"; then
      sed -i "s|^$key = .*|$line|" "$T/$site/site.conf"
    else
      echo "$line" >>"$T/$site/site.conf"
    fi
    grep -qxF "$line" "$T/$site/site.conf" || fail "setting $line not applied to $site"
  done
}
# ldap_site_conf SITE MODE ["key = value"...]: SITE (made by mksite) uses
# the test's directory.  MODE: ldap (plain), ldaps, starttls (ldap:// with
# directory_starttls = yes), anon (plain, no bind DN).  Its password file
# is $T/SITE/directory.pw (a copy of $LDAP_DIR/SITE.pw, mode 0600); TLS
# modes name the throw-away CA; directory_timeout is 2 s.  Further
# settings given here come after, so they win.
ldap_site_conf() {
  local site=$1 mode=$2 uri=$LDAP_URI tls=no; shift 2
  case $mode in
    ldap | anon) ;;
    ldaps) uri=$LDAPS_URI ;;
    starttls) tls=yes ;;
    *) fail "ldap_site_conf: unknown mode $mode" ;;
  esac
  local pwf=$T/$site/directory.pw bind
  bind=$(ldap_bind_dn "$site")
  if [ "$mode" = anon ]; then bind='' pwf=''
  else
    [ -f "$LDAP_DIR/$site.pw" ] || fail "ldap_site_conf: no bind DN for $site (name it to ldap_start)"
    install -m 0600 "$LDAP_DIR/$site.pw" "$pwf"
  fi
  set_conf "$site" "directory = $uri/$LDAP_BASE" "directory_starttls = $tls" \
    "directory_bind_dn = $bind" "directory_password_file = $pwf" \
    "directory_ca_file = $LDAP_CA" "directory_timeout = 2s" "$@"
}

# ldap_dir_site SITE MODE [setting...]: a site (mksite) using the test's
# directory (ldap_site_conf).
ldap_dir_site() {
  local site=$1 mode=$2; shift 2
  mksite "$site"
  ldap_site_conf "$site" "$mode" "$@"
}
# ldap_publish SITE: `key publish`, which must succeed.
ldap_publish() {
  "$S" -C "$T/$1" key publish >"$T/publish.$1.out" 2>&1 || fail "key publish from $1: $(cat "$T/publish.$1.out")"
}
# ldap_send SITE PEER FILE...: `send`, which must succeed.
ldap_send() {
  local from=$1 to=$2; shift 2
  "$S" -C "$T/$from" send --to "$to" "$@" >>"$T/send.$from.out" 2>&1 || fail "send from $from: $(tail -5 "$T/send.$from.out")"
}

# ---- scenarios ----
# Each scenario runs in a subshell with a folder of its own ($T is
# $LDAP_ROOT/<function>) and its own slapd, so one that fails is named
# ("not ok - NAME") and the next one still runs; ldap_done fails the
# script at the end if any did.  fail_later: a failure told now, the
# scenario goes on and fails at its end.
LDAP_ROOT=$T
LDAP_FAILED=()
# LDAP_ONLY="s_a s_b": run only those scenarios (for debugging).
ldap_scenario() {
  local name=$1 fn=$2 rc start=$SECONDS
  [ -z "${LDAP_ONLY:-}" ] || [[ " $LDAP_ONLY " == *" $fn "* ]] || return 0
  echo "# --- $name"
  set +e
  (
    set -e
    T=$LDAP_ROOT/$fn
    LDAP_DIR=$T/ldap LDAP_LOG=$T/ldap/slapd.log LDAP_ROOT_PW_FILE=$T/ldap/root.pw
    LDAP_CA=$T/ldap/ca.pem LDAP_OTHER_CA=$T/ldap/other-ca.pem
    SLAPD_PID='' LDAP_WATCHDOG=''
    mkdir -p "$T"
    DAEMONS=()
    trap _ldap_scenario_end EXIT
    "$fn"
    [ ! -s "$T/failed_later" ] || exit 1
  )
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    LDAP_FAILED+=("$name")
    echo "not ok - $name"
  fi
  echo "# $name: $((SECONDS - start)) s"
}
fail_later() { echo "FAIL: $*" >&2; echo "$*" >>"$T/failed_later"; }
expect_eq() { [ "$1" = "$2" ] || fail_later "${3:-values differ}: expected '$2', got '$1'"; }
_ldap_scenario_end() {
  local pid
  for pid in "${DAEMONS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${DAEMONS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ldap_teardown
}
ldap_done() {
  _ldap_sweep "$LDAP_ROOT"
  [ ${#LDAP_FAILED[@]} = 0 ] || fail "${#LDAP_FAILED[@]} scenario(s) failed: ${LDAP_FAILED[*]}"
}

# ---- sitespool side ----

# ldap_implemented: this build has the LDAP directory settings.
ldap_implemented() { local out; out=$("$S" settings 2>/dev/null) || true; grep -q '^directory_bind_dn' <<<"$out"; }
# keyid_of PUBFILE: the key id (16 upper-case hex digits) of a minisign
# public key file.
keyid_of() { sed -n 2p "$1" | base64 -d | tail -c +3 | head -c 8 | od -An -tx1 |
             tr -d ' \n' | fold -w2 | tac | tr -d '\n' | tr a-f A-F; }
# mkfiles DIR N [SIZE]: N files DIR/f001.. of SIZE (default 100) random bytes.
mkfiles() {
  local i
  mkdir -p "$1"
  for ((i = 1; i <= $2; i++)); do head -c "${3:-100}" /dev/urandom >"$1/$(printf 'f%03d' "$i")"; done
}
# same_files SRC DST: every file of SRC is in DST, byte for byte.
same_files() {
  local f
  for f in "$1"/*; do cmp -s "$f" "$2/${f##*/}" || return 1; done
}
# pairs_in DIR: complete .ins files in DIR.
pairs_in() { find "$1" -maxdepth 1 -type f -name '*.ins' 2>/dev/null | wc -l; }
# last_status SITE ID: the text of the newest status message with that id.
last_status() { "$S" -C "$T/$1" status --id "$2" | tail -n 1; }
