"""The decision ledger: every decision id a project has answered, with the digest of the decision and its receipt.

The same decision sent again (a retry after a timeout, a double click) gets its first receipt and changes nothing;
the same id with another decision is refused, so an id never means two things (the IETF idempotency-key rule).
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.decisions import Decision, Receipt
from schemas.timetable import RememberedDecision
from workflows import remit
from workflows.refusals import Refused


class Ledger:
    def __init__(self, remembered: Iterable[RememberedDecision] = ()) -> None:
        self._receipts: dict[str, tuple[str, Receipt]] = {d.decision_id: (d.digest, d.receipt) for d in remembered}

    def is_repeat(self, decision: Decision) -> bool:
        """True if this very decision was answered before. Raises `Refused` if its id was used for another one."""
        previous = self._receipts.get(decision.decision_id)
        if previous is None:
            return False
        if previous[0] != remit.decision_digest(decision):
            raise Refused(
                f"decision id {decision.decision_id} was already used for a different decision "
                f"({previous[1].message}); a new decision needs a new id",
                kind="DecisionIdReused",
            )
        return True

    def repeat(self, decision: Decision) -> Receipt | None:
        """The first receipt of this decision if it was answered before, else None (same refusal as `is_repeat`)."""
        return self._receipts[decision.decision_id][1] if self.is_repeat(decision) else None

    def remember(self, decision: Decision, receipt: Receipt) -> Receipt:
        self._receipts[decision.decision_id] = (remit.decision_digest(decision), receipt)
        return receipt

    def remembered(self) -> list[RememberedDecision]:
        """What a run that continues as new carries over."""
        return [
            RememberedDecision(decision_id=decision_id, digest=digest, receipt=receipt)
            for decision_id, (digest, receipt) in self._receipts.items()
        ]
