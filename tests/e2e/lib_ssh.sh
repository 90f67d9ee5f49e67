# lib_ssh.sh - a real OpenSSH server across a real network link, for the
# end-to-end tests that deliver over SFTP.  Source it after lib.sh:
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/lib_ssh.sh"
#   ssh_env_check                  # SKIP (exit 0) where this cannot run
#   netns_setup                    # NS_A --veth-- NS_B, IP_A / IP_B
#   sshd_start                     # sshd in NS_B on $IP_B:2222
#   client_key_make "$T/id"        # key sshd accepts for root
#   in_a "$S" -C "$T/PS1" ...      # the sender runs in NS_A
#
# Topology: two network namespaces per test process (ssA<pid>, ssB<pid>),
# joined by one veth pair (vA in NS_A, vB in NS_B) on 10.X.Y.0/24 with
# IP_A=.1 and IP_B=.2.  The namespaces have no route to anything else, so
# the tests cannot reach (or be reached from) the host's network.  Every
# listener on B shares one host key and one authorized_keys in $T/sshd/.
#
# Teardown is hooked into lib.sh's EXIT trap: everything still running in
# either namespace is killed and the namespaces are deleted, then lib.sh's
# cleanup runs as before.  A test that sets its own EXIT trap must call
# `ssh_teardown; cleanup` from it.  Namespaces left by a test that was
# SIGKILLed (e.g. a ctest timeout) are removed by the next netns_setup.
#
# Needs root (namespaces, sshd as root), iproute2, openssh-server and
# openssh-client.  Link emulation (netem_on) uses the kernel's netem qdisc
# where it exists and otherwise a small python3 packet relay (see netem_on).

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}   # overridable to test the SKIP
SSHD_DIR=$T/sshd
SSHD_LOG=$SSHD_DIR/sshd.log
SSHD_KEY=$SSHD_DIR/ssh_host_ed25519_key
SSHD_AUTH=$SSHD_DIR/authorized_keys
declare -A SSHD_PIDS=()   # port -> listener pid, for every running sshd
NS_A='' NS_B=''
NETEM_MODE=               # kernel | relay, once netem_on has chosen
NETEM_PID=                # the relay process (relay mode)

ssh_skip() { echo "SKIP: $*"; exit 0; }

# ssh_env_check: skips the test (exit 0) when namespaces cannot be made or
# a needed program is missing.  The probe namespace is made and entered
# because in some containers `ip netns add` works but entering it does not.
ssh_env_check() {
  local p
  for p in "$SSHD_BIN" ip tc ssh sftp ssh-keygen; do
    command -v "$p" >/dev/null || ssh_skip "$p not installed (openssh-server, openssh-client, iproute2)"
  done
  p=ssP$$
  ip netns del "$p" 2>/dev/null || true   # left by a killed process with our pid
  ip netns add "$p" 2>/dev/null || ssh_skip "cannot create network namespaces (needs root / CAP_SYS_ADMIN)"
  if ! ip netns exec "$p" true 2>/dev/null; then
    ip netns del "$p" 2>/dev/null || true
    ssh_skip "cannot enter network namespaces (ip netns exec failed)"
  fi
  ip netns del "$p"
}

in_a() { ip netns exec "$NS_A" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }

# ---- namespaces ----

# _ns_kill NS: SIGKILLs every process in NS and waits (2 s at most) until
# none is left; zombies count as gone (pid 1 reaps orphans, a bit later).
_ns_kill() {
  local pids pid i
  for ((i = 0; i < 20; i++)); do
    pids=$(ip netns pids "$1" 2>/dev/null | grep -vxF -e "$$" -e "$BASHPID" || true)
    pids=$(for pid in $pids; do _alive "$pid" && echo "$pid"; done)
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
}
# _alive PID: running and not a zombie.
_alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z ' "/proc/$1/stat" 2>/dev/null; }

# _ns_gc: deletes namespaces of earlier test processes that are gone.
_ns_gc() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ss[ABP][0-9]+$' || true); do
    kill -0 "${ns#ss?}" 2>/dev/null && continue
    _ns_kill "$ns"; ip netns del "$ns" 2>/dev/null || true
  done
}

# netns_setup: makes NS_A and NS_B joined by a veth pair, and exports
# NS_A NS_B IP_A IP_B VETH_A VETH_B IP_DEAD.  The subnet comes from $$;
# parallel tests could not collide even with equal subnets, since each
# pair of namespaces is a separate network, but distinct subnets make logs
# easier to tell apart.  The veth ends are created directly inside the
# namespaces so their names never meet in the host's namespace.
netns_setup() {
  _ns_gc
  NS_A=ssA$$ NS_B=ssB$$ VETH_A=vA VETH_B=vB
  local net=10.$((($$ >> 8) & 255)).$(($$ & 255))
  IP_A=$net.1 IP_B=$net.2 IP_DEAD=$net.9
  export NS_A NS_B IP_A IP_B VETH_A VETH_B IP_DEAD
  ip netns add "$NS_A" || fail "ip netns add $NS_A"
  ip netns add "$NS_B" || fail "ip netns add $NS_B"
  ip -n "$NS_A" link add "$VETH_A" type veth peer name "$VETH_B" netns "$NS_B" ||
    fail "cannot create the veth pair"
  ip -n "$NS_A" addr add "$IP_A/24" dev "$VETH_A"
  ip -n "$NS_B" addr add "$IP_B/24" dev "$VETH_B"
  local ns
  for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_A" link set "$VETH_A" up
  ip -n "$NS_B" link set "$VETH_B" up
  # IP_DEAD: frames go to a MAC nobody has, so they vanish without an
  # answer -- connecting there hangs until the client's own timeout (a
  # firewalled host), unlike a closed port which is refused at once.
  ip -n "$NS_A" neigh add "$IP_DEAD" lladdr 02:00:00:00:de:ad dev "$VETH_A" nud permanent
}

# ssh_teardown: kills everything left in the namespaces (listeners,
# sessions, relay, senders started with in_a ... &) and deletes them.
# Never fails: it runs from the EXIT trap and must not change the status.
ssh_teardown() {
  # Quiet: bash reports each killed child of the test as "Killed".
  _ssh_teardown 2>/dev/null || true
}
_ssh_teardown() {
  local ns pid
  for ns in "$NS_A" "$NS_B"; do
    [ -n "$ns" ] || continue
    _ns_kill "$ns"
    ip netns del "$ns" || true
  done
  # Reap our own dead children now, so the notices fall in the silence.
  for pid in "${SSHD_PIDS[@]}" $NETEM_PID "${DAEMONS[@]}"; do
    _alive "$pid" || wait "$pid" || true
  done
  SSHD_PIDS=() NETEM_PID=''
}
trap 'ssh_teardown; cleanup' EXIT

# ---- sshd ----

# sshd_host_pub / sshd_host_fp: the host public key file, its fingerprint.
sshd_host_pub() { echo "$SSHD_KEY.pub"; }
sshd_host_fp() { ssh-keygen -lf "$SSHD_KEY.pub" | awk '{print $2}'; }
# sshd_known_hosts_line [PORT]: a known_hosts line for IP_B:PORT.
sshd_known_hosts_line() {
  local port=${1:-${SSHD_PORT:-2222}} host=$IP_B
  [ "$port" = 22 ] || host="[$IP_B]:$port"
  echo "$host $(cut -d' ' -f1,2 "$SSHD_KEY.pub")"
}

_sshd_host_key() {
  mkdir -p "$SSHD_DIR"
  [ -f "$SSHD_KEY" ] ||
    ssh-keygen -q -t ed25519 -N '' -C sitespool-e2e-host -f "$SSHD_KEY" </dev/null ||
    fail "ssh-keygen could not make a host key"
}

# _sshd_config PORT: writes $SSHD_DIR/sshd_config.PORT.  -f with this
# file means /etc/ssh/sshd_config and its Include are never read.
# internal-sftp runs in the session's own sshd process, so killing the
# sshd tree always takes the SFTP server with it.  MaxStartups is raised
# so that many parallel deliveries are not dropped before auth.
_sshd_config() {
  cat >"$SSHD_DIR/sshd_config.$1" <<EOF
ListenAddress $IP_B
Port $1
HostKey $SSHD_KEY
PidFile $SSHD_DIR/sshd.$1.pid
AuthorizedKeysFile $SSHD_AUTH
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
MaxStartups 100
LoginGraceTime 30
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF
}

# _sshd_launch PORT: starts one listener and waits until it listens.
# sshd needs its privilege-separation directory /run/sshd, normally made
# by the init system; an absolute path to the binary (it re-executes
# itself for every connection); and a host key.  The namespace's own
# `ss` tells when the port listens, so no probe connection shows up in
# the log.  All listeners log to the one $SSHD_LOG: each connection line
# says "on IP_B port PORT", so tests can tell which one was used.
_sshd_launch() {
  local port=$1 cfg=$SSHD_DIR/sshd_config.$1 pid i
  [ -n "$NS_B" ] || fail "sshd_start before netns_setup"
  [ -z "${SSHD_PIDS[$port]:-}" ] || fail "sshd on port $port already running"
  mkdir -p /run/sshd && chmod 0755 /run/sshd
  _sshd_host_key
  touch "$SSHD_AUTH"
  _sshd_config "$port"
  "$SSHD_BIN" -t -f "$cfg" || fail "sshd rejects $cfg"
  # ip netns exec execs sshd, so $! is the listener itself.
  ip netns exec "$NS_B" "$SSHD_BIN" -D -e -f "$cfg" </dev/null >>"$SSHD_LOG" 2>&1 &
  pid=$!
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null ||
      fail "sshd on port $port exited at start: $(tail -n 5 "$SSHD_LOG")"
    if [ -n "$(ss -N "$NS_B" -Hltn "sport = :$port" 2>/dev/null)" ]; then
      SSHD_PIDS[$port]=$pid
      _sshd_vars
      return 0
    fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  fail "sshd on $IP_B:$port did not listen within 5 s: $(tail -n 5 "$SSHD_LOG")"
}
# _sshd_vars: keeps SSHD_PID / SSHD2_PID in step with SSHD_PIDS.
_sshd_vars() {
  [ -z "${SSHD_PORT:-}" ] || SSHD_PID=${SSHD_PIDS[$SSHD_PORT]:-}
  [ -z "${SSHD2_PORT:-}" ] || SSHD2_PID=${SSHD_PIDS[$SSHD2_PORT]:-}
  export SSHD_PID SSHD2_PID
}

# sshd_start [PORT]: the peer's sshd on IP_B:PORT (default 2222); exports
# SSHD_PORT, SSHD_PID.  Call it from the test's own shell, not in $(...):
# the listener must be a child of the test so sshd_stop can reap it.
sshd_start() {
  SSHD_PORT=${1:-2222}; export SSHD_PORT
  _sshd_launch "$SSHD_PORT"
}
# sshd_start_second PORT: a second listener of the same peer (same host
# key, same authorized_keys, same IP_B); exports SSHD2_PORT, SSHD2_PID.
sshd_start_second() {
  SSHD2_PORT=${1:?sshd_start_second PORT}; export SSHD2_PORT
  _sshd_launch "$SSHD2_PORT"
}
# sshd_unused_port: a port on IP_B that nothing listens on (connections
# are refused at once).  For an address that never answers use IP_DEAD.
sshd_unused_port() {
  local port=2299
  while [ -n "${SSHD_PIDS[$port]:-}" ]; do port=$((port + 1)); done
  echo "$port"
}

# _sshd_pid PORT: the listener's pid, or fail.
_sshd_pid() {
  [ -n "${SSHD_PIDS[$1]:-}" ] || fail "no sshd running on port $1"
  echo "${SSHD_PIDS[$1]}"
}
_sshd_forget() { unset "SSHD_PIDS[$1]"; _sshd_vars; }

# sshd_stop [PORT]: SIGTERM to the listener, then wait for it.  Like
# stopping a real sshd: no new connections, but sessions already open go
# on to their end (each has its own process).
sshd_stop() {
  local port=${1:-${SSHD_PORT:-}} pid
  pid=$(_sshd_pid "$port")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  _sshd_forget "$port"
}

# _tree PID: PID and all its descendants.
_tree() {
  local c
  echo "$1"
  for c in $(pgrep -P "$1" || true); do _tree "$c"; done
}
# sshd_kill [PORT]: SIGKILL to the listener and every process under it,
# so live sessions die too (the client sees the connection closed).  The
# tree is frozen with SIGSTOP first, until it stops changing, because a
# killed parent's children are re-parented to pid 1 and could no longer
# be found, and a running one could still fork.
sshd_kill() {
  local port=${1:-${SSHD_PORT:-}} pid all prev=
  pid=$(_sshd_pid "$port")
  all=$(_tree "$pid")
  while [ "$all" != "$prev" ]; do
    # shellcheck disable=SC2086
    kill -STOP $all 2>/dev/null || true
    prev=$all; all=$(_tree "$pid")
  done
  # shellcheck disable=SC2086
  kill -KILL $all 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  _sshd_forget "$port"
}

# sshd_restart [PORT]: stop, then start on the same port (open sessions
# go on, as with sshd_stop).
sshd_restart() {
  local port=${1:-${SSHD_PORT:-}}
  sshd_stop "$port"
  _sshd_launch "$port"
}

# sshd_new_host_key: replaces the host key with a fresh one and restarts
# every running listener.  The restart is needed in general (OpenSSH 9.8
# and later load host keys once, in the listener); 9.2 as on Debian 12
# would re-read the file for each new connection anyway, and doing the
# restart here makes the change take effect the same way on either.
sshd_new_host_key() {
  local port
  rm -f "$SSHD_KEY" "$SSHD_KEY.pub"
  _sshd_host_key
  for port in "${!SSHD_PIDS[@]}"; do sshd_restart "$port"; done
}

# client_key_make FILE: a new ed25519 key pair FILE / FILE.pub without a
# passphrase (FILE mode 0600, an old pair is replaced), authorized for
# root at every listener of the peer.
client_key_make() {
  local f=${1:?client_key_make FILE}
  mkdir -p "$SSHD_DIR"
  rm -f "$f" "$f.pub"
  ssh-keygen -q -t ed25519 -N '' -C sitespool-e2e-client -f "$f" </dev/null ||
    fail "ssh-keygen could not make $f"
  chmod 0600 "$f"
  cat "$f.pub" >>"$SSHD_AUTH"
}

# ---- the link ----

# link_down / link_up: takes B's end of the link down or up.  While down,
# packets vanish silently both ways (no RST): open connections stall and
# new ones time out, as when a cable is pulled.  Addresses and the routes
# of the subnet come back with link_up.
link_down() {
  ip -n "$NS_B" link set "$VETH_B" down
  [ -z "$NETEM_PID" ] || ip -n "$NS_B" link set relay down
}
link_up() {
  ip -n "$NS_B" link set "$VETH_B" up
  [ -z "$NETEM_PID" ] || _relay_routes "$NS_B" "$IP_A" "$IP_B"
}

# netem_on DELAY [LOSS]: e.g. `netem_on 50ms 1%` (a bare number means ms
# or %).  Each direction gets DELAY and LOSS, so a round trip takes
# 2*DELAY more and a request/answer pair is lost about 2*LOSS of the
# time.  Calling it again replaces the settings; netem_off removes them.
# Uses the kernel's netem qdisc on both veth ends when the kernel has it
# (NETEM_MODE=kernel).  Kernels without sch_netem (e.g. minimal VM
# kernels without modules) get NETEM_MODE=relay: the traffic between
# IP_A and IP_B is routed through a tun device in each namespace, and a
# python3 process between the two tun devices holds each packet DELAY and
# drops LOSS of them.  SS_NETEM=relay forces the relay.
netem_on() {
  local delay=${1:?netem_on DELAY [LOSS]} loss=${2:-0%}
  [[ $delay =~ ^[0-9.]+$ ]] && delay+=ms
  [[ $loss =~ ^[0-9.]+$ ]] && loss+=%
  netem_off
  if [ "${SS_NETEM:-}" != relay ] &&
     tc -n "$NS_A" qdisc replace dev "$VETH_A" root netem delay "$delay" loss "$loss" 2>/dev/null; then
    tc -n "$NS_B" qdisc replace dev "$VETH_B" root netem delay "$delay" loss "$loss" ||
      fail "netem on $VETH_B"
    NETEM_MODE=kernel
  else
    _relay_start "$delay" "$loss"
    NETEM_MODE=relay
  fi
  export NETEM_MODE
}
netem_off() {
  tc -n "$NS_A" qdisc del dev "$VETH_A" root 2>/dev/null || true
  tc -n "$NS_B" qdisc del dev "$VETH_B" root 2>/dev/null || true
  if [ -n "$NETEM_PID" ]; then
    # The tun devices (and the routes through them) vanish with the
    # process, so traffic goes back to the veth pair.
    kill -KILL "$NETEM_PID" 2>/dev/null || true
    wait "$NETEM_PID" 2>/dev/null || true
    NETEM_PID=
  fi
}

# _relay_routes NS PEER_IP OWN_IP: sends NS's traffic for PEER_IP through
# its "relay" tun device.  A /32 beats the veth's /24, and "src" keeps
# the source address the same as over the veth, so open TCP connections
# simply move to the relay (and back when it goes).
_relay_routes() {
  ip -n "$1" link set relay up
  ip -n "$1" route replace "$2/32" dev relay src "$3"
}

# _relay_start DELAY LOSS: starts the relay (see netem_on) in NS_A; it
# makes its tun device there, then enters NS_B to make the other one.
_relay_start() {
  local ms pct i
  ms=$(awk -v d="$1" 'BEGIN { v = d + 0; if (d ~ /us$/) v /= 1000; else if (d ~ /[0-9]s$/) v *= 1000; print v }')
  pct=${2%\%}
  [ -e /dev/net/tun ] || fail "netem: no netem qdisc and no /dev/net/tun"
  cat >"$T/relay.py" <<'PY'
# Relays IP packets between tun "relay" in this namespace and tun "relay"
# in namespace argv[1], each held argv[2] ms, argv[3] % of them dropped.
import collections, ctypes, fcntl, os, random, select, struct, sys, time
ns, delay, loss = sys.argv[1], float(sys.argv[2]) / 1000, float(sys.argv[3])
def tun():
    fd = os.open('/dev/net/tun', os.O_RDWR)
    fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'relay', 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN|IFF_NO_PI
    return fd
a = tun()
libc = ctypes.CDLL(None, use_errno=True)
if libc.setns(os.open('/run/netns/' + ns, os.O_RDONLY), 0x40000000) != 0:  # CLONE_NEWNET
    sys.exit('setns: ' + os.strerror(ctypes.get_errno()))
b = tun()
other = {a: b, b: a}
held = collections.deque()  # (due, fd, packet); one delay keeps it sorted
while True:
    wait = max(0.0, held[0][0] - time.monotonic()) if held else None
    ready = select.select([a, b], [], [], wait)[0]
    now = time.monotonic()
    for fd in ready:
        packet = os.read(fd, 65536)
        if random.random() * 100 >= loss:
            held.append((now + delay, other[fd], packet))
    while held and held[0][0] <= now:
        _, fd, packet = held.popleft()
        try:
            os.write(fd, packet)
        except OSError:
            pass  # that end is down (link_down): the packet is lost
PY
  ip netns exec "$NS_A" python3 "$T/relay.py" "$NS_B" "$ms" "$pct" 2>>"$T/relay.log" &
  NETEM_PID=$!
  for ((i = 0; i < 50; i++)); do
    if ip -n "$NS_A" link show relay >/dev/null 2>&1 &&
       ip -n "$NS_B" link show relay >/dev/null 2>&1; then
      _relay_routes "$NS_A" "$IP_B" "$IP_A"
      _relay_routes "$NS_B" "$IP_A" "$IP_B"
      return 0
    fi
    kill -0 "$NETEM_PID" 2>/dev/null || break
    sleep 0.1
  done
  fail "netem relay did not start: $(tail -n 3 "$T/relay.log" 2>/dev/null)"
}
