"""The stages of a project's lifecycle (shared by statuses, receipts and events)."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    screening = "screening"
    financing = "financing"
    effectiveness = "effectiveness"
    delivery = "delivery"
    warranty = "warranty"
    completed = "completed"
    rejected = "rejected"
    financing_declined = "financing_declined"
    lapsed = "lapsed"
    cancelled = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STAGES


FINAL_STAGES = frozenset({Stage.completed, Stage.rejected, Stage.financing_declined, Stage.lapsed, Stage.cancelled})
