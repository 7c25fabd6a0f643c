"""deploy/local/services.sh refuses a port another process holds, instead of taking its server for its own.

A second `alliance dev` with its own state folder but the default ports printed "Kafka is answering" and "Temporal is
serving" from the first one's servers while its own had died on the taken ports, and its API then served the first
one's projects (found by a fresh-clone try).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import free_port

SERVICES = Path(__file__).resolve().parents[2] / "deploy" / "local" / "services.sh"


@pytest.mark.parametrize(
    ("which", "variable"),
    [
        ("temporal", "ALLIANCE_TEMPORAL_PORT"),
        ("temporal", "ALLIANCE_TEMPORAL_UI_PORT"),
        ("kafka", "ALLIANCE_KAFKA_PORT"),
        ("kafka", "ALLIANCE_KAFKA_CONTROLLER_PORT"),
    ],
)
def test_a_port_held_by_another_process_is_refused_and_nothing_starts(
    tmp_path: Path, which: str, variable: str
) -> None:
    ports = {
        name: str(free_port())
        for name in (
            "ALLIANCE_TEMPORAL_PORT",
            "ALLIANCE_TEMPORAL_UI_PORT",
            "ALLIANCE_KAFKA_PORT",
            "ALLIANCE_KAFKA_CONTROLLER_PORT",
        )
    }
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **ports, variable: str(port), "ALLIANCE_STATE_DIR": str(tmp_path / "state")}
        command = ["bash", str(SERVICES), "start", which]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert f"port {port} on 127.0.0.1" in run.stderr and "is taken by another process" in run.stderr, run.stderr
    assert variable in run.stderr, run.stderr
    assert not list((tmp_path / "state").glob("*.pid")), "a server was started"
