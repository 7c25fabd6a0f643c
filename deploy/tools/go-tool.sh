#!/usr/bin/env bash
# go-tool.sh compose|kustomize|promtool: a pinned tool the tests use to validate deploy/, built once from its source
# module on the Go module proxy and cached; prints the binary's path.
#   compose    Docker Compose v2 CLI: `docker compose config` validates deploy/compose (it needs no Docker engine;
#              PyPI only has the old Python docker-compose 1.x)
#   kustomize  renders deploy/kubernetes overlays (what `kubectl kustomize` embeds)
#   promtool   checks deploy/observability's alert rules and runs their unit tests
# Each is built in its own module directory (GOWORK=off): `go install module@version` refuses go.mod files with
# exclude directives, which Compose and Prometheus have.
set -euo pipefail
case "${1:-}" in
  compose)   name=docker-compose module=github.com/docker/compose/v2 version=v2.40.3 package=./cmd
             ldflags="-X github.com/docker/compose/v2/internal.Version=v2.40.3" ;;
  kustomize) name=kustomize module=sigs.k8s.io/kustomize/kustomize/v5 version=v5.7.1 package=. ldflags="" ;;
  promtool)  name=promtool module=github.com/prometheus/prometheus version=v0.313.5 package=./cmd/promtool ldflags="" ;;
  *) echo "usage: $0 compose|kustomize|promtool" >&2; exit 2 ;;
esac
CACHE="${ALLIANCE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alliance-tools}"
BIN="$CACHE/$name-$version"
if [ ! -x "$BIN" ]; then
  command -v go >/dev/null || { echo "go-tool.sh: Go is needed to build $name $version" >&2; exit 1; }
  echo "go-tool.sh: building $name $version from the Go module proxy (once; a few minutes)" >&2
  source=$(cd /tmp && go mod download -json "$module@$version" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$CACHE"
  (cd "$source" && GOWORK=off go build -trimpath -ldflags "$ldflags" -o "$BIN.partial" "$package")
  mv "$BIN.partial" "$BIN"
fi
echo "$BIN"
