"""Milestone payments split across tranches: every cent is paid exactly once, whatever the shares."""

import itertools
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from schemas.decisions import Institution
from schemas.money import MINOR_UNITS, Money
from schemas.status import Tranche
from workflows.delivery import add_months, milestone_payment, undrawn


def tranche(amount: Money) -> Tranche:
    zero = amount.zero()
    return Tranche(institution=Institution.cdb, approved=amount, disbursed=zero, retained=zero, released=zero)


@st.composite
def plans(draw: st.DrawFn) -> list[Decimal]:
    """Payment shares in whole hundredths of a percent, adding up to 100."""
    cuts = sorted(draw(st.lists(st.integers(1, 9999), min_size=0, max_size=8, unique=True)))
    bounds = [0, *cuts, 10000]
    return [Decimal(b - a) / 100 for a, b in itertools.pairwise(bounds)]


@given(
    st.sampled_from(sorted(MINOR_UNITS)),
    st.integers(min_value=1, max_value=10**12),
    plans(),
    st.decimals(min_value=0, max_value=20, places=1),
)
def test_a_tranche_is_drawn_exactly_once_over_the_plan(
    currency: str, units: int, shares: list[Decimal], retention: Decimal
) -> None:
    t = tranche(Money(amount=Decimal(units).scaleb(-MINOR_UNITS[currency]), currency=currency))
    for index, share in enumerate(shares):
        payment = milestone_payment(t, share, retention, final=index == len(shares) - 1)
        assert payment.paid.amount >= 0 and payment.retained.amount >= 0
        t.disbursed = t.disbursed + payment.paid
        t.retained = t.retained + payment.retained
    # Final acceptance releases the retention.
    t.disbursed, t.retained = t.disbursed + t.retained, t.retained.zero()
    assert t.disbursed == t.approved
    assert undrawn(t).amount == 0


def test_retention_is_held_back_from_each_payment() -> None:
    t = tranche(Money.of("41000000.00", "USD"))
    payment = milestone_payment(t, Decimal(10), Decimal(10), final=False)
    assert payment.paid == Money.of("3690000.00", "USD")
    assert payment.retained == Money.of("410000.00", "USD")


def test_the_warranty_ends_on_the_same_day_months_later_or_the_months_last_day() -> None:
    assert add_months(datetime(2027, 3, 15, 9, tzinfo=UTC), 12) == datetime(2028, 3, 15, 9, tzinfo=UTC)
    assert add_months(datetime(2027, 1, 31, tzinfo=UTC), 1) == datetime(2027, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2027, 11, 30, tzinfo=UTC), 3) == datetime(2028, 2, 29, tzinfo=UTC)
