"""A worker killed with SIGKILL in the middle of financing: another worker finishes the project, and no transition
is lost or doubled (on Kafka, after removing duplicates by id, the events are the workflow's history)."""

from __future__ import annotations

from decimal import Decimal

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
from tests.support import WorkerProcesses, assert_kafka_matches_history, example, finished

pytestmark = pytest.mark.timeout(240)


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
    await workers.kill(first)
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
