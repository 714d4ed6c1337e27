#!/usr/bin/env bash
# Traefik as the local cluster's ingress controller: a host process on 127.0.0.1 that watches the
# apiserver as ServiceAccount kube-system/traefik and serves, on one port, Ingresses of class
# `traefik`, Gateway API HTTPRoutes attached to Gateway kube-system/traefik (GatewayClass
# `traefik`), and Traefik's own CRDs (Middlewares: the stage's IP allow list and basic auth).
#
#   scripts/ingress/traefik.sh start    apply rbac.yaml, the Traefik and Gateway API CRDs, the
#                                       GatewayClass and Gateway; start Traefik (idempotent), wait
#                                       for ping; prints BLUEGREEN_INGRESS=http://127.0.0.1:PORT
#   scripts/ingress/traefik.sh apis     apply only the CRDs, the GatewayClass and the Gateway
#                                       (scripts/cluster.sh up runs this while the node starts, then
#                                       start with BLUEGREEN_INGRESS_APIS_APPLIED=1, which skips them)
#   scripts/ingress/traefik.sh restart  a new process for the running one, prepared before the old
#                                       one stops (the port is closed only while the processes swap)
#   scripts/ingress/traefik.sh stop     stop it
#   scripts/ingress/traefik.sh status   exit 0 if it runs and answers its ping, 1 if not
#   scripts/ingress/traefik.sh url      print its address, http://127.0.0.1:PORT
#   scripts/ingress/traefik.sh metrics-url  print its Prometheus metrics' address,
#                                       http://127.0.0.1:METRICS_PORT/metrics
#
# It serves the local cluster only: its kubeconfig is <repo>/.state/kubeconfig (scripts/cluster.sh
# up), never the KUBECONFIG of the calling shell, which may be your own cluster's.
# Env: STATE (default <repo>/.state/ingress: config, token, pid, logs),
#      PORT (default $BLUEGREEN_INGRESS_PORT or 18080), PING_PORT (default PORT+1),
#      METRICS_PORT (default PORT+2: Prometheus metrics, per entryPoint and per service),
#      BLUEGREEN_INGRESS_LOG_LEVEL (default INFO).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE=$REPO/scripts/ingress
KUBECONFIG=$REPO/.state/kubeconfig
STATE=${STATE:-$REPO/.state/ingress}
PORT=${PORT:-${BLUEGREEN_INGRESS_PORT:-18080}}
PING_PORT=${PING_PORT:-$((PORT + 1))}
METRICS_PORT=${METRICS_PORT:-$((PORT + 2))}
LOG_LEVEL=${BLUEGREEN_INGRESS_LOG_LEVEL:-INFO}  # DEBUG logs every configuration change
PIDFILE=$STATE/traefik.pid
SERVER=""  # apiserver URL, set by start
# The token is read once, when Traefik starts (it never re-reads it): mint one that outlives any
# session. `start` mints a new one each time; a recreated cluster (new signing key) needs a restart.
TOKEN_DURATION=8760h
PATH="$("$REPO/scripts/toolchain.sh" --print-path):$PATH"
# shellcheck source-path=SCRIPTDIR/../..
source "$REPO/scripts/versions.env"
# The Gateway the local cluster offers to HTTPRoutes (stack config: gateway.name, gateway.namespace).
GATEWAY_NAMESPACE=kube-system
GATEWAY_NAME=traefik
export KUBECONFIG
KUBECONFIG_OUT=$KUBECONFIG KC_TIMEOUT=10s # for kc
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

# The pid in the pid file, if that process is alive and is a traefik (pids get reused).
live_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(cat "$PIDFILE")
  alive "$pid" || return 1
  [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *traefik* ]] || return 1
  echo "$pid"
}

# The ping port of the running instance (it may have been started with other settings).
pinging() {
  local port
  port=$(cat "$STATE/ping-port" 2>/dev/null) || return 1
  [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$port/ping" 2>/dev/null) == OK ]]
}

# The kubeconfig's current cluster as two lines for $STATE/cluster: apiserver URL, then the CA
# (base64). A recreated cluster has a new CA (and token signing key): Traefik must restart then.
cluster_facts() {
  local server ca_data ca_file
  server=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  [[ -n $server ]] || die "no apiserver URL in $KUBECONFIG"
  ca_data=$(kc config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  ca_file=$(kc config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')
  if [[ -z $ca_data && -n $ca_file ]]; then
    ca_data=$(base64 -w0 <"$ca_file")
  fi
  [[ -n $ca_data ]] || die "no certificate authority for $server in $KUBECONFIG"
  printf '%s\n%s\n' "$server" "$ca_data"
}

# A TokenRequest token for kube-system/traefik, in a file Traefik reads (not in its config or argv).
mint_token() {
  local token exp
  token=$(kc create token traefik -n kube-system --duration="$TOKEN_DURATION")
  (umask 077 && printf '%s' "$token" >"$STATE/token")
  # The apiserver may shorten the duration (--service-account-max-token-expiration): say when.
  exp=$(python3 -c 'import base64,json,sys,time
p = sys.argv[1].split(".")[1]
print(int(json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["exp"] - time.time()))' "$token")
  ((exp > 86400)) || say "warning: the apiserver gave Traefik a token valid for only ${exp}s; restart Traefik before it expires"
}

# The CRDs Traefik's kubernetesCRD and kubernetesGateway providers watch (scripts/toolchain.sh
# traefik-crds gateway-api caches them from the Go modules), applied server-side (some are over the
# 256 KiB a client-side apply may keep in an annotation), then the GatewayClass and the Gateway,
# whose listener is Traefik's `web` entryPoint (a listener binds to the entryPoint of its port).
install_routing_apis() {
  local tool dir dirs=() t0=$SECONDS applied="traefik-$TRAEFIK_VERSION gateway-api-$GATEWAY_API_VERSION port-$PORT"
  # The Gateway is applied last and records what was applied: then there is nothing to do.
  if [[ $(kc get gateway -n "$GATEWAY_NAMESPACE" "$GATEWAY_NAME" --ignore-not-found \
            -o jsonpath='{.metadata.annotations.bluegreen\.dev/applied}' 2>/dev/null) == "$applied" ]]; then
    return 0
  fi
  for tool in traefik-crds gateway-api; do
    dir=$("$REPO/scripts/toolchain.sh" --print-dir "$tool")/crds
    compgen -G "$dir/*.yaml" >/dev/null || die "no CRDs in $dir; fetch them with: scripts/toolchain.sh $tool"
    dirs+=(-f "$dir")
  done
  kc apply --server-side --force-conflicts --field-manager=bluegreen-local "${dirs[@]}" >/dev/null
  kc wait --for condition=established --timeout=60s \
    crd/middlewares.traefik.io crd/gatewayclasses.gateway.networking.k8s.io \
    crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io >/dev/null
  kc apply -f - >/dev/null <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: traefik
spec:
  controllerName: traefik.io/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: $GATEWAY_NAME
  namespace: $GATEWAY_NAMESPACE
  annotations:
    bluegreen.dev/applied: $applied
spec:
  gatewayClassName: traefik
  listeners:
    - name: web
      protocol: HTTP
      port: $PORT
      allowedRoutes:
        namespaces:
          from: All   # each app's HTTPRoutes live in the app's own namespace
EOF
  say "Traefik and Gateway API CRDs, GatewayClass traefik, Gateway $GATEWAY_NAMESPACE/$GATEWAY_NAME applied ($((SECONDS - t0)) s)"
}

# Traefik's static configuration. Routes come only from the Kubernetes providers.
write_config() {
  cat >"$STATE/traefik.yaml" <<EOF
# Written by scripts/ingress/traefik.sh; rewritten on every start.
global:
  checkNewVersion: false    # no calls home: this host must not reach the internet
  sendAnonymousUsage: false
log:
  level: $LOG_LEVEL
  filePath: $STATE/traefik.log
  noColor: true
# accessLog and api (dashboard) are left out: both off.
entryPoints:
  web:
    address: 127.0.0.1:$PORT
    asDefault: true         # routers without explicit entryPoints attach here only, not to ping
    transport:
      respondingTimeouts:
        readTimeout: 60s
        writeTimeout: 0s    # no limit: responses may stream
        idleTimeout: 90s    # client keep-alive
      lifeCycle:
        graceTimeOut: 3s    # on stop, in-flight requests get this long
  ping:
    address: 127.0.0.1:$PING_PORT
  metrics:
    address: 127.0.0.1:$METRICS_PORT
ping:
  entryPoint: ping
# Prometheus metrics on their own entryPoint (GET /metrics), for bluegreen promote --max-error-rate:
# traefik_service_requests_total{service="<namespace>-<Service>-<port>@<provider>",code=...} counts
# each Kubernetes Service's requests by status. Traefik's own services (ping, this endpoint) are
# left out (addInternals false); router labels are not needed.
metrics:
  prometheus:
    entryPoint: metrics
    addEntryPointsLabels: true
    addServicesLabels: true
    addRoutersLabels: false
serversTransport:
  forwardingTimeouts:
    dialTimeout: 5s         # a dead backend fails fast (502) instead of after 30 s
    idleConnTimeout: 90s
providers:
  # Default 2s: after one change is applied, later ones wait out the rest of that window, so a
  # slot flip right after a rollout event reached Traefik up to 2 s late. The Kubernetes providers
  # already coalesce bursts (one pending event, config rebuilt from the informer cache, unchanged
  # results dropped), so no extra throttle is needed.
  providersThrottleDuration: 0s
  kubernetesIngress:
    endpoint: $SERVER
    token: $STATE/token
    certAuthFilePath: $STATE/ca.crt
    ingressClass: traefik   # IngressClass name (with controller traefik.io/ingress-controller)
    # A backend Service without ready endpoints keeps its route and answers 503, instead of the
    # route vanishing (404, like an unknown host).
    allowEmptyServices: true
  # Middlewares (traefik.io/v1alpha1), named by Ingress annotations and HTTPRoute ExtensionRef
  # filters; Gateway API ExtensionRefs resolve through this provider.
  kubernetesCRD:
    endpoint: $SERVER
    token: $STATE/token
    certAuthFilePath: $STATE/ca.crt
    allowEmptyServices: true
  # HTTPRoutes of Gateways of class traefik (controllerName traefik.io/gateway-controller).
  kubernetesGateway:
    endpoint: $SERVER
    token: $STATE/token
    certAuthFilePath: $STATE/ca.crt
EOF
}

wait_ready() {
  local pid=$1 timeout=60 t0=$SECONDS
  until pinging; do
    if ! live_pid >/dev/null; then
      tail -n 20 "$STATE/traefik.out" "$STATE/traefik.log" >&2 2>/dev/null || true
      die "traefik exited during startup (logs: $STATE/traefik.out, $STATE/traefik.log)"
    fi
    if ((SECONDS - t0 >= timeout)); then
      kill "$pid" 2>/dev/null || true
      die "traefik did not answer its ping within ${timeout}s (logs: $STATE/traefik.log)"
    fi
    sleep 0.2
  done
  say "traefik ready ($((SECONDS - t0)) s)"
}

# Everything a Traefik process reads when it starts, made while an older one may still serve (that
# one read its own copies when it started): RBAC, the routing APIs, the CA, a token, the config.
prepare() {
  local facts=$1
  kc apply -f "$HERE/rbac.yaml" >/dev/null
  [[ ${BLUEGREEN_INGRESS_APIS_APPLIED:-} == 1 ]] || install_routing_apis
  echo "$facts" >"$STATE/cluster"
  SERVER=$(sed -n 1p <<<"$facts")
  sed -n 2p <<<"$facts" | base64 -d >"$STATE/ca.crt"
  mint_token
  write_config
  echo "$PING_PORT" >"$STATE/ping-port"
  echo "http://127.0.0.1:$PORT" >"$STATE/url"
  echo "http://127.0.0.1:$METRICS_PORT/metrics" >"$STATE/metrics-url"
}

launch() {
  say "starting traefik on 127.0.0.1:$PORT (ping :$PING_PORT) against $SERVER"
  # KUBECONFIG or in-cluster variables would make Traefik ignore endpoint/token in its config.
  env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT \
    setsid -- traefik --configFile="$STATE/traefik.yaml" </dev/null >"$STATE/traefik.out" 2>&1 &
  echo $! >"$PIDFILE"
  wait_ready "$!"
  echo "BLUEGREEN_INGRESS=http://127.0.0.1:$PORT"
}

preflight() {
  need traefik traefik >/dev/null
  need kubectl kube >/dev/null
  mkdir -p "$STATE"
  [[ -f $KUBECONFIG ]] || die "no kubeconfig at $KUBECONFIG (run scripts/cluster.sh up)"
}

start() {
  preflight
  local facts
  facts=$(cluster_facts)
  if live_pid >/dev/null && pinging && [[ $facts == "$(cat "$STATE/cluster" 2>/dev/null)" ]]; then
    say "traefik is already running (pid $(live_pid), log $STATE/traefik.log)"
    echo "BLUEGREEN_INGRESS=$(cat "$STATE/url")"
    return 0
  fi
  prepare "$facts"
  if live_pid >/dev/null; then
    say "restarting traefik (not answering, or the cluster changed)"
    stop
  fi
  launch
}

# A new Traefik process for the running one, prepared first: nothing listens on the port only
# between the old process's exit and the new one's start (no kubectl call in between).
restart() {
  preflight
  prepare "$(cluster_facts)"
  stop
  launch
}

stop() {
  local pid t0=$SECONDS
  if ! pid=$(live_pid); then
    rm -f "$PIDFILE"
    say "traefik is not running"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  while alive "$pid"; do
    if ((SECONDS - t0 > 15)); then kill -9 "$pid" 2>/dev/null || true; fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  say "traefik stopped ($((SECONDS - t0)) s)"
}

status() {
  local pid
  if pid=$(live_pid) && pinging; then
    echo "traefik is up: pid $pid, $(cat "$STATE/url"); log $STATE/traefik.log"
  else
    echo "traefik is down"
    return 1
  fi
}

# Where it listens (what scripts/activate exports as BLUEGREEN_INGRESS), running or not.
url() { echo "http://127.0.0.1:$PORT"; }
metrics_url() { echo "http://127.0.0.1:$METRICS_PORT/metrics"; }

case ${1:-} in
  start | restart | stop | status | url) "$1" ;;
  metrics-url) metrics_url ;;
  apis) need kubectl kube >/dev/null; install_routing_apis ;;
  *) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
