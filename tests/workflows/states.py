"""Project statuses at each stage, built from the example proposals with the rule modules themselves, for the rules'
unit tests (no server): a status reached the way the project workflow reaches it, one decision at a time.

`record` numbers and files an event as `ProjectWorkflow._emit` does (subject from `basis.subject_of`, the stage after
the event); `enter` moves the stage as `ProjectWorkflow._enter` does; `decide` checks and applies a decision as
`ProjectWorkflow._decide` does. Times are fixed (`T0` onwards), so messages with dates can be asserted exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from schemas import events as ev
from schemas.decisions import (
    AcceptanceCertificate,
    Approve,
    Cancel,
    CompleteMilestone,
    Decision,
    Institution,
    ProvideInformation,
    Reject,
    RequestInformation,
    SatisfyCondition,
)
from schemas.money import Money
from schemas.proposal import MilestoneKind, Proposal
from schemas.stage import Stage
from schemas.status import EventRef, Milestone, ProjectStatus, Review
from tests.support import example
from workflows import basis, effectiveness, financing
from workflows.change import Change
from workflows.delivery import add_months, check_complete_milestone, complete_milestone
from workflows.refusals import Refused

# Proposed on a Monday morning; every later moment is a whole number of days or minutes after it.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REVIEW_DAYS = 30
EFFECTIVENESS_DAYS = 180
WARRANTY_MONTHS = 12

# CDB and China Exim (preferential buyer's credit) lend, Sinosure covers 95% of the Exim loan.
THREE_BANKS = "zm-lusaka-smart-city-2"
# China Exim alone, a government concessional loan in CNY: no Sinosure cover.
EXIM_ONLY = "ke-national-data-centre-2"
# CDB alone.
CDB_ONLY = "tn-smart-education"

OFFICERS = {
    Institution.cdb: "Li Wei, CDB credit officer",
    Institution.exim: "Chen Jie, China Exim loan officer",
    Institution.sinosure: "Wang Fang, Sinosure underwriter",
}
CONTRACTOR = "Zhang Min, Inspur project manager"

D = TypeVar("D", bound=Decision)
Check = Callable[[ProjectStatus, Proposal, D], None]
Apply = Callable[[ProjectStatus, D, str, datetime], Change]

_ids = itertools.count(1)

# For the property tests: no time limit per example (a loaded machine must not fail a rule), fewer examples than
# hypothesis's default since each one builds a status through the rules.
PROPERTIES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decision_id(kind: str) -> str:
    """A fresh decision id (`approve-12`): every decision built here is a new one unless a test reuses its id."""
    return f"{kind}-{next(_ids)}"


def proposal(name: str = THREE_BANKS) -> Proposal:
    return example(name)


# ------------------------------------------------------------------ events and stages, as the workflow files them


def record(status: ProjectStatus, model: type[ev.EventData], **fields: Any) -> ev.EventData:
    """Files event `model` (validated, so a rule's fields must fit its event) as the project's next event."""
    sequence = len(status.events) + 1
    data = model(project_id=status.project_id, sequence=sequence, stage=status.stage, **fields)
    status.events.append(
        EventRef(
            sequence=sequence,
            event_id=f"{status.project_id}-{sequence}",
            type=ev.event_type(ev.kind_of(model)),
            time=T0 + timedelta(minutes=sequence),
            published=True,
            stage=data.stage,
            subject=basis.subject_of(data),
        )
    )
    status.sequence = sequence
    return data


def enter(status: ProjectStatus, stage: Stage, details: str = "") -> None:
    status.stage = stage
    status.stage_since = T0 + timedelta(minutes=len(status.events))
    if details:
        status.details = details


def applied(status: ProjectStatus, change: Change) -> ev.EventData:
    """What the workflow does with an applied decision's `Change`: moves the stage it asks for, files its event."""
    if change.stage is not None:
        enter(status, change.stage, change.details or "")
    return record(status, change.event, **change.fields)


def decide(
    status: ProjectStatus, p: Proposal, check: Check[D], apply: Apply[D], decision: D, who: str, now: datetime
) -> ev.EventData:
    """Checks the decision (as the Update validator does), applies it and files its event (as the handler does)."""
    check(status, p, decision)
    return applied(status, apply(status, decision, who, now))


# ------------------------------------------------------------------ decisions


def approval(
    institution: Institution,
    amount: Money,
    conditions: Sequence[str] = (),
    based_on: int | None = None,
) -> Approve:
    return Approve(
        decision_id=decision_id("approve"),
        institution=institution,
        officer=OFFICERS[institution],
        amount=amount,
        conditions=list(conditions),
        based_on_sequence=based_on,
    )


def rejection(institution: Institution, reason: str = "debt sustainability", based_on: int | None = None) -> Reject:
    return Reject(
        decision_id=decision_id("reject"),
        institution=institution,
        officer=OFFICERS[institution],
        reason=reason,
        based_on_sequence=based_on,
    )


def question(institution: Institution, questions: str = "Send the updated feasibility study") -> RequestInformation:
    return RequestInformation(
        decision_id=decision_id("rfi"), institution=institution, officer=OFFICERS[institution], questions=questions
    )


def answer(institution: Institution, documents: Sequence[str] = ("FS-2026-02",)) -> ProvideInformation:
    return ProvideInformation(
        decision_id=decision_id("answer"),
        institution=institution,
        responder=CONTRACTOR,
        answer="Updated study attached",
        documents=list(documents),
    )


def satisfaction(condition_id: str, evidence: str = "DOC-1", based_on: int | None = None) -> SatisfyCondition:
    return SatisfyCondition(
        decision_id=decision_id("satisfy"),
        condition_id=condition_id,
        evidence=evidence,
        by=CONTRACTOR,
        based_on_sequence=based_on,
    )


def completion(milestone_id: str, based_on: int | None = None) -> CompleteMilestone:
    return CompleteMilestone(
        decision_id=decision_id("complete"),
        milestone_id=milestone_id,
        certificate=AcceptanceCertificate(
            reference=f"AC-{milestone_id}", issued_by="Ministry of Finance", issued_on=date(2026, 9, 1)
        ),
        by=CONTRACTOR,
        based_on_sequence=based_on,
    )


def cancellation(reason: str = "the borrower withdrew the project", based_on: int | None = None) -> Cancel:
    return Cancel(decision_id=decision_id("cancel"), reason=reason, by=CONTRACTOR, based_on_sequence=based_on)


# ------------------------------------------------------------------ statuses


def in_screening(p: Proposal) -> ProjectStatus:
    """Just proposed: the status the workflow starts with, and its `proposed` event (sequence 1)."""
    status = ProjectStatus(
        project_id=p.project_id,
        title=p.title,
        country=p.country,
        sector=p.sector,
        stage=Stage.screening,
        stage_since=T0,
        details="Screening the proposal against the institutions' eligibility rules",
        contract=p.contract,
        milestones=[
            Milestone(milestone_id=m.id, kind=m.kind, title=m.title, payment_share_pct=m.payment_share_pct)
            for m in p.milestones
        ],
    )
    record(
        status,
        ev.Proposed,
        title=p.title,
        borrower=p.borrower,
        country=p.country,
        sector=p.sector,
        contract=p.contract,
        financing=p.financing,
    )
    return status


def in_financing(p: Proposal) -> ProjectStatus:
    """Screening passed, every review the proposal asks for open (CDB, China Exim, Sinosure, in that order)."""
    status = in_screening(p)
    record(status, ev.ScreeningPassed, contract_usd=str(p.contract.amount), rate_date="2026-03-02")
    enter(status, Stage.financing, "Financing: waiting for the institutions' decisions")
    deadline = T0 + timedelta(days=REVIEW_DAYS)
    for institution, requested in financing.requests(p):
        status.reviews.append(Review(institution=institution, requested=requested, opened_at=T0, deadline=deadline))
        record(status, ev.ReviewOpened, institution=institution, requested=requested, deadline=deadline)
    return status


def review(status: ProjectStatus, institution: Institution) -> Review:
    return financing.review_of(status, institution)


def approve(
    status: ProjectStatus, p: Proposal, institution: Institution, conditions: Sequence[str] = ()
) -> ev.EventData:
    """The institution approves what was asked of it, through the rules."""
    decision = approval(institution, review(status, institution).requested, conditions)
    return decide(
        status, p, financing.check_approve, financing.approve, decision, OFFICERS[institution], T0 + timedelta(days=3)
    )


def in_effectiveness(p: Proposal, conditions: dict[Institution, list[str]] | None = None) -> ProjectStatus:
    """Every institution approved in full (Sinosure first, as a preferential buyer's credit needs), with
    `conditions` attached; the package closed and the conditions precedent set."""
    status = in_financing(p)
    asked = [institution for institution, _ in financing.requests(p)]
    for institution in sorted(asked, key=lambda i: i is not Institution.sinosure):
        approve(status, p, institution, (conditions or {}).get(institution, []))
    status.tranches.extend(financing.tranches(status, p))
    cover = next((r.approved for r in status.reviews if r.institution is Institution.sinosure), None)
    enter(status, Stage.effectiveness, "Financing closed; satisfying the conditions precedent")
    record(
        status,
        ev.FinancingClosed,
        tranches=[
            ev.TrancheSummary(institution=t.institution, facility=t.facility, amount=t.approved)
            for t in status.tranches
        ],
        sinosure_cover=cover,
    )
    status.conditions.extend(effectiveness.conditions_precedent(status))
    status.effectiveness_deadline = T0 + timedelta(days=EFFECTIVENESS_DAYS)
    status.details = effectiveness.details(status)
    return status


def satisfy(status: ProjectStatus, p: Proposal, condition_id: str) -> ev.EventData:
    return decide(
        status,
        p,
        effectiveness.check_satisfy_condition,
        effectiveness.satisfy_condition,
        satisfaction(condition_id, evidence=f"EV-{condition_id}"),
        CONTRACTOR,
        T0 + timedelta(days=20),
    )


def in_delivery(p: Proposal, completed: int = 0) -> ProjectStatus:
    """Effective (every condition precedent satisfied), with the plan's first `completed` milestones completed."""
    status = in_effectiveness(p)
    for condition in list(status.conditions):
        satisfy(status, p, condition.condition_id)
    enter(status, Stage.delivery, "Effective: delivering the milestones")
    record(status, ev.ProjectEffective)
    for milestone in status.milestones[:completed]:
        complete(status, p, milestone.milestone_id)
    return status


def complete(status: ProjectStatus, p: Proposal, milestone_id: str) -> ev.EventData:
    index = next(i for i, m in enumerate(status.milestones) if m.milestone_id == milestone_id)
    return decide(
        status,
        p,
        check_complete_milestone,
        complete_milestone,
        completion(milestone_id),
        CONTRACTOR,
        T0 + timedelta(days=60 * (index + 1)),
    )


def in_warranty(p: Proposal, over: bool = False) -> ProjectStatus:
    """Every milestone but final acceptance completed; the warranty running from provisional acceptance (or, with
    `over`, run out: final acceptance is possible)."""
    status = in_delivery(p, completed=len(p.milestones) - 1)
    provisional = next(m for m in status.milestones if m.kind is MilestoneKind.provisional_acceptance)
    assert provisional.completed_at is not None
    ends = add_months(provisional.completed_at, WARRANTY_MONTHS)
    status.warranty_ends_at = ends
    enter(status, Stage.warranty, f"Warranty period until {ends:%Y-%m-%d}; final acceptance follows it")
    record(status, ev.WarrantyStarted, ends_at=ends)
    if over:
        status.warranty_over_at = ends
    return status


# ------------------------------------------------------------------ refusals


def refused(status: ProjectStatus, attempt: Callable[[], object], kind: str = "DecisionRefused") -> str:
    """The message of the refusal `attempt` raises; asserts it is final (not retryable), of `kind`, and that the
    status is exactly as it was."""
    before = status.model_dump(mode="json")
    with pytest.raises(Refused) as caught:
        attempt()
    assert caught.value.type == kind
    assert caught.value.non_retryable
    assert status.model_dump(mode="json") == before
    return caught.value.message
