# lib_sftp.sh - helpers for the t_sftp*.sh scripts (SFTP delivery, issue
# 10).  Source it after lib.sh (and lib_ssh.sh where sshd is needed).
#
# Each scenario runs in a subshell with a folder of its own ($T is
# $SFTP_ROOT/<function>), so one that fails is named ("not ok - NAME")
# and the next one still runs; sftp_done fails the script at the end if
# any did.  A check whose failure does not stop the story (the text of a
# message) may use fail_later: the scenario goes on and fails at its end.  What a scenario started (sshd listeners, background senders
# registered in DAEMONS, netem) is stopped when it ends, so each starts
# from a clean namespace pair.
#
#   scenario "host key not pinned" s_unpinned
#   ...
#   sftp_done

SFTP_ROOT=$T
SFTP_FAILED=()

# scenario NAME FUNCTION
scenario() {
  local name=$1 fn=$2 rc start=$SECONDS
  echo "# --- $name"
  set +e
  (
    set -e
    T=$SFTP_ROOT/$fn
    mkdir -p "$T"
    DAEMONS=()
    trap _scenario_end EXIT
    "$fn"
    [ ! -s "$T/failed_later" ] || exit 1
  )
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    SFTP_FAILED+=("$name")
    echo "not ok - $name"
  fi
  echo "# $name: $((SECONDS - start)) s"
}
# fail_later MESSAGE: a failure told now, the scenario goes on.
fail_later() { echo "FAIL: $*" >&2; echo "$*" >>"$T/failed_later"; }
# expect_eq ACTUAL EXPECTED WHAT: assert_eq told through fail_later.
expect_eq() { [ "$1" = "$2" ] || fail_later "${3:-values differ}: expected '$2', got '$1'"; }
_scenario_end() {
  local pid port
  if declare -F netem_off >/dev/null; then netem_off 2>/dev/null || true; fi
  for pid in "${DAEMONS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${DAEMONS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if declare -p SSHD_PIDS >/dev/null 2>&1; then
    for port in "${!SSHD_PIDS[@]}"; do sshd_kill "$port" 2>/dev/null || true; done
  fi
}
sftp_done() {
  [ ${#SFTP_FAILED[@]} = 0 ] || fail "${#SFTP_FAILED[@]} scenario(s) failed: ${SFTP_FAILED[*]}"
}

# sftp_url [PORT]: SS1's receive inbox through the listener on PORT.
sftp_url() { echo "sftp://root@$IP_B:${1:-$SSHD_PORT}$(receive SS1)"; }

# sftp_sites [PS1 SETTING...]: sites PS1 and SS1 in $T, keys exchanged,
# peers both ways (local paths), PS1's SSH identity (keys/sftp_id)
# authorized at every listener; one pair per file, sftp_timeout 5 s
# (settings given here come after, so they win).  PS1's address for SS1
# is still the local path: the scenario sets its sftp:// address(es).
sftp_sites() {
  mksite PS1 "bundle_max_files = 1" "sftp_timeout = 5s" "$@"
  mksite SS1
  "$S" -C "$T/PS1" peer ssh-key >"$T/ssh-key.out" || fail "peer ssh-key: $(cat "$T/ssh-key.out")"
  tail -1 "$T/ssh-key.out" | grep -q '^ssh-ed25519 ' || fail "peer ssh-key output: $(cat "$T/ssh-key.out")"
  tail -1 "$T/ssh-key.out" >>"$SSHD_AUTH"
  pair PS1 SS1
}

# mkfiles DIR N [MAXSIZE]: N files DIR/f001.. of random content, each
# 1..MAXSIZE (default 4096) bytes.
mkfiles() {
  python3 - "$@" <<'PY'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
m = int(sys.argv[3]) if len(sys.argv) > 3 else 4096
os.makedirs(d, exist_ok=True)
for i in range(1, n + 1):
    with open(os.path.join(d, 'f%03d' % i), 'wb') as f:
        f.write(os.urandom(random.randint(1, m)))
PY
}

# queued_ids FILE: the instruction ids a `send` printed ("Queued instruction ID").
queued_ids() { sed -n 's/^Queued instruction \([0-9a-f]\{32\}\) .*/\1/p' "$1" | sort; }
# outbox_ids: ids of the pairs queued at PS1 for SS1 (instruction and package there).
outbox_ids() {
  local q; q=$(outbox PS1 SS1)
  find "$q" -maxdepth 1 -type f -name '[0-9]*-*.ins' -printf '%f\n' | sed 's/\.ins$//' |
    while read -r b; do [ -f "$q/$b.pck" ] && echo "${b#*-}"; done | sort
}
# receive_ids: ids of complete pairs in SS1's receive inbox.
receive_ids() {
  local r; r=$(receive SS1)
  find "$r" -maxdepth 1 -type f -name '[0-9a-f]*.ins' -printf '%f\n' | sed 's/\.ins$//' |
    while read -r b; do [ -f "$r/$b.pck" ] && echo "$b"; done | sort
}
# n_ins DIR: instructions (not dot-names) in DIR.
n_ins() { find "$1" -maxdepth 1 -type f -name '*.ins' ! -name '.*' | wc -l; }
# tmp_names DIR: dot-names (temporary uploads) in DIR.
tmp_names() { find "$1" -maxdepth 1 -name '.*' -printf '%f\n'; }

# digests DIR: "sha256  name" of every file in DIR (dot-names too), sorted by name.
digests() { (cd "$1" && find . -maxdepth 1 -type f -printf '%f\n' | LC_ALL=C sort | xargs -r sha256sum); }
# same_files SRC DST WHAT: DST holds exactly the files of SRC, byte for
# byte: no file missing, none extra (no renamed second copy such as
# f001.<id>, no temporary file), none different.
same_files() {
  local d
  d=$(diff <(digests "$1") <(digests "$2")) ||
    fail "$3: $2 differs from $1 (< only in the source, > only delivered):
$(echo "$d" | head -20)"
}

# despool_sum SITE: runs `despool --once`; sets DSP_DELIVERED,
# DSP_REJECTED, DSP_DUPLICATES, DSP_WAITING from its summary line.
despool_sum() {
  local out
  out=$("$S" -C "$T/$1" despool --once) || fail "despool --once of $1 failed: $out"
  [[ $out =~ delivered\ ([0-9]+),\ rejected\ ([0-9]+),\ duplicates\ ([0-9]+),\ waiting\ ([0-9]+) ]] ||
    fail "despool summary: $out"
  DSP_DELIVERED=${BASH_REMATCH[1]} DSP_REJECTED=${BASH_REMATCH[2]}
  DSP_DUPLICATES=${BASH_REMATCH[3]} DSP_WAITING=${BASH_REMATCH[4]}
}

# peer_json: PS1's `peer list --json`.  peer_addr INDEX FIELD: FIELD of
# SS1's address INDEX (from 0).  peer_field FIELD: a field of SS1's row.
peer_json() { "$S" -C "$T/PS1" peer list --json; }
peer_addr() {
  peer_json | python3 -c '
import json, sys
p = [x for x in json.load(sys.stdin) if x["site"] == "SS1"][0]
print(p["addresses"][int(sys.argv[1])][sys.argv[2]])' "$1" "$2"
}
peer_field() {
  peer_json | python3 -c '
import json, sys
p = [x for x in json.load(sys.stdin) if x["site"] == "SS1"][0]
print(p[sys.argv[1]])' "$1"
}

# last_status SITE ID: the text of the newest status message ID.
last_status() { status_text "$1" "$2" | tail -1; }

# send_a EXPECTED_RC OUT ARGS...: `sitespool -C PS1 ARGS` in NS_A, stdout
# and stderr into OUT; fails unless it exits with EXPECTED_RC.
send_a() {
  local want=$1 out=$2 rc=0; shift 2
  in_a "$S" -C "$T/PS1" "$@" >"$out" 2>&1 || rc=$?
  [ "$rc" = "$want" ] || fail "sitespool $* exited $rc, expected $want: $(tail -n 5 "$out")"
}

# connections PORT: sshd's "Connection from ... on IP_B port PORT" lines so far.
connections() { grep -c "^Connection from $IP_A port [0-9]* on $IP_B port $1 " "$SSHD_LOG" || true; }
# ssh_check KNOWN_HOSTS: OpenSSH's own client, in NS_A, strict host key
# checking against KNOWN_HOSTS only, PS1's identity; succeeds or fails.
ssh_check() {
  in_a ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$1" -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10 \
    -i "$T/PS1/keys/sftp_id" -p "$SSHD_PORT" "root@$IP_B" true
}
