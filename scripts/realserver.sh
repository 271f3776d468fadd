#!/usr/bin/env bash
# Provisions this host (or the current network namespace) as an LVS direct-routing real server.
# For hosts that will not run the lvs binary; `lvs realserver up|down|status` does the same.
#
#   realserver.sh start  VIP [VIP...] [--dev IFACE]
#   realserver.sh stop   [VIP...]     [--dev IFACE]
#   realserver.sh status [VIP...]     [--dev IFACE]
#
# In LVS-DR the director forwards packets still addressed to the VIP, so every real server
# must own the VIP (on lo, as a /32 or /128) yet never answer ARP for it, or clients would
# bypass the director. For IPv4 VIPs that takes arp_ignore=1 and arp_announce=2 on "all" and
# on the facing interface(s): --dev IFACE, or every non-loopback interface when --dev is not
# given. arp_notify=1 on the same makes the kernel announce this host's own address by
# gratuitous ARP when its MAC changes, so the director follows at once. IPv6 needs no such
# settings: Linux answers a neighbour solicitation only for an address on the interface it
# arrived on (ndisc_recv_ns looks the target up with ipv6_get_ifaddr(..., dev, strict=1)), so
# a VIP on lo is never advertised on eth0, as long as proxy_ndp stays off (its default;
# status reports a proxy entry for a VIP).
# ndisc_notify=1, set per interface, is the IPv6 counterpart of arp_notify. rp_filter is left alone: strict mode
# suits DR while replies to clients leave through the interface the requests came in on.
#
# `start` records what it changes under $LVS_STATE_DIR (default /run/lvs-realserver) so that
# `stop` can undo exactly that and nothing more: it removes only VIPs start added, and puts a
# setting back only while it still holds the value start wrote. `stop` without VIPs undoes
# every VIP start added. Both are safe to run again.
set -euo pipefail

STATE_ROOT=${LVS_STATE_DIR:-/run/lvs-realserver}
CONF4=/proc/sys/net/ipv4/conf
CONF6=/proc/sys/net/ipv6/conf
# The settings and the values we want, per family.
declare -A WANT4=([arp_ignore]=1 [arp_announce]=2 [arp_notify]=1)
declare -A WANT6=([ndisc_notify]=1)
KEYS4=(arp_ignore arp_announce arp_notify)
KEYS6=(ndisc_notify)

say() { printf 'realserver: %s\n' "$*"; }
die() { printf 'realserver: error: %s\n' "$2" >&2; exit "$1"; }
usage() {
  printf 'usage: %s start|stop|status VIP [VIP...] [--dev IFACE]\n' "${0##*/}" >&2
  exit 2
}

# An IPv4 VIP must be a plain dotted quad. Leading zeros are refused because some parsers
# read them as octal, and the address we add must be exactly the one the operator meant.
valid_vip4() {
  local IFS=. octet
  [[ $1 =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || return 1
  for octet in $1; do
    [[ $octet == 0 || $octet != 0* ]] || return 1
    (( octet <= 255 )) || return 1
  done
  # Not 0.0.0.0, loopback, multicast or broadcast: none of them can be a VIP.
  [[ $1 != 0.0.0.0 && $1 != 127.* && $1 != 255.255.255.255 ]] || return 1
  octet=${1%%.*}
  (( octet < 224 || octet > 239 ))
}

# An IPv6 VIP: hex groups of at most four digits, at most one "::", eight groups without it
# (fewer with it), and not the unspecified, loopback, link-local or multicast addresses.
valid_vip6() {
  local v=${1,,} groups
  [[ $v =~ ^[0-9a-f:]{2,39}$ && $v == *:* && $v != *:::* ]] || return 1
  [[ $v != *::*::* ]] || return 1
  [[ ! $v =~ [0-9a-f]{5} ]] || return 1
  groups=$(tr -cd ':' <<<"$v")
  if [[ $v == *::* ]]; then (( ${#groups} <= 7 )) || return 1
  else (( ${#groups} == 7 )) || return 1; [[ $v != :* && $v != *: ]] || return 1; fi
  [[ $v != :: && $v != ::1 && $v != fe[89ab]?:* && $v != ff* ]]
}

is_v6() { [[ $1 == *:* ]]; }

# A /proc/sys path as sysctl names it: dots between components, a dot inside one (as in the
# interface eth0.100) written as a slash.
dotted() {
  local p=${1#/proc/sys/}
  p=${p//./$'\x01'}; p=${p//\//.}; p=${p//$'\x01'/\/}
  printf '%s' "$p"
}
host_prefix() { if is_v6 "$1"; then echo 128; else echo 32; fi; }

# True if VIP is on lo as a host address. `to` lets ip parse the address itself, so any
# spelling of an IPv6 address matches.
vip_on_lo() {
  local family=-4 prefix
  is_v6 "$1" && family=-6
  prefix=$(host_prefix "$1")
  ip "$family" -o addr show dev lo to "$1/$prefix" | grep -q "/$prefix "
}

# The interfaces (other than lo) that also carry VIP; on them the host answers ARP/NDP for it.
vip_elsewhere() {
  local family=-4
  is_v6 "$1" && family=-6
  ip "$family" -o addr show to "$1/$(host_prefix "$1")" | awk '$2 != "lo" { print $2 }' | sort -u
}

# The interfaces with a proxy neighbour entry for an IPv6 VIP: with proxy_ndp (and
# forwarding) on, the host advertises the VIP there as if it were on that interface.
vip_proxied() {
  is_v6 "$1" || return 0
  ip -6 neigh show proxy to "$1" | awk '{ for (i = 1; i < NF; i++) if ($i == "dev" && $(i + 1) != "lo") print $(i + 1) }' | sort -u
}

# The interfaces whose settings matter: the one named by --dev, or else every interface
# that has IPv4 settings in this namespace, except lo and the "all"/"default" pseudo-entries.
devices() {
  if [[ -n $DEV ]]; then printf '%s\n' "$DEV"; return; fi
  local path name
  for path in "$CONF4"/*; do
    name=${path##*/}
    case $name in all | default | lo) ;; *) printf '%s\n' "$name" ;; esac
  done
}

# --- argument parsing: everything is checked before anything is changed ---
[[ $# -ge 1 ]] || usage
CMD=$1; shift
case $CMD in start | stop | status) ;; -h | --help) usage ;; *) die 2 "unknown command '$CMD'" ;; esac
DEV=''
VIPS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --dev) [[ $# -ge 2 ]] || die 2 "--dev needs an interface name"; DEV=$2; shift 2 ;;
    --dev=*) DEV=${1#--dev=}; shift ;;
    -*) die 2 "unknown option '$1'" ;;
    *:*) valid_vip6 "$1" || die 2 "'$1' is not an IPv6 address that can be a VIP"; VIPS+=("${1,,}"); shift ;;
    *) valid_vip4 "$1" || die 2 "'$1' is not a dotted IPv4 address that can be a VIP"; VIPS+=("$1"); shift ;;
  esac
done
[[ $CMD != start || ${#VIPS[@]} -ge 1 ]] || die 2 "at least one VIP is required"
[[ $(id -u) -eq 0 ]] || die 1 "must run as root (it changes addresses and /proc/sys settings)"
if [[ -n $DEV ]]; then
  # The /proc/sys check also rejects names such as "all" or "../x" that are not interfaces.
  if [[ $DEV == */* || $DEV == lo ]] || ! ip link show dev "$DEV" >/dev/null 2>&1 || [[ ! -d $CONF4/$DEV ]]; then
    die 2 "no such interface '$DEV' in this network namespace (lo is where the VIPs go; --dev faces the director)"
  fi
fi

# Network namespaces share the filesystem, so the state is keyed by the namespace's inode;
# otherwise a `stop` in one namespace would undo what `start` did in another.
NS_ID=$(stat -L -c %i /proc/self/ns/net)
STATE=$STATE_ROOT/netns-$NS_ID
mkdir -p "$STATE_ROOT"
# One run at a time (two units starting at boot must not interleave): a lock on the state
# directory itself, the same one `lvs realserver` takes.
exec {LOCK_FD}<"$STATE_ROOT"
flock -w 10 "$LOCK_FD" || die 1 "another run holds the lock on $STATE_ROOT for more than 10 s"
# The lvs binary keeps its state in a file next to ours; one tool must undo what it did.
# Looking (status) is harmless either way.
if [[ -e $STATE_ROOT/netns-$NS_ID.json ]]; then
  [[ $CMD == status ]] \
    || die 1 "this namespace was provisioned by 'lvs realserver up' ($STATE_ROOT/netns-$NS_ID.json); use 'lvs realserver down' first"
  say "provisioned by 'lvs realserver up' (state in $STATE_ROOT/netns-$NS_ID.json)"
fi
mapfile -t IFACES < <(devices)

HAVE4=0; HAVE6=0
for vip in "${VIPS[@]}"; do if is_v6 "$vip"; then HAVE6=1; else HAVE4=1; fi; done

# Prints "CONF DIR KEY WANT" for every setting the VIPs need.
wanted() {
  local ifc key
  if (( HAVE4 )); then
    for ifc in all "${IFACES[@]}"; do
      for key in "${KEYS4[@]}"; do printf '%s %s %s %s\n' "$CONF4" sysctl "$ifc/$key" "${WANT4[$key]}"; done
    done
  fi
  if (( HAVE6 )); then
    for ifc in all "${IFACES[@]}"; do
      # An interface without IPv6 settings does not do IPv6, so it sends no NDP either.
      [[ -d $CONF6/$ifc ]] || continue
      for key in "${KEYS6[@]}"; do printf '%s %s %s %s\n' "$CONF6" sysctl6 "$ifc/$key" "${WANT6[$key]}"; done
    done
  fi
}

do_start() {
  local vip conf dir rel want cur other
  mkdir -p "$STATE/vip" "$STATE/sysctl" "$STATE/sysctl6"
  # The ARP settings go first, so that the VIP is never on lo while the host might still
  # answer ARP for it and steal the director's traffic.
  while read -r conf dir rel want; do
    [[ -e $conf/$rel ]] || die 1 "$(dotted "$conf/$rel") does not exist"
    cur=$(<"$conf/$rel")
    if [[ $cur == "$want" ]]; then
      say "$(dotted "$conf/$rel") is already $want"
      continue
    fi
    # Only the first change is recorded, so the original survives a repeated start.
    mkdir -p "$STATE/$dir/${rel%/*}"
    if [[ ! -e $STATE/$dir/$rel ]]; then
      printf '%s\n' "$cur" >"$STATE/$dir/$rel"
    fi
    printf '%s\n' "$want" >"$conf/$rel"
    say "set $(dotted "$conf/$rel")=$want (was $cur)"
  done < <(wanted)
  for vip in "${VIPS[@]}"; do
    while read -r other; do
      say "warning: $vip is also on $other: the host answers ARP/NDP for it there, which DR forbids; remove it from $other"
    done < <(vip_elsewhere "$vip")
    if vip_on_lo "$vip"; then
      say "$vip/$(host_prefix "$vip") is already on lo"
      continue
    fi
    # Record before adding: a stale record is harmless, an unrecorded address would leak.
    : >"$STATE/vip/$vip"
    # An IPv6 VIP goes on without duplicate address detection (nodad), as lvs realserver
    # does: every real server holds the same VIP, and lo never runs DAD anyway.
    if is_v6 "$vip"; then
      ip addr add "$vip/128" dev lo nodad
    else
      ip addr add "$vip/32" dev lo
    fi
    say "added $vip/$(host_prefix "$vip") to lo"
  done
}

# Puts back the settings recorded under $STATE/DIR (originals) for the tree CONF, but only
# those still holding the value start wrote.
restore_settings() {
  local dir=$1 conf=$2 file rel key val cur want
  local -n wants=$3
  for file in "$STATE/$dir"/*/*; do
    [[ -e $file ]] || continue
    key=${file##*/}; rel=${file#"$STATE/$dir/"}; val=$(<"$file"); want=${wants[$key]}
    if [[ ! -e $conf/$rel ]]; then
      say "$(dotted "$conf/$rel") no longer exists; nothing to restore"
    else
      cur=$(<"$conf/$rel")
      if [[ $cur == "$want" ]]; then
        printf '%s\n' "$val" >"$conf/$rel"
        say "restored $(dotted "$conf/$rel")=$val"
      elif [[ $cur == "$val" ]]; then
        say "$(dotted "$conf/$rel") is already back at $val"
      else
        say "$(dotted "$conf/$rel") was changed to $cur after start set $want; leaving it"
      fi
    fi
    rm -f "$file"
  done
}

do_stop() {
  local vip left
  if [[ ! -d $STATE ]]; then
    say "nothing to undo in this network namespace"
    return 0
  fi
  if [[ ${#VIPS[@]} -eq 0 ]]; then
    mapfile -t VIPS < <(find "$STATE/vip" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null || true)
  fi
  for vip in "${VIPS[@]}"; do
    if [[ ! -e $STATE/vip/$vip ]]; then
      say "$vip was not added by start; leaving it alone"
      continue
    fi
    if vip_on_lo "$vip"; then
      ip addr del "$vip/$(host_prefix "$vip")" dev lo
      say "removed $vip/$(host_prefix "$vip") from lo"
    else
      say "$vip/$(host_prefix "$vip") is already gone from lo"
    fi
    rm -f "$STATE/vip/$vip"
  done
  # The ARP settings protect every VIP on lo, so they stay while start-added VIPs remain.
  left=$(find "$STATE/vip" -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null || true)
  if [[ -n $left ]]; then
    say "keeping ARP settings: VIPs still added by start: ${left% }"
    return 0
  fi
  restore_settings sysctl6 "$CONF6" WANT6
  restore_settings sysctl "$CONF4" WANT4
  rm -rf "$STATE"
  say "removed state $STATE"
}

do_status() {
  local vip conf dir rel want cur other ifc all dev mode bad=0
  if [[ ${#VIPS[@]} -eq 0 ]]; then
    mapfile -t VIPS < <(find "$STATE/vip" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null || true)
    [[ ${#VIPS[@]} -ge 1 ]] || die 2 "no VIP given, and none was added by start here"
    for vip in "${VIPS[@]}"; do if is_v6 "$vip"; then HAVE6=1; else HAVE4=1; fi; done
  fi
  for vip in "${VIPS[@]}"; do
    if vip_on_lo "$vip"; then
      say "$vip/$(host_prefix "$vip") on lo: OK"
    else
      say "$vip/$(host_prefix "$vip") on lo: MISSING"; bad=1
    fi
    while read -r other; do
      say "$vip on $other: WRONG (the host answers ARP/NDP for it there; DR needs it on lo only)"; bad=1
    done < <(vip_elsewhere "$vip")
    while read -r other; do
      say "$vip proxied on $other: WRONG (with proxy_ndp the host advertises it there; remove it: ip -6 neigh del proxy $vip dev $other)"; bad=1
    done < <(vip_proxied "$vip")
  done
  while read -r conf dir rel want; do
    cur=$(cat "$conf/$rel" 2>/dev/null || echo missing)
    if [[ $cur == "$want" ]]; then
      say "$(dotted "$conf/$rel")=$cur OK"
    else
      say "$(dotted "$conf/$rel")=$cur WRONG (want $want)"; bad=1
    fi
  done < <(wanted)
  if (( HAVE4 )); then
    all=$(<"$CONF4/all/rp_filter")
    for ifc in "${IFACES[@]}"; do
      dev=$(<"$CONF4/$ifc/rp_filter"); mode=$(( all > dev ? all : dev ))
      case $mode in
        0) say "rp_filter in effect on $ifc = 0 (off: fine for DR)" ;;
        1) say "rp_filter in effect on $ifc = 1 (strict: fine while replies to clients leave through $ifc)" ;;
        *) say "rp_filter in effect on $ifc = $mode (loose: fine for DR)" ;;
      esac
    done
  fi
  return "$bad"
}

"do_$CMD"
