#!/usr/bin/env bash
# Builds the real control plane the end-to-end tests run: kube-apiserver, kube-controller-manager
# and kube-scheduler of one pinned Kubernetes release, from its Go module, and kwok to play the
# kubelets. Binaries go to a cache folder keyed by version; a second run builds nothing.
#
#   e2e/build.sh            # prints the folder holding the binaries
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0
# and replaces them with ./staging paths, which a module of ours cannot see: our go.mod replaces
# each with its published v0.<minor>.<patch> release instead.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
CACHE="${SLOTWISE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slotwise-e2e}"
BIN="$CACHE/kubernetes-$KUBERNETES_VERSION-kwok-$KWOK_VERSION/bin"
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)
# kwok does nothing without Stages: its own "fast" ones (nodes ready at once, pods running once
# bound, Job pods completing, deleted pods gone); the node heartbeat is e2e/kwok-node-heartbeat.yaml.
# The stages' names head the file, so that a changed list is written again.
STAGES=(node/fast/node-initialize pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete)
STAGES_HEAD="# kwok stages: ${STAGES[*]}"

if [ "$(head -n1 "$BIN/kwok-stages.yaml" 2>/dev/null)" != "$STAGES_HEAD" ]; then
    command -v go >/dev/null || { echo "e2e/build.sh: Go is needed to fetch kwok's stages" >&2; exit 2; }
    stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
    [ -d "$stages" ] || (cd / && go mod download "sigs.k8s.io/kwok@$KWOK_VERSION")
    mkdir -p "$BIN"
    { echo "$STAGES_HEAD"; for stage in "${STAGES[@]}"; do cat "$stages/$stage.yaml"; echo "---"; done; } > "$BIN/kwok-stages.yaml"
fi

missing=()
for c in "${COMPONENTS[@]}" kwok; do [ -x "$BIN/$c" ] || missing+=("$c"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { echo "e2e/build.sh: Go is needed to build ${missing[*]}" >&2; exit 2; }

mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
staging_version="v0.${KUBERNETES_VERSION#v1.}"
go mod init slotwise.io/e2e-components >/dev/null 2>&1
go mod edit -require "k8s.io/kubernetes@$KUBERNETES_VERSION"
kubernetes_mod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
for module in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kubernetes_mod"); do
    go mod edit -replace "$module=$module@$staging_version"
done
printf 'package tools\n\nimport (\n' > tools.go
for c in "${COMPONENTS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c" >> tools.go; done
printf ')\n' >> tools.go
go mod tidy >&2
for c in "${COMPONENTS[@]}"; do
    [ -x "$BIN/$c" ] || { echo "building $c $KUBERNETES_VERSION" >&2; go build -o "$BIN/$c" "k8s.io/kubernetes/cmd/$c" >&2; }
done
[ -x "$BIN/kwok" ] || { echo "building kwok $KWOK_VERSION" >&2; GOBIN="$BIN" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2; }
echo "$BIN"
