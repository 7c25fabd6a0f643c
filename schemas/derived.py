"""The records of the stream worker's derived topics, for the systems that read them.

- the project feed (`alliance.project-feed.v1`) carries the status events themselves (`StatusEvent`), in sequence
  order per project with duplicates removed;
- portfolio snapshots (`alliance.portfolio-snapshots.v1`, compacted, key `<dimension>:<value>`): `PortfolioSnapshot`;
- alerts (`alliance.alerts.v1`, key: the alert id): `Alert`;
- dead letters (`alliance.status-dead-letters.v1`): `DeadLetter`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field


class Dimension(StrEnum):
    country = "country"
    sector = "sector"
    institution = "institution"


class Totals(BaseModel):
    """Amounts of the lenders (CDB and China Exim; Sinosure's cover is not money lent), in USD."""

    projects_by_stage: dict[str, int] = Field(default_factory=dict, description="stage → number of projects")
    requested_usd: Decimal = Decimal(0)
    approved_usd: Decimal = Decimal(0)
    released_usd: Decimal = Decimal(0)
    disbursed_usd: Decimal = Decimal(0)


class PortfolioSnapshot(Totals):
    """Where one country, sector or institution stands; the latest record per key is the current one."""

    dimension: Dimension
    value: str = Field(description="ISO 3166 country code, sector, or institution (cdb, exim, sinosure)")
    rate_date: date = Field(description="Date of the exchange rates used for the USD figures")


class AlertKind(StrEnum):
    review_deadline_near = "review_deadline_near"
    review_deadline_passed = "review_deadline_passed"
    project_stalled = "project_stalled"
    sequence_gap = "sequence_gap"


class Alert(BaseModel):
    alert_id: str = Field(description="Deterministic: the same condition always gives the same id (deduplicate on it)")
    kind: AlertKind
    project_id: str
    message: str
    raised_at: datetime


class DeadLetter(BaseModel):
    """A status-topic record the stream worker could not use, and why; its source identifies a repeat."""

    reason: str
    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="The record's key, decoded as UTF-8 (invalid bytes replaced)")
    value: str | None = Field(description="The record's value, decoded as UTF-8 (invalid bytes replaced)")
