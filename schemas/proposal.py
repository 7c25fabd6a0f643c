"""The proposal a contractor submits: what is built, where, for whom, and how it is to be financed."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from schemas.money import Money

PROJECT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{2,62}$"
ProjectId = Annotated[
    str,
    StringConstraints(pattern=PROJECT_ID_PATTERN),
    Field(description="Slug: 3-63 lower-case letters, digits and hyphens, e.g. 'zm-lusaka-smart-city-2'"),
]
Percent = Annotated[Decimal, Field(ge=0, le=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Strict(BaseModel):
    """Unknown fields are refused: a misspelt field in a proposal file must not vanish silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Sector(StrEnum):
    data_centres = "data_centres"
    cloud_and_smart_finance = "cloud_and_smart_finance"
    smart_homes = "smart_homes"
    smart_taxation = "smart_taxation"
    smart_cities = "smart_cities"
    it_financing_solutions = "it_financing_solutions"
    smart_education = "smart_education"


class Contractor(StrEnum):
    inspur = "inspur"


class TechnologyPartner(StrEnum):
    cisco = "cisco"
    ibm = "ibm"
    diebold_nixdorf = "diebold_nixdorf"
    ericsson = "ericsson"


class EximFacility(StrEnum):
    """China Exim's two concessional instruments: the GCL is lent in CNY, the PBC in USD."""

    government_concessional_loan = "government_concessional_loan"
    preferential_buyers_credit = "preferential_buyers_credit"


FACILITY_CURRENCY = {
    EximFacility.government_concessional_loan: "CNY",
    EximFacility.preferential_buyers_credit: "USD",
}


class EximLoanRequest(Strict):
    facility: EximFacility
    amount: Money

    @model_validator(mode="after")
    def _facility_currency(self) -> EximLoanRequest:
        expected = FACILITY_CURRENCY[self.facility]
        if self.amount.currency != expected:
            name = self.facility.value.replace("_", " ")
            raise ValueError(f"a {name} is lent in {expected}, not {self.amount.currency}")
        return self


class FinancingRequest(Strict):
    cdb_loan: Money | None = Field(default=None, description="Loan requested from China Development Bank")
    exim_loan: EximLoanRequest | None = Field(default=None, description="Loan requested from China Exim")
    sinosure_cover_pct: Percent | None = Field(
        default=None, description="Sinosure credit insurance, as a percentage of the China Exim loan"
    )

    @model_validator(mode="after")
    def _something_requested(self) -> FinancingRequest:
        if self.cdb_loan is None and self.exim_loan is None:
            raise ValueError("request a loan from China Development Bank or China Exim (or both)")
        if self.sinosure_cover_pct is not None and self.exim_loan is None:
            raise ValueError("Sinosure cover insures the China Exim loan: request an Exim loan or drop the cover")
        if self.cdb_loan is not None and self.cdb_loan.amount == 0:
            raise ValueError("cdb_loan: a loan of zero is no request; leave it out")
        if self.exim_loan is not None and self.exim_loan.amount.amount == 0:
            raise ValueError("exim_loan: a loan of zero is no request; leave it out")
        return self

    @property
    def sinosure_cover(self) -> Money | None:
        if self.sinosure_cover_pct is None or self.exim_loan is None:
            return None
        return self.exim_loan.amount.share(self.sinosure_cover_pct)


class Documents(Strict):
    """References into the document register. Screening checks they are present; it does not read them."""

    feasibility_study: Reference | None = None
    environmental_impact_assessment: Reference | None = None
    commercial_contract: Reference | None = None


class MilestoneKind(StrEnum):
    """The delivery sequence of an informatization project, in order."""

    site_survey_and_design = "site_survey_and_design"
    procurement_and_shipment = "procurement_and_shipment"
    installation_and_integration = "installation_and_integration"
    commissioning_and_site_acceptance = "commissioning_and_site_acceptance"
    training = "training"
    provisional_acceptance = "provisional_acceptance"
    final_acceptance = "final_acceptance"


MILESTONE_ORDER = list(MilestoneKind)


class MilestonePlan(Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")]
    kind: MilestoneKind
    title: Text
    payment_share_pct: Annotated[Decimal, Field(gt=0, le=100)]


class Proposal(Strict):
    project_id: ProjectId
    title: Text
    borrower: Text = Field(description="e.g. 'Ministry of Finance, Republic of Zambia'")
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = Field(
        description="ISO 3166-1 alpha-2 code of the borrower's country"
    )
    sector: Sector
    contractor: Contractor = Contractor.inspur
    partners: list[TechnologyPartner] = Field(default_factory=list)
    contract: Money = Field(description="Commercial contract amount")
    chinese_content_pct: Percent = Field(description="Share of the contract supplied from China")
    down_payment: Money = Field(description="The buyer's own payment, in the contract currency")
    financing: FinancingRequest
    documents: Documents = Field(default_factory=Documents)
    milestones: list[MilestonePlan] = Field(min_length=1, max_length=40)
    retention_pct: Annotated[Decimal, Field(ge=0, le=20)] = Field(
        default=Decimal(10), description="Share of each disbursement retained until final acceptance"
    )

    @field_validator("partners")
    @classmethod
    def _distinct_partners(cls, partners: list[TechnologyPartner]) -> list[TechnologyPartner]:
        if len(set(partners)) != len(partners):
            raise ValueError("each technology partner is listed once")
        return partners

    @model_validator(mode="after")
    def _consistent(self) -> Proposal:
        if self.contract.amount == 0:
            raise ValueError("contract: the commercial contract amount must be above zero")
        if self.down_payment.currency != self.contract.currency:
            raise ValueError(
                f"down_payment is paid in the contract currency ({self.contract.currency}), "
                f"not {self.down_payment.currency}"
            )
        if self.down_payment.amount > self.contract.amount:
            raise ValueError("down_payment cannot exceed the contract amount")
        self._check_milestones()
        return self

    def _check_milestones(self) -> None:
        ids = [m.id for m in self.milestones]
        if len(set(ids)) != len(ids):
            raise ValueError("milestones: each milestone id is used once")
        total = sum((m.payment_share_pct for m in self.milestones), Decimal(0))
        if total != 100:
            raise ValueError(f"milestones: payment shares add up to {total}%, they must add up to 100%")
        for earlier, later in zip(self.milestones, self.milestones[1:], strict=False):
            if MILESTONE_ORDER.index(later.kind) < MILESTONE_ORDER.index(earlier.kind):
                raise ValueError(
                    f"milestones: '{later.id}' ({later.kind.value}) cannot come after "
                    f"'{earlier.id}' ({earlier.kind.value})"
                )
        kinds = [m.kind for m in self.milestones]
        if kinds[-1] != MilestoneKind.final_acceptance or kinds.count(MilestoneKind.final_acceptance) != 1:
            raise ValueError("milestones: the plan ends with exactly one final_acceptance milestone")
        if MilestoneKind.provisional_acceptance not in kinds:
            raise ValueError("milestones: the plan needs a provisional_acceptance before the warranty period")
