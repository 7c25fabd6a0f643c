"""The status-event contract: CloudEvents 1.0, structured JSON mode, one Kafka record per event.

Record key: the project id (so one project's events stay in one partition, in order).
Record value: a `StatusEvent` envelope; its `type` names the payload model in `data`.
Consumers deduplicate on `id` (a retried publish repeats it) and check order with `data.sequence`, which counts
1, 2, 3... per project without gaps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.decisions import AcceptanceCertificate, Institution, Terms
from schemas.money import Money
from schemas.proposal import EximFacility, FinancingRequest, MilestoneKind, Sector
from schemas.status import Stage

TYPE_PREFIX = "org.alliance.project."
SCHEMA_VERSION = 1


class EventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: str
    sequence: int = Field(ge=1, description="1, 2, 3... per project, without gaps")
    stage: Stage = Field(description="The project's stage after this event")


class Proposed(EventData):
    kind: Literal["proposed"] = "proposed"
    title: str
    borrower: str
    country: str
    sector: Sector
    contract: Money
    financing: FinancingRequest


class ScreeningPassed(EventData):
    kind: Literal["screening_passed"] = "screening_passed"
    contract_usd: str = Field(description="Contract amount in USD, as a decimal string")
    rate_date: str = Field(description="Date of the exchange rates used")


class ScreeningFailed(EventData):
    kind: Literal["screening_failed"] = "screening_failed"
    reasons: list[str]


class ReviewOpened(EventData):
    kind: Literal["review_opened"] = "review_opened"
    institution: Institution
    requested: Money
    deadline: datetime


class InformationRequested(EventData):
    kind: Literal["information_requested"] = "information_requested"
    institution: Institution
    request_id: str
    questions: str
    officer: str


class InformationProvided(EventData):
    kind: Literal["information_provided"] = "information_provided"
    institution: Institution
    request_id: str
    responder: str
    documents: list[str]


class ReviewReminder(EventData):
    kind: Literal["review_reminder"] = "review_reminder"
    institution: Institution
    deadline: datetime


class ReviewApproved(EventData):
    kind: Literal["review_approved"] = "review_approved"
    institution: Institution
    amount: Money
    terms: Terms
    conditions: list[str]
    officer: str


class ReviewRejected(EventData):
    kind: Literal["review_rejected"] = "review_rejected"
    institution: Institution
    reason: str
    officer: str


class ReviewExpired(EventData):
    kind: Literal["review_expired"] = "review_expired"
    institution: Institution
    deadline: datetime


class ReviewWithdrawn(EventData):
    kind: Literal["review_withdrawn"] = "review_withdrawn"
    institution: Institution
    reason: str


class CommitmentReleased(EventData):
    kind: Literal["commitment_released"] = "commitment_released"
    institution: Institution
    amount: Money
    reason: str


class TrancheSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    institution: Institution
    facility: EximFacility | None
    amount: Money


class FinancingClosed(EventData):
    kind: Literal["financing_closed"] = "financing_closed"
    tranches: list[TrancheSummary]
    sinosure_cover: Money | None


class FinancingDeclined(EventData):
    kind: Literal["financing_declined"] = "financing_declined"
    reason: str


class ConditionSatisfied(EventData):
    kind: Literal["condition_satisfied"] = "condition_satisfied"
    condition_id: str
    title: str
    evidence: str
    by: str


class ProjectEffective(EventData):
    kind: Literal["project_effective"] = "project_effective"


class EffectivenessLapsed(EventData):
    kind: Literal["effectiveness_lapsed"] = "effectiveness_lapsed"
    outstanding_conditions: list[str]


class MilestoneCompleted(EventData):
    kind: Literal["milestone_completed"] = "milestone_completed"
    milestone_id: str
    milestone_kind: MilestoneKind
    certificate: AcceptanceCertificate
    by: str


class MilestoneReminder(EventData):
    """Another reminder interval has passed without the milestone the project awaits: a nudge to the contractor."""

    kind: Literal["milestone_reminder"] = "milestone_reminder"
    milestone_id: str
    title: str
    awaited_since: datetime
    reminder: int = Field(ge=1, description="1 for the first reminder about this milestone, then 2, 3...")


class DisbursementInstructed(EventData):
    kind: Literal["disbursement_instructed"] = "disbursement_instructed"
    milestone_id: str
    institution: Institution
    paid: Money
    retained: Money
    instruction_id: str


class WarrantyStarted(EventData):
    kind: Literal["warranty_started"] = "warranty_started"
    ends_at: datetime


class RetentionReleased(EventData):
    kind: Literal["retention_released"] = "retention_released"
    institution: Institution
    amount: Money
    instruction_id: str


class ProjectCompleted(EventData):
    kind: Literal["project_completed"] = "project_completed"


class ProjectCancelled(EventData):
    kind: Literal["project_cancelled"] = "project_cancelled"
    reason: str
    by: str
    cancelled_in: Stage


Payload = Annotated[
    Proposed
    | ScreeningPassed
    | ScreeningFailed
    | ReviewOpened
    | InformationRequested
    | InformationProvided
    | ReviewReminder
    | ReviewApproved
    | ReviewRejected
    | ReviewExpired
    | ReviewWithdrawn
    | CommitmentReleased
    | FinancingClosed
    | FinancingDeclined
    | ConditionSatisfied
    | ProjectEffective
    | EffectivenessLapsed
    | MilestoneCompleted
    | MilestoneReminder
    | DisbursementInstructed
    | WarrantyStarted
    | RetentionReleased
    | ProjectCompleted
    | ProjectCancelled,
    Field(discriminator="kind"),
]

PAYLOAD_MODELS: tuple[type[EventData], ...] = (
    Proposed,
    ScreeningPassed,
    ScreeningFailed,
    ReviewOpened,
    InformationRequested,
    InformationProvided,
    ReviewReminder,
    ReviewApproved,
    ReviewRejected,
    ReviewExpired,
    ReviewWithdrawn,
    CommitmentReleased,
    FinancingClosed,
    FinancingDeclined,
    ConditionSatisfied,
    ProjectEffective,
    EffectivenessLapsed,
    MilestoneCompleted,
    MilestoneReminder,
    DisbursementInstructed,
    WarrantyStarted,
    RetentionReleased,
    ProjectCompleted,
    ProjectCancelled,
)


def kind_of(model: type[EventData]) -> str:
    return str(model.model_fields["kind"].default)


def event_type(kind: str) -> str:
    return f"{TYPE_PREFIX}{kind}"


def data_schema(kind: str) -> str:
    return f"urn:alliance-workflows:schema:{event_type(kind)}:{SCHEMA_VERSION}"


class StatusEvent(BaseModel):
    """CloudEvents 1.0 envelope, structured mode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="Fixed by the workflow before publishing: a retried publish repeats it")
    source: str = Field(description="'/alliance/projects/<project id>'")
    type: str = Field(description="'org.alliance.project.<kind>'")
    subject: str = Field(description="The project id")
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    data: Payload

    @classmethod
    def wrap(cls, event_id: str, time: datetime, data: EventData) -> StatusEvent:
        kind = kind_of(type(data))
        return cls(
            id=event_id,
            source=f"/alliance/projects/{data.project_id}",
            type=event_type(kind),
            subject=data.project_id,
            time=time,
            dataschema=data_schema(kind),
            data=data,
        )
