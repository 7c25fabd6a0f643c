"""Running the product: the servers and workers a command starts and supervises (`dev`, `worker`, `api`,
`streams`), and the demo and portfolio that read from them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from alliance import logs, tracing
from alliance.cli.render import out
from alliance.cli.session import connect, run
from alliance.cli.supervisor import Supervisor, exit_with_parent
from alliance.projects import UserError
from alliance.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "local" / "services.sh"


def register(app: typer.Typer) -> None:
    for command in (api, worker, dev, streams, portfolio, demo):
        app.command()(command)


def api() -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    import uvicorn

    from alliance.api import create_app

    settings = get_settings()
    logs.configure(settings)
    tracing.configure(settings, "alliance-api")
    exit_with_parent()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None)


def worker() -> None:
    """Run a worker: the project workflows and their activities."""
    from alliance.worker import run_worker

    settings = get_settings()
    logs.configure(settings)
    tracing.configure(settings, "alliance-worker")
    run_until_interrupted(lambda stop: run_worker(settings, stop))


def dev(
    demo: Annotated[bool, typer.Option(help="Load the example projects once the worker runs")] = True,
    headless: Annotated[bool, typer.Option(help="Run the Temporal dev server without its Web UI")] = False,
) -> None:
    """Start the local Temporal dev server (with its Web UI), the Kafka broker, a worker, the API and the stream
    worker; Ctrl-C stops all."""
    from alliance.demo import run_demo
    from alliance.worker import run_worker

    settings = get_settings()
    logs.configure(settings)
    tracing.configure(settings, "alliance-worker")
    for what, host, port, variable in (
        ("API", settings.api_host, settings.api_port, "ALLIANCE_API_PORT"),
        ("stream worker", settings.streams_web_host, settings.streams_web_port, "ALLIANCE_STREAMS_WEB_PORT"),
        ("worker's metrics", settings.metrics_host, settings.metrics_port, "ALLIANCE_METRICS_PORT"),
    ):
        if port is not None and not port_free(host, port):
            raise UserError(
                f"port {port} on {host}, for the {what}, is taken by another process (an `alliance dev` still "
                f"running?): stop it, or choose another port with {variable}",
                "unavailable",
            )
    env = {**os.environ, "ALLIANCE_TEMPORAL_HEADLESS": "1" if headless else "0"}
    ui_port = os.environ.get("ALLIANCE_TEMPORAL_UI_PORT", "8233")  # deploy/local/services.sh's port for the Web UI
    web_ui = "none (--headless)" if headless else f"http://127.0.0.1:{ui_port}"
    if subprocess.run(["bash", str(SERVICES), "start"], env=env).returncode != 0:
        raise UserError("the local services did not start; see the lines above")
    alliance = str(Path(sys.executable).parent / "alliance")
    helpers = Supervisor.of([("API", [alliance, "api"]), ("stream worker", [alliance, "streams"])])
    helpers.start()
    try:

        async def supervise() -> None:
            """As Compose and Kubernetes do: a helper that exits, whatever the reason, is started again."""
            while True:
                await asyncio.sleep(1)
                for line in helpers.check():
                    out.print(line, style="yellow")

        async def main(stop: asyncio.Event) -> None:
            supervisor = asyncio.create_task(supervise())
            worker_task = asyncio.create_task(run_worker(settings, stop))
            if demo:
                for line in await run_demo(await connect(settings)):
                    out.print(line)
            out.print(
                Text.assemble(("Ready.", "bold")),
                f"Temporal Web UI: {web_ui} · API: "
                f"http://{settings.api_host}:{settings.api_port}/docs · stream worker: "
                f"http://{settings.streams_web_host}:{settings.streams_web_port}/portfolio/ (`alliance portfolio`) · "
                f"Kafka: {settings.kafka_bootstrap_servers}, topic {settings.status_topic}. Ctrl-C stops everything.",
            )
            await worker_task
            supervisor.cancel()

        run_until_interrupted(main)
    finally:
        helpers.stop()
        subprocess.run(["bash", str(SERVICES), "stop"])


def port_free(host: str, port: int) -> bool:
    """Whether a TCP server could listen on `host`:`port` now (as the API and the stream worker do)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def run_until_interrupted(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    run(go())


def streams() -> None:
    """Run the stream worker: project views, portfolio, alerts and the deduplicated feed (HTTP on :6066)."""
    from faust import Worker

    from alliance.connections import TopicMismatch, ensure_topics
    from streams.app import create_app

    settings = get_settings()
    logs.configure(settings)
    try:
        run(ensure_topics(settings, streams=True))
    except TopicMismatch as err:
        raise UserError(str(err), "invalid") from err
    exit_with_parent()
    Worker(create_app(settings).app, loglevel=settings.log_level.lower()).execute_from_commandline()


def portfolio(
    dimension: Annotated[str, typer.Argument(help="country, sector or institution")] = "country",
) -> None:
    """The portfolio from the stream worker, as a table (amounts in USD at the configured rates)."""
    import httpx

    settings = get_settings()
    url = f"http://{settings.streams_web_host}:{settings.streams_web_port}/portfolio/{dimension}/"
    try:
        response = httpx.get(url, timeout=10)
    except httpx.HTTPError as err:
        raise UserError(
            f"cannot reach the stream worker at {url}: is `alliance streams` running?", "unavailable"
        ) from err
    if response.status_code != 200:
        raise UserError(response.json().get("message", response.text), "invalid")
    body = response.json()
    table = Table(title=f"Portfolio by {dimension} (USD at rates of {body['rate_date']})")
    for col in (dimension, "projects by stage", "requested", "approved", "released", "disbursed"):
        table.add_column(col)
    for value, totals in sorted(body[dimension].items()):
        stages = ", ".join(f"{stage} {n}" for stage, n in sorted(totals["projects_by_stage"].items()))
        table.add_row(
            value,
            stages,
            *(f"{Decimal(totals[k]):,.0f}" for k in ("requested_usd", "approved_usd", "released_usd", "disbursed_usd")),
        )
    out.print(table)


def demo() -> None:
    """Drive the example projects through every path, so the Web UI shows projects in each stage."""
    from alliance.demo import run_demo

    async def go() -> list[str]:
        return await run_demo(await connect(get_settings()))

    for line in run(go()):
        out.print(line)
