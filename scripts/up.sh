#!/usr/bin/env bash
# Deploy the `staging` stack: build or reuse the toolchain, start the local cluster (unless your
# own KUBECONFIG is set), select or create the stack, and run `pulumi up --yes --refresh [ARGS...]`.
#   STACK=production scripts/up.sh          another stack
#   PROJECT=~/my-app scripts/up.sh          another Pulumi project (one that uses bluegreen)
#   scripts/up.sh --diff                    extra args go to `pulumi up`
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK=${STACK:-staging}
PROJECT=$(cd "${PROJECT:-$REPO}" && pwd)

# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

cd "$REPO"
[[ -f $PROJECT/Pulumi.yaml ]] || die "no Pulumi.yaml in $PROJECT"

if [[ ! -x .venv/bin/python ]]; then
  say "python venv (make venv)"
  make --no-print-directory venv
fi

say "environment (source scripts/activate)"
# shellcheck source-path=SCRIPTDIR/..
source scripts/activate
echo "    KUBECONFIG=${KUBECONFIG:-~/.kube/config} ($BLUEGREEN_CLUSTER cluster), PULUMI_BACKEND_URL=$PULUMI_BACKEND_URL" >&2

# With your own cluster, nothing for the local one is built.
say "toolchain (scripts/toolchain.sh for-$BLUEGREEN_CLUSTER)"
scripts/toolchain.sh "for-$BLUEGREEN_CLUSTER"
PATH="$(scripts/toolchain.sh --print-path):$PATH" # what was just built, first

if [[ $BLUEGREEN_CLUSTER == local ]]; then
  say "local cluster (scripts/cluster.sh up)"
  scripts/cluster.sh up
else
  say "using your cluster: context $(kubectl config current-context 2>/dev/null || echo "?") (KUBECONFIG=${KUBECONFIG:-~/.kube/config})"
fi

say "stack $STACK (pulumi stack select --create $STACK)"
pulumi -C "$PROJECT" stack select --create "$STACK"

# --refresh: the stack first learns what the cluster lost (a wiped cluster, a deleted namespace),
# so this recreates it instead of reporting everything unchanged.
say "pulumi up --yes --refresh $*"
log=$(mktemp)
if ! pulumi -C "$PROJECT" up --yes --refresh "$@" 2>&1 | tee "$log"; then
  # A killed update or release command leaves Pulumi's lock (and maybe a pending Helm revision):
  # Pulumi's own message names `pulumi cancel`; the one command that clears all of it is ours.
  if grep -q "the stack is currently locked" "$log"; then
    echo "==> the stack is locked. If no update is running (a killed \`pulumi up\` or \`bluegreen\` command" \
      "left the lock), \`bluegreen recover --stack $STACK\` clears it, settles the Helm release and finishes or" \
      "undoes the interrupted command; \`bluegreen status --stack $STACK\` shows what it left." >&2
  fi
  rm -f "$log"
  exit 1
fi
rm -f "$log"

if [[ $BLUEGREEN_CLUSTER == local ]]; then
  say "try it (in \`make shell\`, or after \`source scripts/activate\`):"
  for key in prodHost stageHost; do
    host=$(pulumi -C "$PROJECT" config get "$key")
    answer=$(curl -sS --max-time 5 -H "Host: $host" -w 'HTTP %{http_code}' "$BLUEGREEN_INGRESS/" 2>&1 | tr '\n' ' ') || true
    echo "    curl -H \"Host: \$(pulumi config get $key)\" \"\$BLUEGREEN_INGRESS/\"    # $answer" >&2
  done
fi
