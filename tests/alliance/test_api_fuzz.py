"""schemathesis against the OpenAPI document of a running API (`alliance api`) with real Temporal behind it:
whatever it sends, no answer is a server error."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest

from alliance.demo import CONTRACTOR, officer_of
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import project_worker
from schemas.decisions import Institution
from schemas.identity import Identity
from tests.support import local_temporal

pytestmark = pytest.mark.timeout(600)
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("caller", [CONTRACTOR, officer_of(Institution.cdb, "Liu Yang")], ids=lambda i: i.role)
async def test_no_request_makes_the_api_fail(settings: Settings, tmp_path: Path, caller: Identity) -> None:
    # A Temporal server of its own: the API must only see projects that a worker serves.
    async with await local_temporal() as temporal:
        address = temporal.client.service_client.config.target_host
        async with project_worker(temporal.client, settings):
            await fuzz_api(settings.model_copy(update={"temporal_address": address}), tmp_path, caller)


async def fuzz_api(settings: Settings, tmp_path: Path, caller: Identity) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ALLIANCE_TEMPORAL_ADDRESS": settings.temporal_address,
        "ALLIANCE_TASK_QUEUE": settings.task_queue,
        "ALLIANCE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ALLIANCE_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "ALLIANCE_API_PORT": str(port),
        "ALLIANCE_LOG_FORMAT": "json",
    }
    with open(tmp_path / "api.log", "wb") as log:
        server = await asyncio.create_subprocess_exec(BIN / "alliance", "api", env=env, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"{base}/openapi.json")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        fuzz = await asyncio.create_subprocess_exec(
            BIN / "schemathesis",
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "12",
            "--generation-deterministic",
            "--request-timeout",
            "30",
            "--header",
            f"Authorization: Bearer {Edge(settings).issue(caller)}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(fuzz.communicate(), timeout=500)
        report = output.decode(errors="replace")
        print(report[-3000:])
        assert fuzz.returncode == 0, report[-3000:]
    finally:
        server.terminate()
        try:
            await asyncio.wait_for(server.wait(), timeout=20)
        except TimeoutError:
            server.kill()
            await server.wait()
    print((tmp_path / "api.log").read_text()[-1000:])
