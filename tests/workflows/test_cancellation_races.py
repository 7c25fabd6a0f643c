"""A cancellation raced against every other decision and every stage transition, on the real dev server and broker.

Each race sends a decision (or starts the project) and, `delay` later, a cancellation, swept over delays from 0 to
150 ms, or to 1.5 times what the racing step takes without a cancellation on this machine if that is longer
(measured first, as many projects at once as the race runs: on a loaded machine the window moves later).
Whatever wins, every run must be consistent:
- the cancellation's answer is its promise: a receipt means the project ends cancelled (and the receipt says so),
  a refusal says the project had already ended, and it did, in another final stage;
- no decision's receipt is contradicted: a receipt for a decision means its event is in the history;
- money is exact: every commitment approved is drawn or released, never both, never twice; the instructions on Kafka
  are exactly the amounts the status shows;
- no workflow task failed, and Kafka holds the status history.

ALLIANCE_RACE_RUNS sets the runs per race (3 in the suite, to keep CI within its time; the loops reported in the notes
ran 15 and more).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType

from alliance.event_feed import records
from alliance.projects import Projects, UserError
from schemas.decisions import (
    Institution,
    Receipt,
    Reject,
    RequestInformation,
)
from schemas.instructions import Instruction, InstructionAction
from schemas.money import Money
from schemas.status import Stage
from tests.support import assert_kafka_matches_history, example, finished
from tests.workflows.driving import ProjectDriver
from workflows.project import workflow_id

RUNS = int(os.environ.get("ALLIANCE_RACE_RUNS", "3"))
AT_ONCE = 4
# A run of the longest race drives a whole project (about twenty decisions) on a worker that replays every task.
pytestmark = pytest.mark.timeout(300 + RUNS * 60)


# ------------------------------------------------------------------ the races: set-up, then the racing step


async def financing(r: ProjectDriver) -> None:
    await r.start()
    await r.progress(Stage.financing)


async def effectiveness(r: ProjectDriver) -> None:
    await financing(r)
    for institution in (Institution.sinosure, Institution.exim, Institution.cdb):
        await r.approve(institution)
    await r.progress(Stage.effectiveness)


async def delivery(r: ProjectDriver) -> None:
    await effectiveness(r)
    for condition in (await r.status()).conditions:
        await r.satisfy(condition.condition_id)
    await r.progress(Stage.delivery)


async def before_final(r: ProjectDriver) -> None:
    await delivery(r)
    for milestone in r.proposal.milestones[:-1]:
        await r.complete(milestone.id)
    await r.progress()  # the provisional acceptance paid, and a warranty of 0 months over


async def before_last_approval(r: ProjectDriver) -> None:
    await financing(r)
    await r.approve(Institution.sinosure)
    await r.approve(Institution.exim)


async def before_last_condition(r: ProjectDriver) -> None:
    await effectiveness(r)
    for condition in (await r.status()).conditions[:-1]:
        await r.satisfy(condition.condition_id)


async def nothing(r: ProjectDriver) -> None:
    return None


async def two_milestones(r: ProjectDriver) -> Receipt:
    await r.complete(r.proposal.milestones[0].id)
    return await r.complete(r.proposal.milestones[1].id)


async def last_condition(r: ProjectDriver) -> Receipt:
    return await r.satisfy((await r.status()).conditions[-1].condition_id)


RACES: dict[str, tuple[Callable[[ProjectDriver], Awaitable[None]], Callable[[ProjectDriver], Awaitable[object]]]] = {
    # screening -> financing (the screening activity and the reviews' children starting)
    "proposal": (lambda r: r.start(), nothing),
    # a rejection: the other reviews withdrawn, financing declined, approved commitments released
    "rejection": (
        financing,
        lambda r: r.decide(Reject, institution=Institution.cdb, officer="CDB officer", reason="Country limit used"),
    ),
    # an information request: no transition
    "information_request": (
        financing,
        lambda r: r.decide(RequestInformation, institution=Institution.cdb, officer="Officer", questions="Why?"),
    ),
    # the last approval: reviews' children ending, financing closed, effectiveness entered
    "last_approval": (before_last_approval, lambda r: r.approve(Institution.cdb)),
    # the last condition precedent: effectiveness -> delivery
    "last_condition": (before_last_condition, last_condition),
    # a milestone: disbursement instructions in flight
    "milestone": (delivery, lambda r: r.complete(r.proposal.milestones[0].id)),
    # two milestones certified one after the other: the second while the first is being paid
    "milestones": (delivery, two_milestones),
    # final acceptance: last payment, retention released, completed
    "final_acceptance": (before_final, lambda r: r.complete(r.proposal.milestones[-1].id)),
}


def project_id(prefix: str, race: str) -> str:
    return f"{prefix}-{race[:12].replace('_', '-')}-{uuid.uuid4().hex[:8]}"


async def instructions_of(projects: Projects, project_id: str) -> list[Instruction]:
    return [
        Instruction.model_validate_json(value)
        async for key, value in records(projects.settings, projects.settings.instruction_topic)
        if key == project_id.encode()
    ]


async def one_run(projects: Projects, race: str, delay: float) -> str:
    prepare, step = RACES[race]
    r = ProjectDriver(
        projects, example("et-cloud-finance", f"race-{race[:12].replace('_', '-')}-{uuid.uuid4().hex[:8]}")
    )
    await prepare(r)
    racing = asyncio.create_task(step(r))
    await asyncio.sleep(delay)
    cancelled: Receipt | UserError
    try:
        cancelled = await r.cancel()
    except UserError as err:
        cancelled = err
    other: object = None
    try:
        other = await racing
    except UserError as err:
        other = err
    status = await finished(projects, r.pid)

    # The cancellation's answer is its promise.
    if isinstance(cancelled, Receipt):
        assert status.stage is Stage.cancelled, (race, delay, status.stage, status.details)
        assert cancelled.stage is Stage.cancelled, cancelled
        assert cancelled.sequence is not None and cancelled.sequence >= cancelled.event_sequence
        # Where the cancellation landed: before the racing decision was applied, or after it (during its effects).
        if isinstance(other, Receipt):
            winner = "cancel after it" if other.event_sequence < cancelled.event_sequence else "cancel before it"
        else:
            winner = "cancel, it refused" if isinstance(other, UserError) else "cancel"
    else:
        assert "has ended" in str(cancelled) or "can no longer be cancelled" in str(cancelled), (race, cancelled)
        assert status.stage.is_final and status.stage is not Stage.cancelled, (race, delay, status.stage)
        winner = status.stage.value
    # Every milestone certified is paid by every tranche, whenever the cancellation came.
    certified = [m.milestone_id for m in status.milestones if m.completed_at is not None]
    paid = [(d.milestone_id, d.institution) for d in status.disbursements]
    assert paid == [(m, t.institution) for m in certified for t in status.tranches], (race, delay, certified, paid)
    # A receipt's event is in the history.
    if isinstance(other, Receipt):
        assert status.events[other.event_sequence - 1].event_id, other
    # Money: every commitment approved is drawn or released, exactly, and Kafka's instructions say the same.
    sent: dict[tuple[Institution, InstructionAction], Decimal] = defaultdict(Decimal)
    for instruction in await instructions_of(projects, r.pid):
        sent[instruction.institution, instruction.action] += instruction.amount.amount
    if status.tranches:
        for t in status.tranches:
            assert t.retained.amount == 0, t
            assert t.disbursed + t.released == t.approved, t
            paid = (
                sent[t.institution, InstructionAction.disburse]
                + sent[t.institution, InstructionAction.release_retention]
            )
            assert paid == t.disbursed.amount, (t, dict(sent))
            assert sent[t.institution, InstructionAction.release_commitment] == t.released.amount, (t, dict(sent))
        # Sinosure's cover goes back with the China Exim loan's undrawn part.
        exim = next(t for t in status.tranches if t.institution is Institution.exim)
        cover = next(rv.approved for rv in status.reviews if rv.institution is Institution.sinosure)
        assert cover is not None
        cover_back = cover.share(exim.released.amount * 100 / exim.approved.amount).amount
        assert sent[Institution.sinosure, InstructionAction.release_commitment] == cover_back, dict(sent)
    else:
        approved: dict[Institution, Money] = {
            rv.institution: rv.approved for rv in status.reviews if rv.approved is not None
        }
        releases = {i: a for (i, action), a in sent.items() if action is InstructionAction.release_commitment}
        assert releases == {i: m.amount for i, m in approved.items()}, (race, delay, releases, approved)
        assert all(action is InstructionAction.release_commitment for (_, action) in sent), dict(sent)
    # No workflow task failed; Kafka holds the status history.
    history = await projects.client.get_workflow_handle(workflow_id(r.pid)).fetch_history()
    failed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert not failed, failed[0].workflow_task_failed_event_attributes.failure.message
    await assert_kafka_matches_history(projects.settings, status)
    return winner


async def step_alone(projects: Projects, race: str) -> float:
    """How long the racing step takes, receipt included, with no cancellation."""
    prepare, step = RACES[race]
    r = ProjectDriver(
        projects, example("et-cloud-finance", f"alone-{race[:12].replace('_', '-')}-{uuid.uuid4().hex[:8]}")
    )
    await prepare(r)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await step(r)
    await r.progress()  # the project has finished reacting (a stage reached, or nothing more to do)
    return loop.time() - started


@pytest.mark.parametrize("race", sorted(RACES))
async def test_a_cancellation_racing_any_step_ends_as_its_answer_said(projects: Projects, race: str) -> None:
    # Measured with as many projects at once as the race runs: the window is where the runs will find it.
    alone = await asyncio.gather(*(step_alone(projects, race) for _ in range(min(AT_ONCE, RUNS))))
    span = max(0.150, 1.5 * max(alone))
    delays = [span * i / max(RUNS - 1, 1) for i in range(RUNS)]
    outcomes: dict[str, int] = defaultdict(int)
    for start in range(0, RUNS, AT_ONCE):
        for winner in await asyncio.gather(*(one_run(projects, race, d) for d in delays[start : start + AT_ONCE])):
            outcomes[winner] += 1
    print(f"{race}: {RUNS} runs over 0-{span * 1000:.0f} ms: {dict(outcomes)}")
    assert sum(outcomes.values()) == RUNS
