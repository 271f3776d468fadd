#!/usr/bin/env bash
# Builds (and tears down) a self-contained LVS direct-routing lab out of network namespaces.
#
#   lab.sh up     [--prefix P] [--real-servers N] [--sorry-server] [--directors D] [--flooder]
#   lab.sh down   [--prefix P]
#   lab.sh config [--prefix P]
#   lab.sh http-stop  --server S [--prefix P]
#   lab.sh http-start --server S [--prefix P]
#   lab.sh udp-stop   --server S [--prefix P]
#   lab.sh udp-start  --server S [--prefix P]
#
# The lab is one L2 segment: a "switch" namespace P-sw holds a Linux bridge br0, and every
# host namespace (P-client, P-dir, P-rs1 .. P-rsN) hangs off it through a veth pair whose
# host end is eth0 and whose switch end is named after the host. The real servers are
# provisioned with scripts/realserver.sh (VIP on lo, ARP kept quiet) and each runs a tiny
# HTTP server that answers GET / with its own name, so a client can see which one it hit,
# and a UDP responder on the same port that answers every datagram with that name too.
# The director gets only its own address: the lvs daemon, started separately with the
# generated lvs.toml, adds the VIP itself.
#
# With --directors 2, a second director P-dir2 (10.77.0.3) hangs off the same switch, set up
# as the first (a no-op XDP program on its switch port): the pair of the two-director setup,
# where keepalived's VRRP moves the VIP between P-dir and P-dir2.
#
# With --flooder, one more host P-flood (10.77.0.40) whose switch port also gets the no-op XDP
# program: a live-frames generator there (BPF_PROG_RUN in live-frames mode, the flood test's)
# sends with XDP_TX, which a veth delivers only to a peer with an XDP program.
#
# With --sorry-server, one more real server P-sorry (10.77.0.30) answers "sorry", for a
# service's sorry_server. http-stop and http-start stop and start the HTTP server of one
# server (rs1 .. rsN, or sorry), so that health checks can be seen taking it out and back;
# udp-stop and udp-start do the same with its UDP responder.
#
# Every namespace name starts with "P-" so that labs with different prefixes, or leftovers
# of an earlier run, never collide. State (pids, logs, realserver state, lvs.toml) lives in
# /run/lvs-lab/P/. The veth pairs are created directly inside the namespaces, so nothing is
# ever added to the namespace the script is run from, and all lab traffic stays in the lab.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REALSERVER=$SCRIPT_DIR/realserver.sh
STATE_ROOT=/run/lvs-lab
SUBNET=10.77.0
VIP=$SUBNET.100
# With --ipv6 every host also gets an address in SUBNET6::/64 (HOST = the IPv4 address's
# last number, so rs1 is fd77::11) and the services are balanced over VIP6 too.
SUBNET6=fd77:
VIP6=$SUBNET6:100
PORT=80
CLIENT_ADDR=$SUBNET.2
DIR_ADDR=$SUBNET.1
DIR2_ADDR=$SUBNET.3
FLOOD_ADDR=$SUBNET.40
MAX_RS=8

say() { printf 'lab: %s\n' "$*"; }
warn() { printf 'lab: warning: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$2" >&2; exit "$1"; }
usage() {
  cat >&2 <<EOF
usage: ${0##*/} up     [--prefix P] [--real-servers N] [--sorry-server] [--directors D] [--flooder] [--ipv6]
       ${0##*/} down   [--prefix P]
       ${0##*/} config [--prefix P]
       ${0##*/} http-stop  --server S [--prefix P]
       ${0##*/} http-start --server S [--prefix P]
       ${0##*/} udp-stop   --server S [--prefix P]
       ${0##*/} udp-start  --server S [--prefix P]
S is rs1 .. rs$MAX_RS or sorry; P matches ^[a-z][a-z0-9]{0,9}\$ (default lvslab); N is 1..$MAX_RS (default 2);
D is 1 or 2 (default 1).
EOF
  exit 2
}

# --- argument parsing: everything is checked before anything is changed ---
[[ $# -ge 1 ]] || usage
CMD=$1; shift
case $CMD in up | down | config | http-stop | http-start | udp-stop | udp-start) ;; -h | --help | help) usage ;; *) die 2 "unknown command '$CMD' (want up, down, config, http-stop, http-start, udp-stop or udp-start)" ;; esac
PREFIX=lvslab
NRS=2
SORRY=0
DIRECTORS=1
FLOODER=0
IPV6=0
SERVER=
while [[ $# -gt 0 ]]; do
  case $1 in
    --sorry-server)
      [[ $CMD == up ]] || die 2 "--sorry-server is only valid with 'up'"
      SORRY=1; shift ;;
    --flooder)
      [[ $CMD == up ]] || die 2 "--flooder is only valid with 'up'"
      FLOODER=1; shift ;;
    --ipv6)
      [[ $CMD == up ]] || die 2 "--ipv6 is only valid with 'up'"
      IPV6=1; shift ;;
    --server | --server=*)
      [[ $CMD == http-* || $CMD == udp-* ]] || die 2 "--server is only valid with 'http-stop', 'http-start', 'udp-stop' and 'udp-start'"
      if [[ $1 == --server ]]; then
        [[ $# -ge 2 ]] || die 2 "--server needs a value"
        SERVER=$2; shift 2
      else
        SERVER=${1#--server=}; shift
      fi
      ;;
    --directors | --directors=*)
      [[ $CMD == up ]] || die 2 "--directors is only valid with 'up'"
      if [[ $1 == --directors ]]; then
        [[ $# -ge 2 ]] || die 2 "--directors needs a value"
        DIRECTORS=$2; shift 2
      else
        DIRECTORS=${1#--directors=}; shift
      fi
      ;;
    --prefix) [[ $# -ge 2 ]] || die 2 "--prefix needs a value"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    --real-servers | --real-servers=*)
      # The number of real servers only means something when building a lab.
      [[ $CMD == up ]] || die 2 "--real-servers is only valid with 'up'"
      if [[ $1 == --real-servers ]]; then
        [[ $# -ge 2 ]] || die 2 "--real-servers needs a value"
        NRS=$2; shift 2
      else
        NRS=${1#--real-servers=}; shift
      fi
      ;;
    -h | --help) usage ;;
    *) die 2 "unknown argument '$1'" ;;
  esac
done
# The prefix becomes part of namespace names and of a path under /run, so it is kept short
# and plain; without a dash in it, "P-" can never be the start of another prefix's names.
[[ $PREFIX =~ ^[a-z][a-z0-9]{0,9}$ ]] \
  || die 2 "prefix '$PREFIX' must match ^[a-z][a-z0-9]{0,9}\$ (a lower-case letter, then up to 9 lower-case letters or digits)"
# The addresses are 10.77.0.11 .. 10.77.0.18 and the names rs1 .. rs8, hence the upper bound.
# A one-digit pattern also keeps a huge number from wrapping around in shell arithmetic.
if ! [[ $NRS =~ ^[1-9]$ ]] || (( NRS > MAX_RS )); then
  die 2 "--real-servers must be a whole number from 1 to $MAX_RS, not '$NRS'"
fi
[[ $DIRECTORS =~ ^[12]$ ]] || die 2 "--directors must be 1 or 2, not '$DIRECTORS'"

# The one server http-stop, http-start, udp-stop and udp-start act on: a name this script
# gave, nothing else.
if [[ $CMD == http-* || $CMD == udp-* ]]; then
  [[ $SERVER =~ ^(rs[1-8]|sorry)$ ]] || die 2 "--server must be rs1 .. rs$MAX_RS or sorry, not '$SERVER'"
fi
SORRY_ADDR=$SUBNET.30

STATE=$STATE_ROOT/$PREFIX
CONFIG=$STATE/lvs.toml
NS_SW=$PREFIX-sw
NS_CLIENT=$PREFIX-client
NS_DIR=$PREFIX-dir
# Where `up` pins the switch port's XDP_PASS program for the moment it takes to attach it.
PEER_PIN=/sys/fs/bpf/lvs-lab-$PREFIX-peer-pass

# `config` only reports a path, so it needs no privileges; it fails when there is no lab,
# so that `cfg=$(lab.sh config)` cannot silently hand a caller a path to nothing.
if [[ $CMD == config ]]; then
  [[ -f $CONFIG ]] || die 1 "no lab with prefix '$PREFIX' is up ($CONFIG does not exist)"
  printf '%s\n' "$CONFIG"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die 1 "must run as root (it creates network namespaces and interfaces)"
for tool in ip ethtool python3 curl setsid nsenter; do
  command -v "$tool" >/dev/null 2>&1 || die 1 "'$tool' is needed but not found in PATH"
done

# The names of the existing namespaces that belong to this lab, one per line.
lab_namespaces() {
  ip netns list 2>/dev/null | awk -v p="$PREFIX-" 'index($1, p) == 1 { print $1 }'
}

# True if PID is alive and is one of our HTTP servers. Checking the command line guards
# against killing an unrelated process that was given a recycled PID after a reboot or crash.
is_http_server() {
  local pid=$1 cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *http.server* ]]
}

# Sends SIGTERM to the given PIDs, waits up to 2 s for them to exit, then sends SIGKILL to
# whatever is left, so that teardown is bounded even if a process ignores SIGTERM.
# Whether PID is a UDP responder this script started (its command line carries a marker).
is_udp_server() {
  local pid=$1 cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *lab-udp-responder* ]]
}

stop_pids() {
  local pid tries alive
  [[ $# -gt 0 ]] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for ((tries = 0; tries < 20; tries++)); do
    alive=0
    for pid in "$@"; do
      if [[ -e /proc/$pid ]] && [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
        alive=1
      fi
    done
    (( alive )) || return 0
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
}

# Tears down the lab with this prefix. Every step is best effort, because a teardown that
# stops half-way would leave exactly the debris it exists to remove; the namespaces are
# deleted at the end whatever happened before. It is safe to run when nothing is up.
do_down() {
  local pidfile pid name ns rc=0
  local -a namespaces pids

  # 1. The HTTP servers and UDP responders we recorded.
  if [[ -d $STATE ]]; then
    for pidfile in "$STATE"/http-*.pid; do
      [[ -e $pidfile ]] || continue
      pid=$(<"$pidfile") || true
      if is_http_server "$pid"; then
        name=${pidfile##*/http-}
        say "stopping HTTP server ${name%.pid} (pid $pid)"
        stop_pids "$pid"
      fi
      rm -f "$pidfile" || true
    done
    for pidfile in "$STATE"/udp-*.pid; do
      [[ -e $pidfile ]] || continue
      pid=$(<"$pidfile") || true
      if is_udp_server "$pid"; then
        name=${pidfile##*/udp-}
        say "stopping UDP responder ${name%.pid} (pid $pid)"
        stop_pids "$pid"
      fi
      rm -f "$pidfile" || true
    done
  fi

  mapfile -t namespaces < <(lab_namespaces)

  # 2. Undo the real-server provisioning. The namespaces are about to go away, which takes
  # the VIP and the sysctls with them, but running `stop` also clears realserver.sh's own
  # state and keeps this script honest about using it symmetrically.
  for ns in "${namespaces[@]}"; do
    [[ $ns =~ ^$PREFIX-(rs[0-9]+|sorry)$ ]] || continue
    say "unprovisioning real server $ns"
    LVS_STATE_DIR=$STATE/realserver ip netns exec "$ns" "$REALSERVER" stop "$VIP" --dev eth0 \
      >/dev/null 2>&1 || warn "realserver.sh stop failed in $ns (ignored; the namespace is deleted anyway)"
    # A lab built with --ipv6 has the IPv6 VIP on lo too.
    if ip -n "$ns" -6 addr show dev lo 2>/dev/null | grep -q " $VIP6/"; then
      LVS_STATE_DIR=$STATE/realserver ip netns exec "$ns" "$REALSERVER" stop "$VIP6" --dev eth0 \
        >/dev/null 2>&1 || warn "realserver.sh stop $VIP6 failed in $ns (ignored; the namespace is deleted anyway)"
    fi
  done

  # 3. Anything else still running inside a lab namespace (the lvs daemon, a stray curl, an
  # HTTP server whose pid file was lost). Such a process would keep its namespace, and the
  # interfaces in it, alive after `ip netns del`, so it is stopped rather than leaked.
  for ns in "${namespaces[@]}"; do
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null || true)
    [[ ${#pids[@]} -gt 0 ]] || continue
    say "stopping processes still running in $ns: ${pids[*]}"
    stop_pids "${pids[@]}"
  done

  # 4. The namespaces. Deleting a namespace destroys its veth ends, and with them the peers.
  for ns in "${namespaces[@]}"; do
    say "deleting namespace $ns"
    ip netns del "$ns" 2>/dev/null || { warn "could not delete namespace $ns"; rc=1; }
  done

  # 5. The pin of the switch port's XDP_PASS program, in case an `up` stopped between pinning
  # and attaching it. The attached program itself went with the switch port's namespace.
  rm -f "$PEER_PIN" 2>/dev/null || true

  # 6. The state directory. It is only under our own prefix, so removing it wholesale is safe.
  if [[ -d $STATE ]]; then
    say "removing $STATE"
    rm -rf "$STATE" || { warn "could not remove $STATE"; rc=1; }
  fi
  rmdir "$STATE_ROOT" 2>/dev/null || true

  if (( rc == 0 )); then
    say "lab '$PREFIX' is down"
  else
    warn "teardown of lab '$PREFIX' was incomplete"
  fi
  return "$rc"
}

# Turns off tx checksum offload on one veth end. A veth normally hands the peer packets with
# a partial checksum for the receiver to complete; once XDP rewrites and forwards such a frame
# the real server sees a bad checksum and drops it (see the toolchain notes), so in the lab
# every sender fills in checksums itself, as a real NIC would in hardware.
no_tx_csum() {
  ip netns exec "$1" ethtool -K "$2" tx off >/dev/null
}

# Attaches a no-op XDP program (XDP_PASS) in native mode to switch port PORT. The director runs
# native XDP, and a veth delivers the frames it sends back out with XDP_TX only if the veth's
# peer has an XDP program attached too (see the toolchain notes). The program is two raw
# instructions loaded with bpf(2) from python3, so the lab needs no BPF compiler; it is pinned
# only long enough for `ip` to attach it through netlink, which keeps it attached until the
# port is deleted with the switch namespace. nsenter, unlike `ip -n`, keeps the host's bpffs.
# The pin needs a bpffs at /sys/fs/bpf. systemd mounts one at boot, but a minimal host or a
# container may not have it; mount it as systemd would (the daemon does the same for its pins).
ensure_bpffs() {
  [[ $(stat -f -c %T /sys/fs/bpf 2>/dev/null) == bpf_fs ]] && return 0
  say "mounting bpffs at /sys/fs/bpf (it was not mounted)"
  mkdir -p /sys/fs/bpf
  mount -t bpf -o mode=0700 bpf /sys/fs/bpf || die 1 "could not mount bpffs at /sys/fs/bpf"
}

attach_peer_pass() {
  local port=$1
  ensure_bpffs
  say "attaching a no-op XDP program (XDP_PASS, native) to switch port $port"
  rm -f "$PEER_PIN"
  "$PYTHON" - "$PEER_PIN" <<'EOF' || die 1 "could not load the no-op XDP program for switch port $port"
import ctypes, os, platform, struct, sys

# bpf(2) has no libc wrapper, so it is called through syscall(2) by number.
NR_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
if NR_BPF is None:
    sys.exit(f"no bpf(2) syscall number known for {platform.machine()}")
BPF_PROG_LOAD, BPF_OBJ_PIN, BPF_PROG_TYPE_XDP, XDP_PASS = 5, 6, 6, 2
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = libc.syscall(ctypes.c_long(NR_BPF), ctypes.c_long(cmd), buf, ctypes.c_uint(len(attr)))
    if fd < 0:
        sys.exit(f"bpf(2) command {cmd}: {os.strerror(ctypes.get_errno())}")
    return fd

# r0 = XDP_PASS; exit. Each `struct bpf_insn` is code, registers, offset, immediate.
insns = ctypes.create_string_buffer(struct.pack("<BBhiBBhi", 0xB7, 0, 0, XDP_PASS, 0x95, 0, 0, 0), 16)
license = ctypes.create_string_buffer(b"GPL")
# The start of `union bpf_attr` for BPF_PROG_LOAD, up to prog_name; the kernel zero-fills the rest.
prog = bpf(BPF_PROG_LOAD, struct.pack("<IIQQIIQII16s", BPF_PROG_TYPE_XDP, 2, ctypes.addressof(insns),
                                      ctypes.addressof(license), 0, 0, 0, 0, 0, b"lab_peer_pass"))
path = ctypes.create_string_buffer(sys.argv[1].encode())
bpf(BPF_OBJ_PIN, struct.pack("<QII", ctypes.addressof(path), prog, 0))
EOF
  if ! nsenter --net="/run/netns/$NS_SW" ip link set dev "$port" xdpdrv pinned "$PEER_PIN"; then
    rm -f "$PEER_PIN"
    die 1 "could not attach the no-op XDP program to switch port $port"
  fi
  rm -f "$PEER_PIN"
}

# Creates namespace P-NAME, links it to the bridge with a veth pair (eth0 inside the host,
# NAME on the switch) and gives eth0 ADDR/24.
add_host() {
  local name=$1 addr=$2 ns=$PREFIX-$1
  say "creating host $ns ($addr) on switch port $name"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # Creating the pair inside the switch namespace with its peer placed straight into the host
  # namespace means neither end ever exists in the caller's namespace, where "client" or
  # "eth0" could clash with a real interface or with another lab.
  ip -n "$NS_SW" link add "$name" type veth peer name eth0 netns "$ns"
  ip -n "$NS_SW" link set "$name" master br0
  no_tx_csum "$NS_SW" "$name"
  no_tx_csum "$ns" eth0
  ip -n "$ns" addr add "$addr/24" dev eth0
  if (( IPV6 )); then
    # nodad: the address is usable at once, instead of after a second of duplicate address
    # detection, and the lab knows no other host has it.
    ip -n "$ns" addr add "$(ipv6_of "$addr")/64" dev eth0 nodad
  fi
  ip -n "$NS_SW" link set "$name" up
  ip -n "$ns" link set eth0 up
}

# The IPv6 address of a host with IPv4 address ADDR (--ipv6): SUBNET6::LAST, with LAST the
# IPv4 address's last number written as is (10.77.0.11 is fd77::11).
ipv6_of() {
  printf '%s:%s\n' "$SUBNET6" "${1##*.}"
}

# Starts the HTTP server of real server rsI and waits until it answers with its name.
start_http() {
  start_http_host "rs$1" "$SUBNET.$((10 + $1))"
}

# The address of a server by name: rsI or sorry.
server_address() {
  if [[ $1 == sorry ]]; then printf '%s\n' "$SORRY_ADDR"; else printf '%s\n' "$SUBNET.$((10 + ${1#rs}))"; fi
}

# Starts the HTTP server of host NAME (namespace P-NAME) on ADDR, and waits until it answers
# with its name.
start_http_host() {
  local name=$1 addr=$2 ns=$PREFIX-$1 dir pid tries body=''
  dir=$STATE/www/$name
  mkdir -p "$dir"
  printf '%s\n' "$name" >"$dir/index.html"
  say "starting HTTP server $name on $addr:$PORT (also answers on the VIP)"
  # setsid detaches the server from this script's session, so that it outlives the script
  # and is not hit by a terminal's hangup. Because a background job of a script is not a
  # process-group leader, setsid does not fork, and $! is the server's own PID.
  # With --ipv6 the server binds :: (both families: Python's http.server turns
  # IPV6_V6ONLY off), so that it answers on the IPv6 VIP as well as the IPv4 one.
  local bind=0.0.0.0
  if (( IPV6 )); then bind=::; fi
  ip netns exec "$ns" setsid "$PYTHON" -m http.server "$PORT" --bind "$bind" --directory "$dir" \
    </dev/null >"$STATE/http-$name.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$STATE/http-$name.pid"
  # Poll for up to 5 s. --noproxy keeps a proxy set in the environment out of the way.
  for ((tries = 0; tries < 50; tries++)); do
    body=$(ip netns exec "$ns" curl -s --noproxy '*' --max-time 1 "http://$addr:$PORT/" 2>/dev/null) || true
    if [[ $body == "$name" ]] && (( IPV6 )); then
      body=$(ip netns exec "$ns" curl -s --noproxy '*' --max-time 1 "http://[$(ipv6_of "$addr")]:$PORT/" 2>/dev/null) || true
    fi
    [[ $body == "$name" ]] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      sed 's/^/  /' "$STATE/http-$name.log" >&2 || true
      die 1 "HTTP server $name exited at start-up (log above)"
    fi
    sleep 0.1
  done
  sed 's/^/  /' "$STATE/http-$name.log" >&2 || true
  die 1 "HTTP server $name did not answer on $addr:$PORT within 5 s (log above)"
}

# The UDP responder: every datagram to port $PORT is answered with the host's name. The
# marker argument lets is_udp_server recognise it.
UDP_RESPONDER='import socket, sys
name = (sys.argv[2] + "\n").encode()
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[3])))
while True:
    _, peer = s.recvfrom(2048)
    s.sendto(name, peer)'

# Asks ADDR:PORT once over UDP and prints the answer (nothing after 0.2 s, or when refused).
UDP_ASK='import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
s.sendto(b"?", (sys.argv[1], int(sys.argv[2])))
try:
    print(s.recv(2048).decode().strip())
except OSError:
    pass'

# Starts the UDP responder of host NAME (namespace P-NAME) and waits until it answers on
# ADDR with its name.
start_udp_host() {
  local name=$1 addr=$2 ns=$PREFIX-$1 pid tries body=''
  say "starting UDP responder $name on $addr:$PORT/udp (also answers on the VIP)"
  ip netns exec "$ns" setsid "$PYTHON" -c "$UDP_RESPONDER" lab-udp-responder "$name" "$PORT" \
    </dev/null >"$STATE/udp-$name.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$STATE/udp-$name.pid"
  # Poll for up to about 5 s.
  for ((tries = 0; tries < 20; tries++)); do
    body=$(ip netns exec "$ns" "$PYTHON" -c "$UDP_ASK" "$addr" "$PORT" 2>/dev/null) || true
    [[ $body == "$name" ]] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      sed 's/^/  /' "$STATE/udp-$name.log" >&2 || true
      die 1 "UDP responder $name exited at start-up (log above)"
    fi
    sleep 0.05
  done
  sed 's/^/  /' "$STATE/udp-$name.log" >&2 || true
  die 1 "UDP responder $name did not answer on $addr:$PORT within 5 s (log above)"
}

write_config() {
  local i
  {
    cat <<EOF
# Generated by scripts/lab.sh for the lab '$PREFIX'. Run the director with:
#   nsenter --net=/run/netns/$NS_DIR lvs director --config $CONFIG
# (not 'ip netns exec', whose private /sys would take the pinned data plane with the process).

[director]
interface = "eth0"
# Native (driver) mode, as on a real director. Its XDP_TX frames reach the switch because
# lab.sh gave the switch port a no-op XDP program; "native" rather than "auto" makes a lab
# that cannot run native XDP fail loudly instead of quietly falling back to generic mode.
xdp_mode = "native"
control_socket = "$STATE/lvs.sock"

[[virtual_server]]
address = "$VIP"
port = $PORT
protocol = "TCP"
lb_algo = "wlc"
lb_kind = "DR"
EOF
    for ((i = 1; i <= NRS; i++)); do
      printf '\n[[virtual_server.real_server]]\naddress = "%s"\nweight = 1\n' "$SUBNET.$((10 + i))"
    done
    if (( IPV6 )); then
      for protocol in TCP UDP; do
        printf '\n[[virtual_server]]\naddress = "%s"\nport = %s\nprotocol = "%s"\nlb_algo = "wlc"\nlb_kind = "DR"\n' \
          "$VIP6" "$PORT" "$protocol"
        for ((i = 1; i <= NRS; i++)); do
          printf '\n[[virtual_server.real_server]]\naddress = "%s"\nweight = 1\n' "$(ipv6_of "$SUBNET.$((10 + i))")"
        done
      done
    fi
  } >"$CONFIG.tmp"
  mv "$CONFIG.tmp" "$CONFIG"
  say "wrote $CONFIG"
}

do_up() {
  local i ns

  # A lab with this prefix, complete or not, is replaced rather than built on top of.
  if [[ -d $STATE ]] || [[ -n $(lab_namespaces) ]]; then
    say "a lab with prefix '$PREFIX' exists; tearing it down first"
    do_down || die 1 "could not tear down the existing lab '$PREFIX'"
  fi

  # pyenv and similar put a shim script first in PATH that picks the interpreter from the
  # current directory; resolving the real interpreter once makes the servers independent of it.
  PYTHON=$(python3 -c 'import sys; print(sys.executable)') || die 1 "python3 does not run"

  # From here on a failure tears the half-built lab down, so that a failed `up` leaves nothing.
  trap 'rc=$?; trap - EXIT; if (( rc != 0 )); then warn "up failed; tearing down the partial lab"; do_down >&2 || true; fi; exit "$rc"' EXIT

  mkdir -p "$STATE" "$STATE/realserver"
  say "state directory $STATE"

  say "creating switch $NS_SW with bridge br0"
  ip netns add "$NS_SW"
  ip -n "$NS_SW" link set lo up
  # No STP and no forwarding delay: a port must forward as soon as it is up, or the first
  # seconds of the lab would silently drop frames.
  ip -n "$NS_SW" link add br0 type bridge stp_state 0 forward_delay 0
  ip -n "$NS_SW" link set br0 up

  add_host client "$CLIENT_ADDR"
  add_host dir "$DIR_ADDR"
  attach_peer_pass dir
  if (( DIRECTORS == 2 )); then
    add_host dir2 "$DIR2_ADDR"
    attach_peer_pass dir2
    # The switch floods frames for a MAC it forgot (the master's, once its cable is pulled)
    # to every port, the standby director's too, and a veth hands them to XDP as a NIC in
    # promiscuous mode would: the program passes them (`pass_other_host`), so the backup
    # forwards only what VRRP has sent its way.
  fi
  if (( FLOODER )); then
    add_host flood "$FLOOD_ADDR"
    attach_peer_pass flood
  fi
  for ((i = 1; i <= NRS; i++)); do
    add_host "rs$i" "$SUBNET.$((10 + i))"
  done

  for ((i = 1; i <= NRS; i++)); do
    ns=$PREFIX-rs$i
    say "provisioning real server $ns with VIP $VIP"
    # The realserver state goes under the lab's state dir, so it is removed with the lab and
    # never mixes with a real server provisioned on this machine outside the lab.
    LVS_STATE_DIR=$STATE/realserver ip netns exec "$ns" "$REALSERVER" start "$VIP" --dev eth0 >/dev/null
    if (( IPV6 )); then
      say "provisioning real server $ns with VIP $VIP6"
      LVS_STATE_DIR=$STATE/realserver ip netns exec "$ns" "$REALSERVER" start "$VIP6" --dev eth0 >/dev/null
    fi
  done

  for ((i = 1; i <= NRS; i++)); do
    start_http "$i"
    start_udp_host "rs$i" "$SUBNET.$((10 + i))"
  done

  if (( SORRY )); then
    add_host sorry "$SORRY_ADDR"
    say "provisioning sorry server $PREFIX-sorry with VIP $VIP"
    LVS_STATE_DIR=$STATE/realserver ip netns exec "$PREFIX-sorry" "$REALSERVER" start "$VIP" --dev eth0 >/dev/null
    start_http_host sorry "$SORRY_ADDR"
    start_udp_host sorry "$SORRY_ADDR"
  fi

  write_config
  trap - EXIT

  local directors=$DIR_ADDR
  if (( DIRECTORS == 2 )); then directors="$DIR_ADDR and $DIR2_ADDR ($PREFIX-dir2)"; fi
  say "lab '$PREFIX' is up: client $CLIENT_ADDR, director $directors, real servers $SUBNET.11..$SUBNET.$((10 + NRS)), VIP $VIP:$PORT/TCP"
  if (( IPV6 )); then
    say "IPv6: client $(ipv6_of "$CLIENT_ADDR"), director $(ipv6_of "$DIR_ADDR"), real servers $(ipv6_of "$SUBNET.11").., VIP [$VIP6]:$PORT TCP and UDP"
  fi
  say "config: $CONFIG"
  say "start the director: nsenter --net=/run/netns/$NS_DIR lvs director --config $CONFIG"
  say "then try the VIP:   ip netns exec $NS_CLIENT curl http://$VIP/"
  say "tear down:          $0 down --prefix $PREFIX"
}

# Stops what answers on one server of a running lab, its namespace staying up: KIND is http
# (the HTTP server) or udp (the UDP responder), WHAT its name in messages.
stop_responder() {
  local kind=$1 what=$2 pidfile=$STATE/$1-$SERVER.pid pid
  [[ -f $pidfile ]] || die 1 "no $what $SERVER is running in lab '$PREFIX'"
  pid=$(<"$pidfile")
  if "is_${kind}_server" "$pid"; then
    say "stopping $what $SERVER (pid $pid)"
    stop_pids "$pid"
  fi
  rm -f "$pidfile"
}

# Starts what answers on one server of a running lab again (KIND and WHAT as above).
start_responder() {
  local kind=$1 what=$2 pidfile=$STATE/$1-$SERVER.pid
  [[ -d $STATE ]] || die 1 "no lab with prefix '$PREFIX' is up"
  ip netns list | awk '{ print $1 }' | grep -qx "$PREFIX-$SERVER" || die 1 "lab '$PREFIX' has no host $SERVER"
  if [[ -f $pidfile ]] && "is_${kind}_server" "$(<"$pidfile")"; then
    die 1 "$what $SERVER is already running"
  fi
  PYTHON=$(python3 -c 'import sys; print(sys.executable)') || die 1 "python3 does not run"
  "start_${kind}_host" "$SERVER" "$(server_address "$SERVER")"
}

do_http-stop() { stop_responder http "HTTP server"; }
do_http-start() { start_responder http "HTTP server"; }
do_udp-stop() { stop_responder udp "UDP responder"; }
do_udp-start() { start_responder udp "UDP responder"; }

"do_$CMD"
