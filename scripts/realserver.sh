#!/usr/bin/env bash
# Provisions this host (or the current network namespace) as an LVS direct-routing real server.
#
#   realserver.sh start  VIP [VIP...] [--dev IFACE]
#   realserver.sh stop   VIP [VIP...] [--dev IFACE]
#   realserver.sh status VIP [VIP...] [--dev IFACE]
#
# In LVS-DR the director forwards packets still addressed to the VIP, so every real server
# must own the VIP (on lo, as a /32) yet never answer ARP for it, or clients would bypass
# the director. That takes arp_ignore=1 and arp_announce=2 on "all" and on the facing
# interface(s): --dev IFACE, or every non-loopback interface when --dev is not given.
#
# `start` records what it changes under $LVS_STATE_DIR (default /run/lvs-realserver) so that
# `stop` can undo exactly that and nothing more. Both are safe to run again.
set -euo pipefail

STATE_ROOT=${LVS_STATE_DIR:-/run/lvs-realserver}
CONF=/proc/sys/net/ipv4/conf
# The settings that keep the real server silent about the VIP, with the values we want.
declare -A WANT=([arp_ignore]=1 [arp_announce]=2)

say() { printf 'realserver: %s\n' "$*"; }
die() { printf 'realserver: error: %s\n' "$2" >&2; exit "$1"; }
usage() {
  printf 'usage: %s start|stop|status VIP [VIP...] [--dev IFACE]\n' "${0##*/}" >&2
  exit 2
}

# A VIP must be a plain dotted quad. Leading zeros are refused because some parsers read
# them as octal, and the address we add must be exactly the one the operator meant.
valid_vip() {
  local IFS=. octet
  [[ $1 =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || return 1
  for octet in $1; do
    [[ $octet == 0 || $octet != 0* ]] || return 1
    (( octet <= 255 )) || return 1
  done
}

vip_on_lo() { ip -4 -o addr show dev lo | grep -qF " inet $1/32 "; }

# The interfaces whose settings matter: the one named by --dev, or else every interface
# that has IPv4 settings in this namespace, except lo and the "all"/"default" pseudo-entries.
devices() {
  if [[ -n $DEV ]]; then printf '%s\n' "$DEV"; return; fi
  local path name
  for path in "$CONF"/*; do
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
    *) valid_vip "$1" || die 2 "'$1' is not a dotted IPv4 address"; VIPS+=("$1"); shift ;;
  esac
done
[[ ${#VIPS[@]} -ge 1 ]] || die 2 "at least one VIP is required"
[[ $(id -u) -eq 0 ]] || die 1 "must run as root (it changes addresses and /proc/sys settings)"
if [[ -n $DEV ]]; then
  # The /proc/sys check also rejects names such as "all" or "../x" that are not interfaces.
  if [[ $DEV == */* ]] || ! ip link show dev "$DEV" >/dev/null 2>&1 || [[ ! -d $CONF/$DEV ]]; then
    die 2 "no such interface '$DEV' in this network namespace"
  fi
fi

# Network namespaces share the filesystem, so the state is keyed by the namespace's inode;
# otherwise a `stop` in one namespace would undo what `start` did in another.
NS_ID=$(stat -L -c %i /proc/self/ns/net)
STATE=$STATE_ROOT/netns-$NS_ID
mapfile -t IFACES < <(devices)

do_start() {
  local vip ifc key cur
  mkdir -p "$STATE/vip" "$STATE/sysctl"
  # The ARP settings go first, so that the VIP is never on lo while the host might still
  # answer ARP for it and steal the director's traffic.
  for ifc in all "${IFACES[@]}"; do
    for key in arp_ignore arp_announce; do
      cur=$(<"$CONF/$ifc/$key")
      if [[ $cur == "${WANT[$key]}" ]]; then
        say "net.ipv4.conf.$ifc.$key is already ${WANT[$key]}"
        continue
      fi
      # Only the first change is recorded, so the original survives a repeated start.
      mkdir -p "$STATE/sysctl/$ifc"
      if [[ ! -e $STATE/sysctl/$ifc/$key ]]; then
        printf '%s\n' "$cur" >"$STATE/sysctl/$ifc/$key"
      fi
      printf '%s\n' "${WANT[$key]}" >"$CONF/$ifc/$key"
      say "set net.ipv4.conf.$ifc.$key=${WANT[$key]} (was $cur)"
    done
  done
  for vip in "${VIPS[@]}"; do
    if vip_on_lo "$vip"; then
      say "$vip/32 is already on lo"
      continue
    fi
    # Record before adding: a stale record is harmless, an unrecorded address would leak.
    : >"$STATE/vip/$vip"
    ip addr add "$vip/32" dev lo
    say "added $vip/32 to lo"
  done
}

do_stop() {
  local vip file ifc key val left
  if [[ ! -d $STATE ]]; then
    say "nothing to undo in this network namespace"
    return 0
  fi
  for vip in "${VIPS[@]}"; do
    if [[ ! -e $STATE/vip/$vip ]]; then
      say "$vip was not added by start; leaving it alone"
      continue
    fi
    if vip_on_lo "$vip"; then
      ip addr del "$vip/32" dev lo
      say "removed $vip/32 from lo"
    else
      say "$vip/32 is already gone from lo"
    fi
    rm -f "$STATE/vip/$vip"
  done
  # The ARP settings protect every VIP on lo, so they stay while start-added VIPs remain.
  left=$(find "$STATE/vip" -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null || true)
  if [[ -n $left ]]; then
    say "keeping ARP settings: VIPs still added by start: ${left% }"
    return 0
  fi
  for file in "$STATE"/sysctl/*/*; do
    [[ -e $file ]] || continue
    key=${file##*/}; ifc=${file%/*}; ifc=${ifc##*/}; val=$(<"$file")
    if [[ -e $CONF/$ifc/$key ]]; then
      printf '%s\n' "$val" >"$CONF/$ifc/$key"
      say "restored net.ipv4.conf.$ifc.$key=$val"
    else
      say "net.ipv4.conf.$ifc.$key no longer exists; nothing to restore"
    fi
    rm -f "$file"
  done
  rm -rf "$STATE"
  say "removed state $STATE"
}

do_status() {
  local vip ifc key cur bad=0
  for vip in "${VIPS[@]}"; do
    if vip_on_lo "$vip"; then say "$vip/32 on lo: OK"; else say "$vip/32 on lo: MISSING"; bad=1; fi
  done
  for ifc in all "${IFACES[@]}"; do
    for key in arp_ignore arp_announce; do
      cur=$(<"$CONF/$ifc/$key")
      if [[ $cur == "${WANT[$key]}" ]]; then
        say "net.ipv4.conf.$ifc.$key=$cur OK"
      else
        say "net.ipv4.conf.$ifc.$key=$cur WRONG (want ${WANT[$key]})"
        bad=1
      fi
    done
  done
  return "$bad"
}

"do_$CMD"
