"""Reads a decision can rely on, on the real dev server and broker: receipts that show the decision's effects,
decisions based on a status sequence, a bounded wait for progress, and decisions too large to deliver."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from activities.messages import PUBLISH_STATUS_EVENTS, SEND_INSTRUCTION
from alliance.demo import Driver
from alliance.projects import Projects, UserError
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import project_worker
from schemas.decisions import Approve, AwaitProgress, Institution, Reject
from schemas.status import Stage
from tests.support import example, finished, local_temporal
from tests.workflows.driving import ProjectDriver, leave_waits_open
from workflows import catalogue, limits
from workflows.limits import MAX_DECISION_BYTES, MAX_WAITS_PER_RUN
from workflows.project import MAX_PROGRESS_WAITS, workflow_id
from workflows.refusals import Refused

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


# Temporal lets one workflow hold 10 Updates not yet completed (`history.maxInFlightUpdates`, the dev server's
# default). Before waits were released, the 11th wait given up on a project refused every later decision, for good.
async def test_waits_given_up_never_hold_the_projects_updates(projects: Projects) -> None:
    d = await in_financing(projects)
    for _ in range(12):
        progress = await projects.await_progress(d.pid, AwaitProgress(min_sequence=999, timeout_seconds=0.3))
        assert not progress.reached and progress.stage is Stage.financing
    receipt = await d.approve(Institution.sinosure)
    assert receipt.stage is Stage.financing and receipt.sequence is not None
    progress = await projects.await_progress(d.pid, AwaitProgress(min_sequence=receipt.sequence, timeout_seconds=30))
    assert progress.reached and progress.sequence >= receipt.sequence


async def test_waits_whose_callers_vanished_never_starve_decisions_or_later_waits(projects: Projects) -> None:
    d = await in_financing(projects)
    # Callers that vanished without releasing their waits: every wait the project takes.
    vanished = await leave_waits_open(projects.client, d.pid, [f"vanished-{n}" for n in range(MAX_PROGRESS_WAITS)])
    # Decisions still find room: the waits hold at most half of the Updates Temporal lets the project hold.
    receipt = await d.approve(Institution.sinosure)
    # A new wait finds them all open: the edge releases them and asks again.
    progress = await projects.await_progress(d.pid, AwaitProgress(min_sequence=receipt.sequence, timeout_seconds=30))
    assert progress.reached
    for wait in vanished:
        assert not (await wait.result()).reached, "a released wait answers where the project stands, not reached"


# A server that lets a workflow hold fewer Updates than the waits the workflow keeps open (an operator's setting; also
# a project whose waits were left open before they were released): the decision finds every slot held, the edge
# releases the waits and sends it once more.
async def test_a_decision_finding_every_update_slot_held_releases_the_waits_and_goes_through(
    settings: Settings,
) -> None:
    env = await local_temporal("history.maxInFlightUpdates=3")
    try:
        async with project_worker(env.client, settings):
            projects = Projects(env.client, settings, Edge(settings))
            d = await in_financing(projects)
            held = await leave_waits_open(env.client, d.pid, [f"held-{n}" for n in range(3)])
            receipt = await d.approve(Institution.sinosure)
            assert receipt.stage is Stage.financing
            for wait in held:
                assert not (await wait.result()).reached
            await d.cancel()
    finally:
        await env.shutdown()


# Temporal lets one run take 2,000 Updates in all (`history.maxTotalUpdates`), then refuses every Update, decisions
# included, until the run continues as new, which a project in financing never does. Every wait spent one: a
# dashboard following a project in financing with 60 s waits would have locked it in a day and a half (here, with a
# server that allows 40, the approval was refused: "The limit on the total number of distinct updates in this
# workflow has been reached"). Each wait also lengthened the history a rebuilt run replays. Now the project refuses
# waits once its history reaches its continue-as-new length (100 events here) or it has taken 500, and the edge
# follows it through Temporal's description (stage and published sequence) instead.
async def test_waits_never_spend_the_updates_decisions_need_nor_lengthen_the_history_for_good(
    settings: Settings,
) -> None:
    short = settings.model_copy(update={"continue_as_new_after_events": 100})
    env = await local_temporal("history.maxTotalUpdates=40")
    try:
        async with project_worker(env.client, short):
            projects = Projects(env.client, short, Edge(short))
            d = await in_financing(projects)
            handle = env.client.get_workflow_handle(workflow_id(d.pid))
            lengths = []
            for _ in range(45):
                progress = await projects.await_progress(d.pid, AwaitProgress(min_sequence=999, timeout_seconds=0.2))
                assert not progress.reached and progress.stage is Stage.financing
                lengths.append((await handle.describe()).raw_description.workflow_execution_info.history_length)
            # The waits stopped adding to the history once it was as long as the project lets it grow by waiting.
            assert max(lengths) < 100 + 10, lengths
            assert lengths[-10:] == [lengths[-1]] * 10, lengths
            # A wait for what a decision sets off is answered once the project gets there, without an Update.
            sequence = (await d.status()).sequence
            following = asyncio.create_task(
                projects.await_progress(d.pid, AwaitProgress(min_sequence=sequence + 1, timeout_seconds=30))
            )
            await asyncio.sleep(0.5)
            receipt = await d.approve(Institution.sinosure)
            assert receipt.stage is Stage.financing
            followed = await following
            assert followed.reached and followed.sequence >= receipt.event_sequence, followed
            stage = await projects.await_progress(d.pid, AwaitProgress(stages=[Stage.financing], timeout_seconds=5))
            assert stage.reached and stage.stage is Stage.financing
            await d.cancel()
            assert (await finished(projects, d.pid)).stage is Stage.cancelled
    finally:
        await env.shutdown()


def test_a_wait_is_refused_once_the_run_has_spent_its_waits_or_its_history_is_long() -> None:
    limits.check_wait("p", MAX_WAITS_PER_RUN - 1, 99, 100)
    for taken, length, said in (
        (MAX_WAITS_PER_RUN, 10, f"it has taken {MAX_WAITS_PER_RUN} waits in this run"),
        (0, 100, "its history is 100 events long (it continues as new at 100)"),
    ):
        with pytest.raises(Refused) as refused:
            limits.check_wait("p", taken, length, 100)
        assert refused.value.type == catalogue.WAITS_SPENT and said in refused.value.message


# The edge sends a decision based on a status not reached yet again until its wait is over. When the wait ran out
# while the decision was on its way once more, the CLI said no worker had answered (it may still be taken, send it
# again) and the API answered 503, although workers were up and the project had refused it: 2 of 14 tries by hand.
# Now the project's last answer stands; a wait that ends before any answer says the project did not answer in time.
# Swept over waits 50 ms apart, so that the wait runs out at every point of a round trip.
async def test_a_basis_never_reached_is_refused_as_such_whenever_the_wait_runs_out(projects: Projects) -> None:
    d = await in_financing(projects)
    sequence = (await d.status()).sequence
    cdb = d.proposal.financing.cdb_loan
    answers: list[str] = []
    for n in range(20):
        wait = 0.2 + 0.05 * n
        decision = Approve(
            decision_id=f"ahead-{d.pid}-{n}",
            institution=Institution.cdb,
            officer="CDB officer",
            amount=cdb,
            based_on_sequence=sequence + 50,
        )
        with pytest.raises(UserError) as refused:
            await projects.decide(d.pid, decision, Driver.actor_for(decision), wait=wait)
        answers.append(f"{wait:.2f} s: {refused.value.kind}: {refused.value}")
    refusals = [a for a in answers if "has not reached yet" in a and "precondition_failed" in a]
    # A wait can run out before the project's first answer comes back (a workflow task replays the whole history:
    # slow on a loaded machine); that is said as such, never as "no worker".
    unanswered = [a for a in answers if "did not answer within" in a and "unavailable" in a]
    assert len(refusals) + len(unanswered) == len(answers), "\n".join(answers)
    assert len(refusals) >= len(answers) // 2, "\n".join(answers)
    assert (await d.status()).sequence == sequence, "nothing changed"


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
