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
from collections.abc import Callable
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from alliance.demo import Driver
from alliance.event_feed import records
from alliance.projects import Projects, UserError
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.decisions import Decision, Institution
from schemas.instructions import Instruction
from schemas.status import ProjectStatus, Stage
from schemas.timetable import Timetable
from tests.support import WorkerProcesses, assert_kafka_matches_history, events_by_project, example, finished
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(900)
PROJECTS = 100
AT_ONCE = 25  # projects driven at the same time (the drivers poll each project's status)


class PatientDriver(Driver):
    """Sends a refused decision again (same decision id) after a second. A killed worker may have answered a status
    query from state it had computed but not yet recorded in history; the next worker replays history and, for a
    moment, is one step behind what the driver saw, so it refuses the decision as early. The refusal itself is right
    (and changes nothing); a person would try again."""

    refusals: list[str] = []

    async def wait(self, done: Callable[[ProjectStatus], bool], seconds: float = 300) -> ProjectStatus:
        # Each kill can hold a project for a workflow task timeout (10 s) plus an activity timeout (30 s).
        return await super().wait(done, seconds)

    async def send(self, decision_type: type[Decision], **fields: object) -> None:
        self.step += 1
        decision = decision_type.model_validate({"decision_id": f"demo-{self.pid}-{self.step}", **fields})
        for attempt in range(10):
            try:
                await self.projects.decide(self.pid, decision, self.actor_for(decision))
                return
            except UserError as err:
                if err.kind != "refused" or attempt == 9:
                    raise
                self.refusals.append(f"{self.pid}: {err}")
                await asyncio.sleep(1)


async def drive(projects: Projects, project_id: str) -> None:
    proposal = example("my-smart-homes-pilot", project_id)
    d = PatientDriver(projects, proposal)
    await d.start(Timetable(warranty_months=0))
    await d.approve(Institution.cdb, "Liu Yang, CDB Asia division")
    await d.satisfy_all()
    for milestone in proposal.milestones:
        await d.complete(milestone.id)


async def stuck_on_the_known_sdk_bug(env: WorkflowEnvironment, project_id: str) -> str | None:
    """The failure message, if the project's workflow tasks fail on the SDK's replay bug; None otherwise."""
    history = await env.client.get_workflow_handle(workflow_id(project_id)).fetch_history()
    for event in reversed(history.events):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            message = event.workflow_task_failed_event_attributes.failure.message
            return message if "Update machine does not handle this event" in message else None
    return None


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
            await drive(projects, project_id)

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

    published = await events_by_project(settings)
    statuses = {}
    duplicates = 0
    for project_id in done:
        status = statuses[project_id] = await asyncio.wait_for(finished(projects, project_id), 120)
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
