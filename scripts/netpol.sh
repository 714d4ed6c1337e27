#!/usr/bin/env bash
# NetworkPolicy enforcement on the local cluster's real node, which the CNI bridge alone does not
# give: kube-router's firewall (--run-firewall only; no routing, no service proxy) as a host
# process, with iptables and ipset. Off unless asked for: `BLUEGREEN_NETWORK_POLICY=1
# scripts/cluster.sh up`, or `scripts/netpol.sh start` on a running cluster.
#
#   scripts/netpol.sh start    start it (idempotent) and wait until it has set up its chains
#   scripts/netpol.sh stop     stop it and remove its iptables chains, jumps and ipsets
#   scripts/netpol.sh status   exit 0 if it runs and its chains are in place, 1 if not
#
# kube-router v2.1.0 has published security flaws: it is a stand-in for this local test cluster
# only (the only enforcer that works on this kernel, which has no nft `queue` expression for
# kube-network-policies), never something to run on a shared cluster.
#
# What it changes on the host, all undone by `stop` (scripts/cluster.sh down and scripts/node.sh
# down call it): filter-table chains KUBE-ROUTER-{INPUT,FORWARD,OUTPUT}, KUBE-POD-FW-*,
# KUBE-NWPLCY-* and the jumps to them from INPUT/FORWARD/OUTPUT; ipsets (those not there before
# `start`, recorded in $STATE/ipsets-before). State, pid and log: <repo>/.state/netpol/.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE=$REPO/.state/netpol
KUBECONFIG_OUT=$REPO/.state/kubeconfig
PIDFILE=$STATE/kube-router.pid
# As scripts/node.sh sets them up.
NODE_NAME=bluegreen-node
SERVICE_CIDR=10.96.0.0/24
# The chains kube-router's firewall makes (pkg/controllers/netpol): its own three, one per pod, one
# per policy.
CHAINS='KUBE-ROUTER-(INPUT|FORWARD|OUTPUT)|KUBE-POD-FW-[A-Z0-9]+|KUBE-NWPLCY-[A-Z0-9]+'
PATH="$("$REPO/scripts/toolchain.sh" --print-path):$PATH"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

live_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) && alive "$pid" && echo "$pid"
}

# Its chains are in place and a first full sync is done (logged at --v 1): pods and policies that
# existed at start are enforced. (Not grep -q: quitting early could SIGPIPE iptables-save.)
chains_ready() {
  iptables-save -t filter 2>/dev/null | grep -E -- '^-A FORWARD .*-j KUBE-ROUTER-FORWARD' >/dev/null &&
    grep -F 'sync iptables took' "$STATE/kube-router.log" >/dev/null 2>&1
}

start() {
  command -v kube-router >/dev/null || die "kube-router not found; build it with: scripts/toolchain.sh kube-router"
  # scripts/node.sh up installs it with the node's other Debian packages.
  command -v ipset >/dev/null || die "ipset not found; scripts/node.sh up installs it (apt-get install ipset)"
  [[ -f $KUBECONFIG_OUT ]] || die "no local cluster ($KUBECONFIG_OUT); scripts/cluster.sh up starts it"
  if live_pid >/dev/null; then
    say "kube-router (NetworkPolicy enforcer) is already running"
    return 0
  fi
  mkdir -p "$STATE"
  [[ -f $STATE/ipsets-before ]] || ipset list -n | sort >"$STATE/ipsets-before"
  local t0=$SECONDS
  # --health-port 0: its health server would listen on every address. Metrics are off by default.
  setsid kube-router --kubeconfig "$KUBECONFIG_OUT" --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false \
    --service-cluster-ip-range "$SERVICE_CIDR" --health-port 0 --iptables-sync-period 1m --v 1 \
    >"$STATE/kube-router.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  until chains_ready; do
    live_pid >/dev/null || die "kube-router exited (log: $STATE/kube-router.log): $(tail -3 "$STATE/kube-router.log")"
    ((SECONDS - t0 < 60)) || die "timed out after 60 s waiting for kube-router's chains (log: $STATE/kube-router.log)"
    sleep 0.5
  done
  say "kube-router $(kube-router --version 2>&1 | head -1 | awk '{print $NF}') enforces NetworkPolicies on $NODE_NAME ($((SECONDS - t0)) s)"
}

stop() {
  local pid t0=$SECONDS
  if pid=$(live_pid); then
    kill "$pid" 2>/dev/null || true
    while alive "$pid" && ((SECONDS - t0 < 15)); do sleep 0.3; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  remove_chains
  remove_ipsets
  rm -rf "$STATE"
}

# The jumps from the built-in chains, then the chains (flushed first: they jump to each other).
remove_chains() {
  local rule chain
  iptables-save -t filter 2>/dev/null | grep -E "^-A (INPUT|FORWARD|OUTPUT) .*-j ($CHAINS)( |$)" |
    while read -r rule; do # iptables-save quotes comments the way a shell reads them
      eval "iptables -t filter ${rule/-A /-D }" 2>/dev/null || true
    done || true # (no such rule: grep found nothing)
  for chain in $(iptables-save -t filter 2>/dev/null | sed -n -E "s/^:($CHAINS) .*/\1/p"); do
    iptables -F "$chain" 2>/dev/null || true
  done
  for chain in $(iptables-save -t filter 2>/dev/null | sed -n -E "s/^:($CHAINS) .*/\1/p"); do
    iptables -X "$chain" 2>/dev/null || true
  done
}

# The ipsets that were not there before `start` (without a record: kube-router's, by their names).
remove_ipsets() {
  command -v ipset >/dev/null || return 0
  local set
  for set in $(ipset list -n 2>/dev/null); do
    if [[ -f $STATE/ipsets-before ]]; then
      grep -qxF "$set" "$STATE/ipsets-before" && continue
    else
      [[ $set == KUBE-* || $set == kube-router-* || $set == inet6:* ]] || continue
    fi
    ipset destroy "$set" 2>/dev/null || true
  done
}

status() {
  if live_pid >/dev/null && chains_ready; then
    echo "kube-router enforces NetworkPolicies on $NODE_NAME (log: $STATE/kube-router.log)"
  else
    echo "no NetworkPolicy enforcer is running"
    return 1
  fi
}

case ${1:-} in
  start | stop | status) "$1" ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
