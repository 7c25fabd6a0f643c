"""Sizes a decision must respect so that everything it produces can be delivered, and how many waits a run takes.

A decision becomes a status event on Kafka (the broker refuses records above `max.message.bytes`, 1 MiB by
default, and the producer above `max.request.size`) and part of the status that queries return and continue-as-new
carries (Temporal refuses payloads above 2 MiB, `limit.blobSize.error`). Checking at decision time, in the Update
validator, refuses an oversized decision with the reason and changes nothing, instead of accepting it and then
failing to publish its event forever.
"""

from __future__ import annotations

from schemas.decisions import Decision
from schemas.status import ProjectStatus
from workflows.catalogue import WAITS_SPENT
from workflows.refusals import Refused

# A decision's own content, as JSON: its event adds a few hundred bytes of envelope, far below Kafka's 1 MiB.
MAX_DECISION_BYTES = 64 * 1024
# The whole status after the decision, as JSON: half of Temporal's 2 MiB payload limit, leaving room for the
# continue-as-new input (status plus remembered decisions) and for the events a transition adds.
MAX_STATUS_BYTES = 1024 * 1024


def check(status: ProjectStatus, decision: Decision) -> None:
    """Raises `Refused` if the decision, or the project's status with it, would exceed what can be delivered."""
    size = len(decision.model_dump_json(exclude={"attestation"}).encode())
    if size > MAX_DECISION_BYTES:
        raise Refused(
            f"this decision is {size:,} bytes of text; a decision is at most {MAX_DECISION_BYTES:,} bytes "
            "(shorten its texts, or refer to a document instead of quoting it)"
        )
    total = len(status.model_dump_json().encode()) + size
    if total > MAX_STATUS_BYTES:
        raise Refused(
            f"project {status.project_id}'s status would grow to {total:,} bytes with this decision; a status is at "
            f"most {MAX_STATUS_BYTES:,} bytes so that it can always be read and carried over (refer to documents "
            "instead of quoting them)"
        )


# Temporal lets one workflow run take 2,000 Updates (`history.maxTotalUpdates`, its default); past that it refuses
# every Update, decisions included, until the run continues as new. Waits (`await_progress`) may spend a quarter of
# them; the rest stay for decisions. Each wait also adds about five events to the history that a rebuilt run replays.
MAX_WAITS_PER_RUN = 500


def check_wait(project_id: str, waits_taken: int, history_length: int, history_limit: int) -> None:
    """Raises `Refused` (type `catalogue.WAITS_SPENT`) once the run has taken `MAX_WAITS_PER_RUN` waits, or once
    its history (`history_length` events) has reached the length at which the project continues as new
    (`history_limit`): a wait refused changes nothing and adds nothing to the history, and its caller follows the
    project without one (the edge reads the workflow's search attributes and memo: `alliance.projects`)."""
    if waits_taken >= MAX_WAITS_PER_RUN:
        spent = f"it has taken {waits_taken} waits in this run, as many as it takes"
    elif history_length >= history_limit:
        spent = f"its history is {history_length:,} events long (it continues as new at {history_limit:,})"
    else:
        return
    raise Refused(
        f"project {project_id} takes no more waits for its progress: {spent}; the Updates it has left are kept "
        "for decisions",
        kind=WAITS_SPENT,
    )
