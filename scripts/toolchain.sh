#!/usr/bin/env bash
# Build (or reuse) the pinned tools from Go modules / PyPI / apt; nothing prebuilt is downloaded.
#
#   scripts/toolchain.sh [--budget-minutes N] TOOL...   build what is missing
#   scripts/toolchain.sh --print-path                   PATH entries of the cached bin dirs
#   scripts/toolchain.sh --print-provider               where Pulumi finds the provider plugin
#   scripts/toolchain.sh --print-dir TOOL               a tool's cache dir, built or not (CRD tools: crds/)
#
# TOOL: helm kube-score pulumi langhost kubernetes-provider kube etcd kwok traefik traefik-crds
# gateway-api vegeta versitygw argo-rollouts kube-router, or a group:
#   chart         what the chart tier needs (make test builds it first): helm kube-score
#   for-local     what `make up` needs with the local cluster: for-user, kwok, etcd, kube, traefik,
#                 traefik-crds, gateway-api
#   for-user      what it needs with your own cluster (KUBECONFIG): helm pulumi langhost provider
#   e2e           the e2e tier: for-local, vegeta (the counted HTTP load through every step),
#                 versitygw (an S3 gateway for Pulumi state) and kube-router (enforces
#                 NetworkPolicies on the local node for their test)
#   bench         e2e and argo-rollouts (the peer the benchmarks compare with)
#   all           everything
# A tool you already have is used as it is: a pulumi on PATH at the pinned version or newer (then
# the stand-in language host is not needed: your pulumi brings its own), the provider in Pulumi's
# plugin cache, helm/kube-score/kube/kwok/traefik/vegeta/versitygw/argo-rollouts/kube-router on
# PATH at the pinned version.
#   kube = kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and a
#   matching kubectl. argo-rollouts = rollouts-controller and kubectl-argo-rollouts (the plugin),
#   and its CRDs in <tool dir>/crds/. kube-router = the local node's optional NetworkPolicy enforcer
#   (scripts/netpol.sh), in the e2e group. traefik-crds and gateway-api are CRDs only (<tool dir>/crds/):
#   Traefik's own (Middleware, ...) and the Gateway API's standard channel, which the local Traefik
#   serves (scripts/ingress/traefik.sh applies them).
# Cache: ${BLUEGREEN_CACHE:-$HOME/.cache/bluegreen}/tools/<tool>-<version>/bin/
# SC2317 off for the whole file: the builders and post-steps are called by name ("build_$tool",
# "post_$tool"), so ShellCheck takes them, and the helpers only they use, for unreachable code.
# shellcheck disable=SC2317
set -euo pipefail
export GOWORK=off # builds happen inside copied modules, never in a workspace

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR/..
source "$REPO/scripts/versions.env"
TOOLS_DIR="${BLUEGREEN_CACHE:-$HOME/.cache/bluegreen}/tools"
ALL_TOOLS=(helm kube-score pulumi langhost kubernetes-provider kwok etcd kube traefik traefik-crds gateway-api
  vegeta versitygw argo-rollouts kube-router)
START=$SECONDS
BUDGET_MIN=""
SKIPPED=()
WORK=""   # build dir in progress, removed if we are interrupted
TICKER="" # pid of the progress ticker
trap '[[ -z $TICKER ]] || kill "$TICKER" 2>/dev/null; [[ -z $WORK ]] || rm -rf "$WORK"' EXIT

# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

# --- per-tool facts -------------------------------------------------------------------------

version_of() {
  case $1 in
    helm) echo "$HELM_VERSION" ;;
    kube-score) echo "$KUBE_SCORE_VERSION" ;;
    pulumi) echo "$PULUMI_VERSION" ;;
    langhost) echo "$PULUMI_VERSION-$(langhost_hash)" ;;
    kubernetes-provider) echo "$PULUMI_KUBERNETES_VERSION" ;;
    kube) echo "$KUBERNETES_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    etcd) echo "${ETCD_VERSION:-debian}" ;;
    traefik | traefik-crds) echo "$TRAEFIK_VERSION" ;;
    gateway-api) echo "$GATEWAY_API_VERSION" ;;
    vegeta) echo "$VEGETA_VERSION" ;;
    versitygw) echo "$VERSITYGW_VERSION" ;;
    argo-rollouts) echo "$ARGO_ROLLOUTS_VERSION" ;;
    kube-router) echo "$KUBE_ROUTER_VERSION" ;;
    *) die "unknown tool '$1' (known: ${ALL_TOOLS[*]}; groups: chart for-local for-user e2e bench all)" ;;
  esac
}

# The language host is built from this checkout's scripts/langhost/: its cache entry is keyed by
# the pulumi version and a hash of its sources, so an edited host is rebuilt, not reused.
langhost_hash() {
  cat "$REPO"/scripts/langhost/*.go "$REPO/scripts/langhost/go.mod" "$REPO/scripts/langhost/go.sum" |
    sha256sum | cut -c1-12
}

# Binaries that must all exist for a cache hit.
bins_of() {
  case $1 in
    helm) echo helm ;;
    kube-score) echo kube-score ;;
    pulumi) echo pulumi ;;
    langhost) echo pulumi-language-python pulumi-language-python-exec ;;
    kubernetes-provider) echo pulumi-resource-kubernetes ;;
    kube) echo kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy ;;
    kwok) echo kwok kwokctl ;;
    etcd) echo etcd ;;
    traefik) echo traefik ;;
    vegeta) echo vegeta ;;
    versitygw) echo versitygw ;;
    argo-rollouts) echo rollouts-controller kubectl-argo-rollouts ;;
    kube-router) echo kube-router ;;
    traefik-crds | gateway-api) ;; # CRDs only: see has_crds
  esac
}

# Tools whose cache entry must hold CRDs in crds/ (a tool of CRDs only is never "on PATH").
has_crds() { [[ $1 == traefik-crds || $1 == gateway-api || $1 == argo-rollouts ]]; }

# Cold build estimate in minutes, about 1.2x what was measured here (2 cores, empty Go build and
# module caches, `toolchain.sh e2e` in this order; seconds): helm 191, pulumi 436,
# kubernetes-provider 850, kwok 156, etcd 48, kube 543 (with kubelet, kube-proxy and kubectl),
# traefik 542. All together: 47 min. Measured later, alone (`toolchain.sh versitygw`, then
# `toolchain.sh argo-rollouts`, each with empty Go module and build caches, while an e2e run shared
# the 2 cores): versitygw 200, argo-rollouts 560 (both binaries; the go1.27.3 download included);
# kube-score 104 (`toolchain.sh kube-score`, empty Go module and build caches); vegeta 31 (likewise).
# langhost 38 (`GOCACHE=$(mktemp -d) toolchain.sh langhost`: empty build cache, modules already
# downloaded, other work on the cores; 40 with an empty module cache too).
estimate_of() {
  case $1 in
    helm) echo 4 ;;
    kube-score) echo 3 ;;
    pulumi) echo 9 ;;
    langhost) echo 1 ;;
    kubernetes-provider) echo 17 ;;
    kube) echo 11 ;;
    kwok) echo 3 ;;
    etcd) echo 1 ;;
    traefik) echo 11 ;;
    vegeta) echo 1 ;;
    versitygw) echo 4 ;;
    argo-rollouts) echo 12 ;;
    kube-router) echo 6 ;;
    traefik-crds | gateway-api) echo 1 ;; # a module download (seconds when the module is cached)
  esac
}

# True when a suitable binary is already on PATH (then we neither build nor cache).
on_path() {
  local v
  case $1 in
    helm) v=$(helm version --template '{{.Version}}' 2>/dev/null) && [[ $v == "v$HELM_VERSION" ]] ;;
    kube-score) v=$(kube-score version 2>/dev/null) && is_kube_score_version "$v" ;;
    pulumi) v=$(pulumi version 2>/dev/null) && at_least "${v#v}" "$PULUMI_VERSION" ;;
    kubernetes-provider) [[ -x $(plugin_binary) ]] ;;
    kube)
      for b in kube-apiserver kube-controller-manager kube-scheduler; do
        v=$("$b" --version 2>/dev/null) && [[ $v == "Kubernetes v$KUBERNETES_VERSION" ]] || return 1
      done ;;
    kwok)
      for b in kwok kwokctl; do
        v=$("$b" --version 2>/dev/null) && [[ $v == *"$KWOK_VERSION"* ]] || return 1
      done ;;
    traefik) v=$(traefik version 2>/dev/null) && [[ $v =~ Version:[[:space:]]+v?$TRAEFIK_VERSION$'\n' ]] ;;
    versitygw) v=$(versitygw --version 2>/dev/null) && is_versitygw_version "$v" ;;
    vegeta) v=$(vegeta -version 2>/dev/null) && is_vegeta_version "$v" ;;
    kube-router) v=$(kube-router --version 2>&1) && is_kube_router_version "$v" ;;
    argo-rollouts)
      v=$(rollouts-controller --version 2>/dev/null) && is_argo_version "$v" || return 1
      v=$(kubectl-argo-rollouts version --short 2>/dev/null) && is_argo_version "${v#kubectl-argo-rollouts: }" ;;
    *) return 1 ;;
  esac
}

# Where a tool that is not ours was found, for the log.
found_at() {
  case $1 in
    kubernetes-provider) echo "in Pulumi's plugin cache: $(plugin_binary)" ;;
    pulumi) echo "on PATH: $(command -v pulumi) ($(pulumi version))" ;;
    *) echo "on PATH: $(command -v "$(bins_of "$1" | cut -d' ' -f1)")" ;;
  esac
}

# --- helpers ---------------------------------------------------------------------------------

# at_least VERSION MINIMUM: dotted versions compared part by part (3.261.0 >= 3.260.0).
at_least() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1) == "$2" ]]; }

# Where Pulumi looks for the provider: $PULUMI_HOME, else ~/.pulumi of the user's passwd entry
# (Pulumi asks the user database, not $HOME).
plugin_binary() {
  local home=${PULUMI_HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)/.pulumi}
  echo "$home/plugins/resource-kubernetes-v$PULUMI_KUBERNETES_VERSION/pulumi-resource-kubernetes"
}

# The user's own pulumi (not built here): the first on PATH outside our cache, if it is at the
# pinned version or newer. It is used as it is, brings its own language host, and wins over a
# pulumi we built earlier (which then stays off PATH).
users_pulumi_path() {
  local dir v IFS=:
  for dir in $PATH; do
    [[ -n $dir && $dir != "$TOOLS_DIR"/* && -x $dir/pulumi ]] || continue
    v=$("$dir/pulumi" version 2>/dev/null) && at_least "${v#v}" "$PULUMI_VERSION" && echo "$dir/pulumi"
    return
  done
  return 1
}
users_pulumi() { users_pulumi_path >/dev/null; }

# Run a long command with an elapsed-time line every 30 s, so a cold build never looks hung.
with_ticker() {
  local label=$1 t0=$SECONDS; shift
  # ($$ is this script: the ticker also stops if the script is killed. sleep's output goes to
  # /dev/null, so a sleep outliving the killed ticker cannot hold a caller's pipe open.)
  ( while sleep 30 >/dev/null 2>&1 && kill -0 $$ 2>/dev/null; do
      echo "    ... $label: $((SECONDS - t0)) s elapsed" >&2
    done ) &
  local rc=0
  TICKER=$!
  "$@" || rc=$?
  kill "$TICKER" 2>/dev/null; wait "$TICKER" 2>/dev/null || true
  TICKER=""
  return "$rc"
}

# Directory of a downloaded module (the module cache is read-only; copy before editing).
mod_dir() {
  (cd /tmp && go mod download -json "$1" | python3 -c '
import json, sys
m = json.load(sys.stdin)
if "Dir" not in m: sys.exit("go mod download %s: %s" % (sys.argv[1], m.get("Error")))
print(m["Dir"])' "$1")
}

# Writable copy of a module, for builds that must edit go.mod.
mod_copy() {
  local src dst=$2
  src=$(mod_dir "$1")
  cp -r "$src" "$dst"
  chmod -R u+w "$dst"
}

# --- builders: each gets a fresh work dir ($1) and fills $1/bin ---------------------------

build_helm() {
  local pkg=helm.sh/helm/v3 v=v$HELM_VERSION client_go major minor flags
  # Like helm's Makefile: the Kubernetes version assumed without a cluster (`helm template`,
  # `helm lint`) follows the client-go it is built with (v0.37.x -> 1.37); Go's default is 1.20.
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$(mod_dir "$pkg@$v")/go.mod")
  IFS=. read -r major minor _ <<<"${client_go#v}"
  major=$((major + 1))
  flags="-s -w -X $pkg/internal/version.version=$v -X $pkg/internal/version.metadata="
  flags+=" -X $pkg/pkg/chartutil.k8sVersionMajor=$major -X $pkg/pkg/chartutil.k8sVersionMinor=$minor"
  flags+=" -X $pkg/pkg/lint/rules.k8sVersionMajor=$major -X $pkg/pkg/lint/rules.k8sVersionMinor=$minor"
  GOBIN="$1/bin" GOFLAGS=-buildvcs=false with_ticker helm go install -trimpath -ldflags "$flags" "$pkg/cmd/helm@$v"
}

# kube-score, the chart tier's static checks of the rendered chart: no replace lines, so `go install`
# works. Ldflags like upstream's release (goreleaser's defaults, CGO_ENABLED=0): main.version is the
# version without its "v"; main.commit and main.date keep their defaults ("N/A"), unknown outside git.
build_kube-score() {
  local v=$KUBE_SCORE_VERSION
  GOBIN="$1/bin" CGO_ENABLED=0 GOFLAGS=-buildvcs=false with_ticker kube-score \
    go install -trimpath -ldflags "-s -w -X main.version=$v" "github.com/zegl/kube-score/cmd/kube-score@v$v"
  local got; got=$("$1/bin/kube-score" version)
  is_kube_score_version "$got" || die "built kube-score reports '$got', want $v"
}

# `kube-score version` prints "kube-score version: X.Y.Z, commit: ..., built: ...".
is_kube_score_version() { [[ $1 == "kube-score version: $KUBE_SCORE_VERSION, "* ]]; }

build_pulumi() {
  local v=v$PULUMI_VERSION src=$1/src
  mod_copy "github.com/pulumi/pulumi/pkg/v3@$v" "$src"
  # pkg/go.mod points the sdk at ../sdk (a monorepo path); use the published sdk instead.
  (cd "$src" && go mod edit -dropreplace=github.com/pulumi/pulumi/sdk/v3 -require="github.com/pulumi/pulumi/sdk/v3@$v")
  (cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" with_ticker pulumi \
    go build -trimpath -tags osusergo,grpcnotrace -o "$1/bin/pulumi" \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$v" ./cmd/pulumi)
  rm -rf "$src"
  local got; got=$("$1/bin/pulumi" version)
  [[ $got == "$v" ]] || die "built pulumi reports '$got', want $v"
}

# Pulumi's Python language host module is not served by the proxy: scripts/langhost/ holds a
# stand-in, a small Go program on the SDK's gRPC stubs. Beside it goes the SDK's exec shim (from
# the sdk/v3 module, python/cmd/), which runs the user's program.
build_langhost() {
  local v=$PULUMI_VERSION sdk got
  (cd "$REPO/scripts/langhost" && GOFLAGS=-buildvcs=false with_ticker langhost \
    go build -trimpath -ldflags="-s -w" -o "$1/bin/pulumi-language-python" .)
  # The host reports the SDK version of its go.mod: it must be the CLI's.
  got=$(go version -m "$1/bin/pulumi-language-python" | awk '$2 == "github.com/pulumi/pulumi/sdk/v3" {print $3}')
  [[ $got == "v$v" ]] || die "scripts/langhost/go.mod requires github.com/pulumi/pulumi/sdk/v3 $got, want v$v (PULUMI_VERSION)"
  sdk=$(mod_dir "github.com/pulumi/pulumi/sdk/v3@v$v")
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$1/bin/pulumi-language-python-exec"
}

build_kubernetes-provider() {
  local mod=github.com/pulumi/pulumi-kubernetes/provider/v4 src=$1/src
  local ver=$PULUMI_KUBERNETES_VERSION
  mod_copy "$mod@$PULUMI_KUBERNETES_PROVIDER_MODULE_VERSION" "$src"
  # Its go.mod points the sdk at ../sdk; without the replace, its own require (v4.24.0) applies.
  (cd "$src" && go mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4)
  # schema-embed.json is generated (gitignored upstream), so it is not in the module zip.
  (cd "$src/cmd/pulumi-resource-kubernetes" && GOFLAGS="-mod=mod -buildvcs=false" VERSION=$ver \
    with_ticker "provider generate" go run generate.go)
  (cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" with_ticker kubernetes-provider \
    go build -trimpath -o "$1/bin/pulumi-resource-kubernetes" \
    -ldflags "-s -w -X $mod/pkg/version.Version=$ver" ./cmd/pulumi-resource-kubernetes)
  rm -rf "$src"
}

build_kube() {
  local v=$KUBERNETES_VERSION src=$1/src minor
  minor=$(cut -d. -f2 <<<"$v")
  mod_copy "k8s.io/kubernetes@v$v" "$src"
  # Staging repos are published as k8s.io/X v0.<minor>.<patch>; point each replace there.
  local edits=() m
  for m in $(cd "$src" && go mod edit -json | python3 -c '
import json,sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"): print(r["Old"]["Path"])'); do
    edits+=("-replace=$m=$m@v0.${v#1.}")
  done
  # The zip also ships a go.work over ./staging and a vendor dir; neither applies any more.
  (cd "$src" && go mod edit "${edits[@]}" && rm -rf vendor go.work go.work.sum)
  local pkg=k8s.io/component-base/version
  (cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" with_ticker kube \
    go build -trimpath -o "$1/bin/" \
    -ldflags "-s -w -X $pkg.gitVersion=v$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
    ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubectl \
    ./cmd/kubelet ./cmd/kube-proxy)
  rm -rf "$src"
}

build_kwok() {
  local v=v$KWOK_VERSION
  GOBIN="$1/bin" GOFLAGS=-buildvcs=false with_ticker kwok \
    go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$v" "sigs.k8s.io/kwok/cmd/kwokctl@$v"
}

# etcd: built from go.etcd.io/etcd/server/v3 when versions.env pins ETCD_VERSION (its go.mod
# points api/client/pkg at ../ paths, so drop those replaces); otherwise Debian's etcd-server
# (3.4.x: works, but lacks watch progress requests, so the apiserver disables RequestWatchProgress).
build_etcd() {
  if [[ -n ${ETCD_VERSION:-} ]]; then
    local v=v$ETCD_VERSION src=$1/src m drops=()
    mod_copy "go.etcd.io/etcd/server/v3@$v" "$src"
    for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do drops+=("-dropreplace=go.etcd.io/etcd/$m"); done
    (cd "$src" && go mod edit "${drops[@]}")
    (cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" with_ticker etcd \
      go build -trimpath -ldflags "-s -w" -o "$1/bin/etcd" .)
    rm -rf "$src"
    return 0
  fi
  if ! [[ -x /usr/bin/etcd ]]; then
    command -v apt-get >/dev/null || die "etcd: no /usr/bin/etcd and no apt-get"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >&2
    # Debian starts a system etcd on :2379; the local cluster brings its own.
    systemctl disable --now etcd >/dev/null 2>&1 || service etcd stop >/dev/null 2>&1 || true
  fi
  ln -s /usr/bin/etcd "$1/bin/etcd"
}

# Traefik (the ingress controller, scripts/ingress/): its go.mod has replace lines, so `go install`
# refuses it; build a copy with -mod=mod, like upstream's Makefile (CGO_ENABLED=0, version ldflags).
# The module zip ships webui/static with only a placeholder file (the dashboard's assets are built
# with yarn in Docker upstream); that is enough for its go:embed, and the dashboard stays off.
build_traefik() {
  local v=$TRAEFIK_VERSION src=$1/src pkg=github.com/traefik/traefik/v3/pkg/version codename
  mod_copy "github.com/traefik/traefik/v3@v$v" "$src"
  # The release workflow names the codename (3.6: ramequin); the source default is "cheddar".
  codename=$(awk '$1 == "CODENAME:" {print $2; exit}' "$src/.github/workflows/release.yaml" 2>/dev/null || true)
  (cd "$src" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" with_ticker traefik \
    go build -trimpath -o "$1/bin/traefik" \
    -ldflags "-s -w -X $pkg.Version=$v -X $pkg.Codename=${codename:-cheddar} -X $pkg.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    ./cmd/traefik)
  rm -rf "$src"
  local got; got=$("$1/bin/traefik" version)
  [[ $got =~ Version:[[:space:]]+$v$'\n' ]] || die "built traefik reports '$got', want $v"
}

# Traefik's CRDs (Middleware, IngressRoute, ...), which its kubernetesCRD provider watches: all of
# them, or the provider cannot start its informers. One file in the module's docs, generated from
# the same types as the binary.
build_traefik-crds() {
  local src
  src=$(mod_dir "github.com/traefik/traefik/v3@v$TRAEFIK_VERSION")
  mkdir -p "$1/crds"
  cp "$src/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml" "$1/crds/traefik.yaml"
}

# The Gateway API's standard-channel CRDs (GatewayClass, Gateway, HTTPRoute, ...) at the version
# Traefik is built with (its go.mod), from the module's config/crd/standard.
build_gateway-api() {
  local src wanted
  wanted=$(awk '$1 == "sigs.k8s.io/gateway-api" {print $2; exit}' \
    "$(mod_dir "github.com/traefik/traefik/v3@v$TRAEFIK_VERSION")/go.mod")
  [[ $wanted == "v$GATEWAY_API_VERSION" ]] ||
    die "gateway-api: traefik $TRAEFIK_VERSION requires sigs.k8s.io/gateway-api $wanted; set GATEWAY_API_VERSION to match"
  src=$(mod_dir "sigs.k8s.io/gateway-api@v$GATEWAY_API_VERSION")
  mkdir -p "$1/crds"
  cp "$src"/config/crd/standard/*.yaml "$1/crds/"
}

# vegeta, the HTTP load generator of the e2e tier and the benchmarks (bench/traffic.py runs
# `vegeta attack | vegeta encode`). No replace lines: `go install` works. Ldflags like upstream's
# Makefile (CGO_ENABLED=0; main.Version is the tag, main.Date the build date); main.Commit comes
# from git, unknown here, and stays empty. Its JSON results (`vegeta encode`) carry each
# response's status, timestamp, latency, error and headers (the `headers` field of v12.13.0's
# lib/results.go).
build_vegeta() {
  local v=v$VEGETA_VERSION
  GOBIN="$1/bin" CGO_ENABLED=0 GOFLAGS=-buildvcs=false with_ticker vegeta \
    go install -trimpath -ldflags "-s -w -X main.Version=$v -X main.Date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "github.com/tsenart/vegeta/v12@$v"
  local got; got=$("$1/bin/vegeta" -version)
  is_vegeta_version "$got" || die "built vegeta reports '$got', want $v"
}

# `vegeta -version` prints "Version: vX.Y.Z" on a line of its own (then Commit, Runtime, Date).
is_vegeta_version() { [[ $'\n'$1$'\n' == *$'\n'"Version: v$VEGETA_VERSION"$'\n'* ]]; }

# versitygw, the S3 gateway e2e tests keep Pulumi state in: no replace lines, so `go install` works.
# Ldflags like upstream's Makefile and Dockerfile (CGO_ENABLED=0; main.Version is the tag). Its
# main.Build is the git commit, unknown outside git: it keeps its default, "norev".
# Run it on 127.0.0.1 only, with a posix directory as the backend (each top-level directory of DIR
# is a bucket; DIR's filesystem must support user xattrs, as ext4 does):
#   ROOT_ACCESS_KEY=KEY ROOT_SECRET_KEY=SECRET versitygw --port 127.0.0.1:PORT --quiet posix DIR
# (or --access KEY --secret SECRET). Global options go before `posix`, backend options after it.
# The default --port is :7070, every address: always pass 127.0.0.1:PORT. Then it listens there
# only (the admin API, WebUI and website listeners are off unless --admin-port, --webui, --website
# ask for them). One root account, region us-east-1 (--region); SIGTERM stops it. A bucket:
#   curl --aws-sigv4 aws:amz:us-east-1:s3 --user KEY:SECRET -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
#     -X PUT http://127.0.0.1:PORT/BUCKET
# Pulumi state in it (checked with stack init, up and stack output; the SDK is aws-sdk-go-v2, whose
# URL parameters these are):
#   AWS_ACCESS_KEY_ID=KEY AWS_SECRET_ACCESS_KEY=SECRET AWS_EC2_METADATA_DISABLED=true \
#   PULUMI_BACKEND_URL="s3://BUCKET?endpoint=http://127.0.0.1:PORT&use_path_style=true&region=us-east-1"
build_versitygw() {
  local v=v$VERSITYGW_VERSION
  GOBIN="$1/bin" CGO_ENABLED=0 GOFLAGS=-buildvcs=false with_ticker versitygw \
    go install -trimpath \
    -ldflags "-s -w -X main.Version=$v -X main.BuildTime=$(date -u +%Y-%m-%d_%I:%M:%S%p)" \
    "github.com/versity/versitygw/cmd/versitygw@$v"
  local got; got=$("$1/bin/versitygw" --version)
  is_versitygw_version "$got" || die "built versitygw reports '$got', want $v"
}

# `versitygw --version` prints "Version  : vX.Y.Z" on a line of its own (then Build, BuildTime).
is_versitygw_version() { [[ $'\n'$1$'\n' == *$'\n'"Version  : v$VERSITYGW_VERSION"$'\n'* ]]; }

# Argo Rollouts, the peer the benchmarks compare with (not needed by `make up` or the e2e tier).
# Its go.mod asks for go 1.26.10, newer than the installed Go: the approved newer toolchain
# (ARGO_ROLLOUTS_GOTOOLCHAIN, fetched once from the module proxy) runs this build only, the
# download of its module included. Its go.mod has replace lines (k8s.io/* pinned, forks), so
# `go install` refuses it: build a copy with -mod=mod. Ldflags like upstream's Makefile: version
# from the tag, buildDate; gitCommit comes from git, unknown here, so both binaries report
# "v$ARGO_ROLLOUTS_VERSION+unknown". (The Makefile's "-X <module>.gitTag" names a variable that does
# not exist, so by its rules a release build prints "vX.Y.Z+<commit>", never the bare tag either.)
# The plugin needs 35 packages beyond the controller's 1713 (`go list -deps`), so one `go build`
# makes both; the 560 s measured cover the two. Its dashboard (`kubectl argo rollouts dashboard`)
# serves server/static, which upstream fills with a pnpm build of ui/; the module ships only a
# placeholder there, so that page is empty here (the other commands do not use it).
# CRDs: the ones manifests/crds/kustomization.yaml lists are copied to <tool dir>/crds/. Each is over
# 256 KiB, so apply them server-side, as upstream's README does (a client-side apply would put each
# in a last-applied annotation, which is limited to 256 KiB):
#   kubectl apply --server-side -f "${BLUEGREEN_CACHE:-$HOME/.cache/bluegreen}/tools/argo-rollouts-$ARGO_ROLLOUTS_VERSION/crds/"
# Out of cluster (read from cmd/rollouts-controller/main.go and controller/controller.go):
#   POD_NAMESPACE=argo-rollouts rollouts-controller --kubeconfig "$KUBECONFIG" \
#     --leader-elect=false --metricsPort PORT1 --healthzPort PORT2 [--namespaced --namespace NS]
# - --kubeconfig, plus kubectl's override flags (--context, --namespace, --server, --token, ...).
# - It watches every namespace unless --namespaced: then only the kubeconfig's namespace (or
#   --namespace's), and it needs no cluster-wide RBAC.
# - Metrics (/metrics, --metricsPort, default 8090) and health (/healthz, --healthzPort, default
#   8080) listen on 0.0.0.0:PORT: there is no bind-address flag, so pick free ports.
# - Leader election is on by default (a Lease named argo-rollouts-controller-lock in $POD_NAMESPACE,
#   else the namespace of an in-pod service account, else "argo-rollouts"); --leader-elect=false
#   turns it off. The notification ConfigMap and Secret are read from that namespace too.
# - --instance-id ID: only objects labelled argo-rollouts.argoproj.io/controller-instance-id=ID
#   (without it: only objects without that label).
# - --loglevel debug|info|warn|error, --kloglevel N; --version prints the version and exits.
build_argo-rollouts() {
  local v=$ARGO_ROLLOUTS_VERSION src=$1/src pkg=github.com/argoproj/argo-rollouts/utils/version crds=()
  local -x GOTOOLCHAIN=$ARGO_ROLLOUTS_GOTOOLCHAIN
  mod_copy "github.com/argoproj/argo-rollouts@v$v" "$src"
  mapfile -t crds < <(awk '$1 == "resources:" {r = 1; next} r && $1 == "-" {print $2; next} {r = 0}' \
    "$src/manifests/crds/kustomization.yaml")
  ((${#crds[@]})) || die "argo-rollouts: no CRDs listed in manifests/crds/kustomization.yaml"
  mkdir -p "$1/crds"
  cp "${crds[@]/#/$src/manifests/crds/}" "$1/crds/"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" with_ticker argo-rollouts \
    go build -trimpath -o "$1/bin/" \
    -ldflags "-s -w -X $pkg.version=$v -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    ./cmd/rollouts-controller ./cmd/kubectl-argo-rollouts)
  rm -rf "$src"
  local got
  got=$("$1/bin/rollouts-controller" --version)
  is_argo_version "$got" || die "built rollouts-controller reports '$got', want v$v"
  got=$("$1/bin/kubectl-argo-rollouts" version --short)
  is_argo_version "${got#kubectl-argo-rollouts: }" || die "built kubectl-argo-rollouts reports '$got', want v$v"
}

# vX.Y.Z, or vX.Y.Z+<commit or "unknown">: what Argo Rollouts binaries print for the pinned version.
is_argo_version() { [[ $1 == "v$ARGO_ROLLOUTS_VERSION" || $1 == "v$ARGO_ROLLOUTS_VERSION+"* ]]; }

# kube-router, the local node's optional NetworkPolicy enforcer (scripts/netpol.sh runs its firewall
# only). No replace lines: `go install` works. Ldflags like upstream's Makefile: pkg/version.Version
# (the tag there; git describe) and BuildDate.
build_kube-router() {
  local v=v$KUBE_ROUTER_VERSION pkg=github.com/cloudnativelabs/kube-router/v2
  GOBIN="$1/bin" CGO_ENABLED=0 GOFLAGS=-buildvcs=false with_ticker kube-router \
    go install -trimpath \
    -ldflags "-s -w -X $pkg/pkg/version.Version=$v -X $pkg/pkg/version.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "$pkg/cmd/kube-router@$v"
  local got; got=$("$1/bin/kube-router" --version 2>&1)
  is_kube_router_version "$got" || die "built kube-router reports '$got', want $v"
}

# `kube-router --version` prints "Running <path> version vX.Y.Z, built on <date>, <go version>".
is_kube_router_version() { [[ $1 == *" version v$KUBE_ROUTER_VERSION, "* ]]; }

# --- driver ----------------------------------------------------------------------------------

cached() {
  local tool=$1 dir=$2 b
  for b in $(bins_of "$tool"); do [[ -x $dir/bin/$b ]] || return 1; done
  ! has_crds "$tool" || compgen -G "$dir/crds/*.yaml" >/dev/null
}

ensure() {
  local tool=$1 ver dir work t0 secs est
  ver=$(version_of "$tool")
  dir=$TOOLS_DIR/$tool-$ver
  if [[ $tool == pulumi || $tool == langhost ]] && users_pulumi; then
    local yours; yours=$(users_pulumi_path)
    if [[ $tool == pulumi ]]; then
      say "pulumi: using yours, found on PATH: $yours ($("$yours" version)) (pinned: $ver)"
    else
      say "langhost: not needed: $yours ($("$yours" version)) runs its own language host"
    fi
    return 0
  elif cached "$tool" "$dir"; then
    say "$tool $ver cached"
  elif on_path "$tool"; then
    say "$tool: using yours, found $(found_at "$tool") (pinned: $ver)"
    return 0
  else
    est=$(estimate_of "$tool")
    if [[ -n $BUDGET_MIN ]] && ((est > BUDGET_MIN - (SECONDS - START) / 60)); then
      say "SKIPPING $tool $ver: cold build takes about $est min, only $((BUDGET_MIN - (SECONDS - START) / 60)) min of the ${BUDGET_MIN}-min budget left"
      SKIPPED+=("$tool")
      return 0
    fi
    say "building $tool $ver (cold build, about $est min)"
    mkdir -p "$TOOLS_DIR"
    # Leftovers of builds killed too hard to clean up after themselves.
    find "$TOOLS_DIR" -maxdepth 1 -name ".building-$tool-$ver.*" -mmin +180 -exec rm -rf {} + 2>/dev/null || true
    WORK=$(mktemp -d "$TOOLS_DIR/.building-$tool-$ver.XXXXXX")
    work=$WORK
    mkdir -p "$work/bin"
    t0=$SECONDS
    # set -e is ignored inside anything run as a condition, a subshell included: run the builder
    # as a job of its own, so its first failing step ends it, and then check what it left.
    "build_$tool" "$work" &
    if ! wait $! || ! cached "$tool" "$work"; then
      rm -rf "$work"
      WORK=""
      [[ -n $BUDGET_MIN ]] || die "building $tool $ver failed (see the output above)"
      say "FAILED to build $tool $ver; going on (budget mode)"
      SKIPPED+=("$tool")
      return 0
    fi
    secs=$((SECONDS - t0))
    echo "$secs" > "$work/build-seconds"
    # Swap in whole: a half-built dir never has a complete bin/, so a re-run rebuilds it.
    # (-T: if a concurrent run got there first, keep theirs instead of nesting ours inside.)
    rm -rf "$dir"
    mv -T "$work" "$dir" 2>/dev/null || true
    rm -rf "$work"
    WORK=""
    say "$tool $ver ready in $secs s"
  fi
  [[ -z $(type -t "post_$tool") ]] || "post_$tool" "$dir" || {
    [[ -n $BUDGET_MIN ]] || die "setting up $tool $ver failed"
    say "FAILED to set up $tool $ver; going on (budget mode)"
    SKIPPED+=("$tool")
  }
}

post_langhost() { link_langhost; }
post_pulumi() { link_langhost; }

# The engine treats pulumi-language-python as bundled: found on PATH anywhere but next to the
# pulumi binary, it prints "warning: using pulumi-language-python from $PATH" on every run.
# So link the language host into pulumi's own bin dir, when that dir is ours.
link_langhost() {
  local pbin=$TOOLS_DIR/pulumi-$PULUMI_VERSION/bin lbin f
  lbin=$TOOLS_DIR/langhost-$(version_of langhost)/bin
  [[ -x $pbin/pulumi && -d $lbin ]] || return 0
  for f in pulumi-language-python pulumi-language-python-exec; do
    ln -sfn "$lbin/$f" "$pbin/$f"
  done
}

# The engine looks in the plugin cache by exact version; install our binary there (no download).
post_kubernetes-provider() {
  local dir=$1 ver=$PULUMI_KUBERNETES_VERSION pulumi
  [[ -x $(plugin_binary) ]] && return 0
  pulumi=$(PATH="$(print_path):$PATH" command -v pulumi) || {
    echo "toolchain: kubernetes-provider: need pulumi to install the plugin (scripts/toolchain.sh pulumi)" >&2
    return 1
  }
  "$pulumi" plugin install resource kubernetes "$ver" --file "$dir/bin/pulumi-resource-kubernetes" >&2
  say "installed pulumi-resource-kubernetes $ver as $(plugin_binary)"
}

# The stand-in language host is never on PATH: Pulumi prefers a host found on PATH over its own,
# so it would shadow the official host of an installed CLI. It is linked next to our pulumi only.
print_path() {
  local tool dir out="" skip_pulumi=""
  users_pulumi && skip_pulumi=1
  for tool in "${ALL_TOOLS[@]}"; do
    [[ $tool == kubernetes-provider || $tool == langhost ]] && continue
    [[ -z $(bins_of "$tool") ]] && continue
    [[ $tool == pulumi && -n $skip_pulumi ]] && continue
    dir=$TOOLS_DIR/$tool-$(version_of "$tool")/bin
    [[ -d $dir ]] && out+="${out:+:}$dir"
  done
  echo "$out"
}

expand() {
  case $1 in
    chart) echo helm kube-score ;;
    for-local) echo helm pulumi langhost kubernetes-provider kwok etcd kube traefik traefik-crds gateway-api ;;
    for-user) echo helm pulumi langhost kubernetes-provider ;;
    e2e) echo "$(expand for-local) vegeta versitygw kube-router" ;;
    bench) echo "$(expand e2e) argo-rollouts" ;;
    all) echo "${ALL_TOOLS[*]}" ;;
    *) version_of "$1" >/dev/null && echo "$1" ;;
  esac
}

main() {
  local tools=() more=() list t
  while (($#)); do
    case $1 in
      --budget-minutes) BUDGET_MIN=${2:?--budget-minutes needs a number}; shift 2 ;;
      --print-path) print_path; return 0 ;;
      --print-provider) plugin_binary; return 0 ;;
      --print-dir) list=$(version_of "${2:?--print-dir needs a tool}") || return 1; echo "$TOOLS_DIR/$2-$list"; return 0 ;;
      -h | --help) sed -n '2,/^# Cache:/p' "$0" | sed 's/^# \{0,1\}//'; return 0 ;;
      *) list=$(expand "$1"); read -ra more <<<"$list"; tools+=("${more[@]}"); shift ;;
    esac
  done
  ((${#tools[@]})) || die "no tool given (try: scripts/toolchain.sh all)"
  command -v go >/dev/null || die "go is not installed"
  for t in "${tools[@]}"; do ensure "$t"; done
  if ((${#SKIPPED[@]})); then
    say "SKIPPED (not built, see above): ${SKIPPED[*]}"
  fi
  say "toolchain done in $((SECONDS - START)) s"
}

main "$@"; exit  # one line: a running script must not read past here if the file is edited
