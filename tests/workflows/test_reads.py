"""Reads a decision can rely on, on the real dev server and broker: receipts that show the decision's effects,
decisions based on a status sequence, a bounded wait for progress, and decisions too large to deliver."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from activities.messages import PUBLISH_STATUS_EVENTS, SEND_INSTRUCTION
from alliance.projects import Projects, UserError
from schemas.decisions import Approve, AwaitProgress, Institution, Reject
from schemas.status import Stage
from tests.support import example, finished
from tests.workflows.driving import ProjectDriver
from workflows.limits import MAX_DECISION_BYTES
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(600)


def driver(projects: Projects, name: str = "et-cloud-finance") -> ProjectDriver:
    return ProjectDriver(projects, example(name, f"reads-{uuid.uuid4().hex[:10]}"))


async def in_financing(projects: Projects) -> ProjectDriver:
    d = driver(projects)
    await d.start()
    await d.progress(Stage.financing)
    return d


async def test_receipts_say_where_the_decision_left_the_project_and_progress_follows_its_effects(
    projects: Projects,
) -> None:
    d = await in_financing(projects)
    first = await d.approve(Institution.sinosure)
    assert first.stage is Stage.financing and first.sequence == first.event_sequence
    await d.approve(Institution.exim)
    last = await d.approve(Institution.cdb)
    assert last.stage is Stage.financing and last.sequence == last.event_sequence
    # What the last approval set off (reviews closed, package closed, conditions set) is followed without polling.
    progress = await d.progress(Stage.effectiveness)
    assert progress.sequence > last.sequence
    status = await d.status()
    assert status.sequence == progress.sequence
    assert any(e.type.endswith("financing_closed") for e in status.events[last.sequence :])
    assert status.conditions, "effectiveness had begun when the progress came back"


async def test_a_decision_based_on_an_overtaken_status_is_refused_and_names_the_change(projects: Projects) -> None:
    d = await in_financing(projects)
    read = (await d.status()).sequence
    sinosure = await d.approve(Institution.sinosure)
    # Another institution's approval does not concern China Exim's decision: based on the same read, it goes through.
    exim = await d.decide(
        Approve,
        institution=Institution.exim,
        officer="Exim officer",
        amount=d.proposal.financing.exim_loan.amount if d.proposal.financing.exim_loan else None,
        based_on_sequence=read,
    )
    assert exim.event_sequence > sinosure.event_sequence
    # A decision about Sinosure's review, based on the status before Sinosure approved, is refused.
    before = await d.status()
    with pytest.raises(UserError) as refused:
        await d.decide(
            Reject, institution=Institution.sinosure, officer="Sinosure officer", reason="x", based_on_sequence=read
        )
    message = str(refused.value)
    assert f"changed since sequence {read}" in message and f"#{sinosure.event_sequence} review_approved" in message
    after = await d.status()
    assert after.sequence == before.sequence and after.reviews == before.reviews
    history = await projects.client.get_workflow_handle(workflow_id(d.pid)).fetch_history()
    assert "Sinosure officer" not in str(history.to_json()), "a refused decision never reaches history"


async def test_a_decision_based_on_a_status_not_reached_yet_waits_for_it(projects: Projects) -> None:
    d = await in_financing(projects)
    now = (await d.status()).sequence
    cdb = d.proposal.financing.cdb_loan
    ahead = asyncio.create_task(
        d.decide(Approve, institution=Institution.cdb, officer="CDB officer", amount=cdb, based_on_sequence=now + 1)
    )
    await asyncio.sleep(0.5)
    assert not ahead.done(), "the decision waits for the status it was based on"
    sinosure = await d.approve(Institution.sinosure)
    receipt = await ahead
    assert sinosure.event_sequence == now + 1
    assert receipt.event_sequence > sinosure.event_sequence


# 25 s is longer than the server's long poll for an Update (about 20 s): `rpc_timeout` alone never ended that wait.
@pytest.mark.parametrize("seconds", [0.5, 25.0])
async def test_await_progress_returns_at_its_timeout_without_the_progress(projects: Projects, seconds: float) -> None:
    d = await in_financing(projects)
    loop = asyncio.get_running_loop()
    asked = loop.time()
    progress = await projects.await_progress(d.pid, AwaitProgress(stages=[Stage.delivery], timeout_seconds=seconds))
    waited = loop.time() - asked
    assert not progress.reached and progress.stage is Stage.financing
    assert seconds <= waited < seconds + 10, waited
    # The wait left behind answers once the project ends, so the run can end.
    await d.cancel()
    assert (await finished(projects, d.pid)).stage is Stage.cancelled


async def test_an_approval_too_large_to_publish_is_refused_and_changes_nothing(projects: Projects) -> None:
    d = await in_financing(projects)
    before = await d.status()
    conditions = [f"Condition {n}: " + "x" * 1900 for n in range(40)]
    with pytest.raises(UserError) as refused:
        await d.decide(
            Approve,
            institution=Institution.sinosure,
            officer="Sinosure officer",
            amount=d.proposal.financing.sinosure_cover,
            conditions=conditions,
        )
    assert f"at most {MAX_DECISION_BYTES:,} bytes" in str(refused.value)
    after = await d.status()
    assert after.sequence == before.sequence and after.reviews == before.reviews
    # The same approval with its conditions referred to goes through.
    receipt = await d.decide(
        Approve,
        institution=Institution.sinosure,
        officer="Sinosure officer",
        amount=d.proposal.financing.sinosure_cover,
        conditions=["Conditions as in document SIN-2026-114"],
    )
    assert receipt.stage is Stage.financing


def publishes_outstanding_at_each_instruction(history: WorkflowHistory) -> list[int]:
    """For each instruction scheduled, how many status-event publishes were scheduled and not yet completed."""
    publishing: set[int] = set()
    outstanding = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            if name == PUBLISH_STATUS_EVENTS:
                publishing.add(event.event_id)
            elif name == SEND_INSTRUCTION:
                outstanding.append(len(publishing))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            publishing.discard(event.activity_task_completed_event_attributes.scheduled_event_id)
    return outstanding


async def test_an_instruction_goes_out_only_after_every_event_before_it(projects: Projects) -> None:
    d = driver(projects)
    await d.into_delivery()
    for milestone in d.proposal.milestones[:3]:
        await d.complete(milestone.id)
    await d.cancel()
    await finished(projects, d.pid)
    history = await projects.client.get_workflow_handle(workflow_id(d.pid)).fetch_history()
    outstanding = publishes_outstanding_at_each_instruction(history)
    # Every milestone certified before the cancellation is paid by both tranches; then the three commitments go
    # back (China Exim's and CDB's undrawn loans, and Sinosure's cover of the former).
    assert len(outstanding) == 3 * 2 + 3, outstanding
    assert outstanding == [0] * len(outstanding)
