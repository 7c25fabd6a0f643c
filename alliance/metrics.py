"""Prometheus metrics: the product's own, and the Temporal SDK's runtime metrics, on one `/metrics` per process.

The SDK (sdk-core, in Rust) serves its metrics from its own Prometheus exporter; `temporal_runtime` binds it to a
loopback port nobody else uses, and `exposition` appends what it serves to the product's metrics, so operators
scrape one endpoint per process: the worker (`ALLIANCE_METRICS_PORT`), the API (`/metrics` on its port) and the
stream worker (`/metrics` on faust's web port).

The product's metrics are defined where they are measured (all prefixed `alliance_`):
- `activities/publishing.py`: `events_published_total{topic}`, `publish_retries_total{activity}`,
  `publish_seconds{activity}`, `instructions_total{action,institution,currency}` and
  `instructed_amount_total{...}` (disbursements are the actions `disburse` and `release_retention`);
- `streams/app.py`: `reviews_open{institution}`, `reviews_overdue{institution}`, from the views at scrape time;
- `alliance/api.py`: `api_requests_total{method,route,status}`, `api_request_seconds{method,route}`.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

_sdk_endpoint: str | None = None
_runtime: Runtime | None = None


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_runtime() -> Runtime:
    """The process's Temporal runtime, with the SDK's Prometheus exporter on a private loopback port."""
    global _runtime, _sdk_endpoint
    if _runtime is None:
        address = f"127.0.0.1:{_free_loopback_port()}"
        _runtime = Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address, durations_as_seconds=True))
        )
        _sdk_endpoint = f"http://{address}/metrics"
    return _runtime


def exposition() -> bytes:
    """The product's metrics, then the SDK's (if this process has a Temporal runtime)."""
    ours = generate_latest(REGISTRY)
    if _sdk_endpoint is None:
        return ours
    try:
        with urllib.request.urlopen(_sdk_endpoint, timeout=2) as response:
            sdk: bytes = response.read()
    except OSError:
        return ours + b"# Temporal SDK metrics unavailable\n"
    return ours + sdk


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404, "only /metrics here")
            return
        body = exposition()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
        return


def serve(host: str, port: int) -> ThreadingHTTPServer:
    """`/metrics` on host:port from a daemon thread (the worker process has no web server of its own)."""
    server = ThreadingHTTPServer((host, port), _Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
