"""What an applied decision changed: the status event it produces and the words of its receipt.

The rule modules (financing, effectiveness, delivery, cancellation) apply a decision to the project's status and
return a `Change`; the workflow numbers and queues the event (`ProjectWorkflow._emit`) and writes the receipt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import events as ev
from schemas.stage import Stage


@dataclass(frozen=True)
class Change:
    """`event` with `fields` (less project_id, sequence and stage, which the workflow adds); `message` for the
    receipt; `stage` and `details` when the decision moves the project to another stage (a cancellation)."""

    event: type[ev.EventData]
    fields: dict[str, Any]
    message: str
    stage: Stage | None = None
    details: str | None = None
