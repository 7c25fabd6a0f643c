"""Fault injection: the Kafka broker is stopped for 30 s while 20 projects run, then started again on its data.
Decisions go on being taken (they need only Temporal); the events wait in each workflow's outbox, the publishing
activity retries, and once the broker is back every project's events are on Kafka, in order, none lost. The
workflows were delayed, not failed."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.status import Stage
from tests.faults.driving import Halfway, drive_to_completion
from tests.support import Services, WorkerProcesses, assert_kafka_matches_history, events_by_project, finished
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(600)
PROJECTS = 20
OUTAGE_SECONDS = 30


async def test_a_broker_stopped_for_30_seconds_delays_the_events_and_loses_none(
    temporal_env: WorkflowEnvironment, settings: Settings, workers: WorkerProcesses, kafka_service: Services
) -> None:
    projects = Projects(temporal_env.client, settings, Edge(settings))
    await workers.start()
    run = settings.task_queue.rsplit("-", 1)[-1][:6]
    ids = [f"my-outage-{run}-{n:02d}" for n in range(PROJECTS)]
    halfway = Halfway(PROJECTS)
    driving = asyncio.gather(*(drive_to_completion(projects, pid, halfway=halfway) for pid in ids))
    await asyncio.wait_for(halfway.all_arrived.wait(), 300)
    halfway.go()  # decisions in flight when the broker goes
    await kafka_service.run("stop", "kafka")
    try:
        await asyncio.sleep(OUTAGE_SECONDS)
        waiting = 0
        for project_id in ids:
            status = await projects.status(project_id)
            waiting += sum(1 for ref in status.events if not ref.published)
    finally:
        await kafka_service.run("start", "kafka")
    print(f"injected: broker stopped for {OUTAGE_SECONDS} s while {PROJECTS} projects ran")
    assert waiting > 0, "no event waited for the broker: the outage did not overlap the run"

    await asyncio.wait_for(driving, 300)
    statuses = {pid: await asyncio.wait_for(finished(projects, pid), 120) for pid in ids}
    published = await events_by_project(settings)  # read once every workflow has ended (all published)
    events = 0
    for project_id, status in statuses.items():
        assert status.stage is Stage.completed
        description = await temporal_env.client.get_workflow_handle(workflow_id(project_id)).describe()
        assert description.status is WorkflowExecutionStatus.COMPLETED
        events += len(await assert_kafka_matches_history(settings, status, published[project_id]))
    print(
        f"checked: {waiting} events were waiting in outboxes at the end of the outage; afterwards all {PROJECTS} "
        f"projects completed and their {events} events are on Kafka in order, none missing"
    )
