"""Workflow inputs: the proposal and the timetable fixed for it when it was started.

Deadlines are copied from configuration into the input, so a change of configuration never alters a project
already running (and replay always sees the values the project started with).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.decisions import Institution, Receipt
from schemas.money import Money
from schemas.proposal import Proposal
from schemas.status import ProjectStatus


class Timetable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    review_days: int = Field(default=30, ge=1, le=365, description="Each institution's review deadline")
    reminder_days_before: int = Field(default=5, ge=0, le=60, description="Reminder this many days before it")
    effectiveness_days: int = Field(default=180, ge=1, le=730, description="To satisfy all conditions precedent")
    warranty_months: int = Field(default=12, ge=0, le=60, description="From provisional to final acceptance")
    milestone_reminder_days: int = Field(
        default=30, ge=0, le=365, description="While a milestone is awaited, a reminder every this many days (0: none)"
    )

    @model_validator(mode="after")
    def _reminder_inside_review(self) -> Timetable:
        if self.reminder_days_before >= self.review_days:
            raise ValueError("reminder_days_before must be shorter than review_days")
        return self


class RememberedDecision(BaseModel):
    """A decision already taken, kept so that the same decision sent again returns its first receipt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision_id: str
    digest: str
    receipt: Receipt


class Continued(BaseModel):
    """A project's state at a safe point (in delivery, its outbox published, no decision being handled, no review
    open): everything its next run needs to carry on where this one stopped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: ProjectStatus
    decisions: list[RememberedDecision]
    run: int = Field(ge=2, description="1 for the run the project was started with, then 2, 3...")


class ProjectInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    proposal: Proposal
    timetable: Timetable = Field(default_factory=Timetable)
    trusted_keys: list[str] = Field(
        default_factory=list,
        description="PEM public keys whose attestations the project accepts; empty: started before access control",
    )
    continue_as_new_after_events: int = Field(
        default=10_000,
        ge=100,
        description="History length at which the project continues as new at its next safe point (the server "
        "may suggest it earlier); far below Temporal's limit of 51,200 events",
    )
    continued: Continued | None = Field(
        default=None, description="Set when a run continues as new: what the project carries into its next run"
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
