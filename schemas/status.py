"""Where a project stands: the typed answer of the workflow's `status` query."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field

from schemas.decisions import AcceptanceCertificate, Institution, Terms
from schemas.money import Money
from schemas.proposal import EximFacility, MilestoneKind, Sector
from schemas.stage import FINAL_STAGES, Stage

__all__ = ["FINAL_STAGES", "Stage"]


class ReviewStatus(StrEnum):
    open = "open"
    information_requested = "information_requested"
    approved = "approved"
    rejected = "rejected"
    expired = "expired"
    withdrawn = "withdrawn"

    @property
    def is_open(self) -> bool:
        return self in (ReviewStatus.open, ReviewStatus.information_requested)


class InformationRequest(BaseModel):
    request_id: str
    questions: str
    asked_by: str
    asked_at: datetime
    answer: str | None = None
    documents: list[str] = Field(default_factory=list)
    answered_by: str | None = None
    answered_at: datetime | None = None


class Review(BaseModel):
    institution: Institution
    status: ReviewStatus = ReviewStatus.open
    requested: Money
    opened_at: datetime
    deadline: datetime
    approved: Money | None = None
    terms: Terms | None = None
    conditions: list[str] = Field(default_factory=list)
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    information_requests: list[InformationRequest] = Field(default_factory=list)


class Condition(BaseModel):
    condition_id: str
    title: str
    required_by: str = Field(description="'standard', or the institution whose approval attached it")
    satisfied_at: datetime | None = None
    evidence: str | None = None
    satisfied_by: str | None = None


class Disbursement(BaseModel):
    milestone_id: str
    institution: Institution
    paid: Money = Field(description="Paid to the contractor now")
    retained: Money = Field(description="Held back until final acceptance")
    instruction_id: str = Field(description="Idempotency key of the instruction sent to the institution")


class Milestone(BaseModel):
    milestone_id: str
    kind: MilestoneKind
    title: str
    payment_share_pct: Decimal
    certificate: AcceptanceCertificate | None = None
    completed_at: datetime | None = None
    completed_by: str | None = None
    awaited_since: datetime | None = Field(default=None, description="When the project began waiting for it")
    reminders: int = Field(default=0, description="Reminders sent while it was awaited")


class Tranche(BaseModel):
    """One loan of the financing package and how much of it has moved."""

    institution: Institution
    facility: EximFacility | None = None
    approved: Money
    disbursed: Money
    retained: Money
    released: Money = Field(description="Commitment given back undrawn (cancellation or a failed package)")


class EventRef(BaseModel):
    sequence: int
    event_id: str
    type: str
    time: datetime
    published: bool
    stage: Stage | None = Field(default=None, description="The project's stage after the event")
    subject: str | None = Field(
        default=None,
        description="What the event changes, as a decision names it (`review:cdb`, `condition:legal-opinion`, "
        "`milestone:m1`, `project`); none for events no decision depends on",
    )


class ProjectStatus(BaseModel):
    project_id: str
    title: str
    country: str
    sector: Sector
    stage: Stage
    stage_since: datetime
    details: str = Field(description="Where the project stands, in words")
    contract: Money
    contract_usd: Decimal | None = None
    screening_reasons: list[str] = Field(default_factory=list)
    reviews: list[Review] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    effectiveness_deadline: datetime | None = None
    milestones: list[Milestone] = Field(default_factory=list)
    tranches: list[Tranche] = Field(default_factory=list)
    disbursements: list[Disbursement] = Field(default_factory=list)
    warranty_ends_at: datetime | None = None
    warranty_over_at: datetime | None = Field(default=None, description="When final acceptance became possible")
    outcome: str | None = Field(default=None, description="Why the project ended where it did")
    events: list[EventRef] = Field(default_factory=list)
    publishing_blocked: str | None = Field(
        default=None,
        description="Set while the broker refuses the project's next status events for good (a permanent error, "
        "retried every 10 minutes): why. Instructions to institutions wait behind those events.",
    )
    sequence: int = Field(
        default=0,
        ge=0,
        description="Sequence number of the project's latest status event (0 before the first): the version a "
        "decision can be based on (`based_on_sequence`, the API's ETag and If-Match)",
    )

    @property
    def pending_institutions(self) -> list[Institution]:
        return [r.institution for r in self.reviews if r.status.is_open]
