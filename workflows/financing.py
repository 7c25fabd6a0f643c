"""Financing rules: the institutions' reviews, what each decision may do to them, and how the package settles.

Pure functions of the project's status and proposal: they raise `Refused` with the reason in the institutions'
words, or apply an accepted decision to the status and return its `Change`. The workflow calls them from its
Update validators (refusal before history) and handlers (application), and unit tests call them directly.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from schemas import events as ev
from schemas.decisions import Approve, Institution, ProvideInformation, Reject, RequestInformation
from schemas.money import Money
from schemas.proposal import EximFacility, Proposal
from schemas.stage import Stage
from schemas.status import InformationRequest, ProjectStatus, Review, ReviewStatus, Tranche
from workflows.change import Change
from workflows.refusals import Refused


def requests(proposal: Proposal) -> list[tuple[Institution, Money]]:
    """What the proposal asks of each institution, in review order (CDB, China Exim, Sinosure)."""
    f = proposal.financing
    asked: list[tuple[Institution, Money]] = []
    if f.cdb_loan is not None:
        asked.append((Institution.cdb, f.cdb_loan))
    if f.exim_loan is not None:
        asked.append((Institution.exim, f.exim_loan.amount))
    if f.sinosure_cover is not None:
        asked.append((Institution.sinosure, f.sinosure_cover))
    return asked


def review_of(status: ProjectStatus, institution: Institution) -> Review:
    for review in status.reviews:
        if review.institution is institution:
            return review
    raise Refused(f"{institution.display} has no review in project {status.project_id}")


def open_review(status: ProjectStatus, institution: Institution) -> Review:
    """The institution's review if it can take a decision now."""
    review = next((r for r in status.reviews if r.institution is institution), None)
    if review is None and status.stage is Stage.screening:
        raise Refused(f"project {status.project_id} is still in screening: no review is open yet")
    review = review_of(status, institution)
    if review.status is ReviewStatus.expired:
        raise Refused(
            f"the {institution.display} review is closed: expired at its deadline "
            f"({review.deadline:%Y-%m-%d %H:%M} UTC), before this decision arrived"
        )
    if not review.status.is_open:
        raise Refused(f"the {institution.display} review is closed: {review.status.value}")
    if status.stage is not Stage.financing:
        raise Refused(f"project {status.project_id} is {status.stage.value}: no review is open")
    return review


def settled(status: ProjectStatus) -> bool:
    """Every review approved, or one rejected or expired: the package is decided either way."""
    statuses = [r.status for r in status.reviews]
    return all(s is ReviewStatus.approved for s in statuses) or any(
        s in (ReviewStatus.rejected, ReviewStatus.expired) for s in statuses
    )


def failure(status: ProjectStatus) -> str | None:
    """Why the package failed (the first review rejected or expired), or None if it did not."""
    failed = next((r for r in status.reviews if r.status in (ReviewStatus.rejected, ReviewStatus.expired)), None)
    if failed is None:
        return None
    how = "rejected the financing" if failed.status is ReviewStatus.rejected else "let its review expire"
    return f"{failed.institution.display} {how}" + (f": {failed.reason}" if failed.reason else "")


def details(status: ProjectStatus) -> str | None:
    """Where financing stands, in words (None once no review is open)."""
    pending = [r for r in status.reviews if r.status.is_open]
    if not pending:
        return None
    deadline = min(r.deadline for r in pending)
    names = ", ".join(
        r.institution.display + (" (information requested)" if r.status is ReviewStatus.information_requested else "")
        for r in pending
    )
    return f"Financing: waiting for {names}; deadline {deadline:%Y-%m-%d}"


def tranches(status: ProjectStatus, proposal: Proposal) -> list[Tranche]:
    """The loans of a closed package: one per approved loan (Sinosure's cover is insurance, not a tranche)."""
    exim = proposal.financing.exim_loan
    return [
        Tranche(
            institution=r.institution,
            facility=exim.facility if r.institution is Institution.exim and exim else None,
            approved=r.approved,
            disbursed=r.approved.zero(),
            retained=r.approved.zero(),
            released=r.approved.zero(),
        )
        for r in status.reviews
        if r.institution is not Institution.sinosure and r.approved is not None
    ]


# ------------------------------------------------------------------ decisions


def check_approve(status: ProjectStatus, proposal: Proposal, decision: Approve) -> None:
    review = open_review(status, decision.institution)
    name = decision.institution.display
    if decision.amount.currency != review.requested.currency:
        raise Refused(
            f"{name} was asked for {review.requested}; an approval in {decision.amount.currency} does not match "
            "the request"
        )
    if decision.amount.amount <= 0:
        raise Refused("an approval must be for an amount above zero; to decline, reject the request")
    if decision.amount.amount > review.requested.amount:
        raise Refused(f"{name} cannot approve {decision.amount}: only {review.requested} was requested")
    exim = proposal.financing.exim_loan
    if (
        decision.institution is Institution.exim
        and exim is not None
        and exim.facility is EximFacility.preferential_buyers_credit
    ):
        cover = next((r for r in status.reviews if r.institution is Institution.sinosure), None)
        if cover is None or cover.status is not ReviewStatus.approved:
            state = "has not decided yet" if cover is None or cover.status.is_open else f"is {cover.status.value}"
            raise Refused(
                "China Exim cannot approve a preferential buyer's credit before Sinosure has approved "
                f"its cover; Sinosure {state}"
            )
        required = proposal.financing.sinosure_cover_pct
        if required is not None and cover.approved is not None and cover.approved.currency == decision.amount.currency:
            share = cover.approved.amount * 100 / decision.amount.amount
            if share < required:
                # Rounded down: a failing share is never shown on the threshold.
                shown = share.quantize(Decimal("0.01"), rounding=ROUND_DOWN)
                raise Refused(
                    f"Sinosure's cover of {cover.approved} is {shown}% of this China Exim approval of "
                    f"{decision.amount}; {required}% is required (the proposal's cover)"
                )


def approve(status: ProjectStatus, decision: Approve, who: str, now: datetime) -> Change:
    review = review_of(status, decision.institution)
    review.status = ReviewStatus.approved
    review.approved = decision.amount
    review.terms = decision.terms
    review.conditions = list(decision.conditions)
    review.decided_by = who
    review.decided_at = now
    return Change(
        ev.ReviewApproved,
        {
            "institution": decision.institution,
            "amount": decision.amount,
            "terms": decision.terms,
            "conditions": list(decision.conditions),
            "officer": who,
        },
        f"{decision.institution.display} approved {decision.amount}",
    )


def check_reject(status: ProjectStatus, proposal: Proposal, decision: Reject) -> None:
    open_review(status, decision.institution)


def reject(status: ProjectStatus, decision: Reject, who: str, now: datetime) -> Change:
    review = review_of(status, decision.institution)
    review.status = ReviewStatus.rejected
    review.reason = decision.reason
    review.decided_by = who
    review.decided_at = now
    return Change(
        ev.ReviewRejected,
        {"institution": decision.institution, "reason": decision.reason, "officer": who},
        f"{decision.institution.display} rejected the financing",
    )


def check_request_information(status: ProjectStatus, proposal: Proposal, request: RequestInformation) -> None:
    review = open_review(status, request.institution)
    if review.status is ReviewStatus.information_requested:
        raise Refused(
            f"{request.institution.display}'s information request {review.information_requests[-1].request_id} "
            "is still unanswered; wait for the contractor's answer before asking again"
        )


def request_information(status: ProjectStatus, request: RequestInformation, who: str, now: datetime) -> Change:
    review = review_of(status, request.institution)
    request_id = f"{request.institution.value}-rfi-{len(review.information_requests) + 1}"
    review.information_requests.append(
        InformationRequest(request_id=request_id, questions=request.questions, asked_by=who, asked_at=now)
    )
    review.status = ReviewStatus.information_requested
    return Change(
        ev.InformationRequested,
        {"institution": request.institution, "request_id": request_id, "questions": request.questions, "officer": who},
        f"{request.institution.display} asked for information ({request_id})",
    )


def check_provide_information(status: ProjectStatus, proposal: Proposal, answer: ProvideInformation) -> None:
    review = open_review(status, answer.institution)
    if review.status is not ReviewStatus.information_requested:
        raise Refused(f"{answer.institution.display} has no unanswered information request")


def provide_information(status: ProjectStatus, answer: ProvideInformation, who: str, now: datetime) -> Change:
    review = review_of(status, answer.institution)
    request = review.information_requests[-1]
    request.answer = answer.answer
    request.documents = list(answer.documents)
    request.answered_by = who
    request.answered_at = now
    review.status = ReviewStatus.open
    return Change(
        ev.InformationProvided,
        {
            "institution": answer.institution,
            "request_id": request.request_id,
            "responder": who,
            "documents": list(answer.documents),
        },
        f"answered {request.request_id}",
    )
