"""A late milestone keeps a project waiting for years: its reminder loop continues as new before the history grows
too long, and the project carries on in the next run as if nothing happened (time-skipping server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from alliance.cli import render
from alliance.demo import CONTRACTOR
from alliance.event_feed import project_events
from alliance.projects import Projects, UserError
from alliance.settings import Settings
from alliance.worker import WORKFLOWS
from schemas.decisions import CompleteMilestone
from schemas.status import Stage
from tests.conftest import time_skipping_projects
from tests.support import (
    assert_kafka_matches_history,
    drive_late_delivery,
    example,
    finished,
    runs_of,
)
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(300)

LIMIT = 200  # history events; the product's default is 10,000
EVERY = 7  # days between reminders
LATE = 52 * 7  # days the second milestone is late
UPDATE_ACCEPTED = "workflow_execution_update_accepted_event_attributes"


@pytest.fixture
async def skipping(settings: Settings) -> AsyncIterator[tuple[WorkflowEnvironment, Projects]]:
    settings = settings.model_copy(update={"continue_as_new_after_events": LIMIT})
    async with time_skipping_projects(settings) as skipping:
        yield skipping


async def test_a_year_late_milestone_is_reminded_weekly_across_runs_and_the_project_completes(
    skipping: tuple[WorkflowEnvironment, Projects],
) -> None:
    env, projects = skipping
    proposal = example("ke-national-data-centre-2", "ke-late-delivery")
    answers: list[object] = []

    async def send_again_while_time_passes(survey: CompleteMilestone) -> None:
        # The same decision, again and again, races each continue-as-new: every one must be answered.
        for _ in range(60):
            try:
                answers.append(await projects.decide(proposal.project_id, survey, CONTRACTOR))
            except UserError as err:
                answers.append(err)
            await asyncio.sleep(0.02)

    late = await drive_late_delivery(env, projects, proposal, EVERY, LATE, send_again_while_time_passes)
    print(f"{len(answers)} decisions sent again meanwhile: {len(set(map(str, answers)))} distinct answers")
    assert answers == [late.receipt] * len(answers), {str(a) for a in answers}
    status = await projects.status(proposal.project_id)

    histories = await runs_of(projects.client, workflow_id(proposal.project_id), late.first_run)
    lengths = [len(h.events) for h in histories]
    accepted = [
        sum(e.HasField("workflow_execution_update_accepted_event_attributes") for e in h.events) for h in histories
    ]
    print(f"history lengths of the {len(histories)} runs: {lengths}; decisions accepted in each: {accepted}")
    # Each run stops at the first reminder past the limit, once its outbox is published: a few events later.
    assert len(histories) >= 3, lengths
    assert all(length < LIMIT + 25 for length in lengths), lengths
    assert sum(lengths) > 2 * LIMIT, lengths
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    for history in histories:
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert replayed.replay_failure is None, replayed.replay_failure

    # The project went on where it stood: one reminder a week, numbered on across runs; nothing paid twice.
    assert status.stage is Stage.delivery
    procurement = next(m for m in status.milestones if m.milestone_id == "procurement")
    assert procurement.reminders == LATE // EVERY
    events = await project_events(projects.settings, proposal.project_id)
    reminders = [e.data for e in events if e.data.kind == "milestone_reminder"]
    assert [r.reminder for r in reminders] == list(range(1, LATE // EVERY + 1))
    assert {r.milestone_id for r in reminders} == {"procurement"}
    assert [p.milestone_id for p in status.disbursements] == ["survey"]
    width, render.out.width = render.out.width, 200
    try:
        with render.out.capture() as shown:
            render.status(status)
    finally:
        render.out.width = width
    assert f"{LATE // EVERY} reminder(s)" in shown.get(), shown.get()
    # A decision taken in the first run, sent again, returns its first receipt and changes nothing.
    assert await projects.decide(proposal.project_id, late.survey, CONTRACTOR) == late.receipt
    assert len((await projects.status(proposal.project_id)).events) == len(status.events)

    for milestone in ("procurement", "installation", "commissioning", "training", "provisional", "final"):
        await late.driver.complete(milestone)
    status = await finished(projects, proposal.project_id)
    assert status.stage is Stage.completed
    assert [p.milestone_id for p in status.disbursements] == [m.milestone_id for m in status.milestones]
    (tranche,) = status.tranches
    assert tranche.disbursed == tranche.approved and tranche.retained.amount == 0
    await assert_kafka_matches_history(projects.settings, status)
    last = await projects.client.get_workflow_handle(workflow_id(proposal.project_id)).describe()
    assert last.run_id != late.first_run
    assert (await last.memo()).get("proposed_by") == str(CONTRACTOR)
