"""Screening: the eligibility rules of the three institutions, applied to a proposal.

It runs as an activity because its inputs (exchange rates, the list of partner countries, thresholds) come from
the outside world and may change; the workflow records the answer once in its history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import structlog
from temporalio import activity

from activities.messages import SCREEN_PROPOSAL, ScreeningResult, ScreenProposal
from schemas.money import Money
from schemas.proposal import EximFacility, Proposal

log = structlog.get_logger(__name__)


def shown_below(value: Decimal, limit: Decimal) -> str:
    """`value` (below `limit`) with as few decimals as show it below: a message never rounds a failing value onto
    the threshold (14.99999998 against 15 reads "14.99999998", not "15.0"). One decimal at least; past ten,
    the digits are cut, never rounded up."""
    for places in range(1, 11):
        shown = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
        if shown < limit:
            return f"{shown:f}"
    return f"{value.quantize(Decimal(1).scaleb(-10), rounding=ROUND_DOWN):f}"


@dataclass(frozen=True)
class EligibilityRules:
    """Thresholds of the rules table in the README; exchange rates as USD per one unit of each currency."""

    partner_countries: frozenset[str]
    usd_per_unit: dict[str, Decimal]
    rate_date: date
    exim_minimum_cny: Decimal = Decimal("20000000")
    exim_chinese_content_pct: Decimal = Decimal(50)
    sinosure_chinese_content_pct: Decimal = Decimal(60)
    sinosure_minimum_contract_usd: Decimal = Decimal("1000000")
    buyers_credit_cover_pct: Decimal = Decimal(95)
    down_payment_pct: Decimal = Decimal(15)
    required_documents: tuple[str, ...] = field(
        default=("feasibility_study", "environmental_impact_assessment", "commercial_contract")
    )

    def to_usd(self, money: Money) -> Decimal:
        return self.convert(money, "USD")

    def convert(self, money: Money, currency: str) -> Decimal:
        for code in (money.currency, currency):
            if code not in self.usd_per_unit:
                raise ValueError(f"no exchange rate for {code} (rates of {self.rate_date})")
        usd = money.amount * self.usd_per_unit[money.currency]
        return (usd / self.usd_per_unit[currency]).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)

    def check(self, p: Proposal) -> list[str]:
        """Every rule the proposal breaks, each in the words an institution officer would use."""
        reasons: list[str] = []
        exim = p.financing.exim_loan
        loans = [m for m in (p.financing.cdb_loan, exim.amount if exim else None) if m is not None]
        missing_rates = sorted({m.currency for m in [p.contract, *loans]} - set(self.usd_per_unit))
        if missing_rates:
            return [f"no exchange rate configured for {', '.join(missing_rates)}: screening cannot compare amounts"]
        if p.country not in self.partner_countries:
            reasons.append(f"{p.country} is not among the alliance's partner countries")
        down_pct = p.down_payment.amount * 100 / p.contract.amount
        if down_pct < self.down_payment_pct:
            reasons.append(
                f"the down payment is {shown_below(down_pct, self.down_payment_pct)}% of the contract; at least "
                f"{self.down_payment_pct}% is required"
            )
        for name in self.required_documents:
            if getattr(p.documents, name) is None:
                reasons.append(f"the {name.replace('_', ' ')} is missing")
        if exim is not None:
            exim_cny = self.convert(exim.amount, "CNY")
            if exim_cny < self.exim_minimum_cny:
                reasons.append(
                    f"the China Exim loan is CNY {exim_cny:,.2f}; China Exim lends at least CNY "
                    f"{self.exim_minimum_cny:,.0f}"
                )
            if p.chinese_content_pct < self.exim_chinese_content_pct:
                reasons.append(
                    f"Chinese content is {p.chinese_content_pct}%; China Exim requires at least "
                    f"{self.exim_chinese_content_pct}%"
                )
            if exim.facility is EximFacility.preferential_buyers_credit:
                cover = p.financing.sinosure_cover_pct or Decimal(0)
                if cover < self.buyers_credit_cover_pct:
                    reasons.append(
                        f"Sinosure cover is {cover}% of the Exim buyer's credit; "
                        f"{self.buyers_credit_cover_pct}% is required"
                    )
        if p.financing.sinosure_cover_pct is not None:
            if p.chinese_content_pct < self.sinosure_chinese_content_pct:
                reasons.append(
                    f"Chinese content is {p.chinese_content_pct}%; Sinosure requires at least "
                    f"{self.sinosure_chinese_content_pct}%"
                )
            contract_usd = self.to_usd(p.contract)
            if contract_usd <= self.sinosure_minimum_contract_usd:
                reasons.append(
                    f"the contract is USD {contract_usd:,.2f}; Sinosure covers contracts above USD "
                    f"{self.sinosure_minimum_contract_usd:,.0f}"
                )
        financed = sum((self.convert(m, p.contract.currency) for m in loans), Decimal(0))
        if financed + p.down_payment.amount < p.contract.amount:
            gap = Money(
                amount=(p.contract.amount - financed - p.down_payment.amount).quantize(p.contract.quantum),
                currency=p.contract.currency,
            )
            reasons.append(
                f"the loans requested plus the down payment fall short of the contract by {gap} "
                f"(rates of {self.rate_date.isoformat()})"
            )
        return reasons


class Screening:
    def __init__(self, rules: EligibilityRules) -> None:
        self._rules = rules

    @activity.defn(name=SCREEN_PROPOSAL)
    async def screen_proposal(self, request: ScreenProposal) -> ScreeningResult:
        reasons = self._rules.check(request.proposal)
        try:
            contract_usd = self._rules.to_usd(request.proposal.contract)
        except ValueError:
            contract_usd = Decimal(0)
        log.info("proposal_screened", project_id=request.proposal.project_id, eligible=not reasons, reasons=reasons)
        return ScreeningResult(
            eligible=not reasons,
            reasons=reasons,
            contract_usd=contract_usd,
            rate_date=self._rules.rate_date.isoformat(),
        )
