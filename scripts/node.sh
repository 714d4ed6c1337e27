#!/usr/bin/env bash
# The local cluster's real node: containerd + runc + the CNI bridge (Debian packages), kubelet and
# kube-proxy (built by scripts/toolchain.sh at the pinned Kubernetes version), joined to the
# control plane that scripts/cluster.sh runs. Pods of the chart run here for real.
#
#   scripts/node.sh check      can this machine run containers? (exit 0 yes, 1 no: the reason)
#   scripts/node.sh up         start the node (idempotent) and import the local images
#   scripts/node.sh down       stop it and undo every change it made to the host
#   scripts/node.sh status     exit 0 when kubelet, kube-proxy and containerd are running
#   scripts/node.sh restart containerd|kubelet|kube-proxy
#                              stop one of the node's processes and start it again (the pods keep
#                              running: containerd's shims hold them), then wait for the node Ready
#   scripts/node.sh snapshot   print the host state `down` must restore (for the teardown test)
#   scripts/node.sh ctr ARGS   ctr against the node's containerd, in Kubernetes' namespace
#   scripts/node.sh packages   install the Debian packages below that are missing (`up` does it too)
#
# Everything of ours is named for the project: state in /var/lib/bluegreen-node and
# /run/bluegreen-node (outside the checkout: a mount left under a checkout can keep a machine from
# being cleaned), the bridge bg0, the cgroup root /bluegreen, the iptables chain BLUEGREEN-EGRESS,
# ports 20248-20256. Configs and logs live in <repo>/.state/node/.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE=$REPO/.state
CONF=$STATE/node
KUBECONFIG_OUT=$STATE/kubeconfig
ROOT=/var/lib/bluegreen-node
RUN=/run/bluegreen-node
SOCK=$RUN/containerd/containerd.sock
HOST_BEFORE=$ROOT/host-before # what `up` found, for `down` to put back
NODE_NAME=bluegreen-node
BRIDGE=bg0
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1 # the bridge's gateway address: pods, kubelet and NodePorts all stay on bg0
SERVICE_CIDR=10.96.0.0/24
CGROUP_ROOT=/bluegreen
EGRESS_CHAIN=BLUEGREEN-EGRESS
NO_REGISTRY=http://127.0.0.1:9
KUBELET_PORT=20250 KUBELET_HEALTHZ_PORT=20248 PROXY_HEALTHZ_PORT=20256 PROXY_METRICS_PORT=20249
# Where programs keep state outside a project's own dirs: the snapshot lists every name and type
# under them, but not inside these entries of /var/lib, whose contents the OS and its services
# change by themselves (package managers, systemd, a database, desktop catalogs).
WATCHED_TREES=(/var/lib /etc/cni /opt/cni)
SELF_CHANGING=(apt dpkg ucf man-db python sgml-base xml-core vim pam swcatalog PackageKit systemd dbus polkit-1
  private logrotate postgresql)
# Outside our own dirs, whatever we configure, the node's programs write here: kubelet its device
# plugin socket (/var/lib/kubelet/device-plugins, a path fixed in kubelet), containerd's CNI library
# its results cache (/var/lib/cni). `up` records what is there; `down` removes only what was not.
FOREIGN_STATE=(/var/lib/kubelet /var/lib/cni /etc/cni /opt/cni)
# kubelet changes these (it needs them for its OOM and panic policy); `down` restores them.
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward)
# tinyproxy is not the node's: it is the HTTP CONNECT proxy the e2e tier's release-tool module
# reaches the API server through (tests/e2e/conftest.py TinyProxy), installed here with the rest.
DEBIAN_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack nftables iproute2 ipset tinyproxy)
LOGS=$CONF/logs/ # for wait_for
PATH="$("$REPO/scripts/toolchain.sh" --print-path):$PATH"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

# --- can this machine run containers? --------------------------------------------------------

# Prints the first reason it cannot, and fails; prints nothing and succeeds when it can.
cannot_run_containers() {
  [[ $(id -u) == 0 ]] || { echo "not root (containerd, kubelet and the CNI bridge need root)"; return 0; }
  grep -qw overlay /proc/filesystems || { echo "the kernel has no overlay filesystem"; return 0; }
  [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] ||
    { echo "no memory cgroup under /sys/fs/cgroup"; return 0; }
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || { echo "the kernel has no br_netfilter"; return 0; }
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add bg-probe0 type bridge 2>/dev/null || { echo "cannot create a bridge (ip link add type bridge)"; return 0; }
    ip link del bg-probe0
  fi
  return 1
}

check() {
  local reason
  if reason=$(cannot_run_containers); then
    echo "$reason"
    return 1
  fi
  echo "this machine can run containers"
}

# --- packages and images ---------------------------------------------------------------------

install_packages() {
  local missing=() bin
  for bin in containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
    iptables:iptables conntrack:conntrack nft:nftables ip:iproute2 ipset:ipset tinyproxy:tinyproxy; do
    [[ -x ${bin%%:*} ]] || command -v "${bin%%:*}" >/dev/null || missing+=("${bin#*:}")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them (Debian: apt-get install ${DEBIAN_PACKAGES[*]})"
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # Debian's containerd and tinyproxy packages would start system services (a containerd, a proxy
  # on port 8888); ours have their own sockets, ports and configs.
  service containerd stop >/dev/null 2>&1 || true
  service tinyproxy stop >/dev/null 2>&1 || true
}

import_images() {
  local name archive n=0
  while read -r name archive; do
    # --digests with the image's name as --base-name: containerd also records the image as
    # name@sha256:<manifest digest>, as a registry pull does, so the node reports that digest as the
    # pods' imageID and can start a pod whose image is pinned by it (bluegreen deploy --from-stack).
    node_ctr images import --snapshotter overlayfs --base-name "${name%:*}" --digests "$archive" >/dev/null ||
      die "importing $name from $archive failed"
    n=$((n + 1))
  done < <(python3 "$REPO/scripts/images/build.py")
  say "imported $n local image(s) into containerd: $(python3 "$REPO/scripts/images/build.py" --list | tr '\n' ' ')"
}

# --- configs ---------------------------------------------------------------------------------

# The control plane's CA, admin certificate and key (kwokctl's PKI).
pki() { echo "$STATE/cluster/clusters/bluegreen/pki/$1"; }

write_configs() {
  mkdir -p "$CONF/cni" "$CONF/logs"
  cat >"$CONF/containerd.toml" <<EOF
# containerd for the bluegreen node: its own root, state and socket.
version = 2
root = "$ROOT/containerd"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  # No registry is reachable: the pause image is built here and imported (scripts/images/).
  sandbox_image = "bluegreen.local/pause:3.10"
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails (oom_score_adj -998 refused).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CONF/cni"
EOF
  # No ipMasq: pods have no way off the machine (BLUEGREEN-EGRESS drops it too).
  cat >"$CONF/cni/10-bluegreen.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "bluegreen",
  "plugins": [{
    "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
             "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$ROOT/cni-ipam"}
  }]
}
EOF
  cat >"$CONF/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$SOCK
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $(pki ca.crt)}
authorization: {mode: Webhook}
# This machine has cgroup v1 and no systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: $CGROUP_ROOT
failSwapOn: false
# Pods get no resolv.conf from the host: a name lookup would leave the machine.
resolvConf: ""
clusterDomain: cluster.local
podLogsDir: $ROOT/pod-logs
# Images are imported, never pulled: never garbage-collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
maxPods: 60
EOF
  cat >"$CONF/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBECONFIG_OUT}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
mode: iptables
clusterCIDR: $POD_CIDR
iptables: {localhostNodePorts: false, masqueradeAll: false}
# Zero leaves the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: ["$NODE_IP/32"]
EOF
}

# --- host state: record before, restore after -------------------------------------------------

record_host() {
  [[ -d $HOST_BEFORE ]] && return 0 # a restart keeps the first record
  mkdir -p "$HOST_BEFORE"
  local s
  for s in "${SYSCTLS[@]}"; do sysctl -n "$s"; done >"$HOST_BEFORE/sysctls"
  [[ -d /var/log/containers ]] && touch "$HOST_BEFORE/var-log-containers"
  [[ -d /var/log/pods ]] && touch "$HOST_BEFORE/var-log-pods"
  [[ -d /run/netns ]] && touch "$HOST_BEFORE/run-netns"
  [[ -d /run/containerd ]] && touch "$HOST_BEFORE/run-containerd"
  nft list tables 2>/dev/null >"$HOST_BEFORE/nft-tables" || true
  ls /run/netns 2>/dev/null >"$HOST_BEFORE/netns" || true
  find "${FOREIGN_STATE[@]}" 2>/dev/null >"$HOST_BEFORE/foreign-state" || true # (some do not exist)
}

restore_host() {
  [[ -d $HOST_BEFORE ]] || return 0
  local values s i=0
  mapfile -t values <"$HOST_BEFORE/sysctls"
  for s in "${SYSCTLS[@]}"; do sysctl -qw "$s=${values[i]}" || true; i=$((i + 1)); done
  # kubelet links each container's log into /var/log/containers: remove the links into our pods.
  local link
  for link in /var/log/containers/*.log; do
    [[ -L $link && $(readlink "$link") == "$ROOT"/* ]] && rm -f "$link"
  done
  [[ -f $HOST_BEFORE/var-log-containers ]] || rmdir /var/log/containers 2>/dev/null || true
  [[ -f $HOST_BEFORE/var-log-pods ]] || rmdir /var/log/pods 2>/dev/null || true
  # Tables that iptables-nft created for kube-proxy, kubelet and us, once they are empty of rules.
  local table
  while read -r _ family name; do
    table="$family $name"
    grep -qxF "table $table" "$HOST_BEFORE/nft-tables" && continue
    # Anything but the table, its (built-in) chains and their policies is a rule someone still has.
    # shellcheck disable=SC2086 # "$table" is two words: family and name
    nft list table $table 2>/dev/null | grep -qvE '^\s*(table |chain |type |policy |\}|$)' && continue
    # shellcheck disable=SC2086
    nft delete table $table 2>/dev/null || true
  done < <(nft list tables 2>/dev/null)
  [[ -f $HOST_BEFORE/run-netns ]] || rmdir /run/netns 2>/dev/null || true
  # What the node's programs wrote outside our dirs and was not there before `up`, deepest first
  # (a directory goes only once it is empty: it never takes along what was there before). A node
  # started before `up` kept this record has none: then nothing is removed.
  local path
  if [[ -f $HOST_BEFORE/foreign-state ]]; then
    while read -r path; do
      grep -qxF "$path" "$HOST_BEFORE/foreign-state" && continue
      if [[ -d $path && ! -L $path ]]; then rmdir "$path" 2>/dev/null || true; else rm -f "$path"; fi
    done < <(find "${FOREIGN_STATE[@]}" 2>/dev/null | sort -r)
  fi
  # containerd 1.6 keeps its shims' sockets in /run/containerd/s whatever its state dir is.
  [[ -f $HOST_BEFORE/run-containerd ]] || rm -rf /run/containerd
}

# The kubelet's and kube-proxy's chains, and ours; both address families.
remove_chains() {
  if [[ -x $(command -v kube-proxy) ]]; then
    kube-proxy --cleanup >/dev/null 2>&1 || true
  fi
  local ipt table chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle; do
      # Rules in built-in chains that jump to ours, then our chains themselves.
      "$ipt-save" -t "$table" 2>/dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE-|BLUEGREEN-)' |
        while read -r rule; do # iptables-save quotes comments the way a shell reads them
          eval "$ipt -t $table ${rule/-A /-D }" 2>/dev/null || true
        done || true # (no such rule: grep found nothing)
      for chain in $("$ipt-save" -t "$table" 2>/dev/null | sed -n -E 's/^:((KUBE|BLUEGREEN)-[A-Z0-9-]+) .*/\1/p'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt-save" -t "$table" 2>/dev/null | sed -n -E 's/^:((KUBE|BLUEGREEN)-[A-Z0-9-]+) .*/\1/p'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

# Pods may not reach anything off this machine: forwarded traffic from the bridge stays on it.
add_egress_guard() {
  iptables -N "$EGRESS_CHAIN" 2>/dev/null || iptables -F "$EGRESS_CHAIN"
  iptables -A "$EGRESS_CHAIN" -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -C FORWARD -j "$EGRESS_CHAIN" 2>/dev/null || iptables -I FORWARD -j "$EGRESS_CHAIN"
}

# kubelet wants its cgroup root to exist in every hierarchy (cpuset: with the parent's CPUs).
make_cgroup_root() {
  local dir
  for dir in /sys/fs/cgroup/*/; do
    [[ -f $dir/cgroup.procs ]] || continue
    mkdir -p "$dir${CGROUP_ROOT#/}"
    if [[ -f $dir/cpuset.cpus ]]; then
      cat "$dir/cpuset.cpus" >"$dir${CGROUP_ROOT#/}/cpuset.cpus"
      cat "$dir/cpuset.mems" >"$dir${CGROUP_ROOT#/}/cpuset.mems"
    fi
  done
}

# --- processes -------------------------------------------------------------------------------

pidfile() { echo "$RUN/$1.pid"; }
running() { local p; p=$(cat "$(pidfile "$1")" 2>/dev/null) && alive "$p"; }

# start NAME COMMAND...: in its own session, logging to .state/node/logs/NAME.log.
start() {
  local name=$1; shift
  running "$name" && return 0
  setsid "$@" >>"$CONF/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

stop() {
  local name=$1 pid t0=$SECONDS
  pid=$(cat "$(pidfile "$name")" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  while alive "$pid" && ((SECONDS - t0 < 15)); do sleep 0.3; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$(pidfile "$name")"
}

node_ready() { kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s; }

# The node's three processes, each started one way (by `up` and by `restart`).
# No registry is reachable from here, and a pull must not even look a registry's name up: every
# pull goes to a proxy address where nothing listens, and fails at once (ErrImagePull).
start_containerd() {
  start containerd env HTTP_PROXY=$NO_REGISTRY HTTPS_PROXY=$NO_REGISTRY NO_PROXY= \
    containerd --config "$CONF/containerd.toml"
  wait_for "containerd" 30 ctr --address "$SOCK" version
}

start_kubelet() {
  start kubelet kubelet --config "$CONF/kubelet.yaml" --kubeconfig "$KUBECONFIG_OUT" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir "$ROOT/kubelet" \
    --cert-dir "$ROOT/kubelet/pki" --v 1
}

start_kube_proxy() { start kube-proxy kube-proxy --config "$CONF/kube-proxy.yaml" --v 1; }

# --- up / down -------------------------------------------------------------------------------

# One node per machine (its bridge, state and ports are the machine's): prints the checkout that
# runs it, when that is not this one.
foreign_owner() {
  local owner
  owner=$(cat "$RUN/owner" 2>/dev/null) && [[ $owner != "$REPO" ]] && running containerd && echo "$owner"
}

up() {
  local reason
  if reason=$(cannot_run_containers); then die "this machine cannot run containers: $reason"; fi
  [[ -f $KUBECONFIG_OUT ]] || die "no control plane ($KUBECONFIG_OUT); scripts/cluster.sh up starts it"
  local b
  for b in kubelet kube-proxy kubectl; do command -v "$b" >/dev/null || die "$b not found; build it with: scripts/toolchain.sh kube"; done
  install_packages
  local t0=$SECONDS owner
  if owner=$(foreign_owner); then
    die "the node is in use by the checkout $owner; run \`make cluster-down\` there first"
  fi
  if [[ -d $RUN ]] && ! running containerd; then
    say "cleaning up what a node that did not stop cleanly left behind"
    sweep
  fi
  mkdir -p "$ROOT" "$RUN" "$CONF"
  echo "$REPO" >"$RUN/owner"
  record_host
  write_configs

  # The bridge exists before the first pod, so the node IP is there for kubelet from the start.
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # A Service IP that kube-proxy does not (yet) handle goes onto our bridge, never off the machine.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE"
  add_egress_guard
  make_cgroup_root

  start_containerd
  import_images

  start_kubelet
  start_kube_proxy
  wait_for "node $NODE_NAME Ready" 120 node_ready
  say "node $NODE_NAME up in $((SECONDS - t0)) s (containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), pods on $POD_CIDR via $BRIDGE)"
}

# Stop the pods first (through the API, so CNI and mounts are torn down the normal way), then the
# node's processes, then sweep up whatever is left: this also cleans a node that crashed.
down() {
  if [[ ! -d $ROOT && ! -d $RUN ]]; then
    say "node $NODE_NAME is not set up"
    return 0
  fi
  local owner
  if owner=$(foreign_owner); then
    say "node $NODE_NAME belongs to the checkout $owner; leaving it (run \`make cluster-down\` there)"
    return 0
  fi
  if running kubelet && [[ -f $KUBECONFIG_OUT ]] && kc get --raw /readyz --request-timeout=3s >/dev/null 2>&1; then
    say "stopping the pods on $NODE_NAME"
    kc cordon "$NODE_NAME" >/dev/null 2>&1 || true
    kc delete pods --all-namespaces --all --force --grace-period=0 --wait=false >/dev/null 2>&1 || true
    local t0=$SECONDS
    while [[ -n $(node_ctr tasks ls -q 2>/dev/null) ]] && ((SECONDS - t0 < 60)); do sleep 1; done
    # kubelet tears down the sandboxes' networks a moment after their containers stop.
    while [[ -n $(ip -o link show master "$BRIDGE" 2>/dev/null) ]] && ((SECONDS - t0 < 60)); do sleep 1; done
  fi
  stop kube-proxy
  stop kubelet
  stop containerd
  sweep
  say "node $NODE_NAME is down; host restored"
}

sweep() {
  # The NetworkPolicy enforcer, if one runs: its chains and ipsets (before the chains below).
  "$REPO/scripts/netpol.sh" stop
  # Shims outlive containerd: kill those of our containerd, with their containers.
  local pid
  for pid in $(pgrep -f "containerd-shim.*-address $SOCK" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  # Container processes left in our cgroups.
  local dir
  for dir in /sys/fs/cgroup/*"$CGROUP_ROOT"; do
    [[ -d $dir ]] || continue
    # shellcheck disable=SC2038 # cgroup.procs holds pids, one a line
    find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  # Mounts under our dirs (overlay rootfs, shm, volumes, netns), deepest first.
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v a="$ROOT" -v b="$RUN" '$2 ~ "^"a || $2 ~ "^"b {print $2}' /proc/self/mounts | sort -r)
  # Network namespaces created since `up` (containerd 1.6 puts them in /run/netns).
  local ns
  for ns in /run/netns/cni-*; do
    [[ -e $ns ]] || continue
    grep -qxF "${ns##*/}" "$HOST_BEFORE/netns" 2>/dev/null && continue
    umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  # Veths of our pods, then the bridge (and its route).
  local link
  for link in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  remove_chains
  # cgroups, deepest first (a cgroup dir goes with rmdir once it has no processes).
  for dir in /sys/fs/cgroup/*"$CGROUP_ROOT"; do
    [[ -d $dir ]] || continue
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  restore_host
  rm -rf "$ROOT" "$RUN"
  rm -f "$CONF"/*.pid
}

# One of the node's processes stopped (as `down` stops it) and started again, the rest left running;
# for a fault drill or after changing its config. The pods are not touched.
restart() {
  local name=${1:-} owner
  case $name in
    containerd | kubelet | kube-proxy) ;;
    *) die "restart: '$name' is not one of the node's processes; allowed: containerd, kubelet, kube-proxy" ;;
  esac
  if owner=$(foreign_owner); then die "the node is in use by the checkout $owner; restart it from there"; fi
  [[ -f $CONF/kubelet.yaml && -d $RUN ]] || die "node $NODE_NAME is not set up; start it with: scripts/cluster.sh up"
  local t0=$SECONDS
  stop "$name"
  say "$name stopped ($((SECONDS - t0)) s)"
  "start_${name//-/_}"
  wait_for "node $NODE_NAME Ready after restarting $name" 120 node_ready
}

status() {
  local name
  for name in containerd kubelet kube-proxy; do
    running "$name" || { echo "node $NODE_NAME is down ($name not running)"; return 1; }
  done
  echo "node $NODE_NAME is up: pods on $POD_CIDR via $BRIDGE, containerd at $SOCK"
}

# Everything `down` must put back, one fact a line, sorted: compare before `up` and after `down`.
snapshot() {
  set +e +o pipefail # an empty section (no iptables rules at all) is a fact, not a failure
  {
    ip -o link show | awk -F': ' '{print "link " $2}' | cut -d@ -f1
    ip route show | sed 's/^/route /'
    iptables-save 2>/dev/null | grep -vE '^#|^:.*\[|^COMMIT' | sed 's/^/iptables /'
    ip6tables-save 2>/dev/null | grep -vE '^#|^:.*\[|^COMMIT' | sed 's/^/ip6tables /'
    nft list tables 2>/dev/null | sed 's/^/nft /'
    ipset list -n 2>/dev/null | sed 's/^/ipset /'
    awk '{print "mount " $2 " " $3}' /proc/self/mounts
    find /sys/fs/cgroup -maxdepth 2 -type d -name "${CGROUP_ROOT#/}*" 2>/dev/null | sed 's/^/cgroup /'
    for s in "${SYSCTLS[@]}"; do echo "sysctl $s=$(sysctl -n "$s")"; done
    for path in /var/log/containers /var/log/pods /run/netns /run/containerd "$ROOT" "$RUN"; do
      if [[ -e $path || -L $path ]]; then echo "path $path"; fi
    done
    # Names and types (d directory, f file, l link, s socket, ...), not contents. Our own ROOT is
    # the `path` above.
    local skip
    skip=$(IFS='|'; echo "${SELF_CHANGING[*]}")
    find "${WATCHED_TREES[@]}" -regextype posix-extended \( -path "$ROOT" -o -regex "/var/lib/($skip)/.+" \) -prune \
      -o -printf 'fs %y %p\n' 2>/dev/null
    # Process names (comm, at most 15 characters) of the node, the control plane, the ingress and
    # the e2e tier's proxy.
    # (Not zombies: a process that has exited waits there until PID 1 reaps it.)
    ps -eo stat=,comm= | awk '$1 !~ /^Z/ {print $2}' | grep -xE 'containerd|containerd-shim.*|runc|kubelet|kube-proxy|kube-router|kube-apiserver|kube-controller|kube-scheduler|etcd|kwok|traefik|tinyproxy|pause|app' | sed 's/^/process /'
  } | sort
}

node_ctr() { ctr --address "$SOCK" -n k8s.io "$@"; }

case ${1:-} in
  check | up | down | status | snapshot) "$1" ;;
  restart) restart "${2:-}" ;;
  ctr) shift; node_ctr "$@" ;;
  packages) install_packages ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
