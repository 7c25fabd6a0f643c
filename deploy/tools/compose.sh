#!/usr/bin/env bash
# The Docker Compose v2 CLI, built once from its pinned source module on the Go module proxy and cached; prints its
# path. No Docker engine runs on our machines, but `docker compose config` needs none: the tests use it to validate
# deploy/compose/compose.yaml exactly as Compose reads it. (PyPI has only the old Python docker-compose 1.x, and
# `go install module@version` refuses compose's go.mod, which has exclude directives, so it is built in place.)
set -euo pipefail
VERSION=v2.40.3
CACHE="${ALLIANCE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alliance-tools}"
BIN="$CACHE/docker-compose-$VERSION"
if [ ! -x "$BIN" ]; then
  command -v go >/dev/null || { echo "compose.sh: Go is needed to build Docker Compose $VERSION" >&2; exit 1; }
  echo "compose.sh: building Docker Compose $VERSION from the Go module proxy (once; a few minutes)" >&2
  source=$(cd /tmp && go mod download -json "github.com/docker/compose/v2@$VERSION" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$CACHE"
  (cd "$source" && go build -trimpath \
    -ldflags "-X github.com/docker/compose/v2/internal.Version=$VERSION" -o "$BIN.partial" ./cmd)
  mv "$BIN.partial" "$BIN"
fi
echo "$BIN"
