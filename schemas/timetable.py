"""Workflow inputs: the proposal and the timetable fixed for it when it was started.

Deadlines are copied from configuration into the input, so a change of configuration never alters a project
already running (and replay always sees the values the project started with).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.decisions import Institution
from schemas.money import Money
from schemas.proposal import Proposal


class Timetable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    review_days: int = Field(default=30, ge=1, le=365, description="Each institution's review deadline")
    reminder_days_before: int = Field(default=5, ge=0, le=60, description="Reminder this many days before it")
    effectiveness_days: int = Field(default=180, ge=1, le=730, description="To satisfy all conditions precedent")
    warranty_months: int = Field(default=12, ge=0, le=60, description="From provisional to final acceptance")

    @model_validator(mode="after")
    def _reminder_inside_review(self) -> Timetable:
        if self.reminder_days_before >= self.review_days:
            raise ValueError("reminder_days_before must be shorter than review_days")
        return self


class ProjectInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    proposal: Proposal
    timetable: Timetable = Field(default_factory=Timetable)
    trusted_keys: list[str] = Field(
        default_factory=list,
        description="PEM public keys whose attestations the project accepts; empty: started before access control",
    )


class ReviewInput(BaseModel):
    """Input of one institution's review child workflow."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: str
    institution: Institution
    requested: Money
    deadline: datetime
    reminder_at: datetime | None


class ReviewClosed(BaseModel):
    """Signal from the project to its review: the review is over (decided or withdrawn)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: str


class ReviewReminderDue(BaseModel):
    """Signal from a review to its project: the deadline is near."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    institution: Institution


class ReviewResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    institution: Institution
    expired: bool
