"""Who acts: people of the contractor, the three institutions, the borrower, operators, auditors and partners."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.decisions import Institution
from schemas.proposal import TechnologyPartner


class Role(StrEnum):
    contractor = "contractor"  # Inspur bid managers and project managers
    officer = "officer"  # an officer of CDB, China Exim or Sinosure
    borrower = "borrower"  # the borrowing ministry
    operator = "operator"  # the alliance's operations staff
    auditor = "auditor"
    partner = "partner"  # Cisco, IBM, Diebold Nixdorf, Ericsson staff


class Identity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    person: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    organisation: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = Field(
        description="'inspur', 'cdb' / 'exim' / 'sinosure', a partner, or the borrower's name"
    )
    role: Role

    @model_validator(mode="after")
    def _organisation_fits_role(self) -> Identity:
        if self.role is Role.officer and self.organisation not in set(Institution):
            raise ValueError("an officer's organisation is cdb, exim or sinosure")
        if self.role is Role.partner and self.organisation not in set(TechnologyPartner):
            raise ValueError("a partner's organisation is cisco, ibm, diebold_nixdorf or ericsson")
        if self.role is Role.contractor and self.organisation != "inspur":
            raise ValueError("the contractor is inspur")
        return self

    @property
    def institution(self) -> Institution | None:
        return Institution(self.organisation) if self.role is Role.officer else None

    def __str__(self) -> str:
        return f"{self.person} ({self.role.value}, {self.organisation})"
