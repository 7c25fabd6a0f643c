"""Milestone payments: how a completed milestone's payment share is split across the loan tranches.

Pure functions, so the rounding rules can be tested without a server: each tranche pays the milestone's share
of its approved amount, rounded down to the currency's minor unit; the final milestone pays whatever is left, so
every tranche is drawn to the last cent. A retention share of each payment is held back until final acceptance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from schemas.money import Money
from schemas.status import Tranche


@dataclass(frozen=True)
class Payment:
    paid: Money
    retained: Money


def milestone_payment(tranche: Tranche, share_pct: Decimal, retention_pct: Decimal, final: bool) -> Payment:
    if final:
        # What is left of the commitment after every earlier payment and retention.
        gross = tranche.approved - tranche.disbursed - tranche.retained - tranche.released
        return Payment(paid=gross, retained=gross.zero())
    gross = tranche.approved.share(share_pct)
    retained = gross.share(retention_pct)
    return Payment(paid=gross - retained, retained=retained)


def undrawn(tranche: Tranche) -> Money:
    """The part of a commitment not paid out: what a cancellation or a failed package gives back."""
    return tranche.approved - tranche.disbursed - tranche.released


def add_months(moment: datetime, months: int) -> datetime:
    """Same day and time `months` later, clamped to the month's last day (31 January + 1 month = 28/29 February)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    for day in (moment.day, 30, 29, 28):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has 28 days")
