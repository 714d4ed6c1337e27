#!/usr/bin/env bash
# Prints the kwok Stages of the local cluster: kwok's own "fast" node and pod stages (read from the
# sigs.k8s.io/kwok module that scripts/toolchain.sh built kwok from), with one addition:
#
#   a container whose image tag is `never-ready` never becomes Ready
#
# so that tests and demos can deploy "an image that never becomes ready" on a cluster that runs no
# containers. kwokctl replaces all of its default stages as soon as one is configured, hence the
# whole set.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR/../..
source "$REPO/scripts/versions.env"

src=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
stage=$src/kustomize/stage

for file in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  echo "---"
  if [[ $file == pod/fast/pod-ready.yaml ]]; then
    # The only selector in that file: add the never-ready exception as its first expression.
    awk '{ print } /^    matchExpressions:$/ && !done {
      print "    - key: \x27.spec.containers.[].image | endswith(\":never-ready\")\x27"
      print "      operator: \x27NotIn\x27"
      print "      values:"
      print "      - \x27true\x27"
      done = 1 }' "$stage/$file"
  else
    cat "$stage/$file"
  fi
done
