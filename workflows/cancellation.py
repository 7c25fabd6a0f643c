"""Cancellation rules: who may end a project early, and what it gives back.

A cancellation is accepted in any stage that is not final, until final acceptance is certified: from then on the
project only pays what the certificate made due (the last payment and the retention) and completes. Once accepted
a cancellation wins over anything the project had not yet committed (reviews settling, a stage transition awaiting a
child or an activity): the workflow re-checks `is_cancelled` after every await and never leaves a final stage
(`ProjectWorkflow._enter`). Milestones certified before it are paid all the same (`ProjectWorkflow._delivery`).
"""

from __future__ import annotations

from datetime import datetime

from schemas import events as ev
from schemas.decisions import Cancel, Institution
from schemas.money import Money
from schemas.proposal import MilestoneKind, Proposal
from schemas.stage import Stage
from schemas.status import ProjectStatus, ReviewStatus, Tranche
from workflows.change import Change
from workflows.delivery import undrawn
from workflows.refusals import Refused, has_ended


def check_cancel(status: ProjectStatus, proposal: Proposal, request: Cancel) -> None:
    """Raises `Refused` once the project has ended or its final acceptance is certified."""
    if status.stage.is_final:
        raise has_ended(status.project_id, status.stage)
    final = next((m for m in status.milestones if m.kind is MilestoneKind.final_acceptance and m.completed_at), None)
    if final is not None and final.completed_at is not None:
        raise Refused(
            f"project {status.project_id}'s final acceptance ({final.milestone_id}) was certified on "
            f"{final.completed_at:%Y-%m-%d}: it completes once the last payment and the retention are out, and can no "
            "longer be cancelled"
        )


def cancel(status: ProjectStatus, request: Cancel, who: str, now: datetime) -> Change:
    stage = status.stage
    status.outcome = request.reason
    return Change(
        ev.ProjectCancelled,
        {"reason": request.reason, "by": who, "cancelled_in": stage},
        f"project cancelled in {stage.value}",
        stage=Stage.cancelled,
        details=f"Cancelled in {stage.value} by {who}: {request.reason}",
    )


def commitments(status: ProjectStatus) -> list[Tranche]:
    """The commitments a project holds: its tranches once financing closed, else every approval so far (a package
    that failed or was cancelled while some institutions had already approved)."""
    return status.tranches or [
        Tranche(
            institution=r.institution,
            approved=r.approved,
            disbursed=r.approved.zero(),
            retained=r.approved.zero(),
            released=r.approved.zero(),
        )
        for r in status.reviews
        if r.status is ReviewStatus.approved and r.approved is not None
    ]


def cover_release(status: ProjectStatus) -> Money | None:
    """Sinosure's cover to give back once the package had closed: the share of the cover that insured the China Exim
    loan's undrawn part (all of it if nothing was drawn), rounded down to the minor unit. None before the package
    closed (the cover is then one of `commitments`) or without an approved cover. Must be computed before the
    tranches' own releases are booked."""
    cover = next(
        (r.approved for r in status.reviews if r.institution is Institution.sinosure and r.approved is not None), None
    )
    exim = next((t for t in status.tranches if t.institution is Institution.exim), None)
    if cover is None or exim is None or exim.approved.amount == 0:
        return None
    return cover.share(undrawn(exim).amount * 100 / exim.approved.amount)
