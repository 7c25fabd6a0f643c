"""Financing rules (workflows/financing.py): what each institution's decision may do to its review, what it changes,
and how the package settles. Pure functions: no server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import events as ev
from schemas.decisions import Decision, Institution, Terms
from schemas.money import Money
from schemas.proposal import EximFacility
from schemas.stage import Stage
from schemas.status import ProjectStatus, ReviewStatus
from tests.workflows.states import (
    CDB_ONLY,
    CONTRACTOR,
    EXIM_ONLY,
    OFFICERS,
    PROPERTIES,
    T0,
    THREE_BANKS,
    answer,
    applied,
    approval,
    approve,
    decide,
    enter,
    in_financing,
    in_screening,
    proposal,
    question,
    refused,
    rejection,
    review,
)
from workflows import financing
from workflows.change import Change
from workflows.refusals import Refused

NOW = T0 + timedelta(days=5)
CDB_ASKED = Money.of("42500000.00", "USD")
EXIM_ASKED = Money.of("170000000.00", "USD")
COVER_ASKED = Money.of("161500000.00", "USD")  # 95% of the Exim loan


def check_any(status: ProjectStatus, decision: Decision) -> None:
    """The check of whichever financing decision `decision` is."""
    p = proposal(THREE_BANKS)
    checks: dict[str, Callable[..., None]] = {
        "Approve": financing.check_approve,
        "Reject": financing.check_reject,
        "RequestInformation": financing.check_request_information,
        "ProvideInformation": financing.check_provide_information,
    }
    checks[type(decision).__name__](status, p, decision)


EVERY_DECISION: list[Callable[[Institution], Decision]] = [
    lambda i: approval(i, Money.of(1, "USD")),
    rejection,
    question,
    answer,
]
EVERY_DECISION_IDS = ["approve", "reject", "request_information", "provide_information"]


# ------------------------------------------------------------------ reviews that cannot take decisions


@pytest.mark.parametrize("decision", EVERY_DECISION, ids=EVERY_DECISION_IDS)
def test_no_review_takes_a_decision_while_the_project_is_in_screening(
    decision: Callable[[Institution], Decision],
) -> None:
    status = in_screening(proposal())
    message = refused(status, lambda: check_any(status, decision(Institution.cdb)))
    assert message == "project zm-lusaka-smart-city-2 is still in screening: no review is open yet"


def test_an_institution_the_proposal_did_not_ask_has_no_review() -> None:
    p = proposal(EXIM_ONLY)
    status = in_financing(p)
    message = refused(status, lambda: financing.check_approve(status, p, approval(Institution.cdb, CDB_ASKED)))
    assert message == "China Development Bank has no review in project ke-national-data-centre-2"


@pytest.mark.parametrize(
    "closed", [ReviewStatus.approved, ReviewStatus.rejected, ReviewStatus.expired, ReviewStatus.withdrawn]
)
@pytest.mark.parametrize("decision", EVERY_DECISION, ids=EVERY_DECISION_IDS)
def test_a_closed_review_takes_no_more_decisions(
    closed: ReviewStatus, decision: Callable[[Institution], Decision]
) -> None:
    status = in_financing(proposal())
    review(status, Institution.cdb).status = closed
    message = refused(status, lambda: check_any(status, decision(Institution.cdb)))
    expected = f"the China Development Bank review is closed: {closed.value}"
    if closed is ReviewStatus.expired:
        deadline = review(status, Institution.cdb).deadline
        expected += f" at its deadline ({deadline:%Y-%m-%d %H:%M} UTC), before this decision arrived"
    assert message == expected


@pytest.mark.parametrize("decision", EVERY_DECISION, ids=EVERY_DECISION_IDS)
def test_an_open_review_takes_no_decision_once_the_project_was_cancelled(
    decision: Callable[[Institution], Decision],
) -> None:
    # Accepted cancellation: the stage is final before the workflow withdraws the reviews still open.
    status = in_financing(proposal())
    review(status, Institution.cdb).status = ReviewStatus.information_requested
    enter(status, Stage.cancelled)
    message = refused(status, lambda: check_any(status, decision(Institution.cdb)))
    assert message == "project zm-lusaka-smart-city-2 is cancelled: no review is open"


# ------------------------------------------------------------------ approvals


def test_an_approval_in_another_currency_than_the_request_is_refused() -> None:
    p = proposal()
    status = in_financing(p)
    decision = approval(Institution.cdb, Money.of("42500000.00", "CNY"))
    message = refused(status, lambda: financing.check_approve(status, p, decision))
    assert message == (
        "China Development Bank was asked for USD 42,500,000.00; an approval in CNY does not match the request"
    )


def test_an_approval_of_nothing_is_refused_in_favour_of_a_rejection() -> None:
    p = proposal()
    status = in_financing(p)
    decision = approval(Institution.cdb, Money.of("0.00", "USD"))
    message = refused(status, lambda: financing.check_approve(status, p, decision))
    assert message == "an approval must be for an amount above zero; to decline, reject the request"


def test_an_institution_cannot_approve_more_than_was_requested() -> None:
    p = proposal()
    status = in_financing(p)
    decision = approval(Institution.cdb, Money.of("42500000.01", "USD"))
    message = refused(status, lambda: financing.check_approve(status, p, decision))
    assert message == "China Development Bank cannot approve USD 42,500,000.01: only USD 42,500,000.00 was requested"


def test_sinosure_cannot_insure_more_than_its_share_of_the_exim_loan() -> None:
    p = proposal()
    status = in_financing(p)
    decision = approval(Institution.sinosure, EXIM_ASKED)
    message = refused(status, lambda: financing.check_approve(status, p, decision))
    assert message == "Sinosure cannot approve USD 170,000,000.00: only USD 161,500,000.00 was requested"


@pytest.mark.parametrize("cover", [ReviewStatus.open, ReviewStatus.information_requested])
def test_exim_cannot_approve_preferential_credit_before_sinosure_cover(cover: ReviewStatus) -> None:
    p = proposal(THREE_BANKS)
    assert p.financing.exim_loan is not None
    assert p.financing.exim_loan.facility is EximFacility.preferential_buyers_credit
    status = in_financing(p)
    review(status, Institution.sinosure).status = cover
    message = refused(status, lambda: financing.check_approve(status, p, approval(Institution.exim, EXIM_ASKED)))
    assert message == (
        "China Exim cannot approve a preferential buyer's credit before Sinosure has approved its cover; "
        "Sinosure has not decided yet"
    )


@pytest.mark.parametrize("cover", [ReviewStatus.rejected, ReviewStatus.expired, ReviewStatus.withdrawn])
def test_exim_cannot_approve_preferential_credit_once_sinosure_declined_cover(cover: ReviewStatus) -> None:
    p = proposal(THREE_BANKS)
    status = in_financing(p)
    review(status, Institution.sinosure).status = cover
    message = refused(status, lambda: financing.check_approve(status, p, approval(Institution.exim, EXIM_ASKED)))
    assert message.startswith("China Exim cannot approve a preferential buyer's credit before Sinosure")
    assert message.endswith(f"; Sinosure is {cover.value}")


def test_exim_approves_preferential_credit_once_sinosure_approved_cover() -> None:
    p = proposal(THREE_BANKS)
    status = in_financing(p)
    approve(status, p, Institution.sinosure)
    financing.check_approve(status, p, approval(Institution.exim, EXIM_ASKED))


def test_exim_cannot_approve_a_preferential_credit_that_sinosures_approved_cover_does_not_reach() -> None:
    p = proposal(THREE_BANKS)
    status = in_financing(p)
    partial = approval(Institution.sinosure, Money.of("161499999.99", "USD"))
    decide(status, p, financing.check_approve, financing.approve, partial, OFFICERS[Institution.sinosure], T0)
    message = refused(status, lambda: financing.check_approve(status, p, approval(Institution.exim, EXIM_ASKED)))
    # 94.99999999...%: shown rounded down, never on the threshold it fails.
    assert message == (
        "Sinosure's cover of USD 161,499,999.99 is 94.99% of this China Exim approval of USD 170,000,000.00; "
        "95% is required (the proposal's cover)"
    )
    # A smaller China Exim approval that the same cover does reach goes through.
    financing.check_approve(status, p, approval(Institution.exim, Money.of("170000000.00", "USD").share(Decimal(99))))


def test_exim_approves_a_government_concessional_loan_without_sinosure() -> None:
    p = proposal(EXIM_ONLY)
    status = in_financing(p)
    financing.check_approve(status, p, approval(Institution.exim, Money.of("1300000000.00", "CNY")))


def test_cdb_approves_before_sinosure_decides() -> None:
    p = proposal(THREE_BANKS)
    status = in_financing(p)
    financing.check_approve(status, p, approval(Institution.cdb, CDB_ASKED))


@PROPERTIES
@given(cents=st.integers(min_value=0, max_value=2 * 4_250_000_000))
def test_an_approval_is_accepted_exactly_when_it_is_above_zero_and_within_the_request(cents: int) -> None:
    p = proposal(THREE_BANKS)
    status = in_financing(p)
    amount = Money(amount=Decimal(cents).scaleb(-2), currency="USD")
    decision = approval(Institution.cdb, amount)
    try:
        financing.check_approve(status, p, decision)
    except Refused:
        accepted = False
    else:
        accepted = True
    assert accepted == (0 < amount.amount <= CDB_ASKED.amount)
    if accepted:
        financing.approve(status, decision, OFFICERS[Institution.cdb], NOW)
        approved = review(status, Institution.cdb).approved
        assert approved is not None and approved.amount <= review(status, Institution.cdb).requested.amount


DECISION_KINDS = ["approve", "reject", "question", "answer"]


@PROPERTIES
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(DECISION_KINDS), st.sampled_from(list(Institution)), st.integers(0, 150)),
        max_size=12,
    )
)
def test_approvals_never_exceed_the_request_and_a_closed_review_never_changes(
    steps: list[tuple[str, Institution, int]],
) -> None:
    """Any sequence of decisions, each applied only if the rules accept it (amounts from 0% to 150% of the
    request)."""
    p = proposal(THREE_BANKS)
    status = in_financing(p)
    for kind, institution, percent in steps:
        requested = review(status, institution).requested
        decision: Decision
        rules: tuple[Callable[..., None], Callable[..., Change]]
        if kind == "approve":
            decision = approval(institution, requested.share(Decimal(percent)))
            rules = (financing.check_approve, financing.approve)
        elif kind == "reject":
            decision, rules = rejection(institution), (financing.check_reject, financing.reject)
        elif kind == "question":
            decision = question(institution)
            rules = (financing.check_request_information, financing.request_information)
        else:
            decision = answer(institution)
            rules = (financing.check_provide_information, financing.provide_information)
        closed = {r.institution: r.model_dump() for r in status.reviews if not r.status.is_open}
        try:
            rules[0](status, p, decision)
        except Refused:
            continue
        applied(status, rules[1](status, decision, "someone", NOW))
        for r in status.reviews:
            if r.institution in closed:
                assert r.model_dump() == closed[r.institution]
            if r.approved is not None:
                assert r.approved.currency == r.requested.currency
                assert 0 < r.approved.amount <= r.requested.amount
        if review(status, Institution.exim).status is ReviewStatus.approved:
            assert review(status, Institution.sinosure).status is ReviewStatus.approved


def test_an_approval_closes_the_review_with_its_amount_terms_and_conditions() -> None:
    p = proposal(CDB_ONLY)
    status = in_financing(p)
    amount = Money.of("40000000.00", "USD")
    terms = Terms(interest_rate_pct=Decimal("4.5"), tenor_years=15, grace_period_years=3)
    decision = approval(Institution.cdb, amount, ["Borrower's parliament ratifies the loan"]).model_copy(
        update={"terms": terms}
    )
    financing.check_approve(status, p, decision)
    change = financing.approve(status, decision, OFFICERS[Institution.cdb], NOW)

    cdb = review(status, Institution.cdb)
    assert cdb.status is ReviewStatus.approved
    assert (cdb.approved, cdb.terms, cdb.conditions) == (amount, terms, ["Borrower's parliament ratifies the loan"])
    assert (cdb.decided_by, cdb.decided_at) == (OFFICERS[Institution.cdb], NOW)
    assert change.event is ev.ReviewApproved
    assert change.fields == {
        "institution": Institution.cdb,
        "amount": amount,
        "terms": terms,
        "conditions": ["Borrower's parliament ratifies the loan"],
        "officer": OFFICERS[Institution.cdb],
    }
    assert change.message == "China Development Bank approved USD 40,000,000.00"
    assert change.stage is None and change.details is None
    event = applied(status, change)
    assert isinstance(event, ev.ReviewApproved) and event.stage is Stage.financing
    assert status.events[-1].subject == "review:cdb"


# ------------------------------------------------------------------ rejections


def test_a_rejection_closes_the_review_with_its_reason() -> None:
    p = proposal()
    status = in_financing(p)
    decision = rejection(Institution.exim, reason="Debt sustainability analysis shows high risk of distress")
    financing.check_reject(status, p, decision)
    change = financing.reject(status, decision, OFFICERS[Institution.exim], NOW)

    exim = review(status, Institution.exim)
    assert exim.status is ReviewStatus.rejected
    assert exim.reason == "Debt sustainability analysis shows high risk of distress"
    assert (exim.decided_by, exim.decided_at, exim.approved) == (OFFICERS[Institution.exim], NOW, None)
    assert [r.status for r in status.reviews if r.institution is not Institution.exim] == [ReviewStatus.open] * 2
    assert change.event is ev.ReviewRejected
    assert change.fields == {
        "institution": Institution.exim,
        "reason": "Debt sustainability analysis shows high risk of distress",
        "officer": OFFICERS[Institution.exim],
    }
    assert change.message == "China Exim rejected the financing"
    assert change.stage is None
    assert isinstance(applied(status, change), ev.ReviewRejected)


# ------------------------------------------------------------------ information requests


def test_an_information_request_waits_for_the_answer_to_the_previous_one() -> None:
    p = proposal()
    status = in_financing(p)
    applied(status, financing.request_information(status, question(Institution.exim), OFFICERS[Institution.exim], NOW))
    again = question(Institution.exim, "And the environmental impact assessment")
    message = refused(status, lambda: financing.check_request_information(status, p, again))
    assert message == (
        "China Exim's information request exim-rfi-1 is still unanswered; wait for the contractor's answer before "
        "asking again"
    )


def test_an_answer_needs_an_unanswered_information_request() -> None:
    p = proposal()
    status = in_financing(p)
    message = refused(status, lambda: financing.check_provide_information(status, p, answer(Institution.sinosure)))
    assert message == "Sinosure has no unanswered information request"


def test_an_answer_to_another_institution_does_not_answer_this_one() -> None:
    p = proposal()
    status = in_financing(p)
    applied(status, financing.request_information(status, question(Institution.exim), OFFICERS[Institution.exim], NOW))
    message = refused(status, lambda: financing.check_provide_information(status, p, answer(Institution.cdb)))
    assert message == "China Development Bank has no unanswered information request"


def test_an_information_request_suspends_the_review_until_answered() -> None:
    p = proposal()
    status = in_financing(p)
    decision = question(Institution.exim, "Send the debt sustainability analysis")
    financing.check_request_information(status, p, decision)
    change = financing.request_information(status, decision, OFFICERS[Institution.exim], NOW)

    exim = review(status, Institution.exim)
    assert exim.status is ReviewStatus.information_requested
    assert exim.status.is_open  # still open: the deadline keeps running
    [asked] = exim.information_requests
    assert (asked.request_id, asked.questions, asked.asked_by, asked.asked_at, asked.answer) == (
        "exim-rfi-1",
        "Send the debt sustainability analysis",
        OFFICERS[Institution.exim],
        NOW,
        None,
    )
    assert change.event is ev.InformationRequested
    assert change.fields == {
        "institution": Institution.exim,
        "request_id": "exim-rfi-1",
        "questions": "Send the debt sustainability analysis",
        "officer": OFFICERS[Institution.exim],
    }
    assert change.message == "China Exim asked for information (exim-rfi-1)"
    assert change.stage is None
    assert isinstance(applied(status, change), ev.InformationRequested)


def test_an_answer_reopens_the_review_and_the_next_request_is_numbered_after_it() -> None:
    p = proposal()
    status = in_financing(p)
    applied(status, financing.request_information(status, question(Institution.exim), OFFICERS[Institution.exim], NOW))
    reply = answer(Institution.exim, documents=["DSA-ZM-2026", "FS-ZM-2026-02"])
    financing.check_provide_information(status, p, reply)
    later = NOW + timedelta(days=2)
    change = financing.provide_information(status, reply, CONTRACTOR, later)

    exim = review(status, Institution.exim)
    assert exim.status is ReviewStatus.open
    [asked] = exim.information_requests
    assert (asked.answer, asked.documents, asked.answered_by, asked.answered_at) == (
        "Updated study attached",
        ["DSA-ZM-2026", "FS-ZM-2026-02"],
        CONTRACTOR,
        later,
    )
    assert change.event is ev.InformationProvided
    assert change.fields == {
        "institution": Institution.exim,
        "request_id": "exim-rfi-1",
        "responder": CONTRACTOR,
        "documents": ["DSA-ZM-2026", "FS-ZM-2026-02"],
    }
    assert change.message == "answered exim-rfi-1"
    assert change.stage is None
    assert isinstance(applied(status, change), ev.InformationProvided)

    financing.check_request_information(status, p, question(Institution.exim))
    second = financing.request_information(status, question(Institution.exim), OFFICERS[Institution.exim], later)
    assert second.fields["request_id"] == "exim-rfi-2"
    assert [r.request_id for r in exim.information_requests] == ["exim-rfi-1", "exim-rfi-2"]


# ------------------------------------------------------------------ the package


def test_the_proposal_asks_cdb_then_exim_then_sinosure_for_its_cover() -> None:
    assert financing.requests(proposal(THREE_BANKS)) == [
        (Institution.cdb, CDB_ASKED),
        (Institution.exim, EXIM_ASKED),
        (Institution.sinosure, COVER_ASKED),
    ]
    assert financing.requests(proposal(EXIM_ONLY)) == [(Institution.exim, Money.of("1300000000.00", "CNY"))]


def test_the_package_settles_when_every_review_is_approved_or_one_failed() -> None:
    p = proposal()
    status = in_financing(p)
    assert not financing.settled(status)
    approve(status, p, Institution.sinosure)
    approve(status, p, Institution.cdb)
    assert not financing.settled(status)
    assert financing.failure(status) is None
    approve(status, p, Institution.exim)
    assert financing.settled(status)
    assert financing.failure(status) is None


def test_a_rejection_settles_the_package_and_is_its_failure() -> None:
    p = proposal()
    status = in_financing(p)
    approve(status, p, Institution.cdb)
    applied(status, financing.reject(status, rejection(Institution.sinosure, "country limit reached"), "x", NOW))
    assert financing.settled(status)
    assert financing.failure(status) == "Sinosure rejected the financing: country limit reached"


def test_an_expired_review_settles_the_package_and_is_its_failure() -> None:
    status = in_financing(proposal())
    review(status, Institution.exim).status = ReviewStatus.expired
    assert financing.settled(status)
    assert financing.failure(status) == "China Exim let its review expire"


def test_details_name_the_institutions_still_deciding_and_the_deadline() -> None:
    p = proposal()
    status = in_financing(p)
    approve(status, p, Institution.cdb)
    applied(status, financing.request_information(status, question(Institution.exim), "x", NOW))
    assert financing.details(status) == (
        "Financing: waiting for China Exim (information requested), Sinosure; deadline 2026-04-01"
    )
    approve(status, p, Institution.sinosure)
    applied(status, financing.provide_information(status, answer(Institution.exim), CONTRACTOR, NOW))
    approve(status, p, Institution.exim)
    assert financing.details(status) is None


def test_the_tranches_are_the_approved_loans_not_the_sinosure_cover() -> None:
    p = proposal()
    status = in_financing(p)
    approve(status, p, Institution.sinosure)
    approve(status, p, Institution.exim)
    decision = approval(Institution.cdb, Money.of("40000000.00", "USD"))
    applied(status, financing.approve(status, decision, "x", NOW))
    tranches = financing.tranches(status, p)
    assert [(t.institution, t.facility, t.approved) for t in tranches] == [
        (Institution.cdb, None, Money.of("40000000.00", "USD")),
        (Institution.exim, EximFacility.preferential_buyers_credit, EXIM_ASKED),
    ]
    assert all(t.disbursed == t.retained == t.released == t.approved.zero() for t in tranches)
