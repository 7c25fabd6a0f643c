"""A project driven on a worker that keeps no workflow cache: every workflow task and every query starts from the
history, so any difference between the worker that wrote a task and one that replays it fails at once. (The product's
workers keep a cache, but rebuild a run from its history after evicting it, after a restart and after a redeploy:
alliance/worker.py; this test pins that path with a late milestone and its reminders on the time-skipping server.)

The worker-kill test met such a difference once, at random, after a crash. A decision reached the project in the same
workflow task as an activity result (a publish of the outbox). The milestone reminder loop then waited through
`asyncio.wait_for`, which resumes its caller two loop steps after the condition holds. The writing worker let the
outbox publisher schedule its publish in between, and the replaying worker did not. The commands came out in another
order: a nondeterminism error. The loop now waits with `wait_until_direct`. With the old wait this test failed in
every run (7 of 7: a query or a task failing with `[TMPRL1100] Nondeterminism error`), and now it passes.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from alliance.demo import Driver
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.worker import WORKFLOWS
from schemas.decisions import Institution
from schemas.status import Stage
from schemas.timetable import Timetable
from tests.conftest import time_skipping_projects
from tests.support import example, finished, follow_server_clock
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def uncached(settings: Settings) -> AsyncIterator[tuple[WorkflowEnvironment, Projects]]:
    async with time_skipping_projects(settings, max_cached_workflows=0) as uncached:
        yield uncached


def tasks_with_an_update_and_an_activity_result(history: WorkflowHistory) -> int:
    """Workflow tasks that accepted an Update and had an activity result among their new events."""
    kinds = [event.event_type for event in history.events]
    completed = [i for i, kind in enumerate(kinds) if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    found = 0
    for before, task in itertools.pairwise(completed):
        accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED in kinds[task : task + 3]
        found += accepted and EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED in kinds[before:task]
    return found


async def test_a_project_replays_every_task_on_a_worker_that_keeps_no_cache(
    uncached: tuple[WorkflowEnvironment, Projects],
) -> None:
    env, projects = uncached
    proposal = example("ke-national-data-centre-2", "ke-uncached")
    d = Driver(projects, proposal)
    await d.start(Timetable(milestone_reminder_days=7, warranty_months=0))
    await d.approve(Institution.exim, "Chen Jie")
    await d.satisfy_all()
    for milestone in ("survey", "procurement"):
        await d.complete(milestone)
    # Two reminders about the installation, each task replayed too.
    await env.sleep(timedelta(days=15))
    await follow_server_clock(env, projects)
    status = await d.wait(lambda s: s.milestones[2].reminders == 2)
    for milestone in ("installation", "commissioning", "training", "provisional", "final"):
        await d.complete(milestone)
    status = await finished(projects, proposal.project_id)
    assert status.stage is Stage.completed

    history = await env.client.get_workflow_handle(workflow_id(proposal.project_id)).fetch_history()
    print(f"tasks that took a decision with an activity result: {tasks_with_an_update_and_an_activity_result(history)}")
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
