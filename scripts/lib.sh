# shellcheck shell=bash
# What the scripts share; each sources it: `source "$REPO/scripts/lib.sh"`.
#
#   say MESSAGE...                 a progress line on stderr
#   die MESSAGE...                 an error line on stderr, prefixed with the script's name; exit 1
#   need TOOL TARGET               print TOOL's path; without it, die naming the toolchain target
#   kc ARGS...                     kubectl against the local cluster: $KUBECONFIG_OUT (and
#                                  --request-timeout=$KC_TIMEOUT when that is set)
#   alive PID                      that process runs (a zombie has exited: it only waits to be reaped)
#   wait_for WHAT TIMEOUT CMD...   run CMD until it succeeds, then say how long it took; die after
#                                  TIMEOUT seconds, naming WHAT (and $LOGS, when that is set)

LIB_SCRIPT=$(basename "$0" .sh)

say() { echo "==> $*" >&2; }

die() {
  echo "$LIB_SCRIPT: error: $*" >&2
  exit 1
}

need() { command -v "$1" || die "$1 not found; build it with: scripts/toolchain.sh $2"; }

kc() {
  # shellcheck disable=SC2154 # KUBECONFIG_OUT is the sourcing script's
  kubectl --kubeconfig "$KUBECONFIG_OUT" ${KC_TIMEOUT:+"--request-timeout=$KC_TIMEOUT"} "$@"
}

alive() { [[ $1 =~ ^[0-9]+$ && -d /proc/$1 && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

wait_for() {
  local what=$1 timeout=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < timeout)) || die "timed out after ${timeout}s waiting for $what${LOGS:+ (logs: $LOGS)}"
    sleep 0.5
  done
  say "$what ($((SECONDS - t0)) s)"
}
