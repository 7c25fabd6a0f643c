"""A decision taken right after a workflow task that only took a publishing result, on the product's worker without a
workflow cache, on the dev server and the test broker. The product's workers keep a cache, but every run they rebuild
from the history (evicted after a query outside a task, pushed out of a full cache, or after a restart or a redeploy)
replays as a worker without a cache does, so this path is the product's too.

temporalio 1.35.0's core, on a worker without a workflow cache, hands the result of a workflow task that made no
commands to the next task together with an Update (one activation: the Update first, the result second), while a
replay of the history hands the result over alone and the Update after it. The outbox publisher (woken by the result)
and the main coroutine (woken by the decision) then issue their commands in another order, and every later task of
the project fails: `Nondeterminism error: Activity machine does not handle this event:
SignalExternalWorkflowExecutionInitiated` (a cancellation; CI's derandomized command-line fuzz test met it first).
The workflow now gives every task that takes a publishing result a command (the `published_sequence` memo), so no
such task is without commands. Here the window is hit on purpose: each decision is sent once every event of the
project is on Kafka and the server shows no activity and no workflow task pending (a status query alone may see the
result before its task has run), so the task before it is the one that took the last publishing result. Without the
memo the cancellation here failed in each run (3 of 3), and the project never finishes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import WORKFLOWS, project_worker
from schemas.decisions import Institution, RequestInformation
from schemas.status import Stage
from tests.faults.test_bad_input import settled
from tests.support import example, finished
from tests.workflows.driving import ProjectDriver
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(300)


def decisions_after_a_publishing_result(history: WorkflowHistory) -> list[bool]:
    """For each Update accepted in the history, in order: whether it was accepted in the workflow task right after one
    that an activity result woke (with or without other events, such as a review's completion, in the same task) and
    that made no command but the memo (none at all before the memo existed)."""
    kinds = [event.event_type for event in history.events]
    completed = [i for i, kind in enumerate(kinds) if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    hits = []
    for earlier, before, task in zip([-1, *completed], completed, completed[1:], strict=False):
        if kinds[task + 1 : task + 2] != [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]:
            continue
        woken_by_a_result = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED in kinds[earlier + 1 : before - 1]
        commands = set(kinds[before + 1 : task - 2]) - {EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED}
        hits.append(woken_by_a_result and not commands)
    return hits


async def idle(projects: Projects, project_id: str) -> None:
    """Once the project is settled: wait until its workflow has no activity and no workflow task pending, read twice
    from the server's description (not a query: a query may see a result before the task that takes it has run, and
    a decision sent then joins that task instead of following it)."""
    handle = projects.client.get_workflow_handle(workflow_id(project_id))
    quiet = 0
    for _ in range(150):
        raw = (await handle.describe()).raw_description
        busy = raw.pending_activities or raw.HasField("pending_workflow_task")
        quiet = 0 if busy else quiet + 1
        if quiet == 2:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{project_id} still had an activity or a workflow task pending after 30 s")


@pytest.fixture
async def projects(temporal_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Projects]:
    """The product's worker, keeping no workflow cache: every task is a run rebuilt from the history."""
    async with project_worker(temporal_env.client, settings, max_cached_workflows=0):
        yield Projects(temporal_env.client, settings, Edge(settings))


async def test_decisions_right_after_a_publishing_result_replay_on_the_products_worker(projects: Projects) -> None:
    d = ProjectDriver(projects, example("et-cloud-finance", f"grouping-{uuid.uuid4().hex[:8]}"))
    await d.start()
    await d.progress(Stage.financing)
    await settled(projects, d.pid)
    await idle(projects, d.pid)
    # A decision answered by its handler alone; one whose handler signals the review's clock; one the main
    # coroutine reacts to by signalling the other reviews and sending instructions.
    await d.decide(RequestInformation, institution=Institution.cdb, officer="CDB officer", questions="Why?")
    await settled(projects, d.pid)
    await idle(projects, d.pid)
    await d.approve(Institution.sinosure)
    await settled(projects, d.pid)
    await idle(projects, d.pid)
    await d.cancel()
    status = await finished(projects, d.pid)
    assert status.stage is Stage.cancelled

    history = await projects.client.get_workflow_handle(workflow_id(d.pid)).fetch_history()
    failed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert not failed, failed[0].workflow_task_failed_event_attributes.failure.message
    hits = decisions_after_a_publishing_result(history)
    print(f"Updates accepted right after a task that took a publishing result: {hits}")
    # The approval and the cancellation, each sent once the project was idle after the publishing its previous
    # decision set off. Not the information request: the task before it is the one that answered the progress wait
    # when that wait came late, or one that also set search attributes (the reviews opening).
    kinds = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]
    assert hits[-2:] == [True, True], f"the window was not hit: {hits}; the history's events: {kinds}"
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
