#!/usr/bin/env bash
# The local cluster: a control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
# run by kwokctl's binary runtime from the locally built binaries, one real node that runs the pods
# (scripts/node.sh: containerd, kubelet, kube-proxy) and the ingress controller on 127.0.0.1
# (scripts/ingress/traefik.sh). Where this machine cannot run containers, kwok simulates the nodes
# instead, said loudly; the e2e tier then fails.
#
#   scripts/cluster.sh up       start it (idempotent) and wait for a Ready node
#   scripts/cluster.sh down     stop it, remove its state and undo its changes to the host
#   scripts/cluster.sh status   say whether it is up (exit 0 if up, 1 if not)
#   scripts/cluster.sh stop-component NAME    stop one control-plane process (kube-apiserver, etcd,
#   scripts/cluster.sh start-component NAME   kube-controller-manager, kube-scheduler), start it again
#
#   BLUEGREEN_NODE=simulated    kwok's simulated nodes even where real pods could run
#   BLUEGREEN_NETWORK_POLICY=1  enforce NetworkPolicies on the real node (scripts/netpol.sh: kube-router's
#                               firewall, built by scripts/toolchain.sh kube-router); the CNI bridge does not
#
# State: <repo>/.state/cluster/ (certs, etcd data, logs); kubeconfig: <repo>/.state/kubeconfig;
# <repo>/.state/node-mode says "real" or "simulated: <why>".
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR/..
source "$REPO/scripts/versions.env"
STATE=$REPO/.state
NAME=bluegreen
KUBECONFIG_OUT=$STATE/kubeconfig
NODE_MODE_FILE=$STATE/node-mode
NODES=${BLUEGREEN_NODES:-2}
# kwokctl keeps everything (clusters, cache) under its workdir; keep it inside .state.
export KWOK_WORKDIR=$STATE/cluster
CLUSTER_DIR=$KWOK_WORKDIR/clusters/$NAME
LOGS=$CLUSTER_DIR/logs/ # for wait_for
PATH="$("$REPO/scripts/toolchain.sh" --print-path):$PATH"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

# kwokctl logs JSON; show its INFO lines as one short line each, anything else as is.
kw() {
  kwokctl "$@" 2>&1 | sed -u -E 's/^\{.*"level":"INFO".*"msg":"([^"]*)".*$/    kwokctl: \1/' >&2
}

apiserver_ready() {
  [[ -f $KUBECONFIG_OUT ]] && kc get --raw /readyz --request-timeout=5s >/dev/null 2>&1
}

# Every binary is given explicitly (an empty one would make kwokctl download its default).
create() {
  local etcd apiserver kcm scheduler kwok kubectl
  # One assignment a line: on a shared line only the last one's failure would stop the script.
  etcd=$(need etcd etcd)
  apiserver=$(need kube-apiserver kube)
  kcm=$(need kube-controller-manager kube)
  scheduler=$(need kube-scheduler kube)
  kwok=$(need kwok kwok)
  kubectl=$(need kubectl kube)
  say "creating cluster '$NAME' (kube v$KUBERNETES_VERSION, etcd $("$etcd" --version | head -1 | awk '{print $NF}'), kwok v$KWOK_VERSION)"
  # kwok's stages, plus images tagged `never-ready` never becoming Ready (see cluster/stages.sh).
  "$REPO/scripts/cluster/stages.sh" > "$STATE/kwok-stages.yaml"
  node_patches > "$STATE/kwokctl-node.yaml"
  # --kubeconfig "": leave ~/.kube/config alone (kwokctl adds a context there by default).
  KWOK_KUBE_VERSION=v$KUBERNETES_VERSION KWOK_KUBECTL_BINARY=$kubectl \
    kw create cluster --name "$NAME" --config "$REPO/scripts/cluster/kwokctl.yaml" \
    --config "$STATE/kwok-stages.yaml" \
    --config "$STATE/kwokctl-node.yaml" \
    --kubeconfig "" \
    --etcd-binary "$etcd" \
    --kube-apiserver-binary "$apiserver" \
    --kube-controller-manager-binary "$kcm" \
    --kube-scheduler-binary "$scheduler" \
    --kwok-controller-binary "$kwok" \
    --wait 2m
}

# What the control plane needs for a real node: a Service range of our own (kube-proxy routes it on
# the node's bridge), kubelet reached by its InternalIP (a node name would be looked up in DNS, off
# the machine) with the admin client certificate, controllers that outlive an API server outage,
# and kwok kept off nodes it did not create.
node_patches() {
  local pki=$CLUSTER_DIR/pki
  cat <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - {key: service-cluster-ip-range, value: 10.96.0.0/24}
  - {key: kubelet-preferred-address-types, value: InternalIP}
  - {key: kubelet-client-certificate, value: $pki/admin.crt}
  - {key: kubelet-client-key, value: $pki/admin.key}
# One instance each: no leader election. With it, an API server down for longer than the lease's
# renew deadline (10 s) made both exit ("leaderelection lost"), and nothing started them again.
- name: kube-controller-manager
  extraArgs:
  - {key: leader-elect, value: "false"}
- name: kube-scheduler
  extraArgs:
  - {key: leader-elect, value: "false"}
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false", override: true}
  - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
EOF
}

write_kubeconfig() {
  kwokctl get kubeconfig --name "$NAME" > "$KUBECONFIG_OUT.tmp"
  mv "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
}

# The real node where it can run; kwok's simulated nodes where not (or when asked), said loudly.
start_node() {
  local why=""
  if [[ ${BLUEGREEN_NODE:-real} == simulated ]]; then
    why="BLUEGREEN_NODE=simulated"
  elif ! why=$("$REPO/scripts/node.sh" check); then
    :
  elif "$REPO/scripts/node.sh" up; then
    echo real > "$NODE_MODE_FILE"
    return 0
  else
    why="scripts/node.sh up failed (logs: $STATE/node/logs/)"
    "$REPO/scripts/node.sh" down || true # what it started so far
  fi
  simulated_banner "$why"
  echo "simulated: $why" > "$NODE_MODE_FILE"
  # No node but ours (or no answer). Not grep -q: quitting early could SIGPIPE kc, and pipefail
  # would then turn the answer around.
  if ! kc get nodes -o name 2>/dev/null | grep -v bluegreen-node >/dev/null; then
    say "adding $NODES kwok node(s)"
    kw scale node --replicas "$NODES" --name "$NAME"
  fi
}

simulated_banner() {
  cat >&2 <<EOF
################################################################################################
# NO REAL NODE: $1
# kwok simulates the nodes: pods are marked Ready but no container runs and no HTTP request
# can be served. The e2e tier (make e2e, make test in CI) fails on a simulated node.
################################################################################################
EOF
}

nodes_ready() { [[ -n $(kc get nodes -o name 2>/dev/null) ]] && kc wait --for=condition=Ready nodes --all --timeout=1s; }
default_sa() { kc get serviceaccount default -n default; }

up() {
  mkdir -p "$STATE"
  local t0=$SECONDS
  if [[ -d $CLUSTER_DIR ]] && apiserver_ready; then
    say "cluster '$NAME' is already up (KUBECONFIG=$KUBECONFIG_OUT)"
  elif [[ -d $CLUSTER_DIR ]]; then
    say "cluster '$NAME' exists but is not running; starting it"
    forget_dead_pids
    kw start cluster --name "$NAME" || {
      say "start failed; recreating it empty (run \`pulumi refresh\` for stacks deployed before)"
      down
      create
    }
  else
    create
  fi
  # The rest is quick when it is already done; it also repairs a half-finished earlier `up`.
  [[ -f $KUBECONFIG_OUT ]] || write_kubeconfig
  wait_for "apiserver ready" 120 apiserver_ready
  # The ingress controller's CRDs, GatewayClass and Gateway (about 4 s, mostly the apiserver taking
  # in new CRDs) while the node starts.
  local apis
  "$REPO/scripts/ingress/traefik.sh" apis &
  apis=$!
  start_node
  wait_for "node(s) Ready" 120 nodes_ready
  # Pods need the default ServiceAccount, which kube-controller-manager creates.
  wait_for "default ServiceAccount present" 120 default_sa
  wait "$apis" || die "applying the ingress controller's CRDs and Gateway failed (see above)"
  if [[ $(cat "$NODE_MODE_FILE") == real ]]; then
    BLUEGREEN_INGRESS_APIS_APPLIED=1 "$REPO/scripts/ingress/traefik.sh" start >/dev/null
    if [[ ${BLUEGREEN_NETWORK_POLICY:-} == 1 ]]; then
      "$REPO/scripts/netpol.sh" start
    else
      say "NetworkPolicies are not enforced (the CNI bridge does not; BLUEGREEN_NETWORK_POLICY=1 runs an enforcer)"
    fi
  else
    # Simulated pods have made-up IPs that are not on this machine: no requests may go there.
    say "no ingress controller: a simulated node has no pods to route requests to"
  fi
  say "cluster '$NAME' up in $((SECONDS - t0)) s; KUBECONFIG=$KUBECONFIG_OUT"
}

down() {
  "$REPO/scripts/ingress/traefik.sh" stop
  "$REPO/scripts/netpol.sh" stop
  "$REPO/scripts/node.sh" down
  rm -f "$NODE_MODE_FILE"
  if [[ -d $CLUSTER_DIR ]]; then
    say "deleting cluster '$NAME'"
    local pids=() f
    for f in "$CLUSTER_DIR"/pids/*.pid; do [[ -f $f ]] && pids+=("$(cat "$f")"); done
    if command -v kwokctl >/dev/null; then
      kw delete cluster --name "$NAME" --kubeconfig "$KUBECONFIG_OUT" || true
    fi
    stop_pids "${pids[@]}"
  fi
  rm -rf "$KWOK_WORKDIR" "$KUBECONFIG_OUT"
  say "cluster '$NAME' is down"
}

# kwokctl skips a component whose pid file names a live pid; a dead one (or a zombie nobody
# reaped) must not count.
forget_dead_pids() {
  local f
  for f in "$CLUSTER_DIR"/pids/*.pid; do
    [[ -f $f ]] && ! alive "$(cat "$f")" && rm -f "$f"
  done
  return 0
}

# kwokctl only signals its components; wait for them to exit (so their ports are free), then kill.
stop_pids() {
  local pid t0=$SECONDS left
  (($#)) || return 0
  kill "$@" 2>/dev/null || true
  while :; do
    left=()
    for pid in "$@"; do alive "$pid" && left+=("$pid"); done
    ((${#left[@]})) || return 0
    if ((SECONDS - t0 > 10)); then kill -9 "${left[@]}" 2>/dev/null || true; return 0; fi
    sleep 0.5
  done
}

# One control-plane process, stopped and started again on its own (a fault drill: the node, the
# pods and the ingress controller keep running). kwokctl starts what its pid files say is not running.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)

component_pid() {
  local name=$1 pid
  [[ " ${COMPONENTS[*]} " == *" $name "* ]] ||
    die "'$name' is not a control-plane component; allowed: ${COMPONENTS[*]}"
  [[ -d $CLUSTER_DIR ]] || die "cluster '$NAME' is not set up; start it with: scripts/cluster.sh up"
  pid=$(cat "$CLUSTER_DIR/pids/$name.pid" 2>/dev/null) || die "no pid file for $name in $CLUSTER_DIR/pids"
  echo "$pid"
}

stop_component() {
  local pid
  pid=$(component_pid "$1")
  if alive "$pid"; then
    stop_pids "$pid"
    say "$1 stopped (pid $pid)"
  else
    say "$1 is not running"
  fi
}

start_component() {
  local pid
  pid=$(component_pid "$1")
  if alive "$pid"; then
    say "$1 is already running (pid $pid)"
    return 0
  fi
  forget_dead_pids
  kw start cluster --name "$NAME"
  wait_for "apiserver ready" 120 apiserver_ready
  say "$1 started again (pid $(component_pid "$1"))"
}

status() {
  if [[ -d $CLUSTER_DIR ]] && apiserver_ready; then
    echo "cluster '$NAME' is up: $(kc config view -o jsonpath='{.clusters[0].cluster.server}'), $(kc get nodes --no-headers 2>/dev/null | wc -l) node(s) ($(cat "$NODE_MODE_FILE" 2>/dev/null || echo "node mode unknown")); KUBECONFIG=$KUBECONFIG_OUT"
  else
    echo "cluster '$NAME' is down"
    return 1
  fi
}

case ${1:-} in
  up | down | status) "$1" ;;
  stop-component) stop_component "${2:-}" ;;
  start-component) start_component "${2:-}" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
