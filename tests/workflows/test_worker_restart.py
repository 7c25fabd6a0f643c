"""A worker killed with SIGKILL in the middle of financing: another worker finishes the project, and no transition
is lost or doubled (on Kafka, after removing duplicates by id, the events are the workflow's history)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from alliance.demo import Driver
from alliance.event_feed import project_events, records
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.decisions import Institution
from schemas.instructions import Instruction
from schemas.status import Stage
from schemas.timetable import Timetable
from tests.support import assert_kafka_matches_history, example, finished

pytestmark = pytest.mark.timeout(240)
ALLIANCE = str(Path(sys.executable).parent / "alliance")


class WorkerProcesses:
    """`alliance worker` processes on the test's task queue and topics."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.started: list[asyncio.subprocess.Process] = []
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
        with open(self.logs / f"worker-{len(self.started)}.log", "wb") as log:
            process = await asyncio.create_subprocess_exec(ALLIANCE, "worker", env=self.env, stdout=log, stderr=log)
        self.started.append(process)
        return process

    async def stop_all(self) -> None:
        for process in self.started:
            if process.returncode is None:
                process.kill()
                await process.wait()


@pytest.fixture
async def workers(settings: Settings, tmp_path: Path) -> AsyncIterator[WorkerProcesses]:
    processes = WorkerProcesses(settings, tmp_path)
    try:
        yield processes
    finally:
        await processes.stop_all()


async def test_a_worker_killed_during_financing_loses_and_doubles_nothing(
    temporal_env: WorkflowEnvironment, settings: Settings, workers: WorkerProcesses
) -> None:
    projects = Projects(temporal_env.client, settings, Edge(settings))
    first = await workers.start()
    proposal = example("zm-lusaka-smart-city-2", "zm-worker-killed")
    d = Driver(projects, proposal)
    await d.start(Timetable(warranty_months=0))
    await d.approve(Institution.sinosure, "Wang Fang")
    await d.approve(Institution.exim, "Chen Jie")

    # SIGKILL: no clean shutdown, whatever the worker held in memory (workflow cache, unacknowledged sends) is gone.
    first.send_signal(signal.SIGKILL)
    await first.wait()
    print(f"injected: SIGKILL to worker pid {first.pid} after two of three approvals")

    await workers.start()
    await d.approve(Institution.cdb, "Liu Yang")
    await d.satisfy_all()
    for milestone in proposal.milestones:
        await d.complete(milestone.id)
    status = await finished(projects, proposal.project_id)
    assert status.stage is Stage.completed

    unique = await assert_kafka_matches_history(settings, status)
    published = await project_events(settings, proposal.project_id)

    sent = [
        Instruction.model_validate_json(value)
        async for key, value in records(settings, settings.instruction_topic)
        if key == proposal.project_id.encode()
    ]
    by_id = {i.instruction_id: i for i in sent}
    for tranche in status.tranches:
        paid = sum((i.amount.amount for i in by_id.values() if i.institution is tranche.institution), Decimal(0))
        assert paid == tranche.approved.amount
    print(
        f"checked: {len(published)} event records, {len(published) - len(unique)} duplicates removed, "
        f"{len(unique)} events in order; {len(sent)} instruction records, {len(by_id)} distinct"
    )
