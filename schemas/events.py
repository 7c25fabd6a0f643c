"""The status-event contract: CloudEvents 1.0, structured JSON mode, one Kafka record per event.

Record key: the project id (so one project's events stay in one partition, in order).
Record value: a `StatusEvent` envelope; its `type` names the payload model in `data`.
Consumers deduplicate on `id` (a retried publish repeats it) and check order with `data.sequence`, which counts
1, 2, 3... per project without gaps. Every date-time carries its UTC offset: a naive one is refused.

CloudEvents 1.0 as written: extension attributes (`traceparent`, the Kafka binding's `partitionkey`, others) are
allowed and kept; `datacontenttype` is a media type (`application/json`, any case, parameters allowed). The
alliance contract asks more of the envelope than CloudEvents does: `time`, `subject` and `dataschema` are required,
`type` names the kind of `data` and `subject` its project.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

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
    deadline: AwareDatetime


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
    deadline: AwareDatetime


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
    deadline: AwareDatetime


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
    awaited_since: AwareDatetime
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
    ends_at: AwareDatetime


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


EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
RUN_EXTENSION = "projectrun"


def media_type_is_json(value: str) -> bool:
    """Whether a media type (RFC 2045 syntax) is JSON in UTF-8: `application/json`, in any case, with parameters;
    a `charset` parameter, if any, must be UTF-8."""
    essence, *parameters = value.split(";")
    if essence.strip().lower() != "application/json":
        return False
    for parameter in parameters:
        name, _, given = parameter.partition("=")
        if name.strip().lower() == "charset" and given.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


class StatusEvent(BaseModel):
    """CloudEvents 1.0 envelope, structured mode. Extension attributes are kept as extra fields (CloudEvents names:
    lower-case letters and digits, at most 20; values strings, integers or booleans)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, description="Fixed by the workflow before publishing: a retried publish repeats it")
    source: str = Field(min_length=1, description="'/alliance/projects/<project id>'")
    type: str = Field(description="'org.alliance.project.<kind>', the kind of `data`")
    subject: str = Field(min_length=1, description="The project id")
    time: AwareDatetime = Field(description="When the workflow recorded the event, with its UTC offset")
    datacontenttype: str = Field(
        default="application/json", description="A JSON media type: 'application/json', parameters allowed"
    )
    dataschema: str = Field(description="'urn:alliance-workflows:schema:<type>:<version>' (required by the contract)")
    projectrun: str | None = Field(
        default=None,
        exclude_if=lambda run: run is None,
        description="Extension attribute: the run id of the first execution of the project's workflow, so the "
        "events of a project id proposed again (after its first workflow was deleted) are told apart",
    )
    data: Payload

    @field_validator("datacontenttype")
    @classmethod
    def _json_media_type(cls, value: str) -> str:
        if not media_type_is_json(value):
            raise ValueError(f"'{value}' is not a JSON media type in UTF-8 (application/json)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StatusEvent:
        if self.type != event_type(self.data.kind):
            raise ValueError(f"type '{self.type}' does not name the kind of its data ('{self.data.kind}')")
        if self.subject != self.data.project_id:
            raise ValueError(f"subject '{self.subject}' is not the data's project_id '{self.data.project_id}'")
        for name, value in (self.model_extra or {}).items():
            if not EXTENSION_NAME.match(name):
                raise ValueError(
                    f"extension attribute '{name}': a CloudEvents attribute name is 1 to 20 lower-case letters or "
                    "digits"
                )
            if not isinstance(value, str | int | bool):
                raise ValueError(f"extension attribute '{name}': a value is a string, an integer or a boolean")
        return self

    @property
    def extensions(self) -> dict[str, Any]:
        """The extension attributes it carries, by name (those the contract names, like `projectrun`, included)."""
        named = {RUN_EXTENSION: self.projectrun} if self.projectrun is not None else {}
        return named | dict(self.model_extra or {})

    @classmethod
    def wrap(cls, event_id: str, time: datetime, data: EventData, projectrun: str | None = None) -> StatusEvent:
        """The envelope of one event. `projectrun`: the workflow's first-execution run id
        (`workflow.info().first_execution_run_id`); None leaves it out, as events before it did."""
        kind = kind_of(type(data))
        return cls(
            id=event_id,
            source=f"/alliance/projects/{data.project_id}",
            type=event_type(kind),
            subject=data.project_id,
            time=time,
            dataschema=data_schema(kind),
            projectrun=projectrun,
            data=data,
        )
