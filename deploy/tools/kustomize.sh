#!/usr/bin/env bash
# kustomize (the CLI `kubectl kustomize` embeds), built once from its pinned module on the Go module proxy and
# cached; prints its path. The tests render every overlay with it (tests/deploy/test_kubernetes.py).
set -euo pipefail
VERSION=v5.7.1
CACHE="${ALLIANCE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alliance-tools}"
BIN="$CACHE/kustomize-$VERSION"
if [ ! -x "$BIN" ]; then
  command -v go >/dev/null || { echo "kustomize.sh: Go is needed to build kustomize $VERSION" >&2; exit 1; }
  echo "kustomize.sh: building kustomize $VERSION from the Go module proxy (once)" >&2
  build=$(mktemp -d)
  (cd /tmp && GOBIN="$build" go install "sigs.k8s.io/kustomize/kustomize/v5@$VERSION")
  mkdir -p "$CACHE"
  mv "$build/kustomize" "$BIN"
  rmdir "$build"
fi
echo "$BIN"
