"""Effectiveness rules: the conditions precedent a closed financing package sets, and satisfying them.

Pure functions of the project's status (see `workflows.financing` for the pattern). The standard conditions are
those of every export-credit facility agreement the institutions sign; each approval adds its own.
"""

from __future__ import annotations

from datetime import datetime

from schemas import events as ev
from schemas.decisions import Institution, SatisfyCondition
from schemas.proposal import Proposal
from schemas.stage import Stage
from schemas.status import Condition, ProjectStatus, ReviewStatus
from workflows.change import Change
from workflows.refusals import Refused

STANDARD_CONDITIONS: list[tuple[str, str]] = [
    ("loan-agreements-signed", "Loan agreements signed with every lending institution"),
    ("legal-opinion", "Legal opinion on the borrower's capacity and the agreements' enforceability"),
    ("down-payment-received", "The buyer's down payment received by the contractor"),
    ("sinosure-policy-issued", "Sinosure insurance policy issued"),
    ("management-fee-paid", "Management and commitment fees paid"),
]


def conditions_precedent(status: ProjectStatus) -> list[Condition]:
    """The standard conditions (Sinosure's policy only where Sinosure approved cover), then each institution's own,
    numbered `<institution>-<n>` in the order its approval listed them."""
    approved = {r.institution for r in status.reviews if r.status is ReviewStatus.approved}
    conditions = [
        Condition(condition_id=condition_id, title=title, required_by="standard")
        for condition_id, title in STANDARD_CONDITIONS
        if condition_id != "sinosure-policy-issued" or Institution.sinosure in approved
    ]
    for review in status.reviews:
        conditions.extend(
            Condition(condition_id=f"{review.institution.value}-{n}", title=text, required_by=review.institution.value)
            for n, text in enumerate(review.conditions, start=1)
        )
    return conditions


def outstanding(status: ProjectStatus) -> list[str]:
    return [c.condition_id for c in status.conditions if c.satisfied_at is None]


def details(status: ProjectStatus) -> str:
    left = outstanding(status)
    deadline = status.effectiveness_deadline
    if left and deadline:
        return (
            f"Effectiveness: {len(left)} condition(s) precedent outstanding ({', '.join(left)}); "
            f"deadline {deadline:%Y-%m-%d}"
        )
    return "Effectiveness: all conditions precedent satisfied"


def check_satisfy_condition(status: ProjectStatus, proposal: Proposal, request: SatisfyCondition) -> None:
    if status.stage is not Stage.effectiveness:
        raise Refused(
            f"project {status.project_id} is in {status.stage.value}: conditions precedent are satisfied during "
            "effectiveness"
        )
    condition = next((c for c in status.conditions if c.condition_id == request.condition_id), None)
    if condition is None:
        raise Refused(f"unknown condition '{request.condition_id}'; outstanding: {', '.join(outstanding(status))}")
    if condition.satisfied_at is not None:
        raise Refused(
            f"condition {condition.condition_id} was already satisfied on {condition.satisfied_at:%Y-%m-%d} "
            f"with {condition.evidence}"
        )


def satisfy_condition(status: ProjectStatus, request: SatisfyCondition, who: str, now: datetime) -> Change:
    condition = next(c for c in status.conditions if c.condition_id == request.condition_id)
    condition.satisfied_at = now
    condition.evidence = request.evidence
    condition.satisfied_by = who
    return Change(
        ev.ConditionSatisfied,
        {
            "condition_id": condition.condition_id,
            "title": condition.title,
            "evidence": request.evidence,
            "by": who,
        },
        f"condition {condition.condition_id} satisfied",
    )
