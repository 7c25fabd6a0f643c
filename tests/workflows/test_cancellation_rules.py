"""Cancellation rules (workflows/cancellation.py): a project can be cancelled in any stage that is not final, and
gives back what it holds. Pure functions: no server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest

from schemas import events as ev
from schemas.decisions import Institution
from schemas.money import Money
from schemas.proposal import Proposal
from schemas.stage import FINAL_STAGES, Stage
from schemas.status import ProjectStatus, ReviewStatus
from tests.workflows.states import (
    CONTRACTOR,
    T0,
    applied,
    approve,
    cancellation,
    complete,
    enter,
    in_delivery,
    in_effectiveness,
    in_financing,
    in_screening,
    in_warranty,
    proposal,
    refused,
)
from workflows import cancellation as rules
from workflows import financing
from workflows.delivery import undrawn

NOW = T0 + timedelta(days=45)
IN_STAGE: dict[Stage, Callable[[Proposal], ProjectStatus]] = {
    Stage.screening: in_screening,
    Stage.financing: in_financing,
    Stage.effectiveness: in_effectiveness,
    Stage.delivery: in_delivery,
    Stage.warranty: in_warranty,
}


@pytest.mark.parametrize("final", sorted(FINAL_STAGES))
def test_a_project_that_has_ended_cannot_be_cancelled(final: Stage) -> None:
    p = proposal()
    status = in_financing(p)
    enter(status, final)
    message = refused(status, lambda: rules.check_cancel(status, p, cancellation()))
    assert message == f"project zm-lusaka-smart-city-2 has ended ({final.value}); it takes no more decisions"


def test_every_stage_that_is_not_final_takes_a_cancellation() -> None:
    assert set(IN_STAGE) == set(Stage) - FINAL_STAGES
    p = proposal()
    for stage, build in IN_STAGE.items():
        status = build(p)
        assert status.stage is stage
        rules.check_cancel(status, p, cancellation())


def test_a_project_whose_final_acceptance_is_certified_cannot_be_cancelled() -> None:
    p = proposal()
    status = in_warranty(p, over=True)
    rules.check_cancel(status, p, cancellation())  # the warranty is over, final acceptance not yet certified
    final = status.milestones[-1]
    complete(status, p, final.milestone_id)
    assert status.stage is Stage.warranty and final.completed_at is not None
    message = refused(status, lambda: rules.check_cancel(status, p, cancellation()))
    assert message == (
        f"project zm-lusaka-smart-city-2's final acceptance ({final.milestone_id}) was certified on "
        f"{final.completed_at:%Y-%m-%d}: it completes once the last payment and the retention are out, and can no "
        "longer be cancelled"
    )


def test_certified_milestones_before_final_acceptance_do_not_stop_a_cancellation() -> None:
    p = proposal()
    status = in_delivery(p, completed=len(p.milestones) - 1)
    rules.check_cancel(status, p, cancellation())


@pytest.mark.parametrize("stage", list(IN_STAGE))
def test_a_cancellation_ends_the_project_in_the_stage_it_was_in(stage: Stage) -> None:
    p = proposal()
    status = IN_STAGE[stage](p)
    decision = cancellation("the borrower's budget was withdrawn")
    change = rules.cancel(status, decision, CONTRACTOR, NOW)

    assert status.outcome == "the borrower's budget was withdrawn"
    assert change.event is ev.ProjectCancelled
    assert change.fields == {"reason": "the borrower's budget was withdrawn", "by": CONTRACTOR, "cancelled_in": stage}
    assert change.message == f"project cancelled in {stage.value}"
    assert change.stage is Stage.cancelled
    assert change.details == f"Cancelled in {stage.value} by {CONTRACTOR}: the borrower's budget was withdrawn"
    event = applied(status, change)
    assert isinstance(event, ev.ProjectCancelled) and event.stage is Stage.cancelled
    assert status.stage is Stage.cancelled
    assert status.events[-1].subject == "project"
    # And nothing more is decided.
    message = refused(status, lambda: rules.check_cancel(status, p, cancellation()))
    assert message == "project zm-lusaka-smart-city-2 has ended (cancelled); it takes no more decisions"


def test_a_package_cancelled_in_financing_gives_back_the_approvals_so_far() -> None:
    p = proposal()
    status = in_financing(p)
    approve(status, p, Institution.cdb)
    assert financing.review_of(status, Institution.exim).status is ReviewStatus.open
    held = rules.commitments(status)
    assert [(t.institution, t.approved) for t in held] == [(Institution.cdb, Money.of("42500000.00", "USD"))]
    assert all(t.disbursed == t.retained == t.released == t.approved.zero() for t in held)


def test_a_cancellation_gives_back_the_same_commitments_just_before_and_just_after_the_package_closed() -> None:
    """Every institution approved: cancelled a moment before the package closes (still in financing), or a moment
    after (in effectiveness, nothing drawn), the project holds the same approvals and gives the same ones back."""
    p = proposal()
    before = in_financing(p)
    for institution in (Institution.sinosure, Institution.cdb, Institution.exim):
        approve(before, p, institution)
    after = in_effectiveness(p)
    assert [r.status for r in before.reviews] == [r.status for r in after.reviews] == [ReviewStatus.approved] * 3

    def given_back(status: ProjectStatus) -> dict[Institution, Money]:
        back = {t.institution: undrawn(t) for t in rules.commitments(status)}
        if (cover := rules.cover_release(status)) is not None:
            back[Institution.sinosure] = cover
        return back

    assert given_back(after) == given_back(before)
    assert Institution.sinosure in given_back(after)


def test_after_closing_sinosure_gives_back_the_cover_of_the_exim_loan_left_undrawn() -> None:
    status = in_delivery(proposal())
    exim = next(t for t in status.tranches if t.institution is Institution.exim)
    cover = next(r.approved for r in status.reviews if r.institution is Institution.sinosure)
    assert cover is not None
    exim.disbursed = exim.approved.share(Decimal(25))
    assert rules.cover_release(status) == cover.share(Decimal(75))
    exim.disbursed = exim.approved
    assert rules.cover_release(status) == cover.zero()


def test_before_closing_there_is_no_separate_cover_release() -> None:
    status = in_financing(proposal())
    assert rules.cover_release(status) is None


def test_a_project_cancelled_before_any_approval_holds_no_commitment() -> None:
    assert rules.commitments(in_screening(proposal())) == []
    assert rules.commitments(in_financing(proposal())) == []


def test_a_closed_package_gives_back_its_tranches_as_they_stand() -> None:
    status = in_delivery(proposal())
    status.tranches[0].disbursed = Money.of("4250000.00", "USD")
    held = rules.commitments(status)
    assert held == status.tranches
    assert [t.institution for t in held] == [Institution.cdb, Institution.exim]  # no Sinosure tranche
