"""The decision catalogue: for each decision a person can make, its input model, the workflow Update that takes it,
its API route, the remit it needs and who may make it. The API, the CLI, the edge's access check and the workflow's
validators all read this one table.

Pure data and functions of it (no I/O): importable inside the workflow sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.decisions import (
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
from schemas.identity import Role
from workflows.remit import ALLOWED, Action


@dataclass(frozen=True)
class DecisionKind:
    """One kind of decision."""

    model: type[Decision]
    update: str  # the ProjectWorkflow Update's name
    route: str  # its path under /projects/{project_id}/ (POST)
    action: Action  # the remit it needs
    summary: str

    @property
    def who(self) -> list[Role]:
        """The roles whose remit includes this decision (an officer only for their own institution)."""
        return [role for role, actions in ALLOWED.items() if self.action in actions]

    def institution_of(self, decision: Decision) -> Institution | None:
        """The institution a decision acts for, when it acts for one (an officer may act only for their own)."""
        institution = getattr(decision, "institution", None)
        return institution if isinstance(institution, Institution) else None


CATALOGUE: tuple[DecisionKind, ...] = (
    DecisionKind(Approve, "approve", "approvals", Action.approve, "An institution approves its part of the financing"),
    DecisionKind(Reject, "reject", "rejections", Action.reject, "An institution rejects the financing"),
    DecisionKind(
        RequestInformation,
        "request_information",
        "information-requests",
        Action.request_information,
        "An institution asks the contractor for information",
    ),
    DecisionKind(
        ProvideInformation,
        "provide_information",
        "information-responses",
        Action.provide_information,
        "The contractor answers an information request",
    ),
    DecisionKind(
        SatisfyCondition,
        "satisfy_condition",
        "conditions-satisfied",
        Action.satisfy_condition,
        "A condition precedent is satisfied",
    ),
    DecisionKind(
        CompleteMilestone,
        "complete_milestone",
        "milestones-completed",
        Action.complete_milestone,
        "A milestone is completed with its certificate",
    ),
    DecisionKind(Cancel, "cancel", "cancellation", Action.cancel, "The project is cancelled"),
)

BY_MODEL: dict[type[Decision], DecisionKind] = {kind.model: kind for kind in CATALOGUE}
BY_UPDATE: dict[str, DecisionKind] = {kind.update: kind for kind in CATALOGUE}

# The Update a client uses to wait for a project to move on (AwaitProgress → Progress), without polling queries.
AWAIT_PROGRESS = "await_progress"
# The Signal that ends waits whose callers gave up (ReleaseProgressWaits): their Updates stop holding the project.
RELEASE_PROGRESS_WAITS = "release_progress_waits"
# The refusal type of a wait refused because the project holds as many waits as it takes (the edge releases them,
# then asks again: their callers, if still there, ask again too).
WAITS_FULL = "ProgressWaitsFull"
# The refusal type of a wait refused because the run has spent the waits it takes (workflows.limits.check_wait): the
# edge follows the project without one.
WAITS_SPENT = "ProgressWaitsSpent"


def kind_of(decision: Decision) -> DecisionKind:
    """The catalogue entry of a decision (by its model)."""
    return BY_MODEL[type(decision)]
