"""What people decide on a project: one input model per Temporal Update.

Every input carries a `decision_id` chosen by the caller: sending the same decision twice (a retry after a
timeout, a double click) returns the first result and records nothing new.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.money import Money
from schemas.proposal import Reference, Strict, Text
from schemas.stage import Stage

DecisionId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"),
    Field(description="Caller-chosen id; the same id sent again returns the first result"),
]
Person = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Institution(StrEnum):
    cdb = "cdb"
    exim = "exim"
    sinosure = "sinosure"

    @property
    def display(self) -> str:
        return INSTITUTION_NAMES[self]


INSTITUTION_NAMES = {
    Institution.cdb: "China Development Bank",
    Institution.exim: "China Exim",
    Institution.sinosure: "Sinosure",
}


class Terms(Strict):
    """Loan terms (CDB, China Exim) or insurance terms (Sinosure). Confidential to borrower and institutions."""

    interest_rate_pct: Annotated[Decimal, Field(ge=0, le=30)] | None = None
    tenor_years: Annotated[int, Field(ge=1, le=40)] | None = None
    grace_period_years: Annotated[int, Field(ge=0, le=15)] | None = None
    fee_pct: Annotated[Decimal, Field(ge=0, le=20)] | None = Field(
        default=None, description="Management fee (loans) or premium rate (Sinosure cover)"
    )


class Decision(Strict):
    """Base of every decision: the caller's id makes it idempotent."""

    decision_id: DecisionId
    attestation: str | None = Field(
        default=None,
        description="Set by the API or CLI: the edge's signed statement of who sends this decision (EdDSA JWT)",
    )
    based_on_sequence: int | None = Field(
        default=None,
        ge=0,
        description="The status `sequence` the decider read (the API's If-Match). A project that has not reached it "
        "yet waits for it (bounded); one that has since changed what this decision is about refuses it "
        "(PreconditionFailed, HTTP 412) naming the change. Absent: decided against whatever the project is now.",
    )


class Approve(Decision):
    institution: Institution
    officer: Person
    amount: Money = Field(description="Loan amount approved, or for Sinosure the amount insured")
    terms: Terms = Field(default_factory=Terms)
    conditions: list[Text] = Field(
        default_factory=list, description="Conditions attached; each becomes a condition precedent"
    )


class Reject(Decision):
    institution: Institution
    officer: Person
    reason: Text


class RequestInformation(Decision):
    institution: Institution
    officer: Person
    questions: Text


class ProvideInformation(Decision):
    institution: Institution = Field(description="The institution whose information request is answered")
    responder: Person
    answer: Text
    documents: list[Reference] = Field(default_factory=list)


class SatisfyCondition(Decision):
    condition_id: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    evidence: Reference = Field(description="Reference of the document that shows the condition is met")
    by: Person


class AcceptanceCertificate(Strict):
    reference: Reference
    issued_by: Person
    issued_on: date


class CompleteMilestone(Decision):
    milestone_id: Annotated[str, StringConstraints(min_length=1, max_length=41)]
    certificate: AcceptanceCertificate
    by: Person


class Cancel(Decision):
    reason: Text
    by: Person


class Receipt(BaseModel):
    """What an accepted decision returns; the same decision sent again returns the same receipt."""

    model_config = ConfigDict(frozen=True)

    decision_id: str
    message: str
    event_sequence: int = Field(description="Sequence number of the status event the decision produced")
    stage: Stage | None = Field(
        default=None,
        description="The project's stage once the decision's effects were applied (absent on receipts of decisions "
        "taken before receipts carried it)",
    )
    sequence: int | None = Field(
        default=None,
        description="The project's status `sequence` once the decision's effects were applied: a status read at or "
        "after it shows them",
    )


class AwaitProgress(Strict):
    """A bounded wait for the project to move on (the `await_progress` Update): returns as soon as the project's
    status `sequence` reaches `min_sequence`, or its stage is one of `stages` or final, or after `timeout_seconds`
    of workflow time, whichever is first. Lets a client follow a project without polling queries."""

    min_sequence: Annotated[int, Field(ge=0)] | None = None
    stages: list[Stage] = Field(default_factory=list)
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60


class ReleaseProgressWaits(Strict):
    """Ends `await_progress` waits whose callers gave up (the `release_progress_waits` Signal): each answers where
    the project stands, `reached` false. A Signal, not an Update: it is taken even when the project holds as many
    Updates as Temporal lets one workflow hold (`history.maxInFlightUpdates`, 10 by default)."""

    wait_ids: list[Annotated[str, Field(min_length=1, max_length=400)]] = Field(
        default_factory=list,
        max_length=100,
        description="Update ids of the waits to end; empty: every wait open now",
    )


class Progress(BaseModel):
    """Where a project stands, in brief: what `await_progress` returns."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    sequence: int = Field(description="Sequence number of the project's latest status event")
    details: str
    reached: bool = Field(description="False when the wait ended at its timeout before the awaited progress")
