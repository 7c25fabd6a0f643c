"""Every path of a project end to end, on the real Temporal dev server and the real Kafka broker.

After each path, the status events read back from Kafka must be the workflow's status history: same ids, in
order, sequence 1..n without gaps, each id once.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal

import pytest
from temporalio.client import WorkflowExecutionStatus

from alliance.demo import Driver
from alliance.event_feed import records
from alliance.projects import Projects, UserError
from schemas.decisions import (
    AcceptanceCertificate,
    Approve,
    Cancel,
    CompleteMilestone,
    Institution,
    ProvideInformation,
    Reject,
    RequestInformation,
    SatisfyCondition,
)
from schemas.events import StatusEvent
from schemas.instructions import Instruction, InstructionAction
from schemas.money import Money
from schemas.status import ReviewStatus, Stage
from schemas.timetable import Timetable
from tests.support import assert_kafka_matches_history, example, finished

pytestmark = pytest.mark.timeout(180)


def unique_id(base: str) -> str:
    return f"{base[:40]}-{uuid.uuid4().hex[:8]}"


async def instructions(projects: Projects, project_id: str) -> list[Instruction]:
    return [
        Instruction.model_validate_json(value)
        async for key, value in records(projects.settings, projects.settings.instruction_topic)
        if key == project_id.encode()
    ]


def kinds(events: list[StatusEvent]) -> list[str]:
    return [e.data.kind for e in events]


async def test_approved_project_is_financed_delivered_and_completed(projects: Projects) -> None:
    proposal = example("zm-lusaka-smart-city-2", unique_id("zm-city"))
    d = Driver(projects, proposal)
    assert await d.start(Timetable(warranty_months=0))
    await d.approve(Institution.sinosure, "Wang Fang")
    await d.approve(Institution.exim, "Chen Jie", ["Escrow account opened"])
    await d.approve(Institution.cdb, "Liu Yang")
    await d.satisfy_all()
    for milestone in proposal.milestones:
        await d.complete(milestone.id)

    status = await finished(projects, proposal.project_id)
    assert status.stage is Stage.completed
    # Every tranche is drawn to the last cent, nothing retained, nothing released.
    for tranche in status.tranches:
        assert tranche.disbursed == tranche.approved
        assert tranche.retained.amount == 0 and tranche.released.amount == 0
    assert {t.institution for t in status.tranches} == {Institution.cdb, Institution.exim}
    assert "exim-1" in {c.condition_id for c in status.conditions}

    events = await assert_kafka_matches_history(projects.settings, status)
    assert kinds(events)[:2] == ["proposed", "screening_passed"]
    assert kinds(events).count("disbursement_instructed") == 2 * len(proposal.milestones)
    assert kinds(events)[-3:] == ["retention_released", "retention_released", "project_completed"]

    sent = await instructions(projects, proposal.project_id)
    assert len({i.instruction_id for i in sent}) == len(sent)
    for institution in (Institution.cdb, Institution.exim):
        paid = sum((i.amount.amount for i in sent if i.institution is institution), Decimal(0))
        approved = next(t.approved for t in status.tranches if t.institution is institution)
        assert paid == approved.amount


async def test_rejected_at_screening_lists_every_reason(projects: Projects) -> None:
    proposal = example("th-smart-taxation", unique_id("th-tax"))
    await projects.propose(proposal)
    status = await finished(projects, proposal.project_id)
    assert status.stage is Stage.rejected
    assert status.screening_reasons == [
        "the down payment is 10.0% of the contract; at least 15% is required",
        "the environmental impact assessment is missing",
    ]
    assert status.reviews == []
    events = await assert_kafka_matches_history(projects.settings, status)
    assert kinds(events) == ["proposed", "screening_failed"]


async def test_rejection_by_one_institution_withdraws_the_others_and_releases_approvals(projects: Projects) -> None:
    proposal = example("et-cloud-finance", unique_id("et-bank"))
    d = Driver(projects, proposal)
    await d.start()
    await d.approve(Institution.cdb, "Liu Yang")
    await d.send(Reject, institution=Institution.sinosure, officer="Wang Fang", reason="Country limit reached")

    status = await finished(projects, proposal.project_id)
    assert status.stage is Stage.financing_declined
    by_institution = {r.institution: r.status for r in status.reviews}
    assert by_institution == {
        Institution.cdb: ReviewStatus.approved,
        Institution.exim: ReviewStatus.withdrawn,
        Institution.sinosure: ReviewStatus.rejected,
    }
    assert "Sinosure rejected the financing: Country limit reached" in (status.outcome or "")
    events = await assert_kafka_matches_history(projects.settings, status)
    assert kinds(events)[-3:] == ["review_withdrawn", "commitment_released", "financing_declined"]
    sent = await instructions(projects, proposal.project_id)
    assert [(i.action, i.institution, i.amount) for i in sent] == [
        (InstructionAction.release_commitment, Institution.cdb, Money.of("10000000.00", "USD"))
    ]


async def test_cancelled_during_delivery_releases_what_was_not_drawn(projects: Projects) -> None:
    proposal = example("tn-smart-education", unique_id("tn-edu"))
    d = Driver(projects, proposal)
    await d.start()
    await d.approve(Institution.cdb, "Liu Yang")
    await d.satisfy_all()
    await d.complete("survey")
    await d.send(Cancel, reason="Re-tendered", by="PMO operations")

    status = await finished(projects, proposal.project_id)
    assert status.stage is Stage.cancelled
    (tranche,) = status.tranches
    # 10% of USD 41m, less 10% retention, was paid; the rest goes back to CDB.
    assert tranche.disbursed == Money.of("3690000.00", "USD")
    assert tranche.released == Money.of("37310000.00", "USD")
    assert tranche.retained.amount == 0
    events = await assert_kafka_matches_history(projects.settings, status)
    cancelled = next(e for e in events if e.data.kind == "project_cancelled")
    assert cancelled.data.cancelled_in is Stage.delivery  # type: ignore[union-attr]
    assert kinds(events)[-1] == "commitment_released"


async def test_exim_buyers_credit_cannot_be_approved_before_sinosure_cover(projects: Projects) -> None:
    proposal = example("zm-lusaka-smart-city-2", unique_id("zm-order"))
    d = Driver(projects, proposal)
    await d.start()
    with pytest.raises(UserError, match="China Exim cannot approve a preferential buyer's credit before Sinosure"):
        await d.approve(Institution.exim, "Chen Jie")
    await d.approve(Institution.sinosure, "Wang Fang")
    await d.approve(Institution.exim, "Chen Jie")
    status = await projects.status(proposal.project_id)
    assert {r.institution: r.status for r in status.reviews}[Institution.exim] is ReviewStatus.approved


async def test_refused_decisions_change_nothing_and_never_reach_history(projects: Projects) -> None:
    proposal = example("ke-national-data-centre-2", unique_id("ke-dc"))
    d = Driver(projects, proposal)
    await d.start()
    # Settled: in financing with every event on Kafka (publishing marks events published while the refusals go on).
    before = await d.wait(lambda s: s.stage is Stage.financing and all(e.published for e in s.events))

    refusals = {
        "has no review": Approve(
            decision_id="r1", institution=Institution.cdb, officer="x", amount=Money.of(1000, "USD")
        ),
        "only CNY 1,300,000,000.00 was requested": Approve(
            decision_id="r2", institution=Institution.exim, officer="x", amount=Money.of("1300000000.01", "CNY")
        ),
        "does not match the request": Approve(
            decision_id="r3", institution=Institution.exim, officer="x", amount=Money.of(1000, "USD")
        ),
        "no unanswered information request": ProvideInformation(
            decision_id="r4", institution=Institution.exim, responder="x", answer="y"
        ),
        "conditions precedent are satisfied during effectiveness": SatisfyCondition(
            decision_id="r5", condition_id="legal-opinion", evidence="LO-1", by="x"
        ),
        "milestones are completed during delivery": CompleteMilestone(
            decision_id="r6",
            milestone_id="survey",
            certificate=AcceptanceCertificate(reference="AC", issued_by="x", issued_on=date(2027, 1, 1)),
            by="x",
        ),
    }
    for message, decision in refusals.items():
        with pytest.raises(UserError, match=message):
            await projects.decide(proposal.project_id, decision, Driver.actor_for(decision))

    after = await projects.status(proposal.project_id)
    assert after == before
    history = await projects.client.get_workflow_handle(f"project-{proposal.project_id}").fetch_history()
    accepted = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert accepted == []

    # Once the review is decided, a late decision is refused too.
    await d.approve(Institution.exim, "Chen Jie")
    with pytest.raises(UserError, match="the China Exim review is closed: approved"):
        await d.send(Reject, institution=Institution.exim, officer="Chen Jie", reason="changed my mind")


async def test_the_same_decision_sent_twice_returns_the_first_receipt(projects: Projects) -> None:
    proposal = example("ke-national-data-centre-2", unique_id("ke-twice"))
    d = Driver(projects, proposal)
    await d.start()
    await d.wait(lambda s: s.stage is Stage.financing)
    decision = Approve(
        decision_id="exim-approval-1",
        institution=Institution.exim,
        officer="Chen Jie",
        amount=Money.of("1300000000.00", "CNY"),
    )
    first = await projects.decide(proposal.project_id, decision, Driver.actor_for(decision))
    again = await projects.decide(proposal.project_id, decision, Driver.actor_for(decision))
    assert again == first
    status = await projects.status(proposal.project_id)
    assert [e.type for e in status.events].count("org.alliance.project.review_approved") == 1

    different = decision.model_copy(update={"amount": Money.of("1000000000.00", "CNY")})
    with pytest.raises(UserError, match="decision id exim-approval-1 was already used for a different decision"):
        await projects.decide(proposal.project_id, different, Driver.actor_for(different))


async def test_a_project_id_is_started_only_once(projects: Projects) -> None:
    proposal = example("th-smart-taxation", unique_id("th-once"))
    await projects.propose(proposal)
    with pytest.raises(UserError, match="already exists"):
        await projects.propose(proposal)
    await finished(projects, proposal.project_id)
    with pytest.raises(UserError, match="already exists"):
        await projects.propose(proposal)


async def test_information_requests_are_answered_one_at_a_time(projects: Projects) -> None:
    proposal = example("ng-public-security-network", unique_id("ng-rfi"))
    d = Driver(projects, proposal)
    await d.start()
    await d.wait(lambda s: s.stage is Stage.financing)
    await d.send(RequestInformation, institution=Institution.cdb, officer="Liu Yang", questions="Co-funding letters?")
    with pytest.raises(UserError, match="cdb-rfi-1 is still unanswered"):
        await d.send(RequestInformation, institution=Institution.cdb, officer="Liu Yang", questions="More?")
    rows = await projects.list(pending="cdb")
    assert proposal.project_id in {r.project_id for r in rows}
    await d.send(
        ProvideInformation, institution=Institution.cdb, responder="Li Wei", answer="Attached", documents=["L1"]
    )
    status = await projects.status(proposal.project_id)
    review = next(r for r in status.reviews if r.institution is Institution.cdb)
    assert review.status is ReviewStatus.open
    assert review.information_requests[0].answer == "Attached"
    await d.send(Cancel, reason="test over", by="PMO")
    status = await finished(projects, proposal.project_id)
    assert {r.status for r in status.reviews} == {ReviewStatus.withdrawn}
    await assert_kafka_matches_history(projects.settings, status)


async def test_operators_filter_projects_by_stage_country_and_pending_institution(projects: Projects) -> None:
    proposal = example("ng-public-security-network", unique_id("ng-list"))
    d = Driver(projects, proposal)
    await d.start()
    await d.approve(Institution.sinosure, "Wang Fang")

    async def listed(**filters: str) -> set[str]:
        return {r.project_id for r in await projects.list(**filters)}

    # Visibility is eventually consistent: give it a moment.
    for _ in range(50):
        if proposal.project_id in await listed(stage="financing", country="NG", pending="exim"):
            break
        await asyncio.sleep(0.2)
    assert proposal.project_id in await listed(stage="financing", country="ng", pending="exim")
    assert proposal.project_id not in await listed(pending="sinosure")
    assert proposal.project_id not in await listed(country="KE")
    description = await projects.client.get_workflow_handle(f"project-{proposal.project_id}").describe()
    assert description.status is WorkflowExecutionStatus.RUNNING
    await d.send(Cancel, reason="test over", by="PMO")


async def test_a_decision_arriving_while_the_reviews_are_being_opened_is_taken(projects: Projects) -> None:
    """Officers may decide the moment financing opens, while the review child workflows are still being started
    (the last one, Sinosure's, is started last): the decision waits for its review instead of failing the task."""
    proposal = example("zm-lusaka-smart-city-2", unique_id("zm-race"))
    d = Driver(projects, proposal)
    await d.start()
    decision = Approve(
        decision_id="sinosure-early",
        institution=Institution.sinosure,
        officer="Wang Fang",
        amount=Money.of("161500000.00", "USD"),
    )
    for _ in range(2000):
        try:
            receipt = await asyncio.wait_for(
                projects.decide(proposal.project_id, decision, Driver.actor_for(decision)), timeout=20
            )
            break
        except UserError as refused:
            assert "still in screening" in str(refused)
            await asyncio.sleep(0.002)
    else:
        pytest.fail("financing never opened")
    assert receipt.message == "Sinosure approved USD 161,500,000.00"
    status = await projects.status(proposal.project_id)
    assert {r.institution: r.status for r in status.reviews}[Institution.sinosure] is ReviewStatus.approved
