"""Why a decision is refused, as exceptions whose type tells the edge (and the caller) whether anything can help.

Raised in Update validators (the decision never reaches history) and in Update handlers (the decision was accepted
but could not be applied, e.g. the project changed while it waited). All are non-retryable ApplicationErrors: the
edge maps their `type` to an HTTP status (DecisionRefused 409, NotPermitted 403, PreconditionFailed 412).
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from schemas.stage import Stage


class Refused(ApplicationError):
    """A decision the project cannot accept; the message says why in the domain's words. Retrying cannot help."""

    def __init__(self, message: str, kind: str = "DecisionRefused") -> None:
        super().__init__(message, type=kind, non_retryable=True)


class NotPermitted(Refused):
    """The sender is not who the decision needs, or cannot prove who they are."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="NotPermitted")


class PreconditionFailed(Refused):
    """The decision was based on a status (`based_on_sequence`) that no longer holds: something it depends on changed
    since, or the project did not reach that status in time. Re-read the status and decide again (HTTP 412)."""

    def __init__(self, message: str, kind: str = "PreconditionFailed") -> None:
        super().__init__(message, kind=kind)


def has_ended(project_id: str, stage: Stage) -> Refused:
    """The one wording of 'this project takes no more decisions' (the workflow's and the edge's)."""
    return Refused(f"project {project_id} has ended ({stage.value}); it takes no more decisions")
