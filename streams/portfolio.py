"""Where the alliance's portfolio stands, by country, sector and institution: computed from the project views.

Computing it from the views (rather than counting events into separate totals) keeps it exact under retries and
restarts: a duplicate event never reaches a view, so it can never be counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import BaseModel, Field

from schemas.decisions import Institution
from schemas.derived import Dimension, Totals
from schemas.money import Money
from streams.projection import ProjectView

LENDERS = (Institution.cdb, Institution.exim)  # Sinosure insures; its cover is not money lent


class Portfolio(BaseModel):
    rate_date: date = Field(description="Date of the exchange rates used for the USD figures")
    by: dict[Dimension, dict[str, Totals]]


Share = tuple[Dimension, str, str, int, int, int, int]
"""What one project adds to one (dimension, value): its stage, then the lenders' requested, approved, released and
disbursed amounts in US cents (each amount converted and rounded half-even to the cent on its own)."""


CENT = Decimal("0.01")


def _cents(money: Money | None, usd_per_unit: dict[str, Decimal]) -> int:
    if money is None:
        return 0
    return int((money.amount * usd_per_unit[money.currency]).quantize(CENT, rounding=ROUND_HALF_EVEN) / CENT)


def shares(view: ProjectView, usd_per_unit: dict[str, Decimal]) -> tuple[Share, ...]:
    """What a project adds to the portfolio: one share per country, sector and institution it counts under. A view
    whose `proposed` event is not applied yet (no country) adds nothing."""
    if not view.country:
        return ()
    keyed = [(Dimension.country, view.country), (Dimension.sector, view.sector)]
    keyed += [(Dimension.institution, i.value) for i in view.amounts]
    found = []
    for dimension, value in keyed:
        institutions = [Institution(value)] if dimension is Dimension.institution else LENDERS
        sums = [0, 0, 0, 0]
        for institution in institutions:
            amounts = view.amounts.get(institution)
            if amounts is None:
                continue
            for n, money in enumerate((amounts.requested, amounts.approved, amounts.released, amounts.disbursed)):
                sums[n] += _cents(money, usd_per_unit)
        found.append((dimension, value, view.stage.value, *sums))
    return tuple(found)  # type: ignore[arg-type]


class LivePortfolio:
    """The portfolio kept up to date one changed view at a time: `update` takes back what the project's previous
    view added and adds what the new one does, so the stream worker's leader does work in proportion to the views
    that changed, not to every project at each tick. Amounts are summed in whole US cents (exact); `portfolio()`
    equals `compute` over the same latest views."""

    def __init__(self, usd_per_unit: dict[str, Decimal], rate_date: date) -> None:
        self.usd_per_unit = usd_per_unit
        self.rate_date = rate_date
        self._shares: dict[str, tuple[Share, ...]] = {}
        # (dimension, value) → [{stage: projects}, requested, approved, released, disbursed (cents)]
        self._totals: dict[tuple[Dimension, str], list[Any]] = {}

    def update(self, view: ProjectView) -> None:
        new = shares(view, self.usd_per_unit)
        old = self._shares.get(view.project_id, ())
        if new == old:
            return
        self._add(old, -1)
        self._add(new, 1)
        self._shares[view.project_id] = new

    def _add(self, found: tuple[Share, ...], sign: int) -> None:
        for dimension, value, stage, *cents in found:
            totals = self._totals.setdefault((dimension, value), [{}, 0, 0, 0, 0])
            stages = totals[0]
            stages[stage] = stages.get(stage, 0) + sign
            if not stages[stage]:
                del stages[stage]
            for n, amount in enumerate(cents):
                totals[1 + n] += sign * amount
            if not stages:  # no project counts under it any more
                del self._totals[(dimension, value)]

    def portfolio(self) -> Portfolio:
        by: dict[Dimension, dict[str, Totals]] = {d: {} for d in Dimension}
        for (dimension, value), (stages, *cents) in sorted(self._totals.items()):
            usd = [Decimal(amount).scaleb(-2) for amount in cents]
            by[dimension][value] = Totals(
                projects_by_stage=dict(sorted(stages.items())),
                requested_usd=usd[0],
                approved_usd=usd[1],
                released_usd=usd[2],
                disbursed_usd=usd[3],
            )
        return Portfolio(rate_date=self.rate_date, by=by)


def compute(views: Iterable[ProjectView], usd_per_unit: dict[str, Decimal], rate_date: date) -> Portfolio:
    """The portfolio of these views (each project's latest), from scratch."""
    live = LivePortfolio(usd_per_unit, rate_date)
    for view in views:
        live.update(view)
    return live.portfolio()
