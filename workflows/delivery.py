"""Delivery rules: completing milestones, and how a completed milestone's payment is split across the tranches.

Pure functions, so the rules can be tested without a server: milestones are completed in plan order; each tranche
pays the milestone's share of its approved amount, rounded down to the currency's minor unit; the final milestone
pays whatever is left, so every tranche is drawn to the last cent. A retention share of each payment is held back
until final acceptance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from schemas import events as ev
from schemas.decisions import CompleteMilestone
from schemas.money import Money
from schemas.proposal import MilestoneKind, Proposal
from schemas.stage import Stage
from schemas.status import ProjectStatus, Tranche
from workflows.change import Change
from workflows.refusals import Refused


@dataclass(frozen=True)
class Payment:
    paid: Money
    retained: Money


def milestone_payment(tranche: Tranche, share_pct: Decimal, retention_pct: Decimal, final: bool) -> Payment:
    if final:
        # What is left of the commitment after every earlier payment and retention.
        gross = tranche.approved - tranche.disbursed - tranche.retained - tranche.released
        return Payment(paid=gross, retained=gross.zero())
    gross = tranche.approved.share(share_pct)
    retained = gross.share(retention_pct)
    return Payment(paid=gross - retained, retained=retained)


def undrawn(tranche: Tranche) -> Money:
    """The part of a commitment not paid out: what a cancellation or a failed package gives back."""
    return tranche.approved - tranche.disbursed - tranche.released


def add_months(moment: datetime, months: int) -> datetime:
    """Same day and time `months` later, clamped to the month's last day (31 January + 1 month = 28/29 February)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    for day in (moment.day, 30, 29, 28):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has 28 days")


# ------------------------------------------------------------------ decisions


def check_complete_milestone(status: ProjectStatus, proposal: Proposal, report: CompleteMilestone) -> None:
    """Milestones are completed in plan order during delivery; final acceptance only after the warranty."""
    if status.stage not in (Stage.delivery, Stage.warranty):
        raise Refused(
            f"project {status.project_id} is in {status.stage.value}: milestones are completed during delivery"
        )
    milestone = next((m for m in status.milestones if m.milestone_id == report.milestone_id), None)
    if milestone is None:
        known = ", ".join(m.milestone_id for m in status.milestones)
        raise Refused(f"unknown milestone '{report.milestone_id}'; the plan has: {known}")
    if milestone.completed_at is not None:
        raise Refused(f"milestone {milestone.milestone_id} was already completed on {milestone.completed_at:%Y-%m-%d}")
    following = next(m for m in status.milestones if m.completed_at is None)
    if following is not milestone:
        raise Refused(
            f"milestone {milestone.milestone_id} cannot be completed before {following.milestone_id} "
            f"({following.title})"
        )
    if milestone.kind is MilestoneKind.final_acceptance and status.warranty_over_at is None:
        ends = status.warranty_ends_at
        until = f"until {ends:%Y-%m-%d}" if ends else "after provisional acceptance"
        raise Refused(f"final acceptance comes after the warranty period, which runs {until}")


def complete_milestone(status: ProjectStatus, report: CompleteMilestone, who: str, now: datetime) -> Change:
    milestone = next(m for m in status.milestones if m.milestone_id == report.milestone_id)
    milestone.certificate = report.certificate
    milestone.completed_at = now
    milestone.completed_by = who
    return Change(
        ev.MilestoneCompleted,
        {
            "milestone_id": milestone.milestone_id,
            "milestone_kind": milestone.kind,
            "certificate": report.certificate,
            "by": who,
        },
        f"milestone {milestone.milestone_id} completed",
    )
