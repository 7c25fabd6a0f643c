#!/usr/bin/env bash
# promtool (Prometheus's rule checker and rule unit-test runner), built once from its pinned source module on the Go
# module proxy and cached; prints its path. (`go install module@version` refuses Prometheus's go.mod, which has
# exclude directives, so it is built in place, outside the module's go.work.)
set -euo pipefail
VERSION=v0.313.5  # Prometheus 3.13.5
CACHE="${ALLIANCE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alliance-tools}"
BIN="$CACHE/promtool-$VERSION"
if [ ! -x "$BIN" ]; then
  command -v go >/dev/null || { echo "promtool.sh: Go is needed to build promtool $VERSION" >&2; exit 1; }
  echo "promtool.sh: building promtool $VERSION from the Go module proxy (once; a few minutes)" >&2
  source=$(cd /tmp && go mod download -json "github.com/prometheus/prometheus@$VERSION" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$CACHE"
  (cd "$source" && GOWORK=off go build -trimpath -o "$BIN.partial" ./cmd/promtool)
  mv "$BIN.partial" "$BIN"
fi
echo "$BIN"
