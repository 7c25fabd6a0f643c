"""Where the alliance's portfolio stands, by country, sector and institution: computed from the project views.

Computing it from the views (rather than counting events into separate totals) keeps it exact under retries and
restarts: a duplicate event never reaches a view, so it can never be counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from pydantic import BaseModel, Field

from schemas.decisions import Institution
from schemas.derived import Dimension, Totals
from schemas.money import Money
from streams.projection import ProjectView

LENDERS = (Institution.cdb, Institution.exim)  # Sinosure insures; its cover is not money lent


class Portfolio(BaseModel):
    rate_date: date = Field(description="Date of the exchange rates used for the USD figures")
    by: dict[Dimension, dict[str, Totals]]


def _usd(money: Money | None, usd_per_unit: dict[str, Decimal]) -> Decimal:
    if money is None:
        return Decimal(0)
    return (money.amount * usd_per_unit[money.currency]).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def compute(views: Iterable[ProjectView], usd_per_unit: dict[str, Decimal], rate_date: date) -> Portfolio:
    by: dict[Dimension, dict[str, Totals]] = {d: {} for d in Dimension}
    for view in views:
        if not view.country:
            continue  # its `proposed` event has not been applied yet
        keyed = {Dimension.country: [view.country], Dimension.sector: [view.sector]}
        keyed[Dimension.institution] = [i.value for i in view.amounts]
        for dimension, values in keyed.items():
            for value in values:
                totals = by[dimension].setdefault(value, Totals())
                totals.projects_by_stage[view.stage.value] = totals.projects_by_stage.get(view.stage.value, 0) + 1
                institutions = [Institution(value)] if dimension is Dimension.institution else LENDERS
                for institution in institutions:
                    amounts = view.amounts.get(institution)
                    if amounts is None:
                        continue
                    totals.requested_usd += _usd(amounts.requested, usd_per_unit)
                    totals.approved_usd += _usd(amounts.approved, usd_per_unit)
                    totals.released_usd += _usd(amounts.released, usd_per_unit)
                    totals.disbursed_usd += _usd(amounts.disbursed, usd_per_unit)
    return Portfolio(rate_date=rate_date, by=by)
