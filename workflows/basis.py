"""Decisions based on what the decider read: optimistic concurrency over the project's status sequence.

Every status carries `sequence` (its latest event's number). A decision may say which sequence it was based on
(`based_on_sequence`, the API's If-Match). It is refused (PreconditionFailed, HTTP 412) if, after that sequence, the
project changed what the decision is about: the same review, condition or milestone, or the project's stage. Events
that change nothing a decider relies on (reminders, instructions, other institutions' reviews) do not count, so
three banks deciding at once on the same status do not refuse each other.

A basis the project has not reached yet (a status read through a query can be ahead of the workflow task that takes
the decision) is refused as `BasisNotReached`, changing nothing; the edge sends the decision again within its bounded
wait.
"""

from __future__ import annotations

from schemas import events as ev
from schemas.decisions import (
    Approve,
    Cancel,
    CompleteMilestone,
    Decision,
    ProvideInformation,
    Reject,
    RequestInformation,
    SatisfyCondition,
)
from schemas.stage import Stage
from schemas.status import EventRef, ProjectStatus
from workflows.refusals import PreconditionFailed

PROJECT = "project"
# The refusal type of a basis not reached yet (the edge sends the decision again; not a conflict).
NOT_REACHED = "BasisNotReached"
_REVIEW_EVENTS = (
    ev.ReviewOpened,
    ev.InformationRequested,
    ev.InformationProvided,
    ev.ReviewApproved,
    ev.ReviewRejected,
    ev.ReviewExpired,
    ev.ReviewWithdrawn,
)


def subject_of(data: ev.EventData) -> str | None:
    """What a status event changes, as a decision would name it (None: nothing a decision depends on)."""
    if isinstance(data, _REVIEW_EVENTS):
        return f"review:{data.institution.value}"
    if isinstance(data, ev.ConditionSatisfied):
        return f"condition:{data.condition_id}"
    if isinstance(data, ev.MilestoneCompleted):
        return f"milestone:{data.milestone_id}"
    if isinstance(data, ev.ProjectCancelled):
        return PROJECT
    return None


def subject_of_decision(decision: Decision) -> str:
    if isinstance(decision, Approve | Reject | RequestInformation | ProvideInformation):
        return f"review:{decision.institution.value}"
    if isinstance(decision, SatisfyCondition):
        return f"condition:{decision.condition_id}"
    if isinstance(decision, CompleteMilestone):
        return f"milestone:{decision.milestone_id}"
    if isinstance(decision, Cancel):
        return PROJECT
    raise TypeError(f"no subject for {type(decision).__name__}")


def reached(status: ProjectStatus, decision: Decision) -> bool:
    """Whether the project has reached the status the decision was based on (True when it names none)."""
    return decision.based_on_sequence is None or decision.based_on_sequence <= status.sequence


def conflicts(status: ProjectStatus, decision: Decision) -> list[EventRef]:
    """The events after the decision's basis that change what it is about (empty when it names no basis)."""
    basis = decision.based_on_sequence
    if basis is None or basis >= status.sequence:
        return []
    subject = subject_of_decision(decision)
    stage: Stage | None = status.events[basis - 1].stage if basis > 0 else Stage.screening
    found = []
    for ref in status.events[basis:]:
        if ref.subject in (subject, PROJECT) or (stage is not None and ref.stage is not None and ref.stage != stage):
            found.append(ref)
            stage = ref.stage
    return found


def check(status: ProjectStatus, decision: Decision) -> None:
    """Raises PreconditionFailed naming the changes since the decision's basis, if any concern it."""
    changes = conflicts(status, decision)
    if not changes:
        return
    said = ", ".join(
        f"#{ref.sequence} {ref.type.rsplit('.', 1)[-1]}" + (f" (now {ref.stage.value})" if ref.stage else "")
        for ref in changes
    )
    raise PreconditionFailed(
        f"project {status.project_id} changed since sequence {decision.based_on_sequence}, which this decision was "
        f"based on: {said}; read its status (now at sequence {status.sequence}) and decide again"
    )


def not_reached(status: ProjectStatus, decision: Decision) -> PreconditionFailed:
    """The refusal of a decision based on a status the project has not reached yet: nothing changed, and the same
    decision sent again once the project got there is taken (the edge sends it again within its bounded wait)."""
    return PreconditionFailed(
        f"project {status.project_id} is at sequence {status.sequence}; this decision was based on sequence "
        f"{decision.based_on_sequence}, which it has not reached yet",
        kind=NOT_REACHED,
    )
