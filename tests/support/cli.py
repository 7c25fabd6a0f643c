"""The command line, run as a separate process against the test's servers."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

from alliance.demo import CONTRACTOR
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.identity import Identity
from tests.support.servers import ALLIANCE


@dataclass
class Run:
    code: int
    out: str
    err: str


async def cli(settings: Settings, *args: str, as_: Identity | None = CONTRACTOR, **env: str) -> Run:
    """Runs `alliance ARGS` as `as_` (a token in ALLIANCE_TOKEN), against the test's servers."""
    token = {"ALLIANCE_TOKEN": Edge(settings).issue(as_)} if as_ else {}
    environment = {
        **token,
        "ALLIANCE_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "ALLIANCE_TEMPORAL_ADDRESS": settings.temporal_address,
        "ALLIANCE_TASK_QUEUE": settings.task_queue,
        "ALLIANCE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ALLIANCE_STATUS_TOPIC": settings.status_topic,
        "ALLIANCE_INSTRUCTION_TOPIC": settings.instruction_topic,
        "COLUMNS": "200",
        "PATH": str(Path(sys.executable).parent),
        **env,
    }
    # Not subprocess.run: the worker of this test runs on this event loop and must keep working meanwhile.
    process = await asyncio.create_subprocess_exec(
        ALLIANCE, *args, env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def one_line_error(run: Run) -> str:
    assert run.code == 1, (run.code, run.out, run.err)
    assert "Traceback" not in run.err + run.out
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: ")
    return lines[0]
