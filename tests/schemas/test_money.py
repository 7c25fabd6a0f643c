from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.money import MINOR_UNITS, Money


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("10.001", "USD", "USD has 2 decimal places; 10.001 has more"),
        ("1.5", "JPY", "JPY has 0 decimal places; 1.5 has more"),
        ("-1", "USD", "amount cannot be negative"),
        ("NaN", "USD", "finite number"),
        ("Infinity", "USD", "finite number"),
        ("1", "XYZ", "unknown currency 'XYZ'"),
        ("1000000000000000", "USD", "beyond any project's size"),
    ],
)
def test_invalid_amounts_are_refused_with_the_rule(amount: str, currency: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Money(amount=Decimal(amount), currency=currency)


def test_tunisian_dinar_keeps_three_decimals() -> None:
    assert Money.of("150000000.125", "TND").amount == Decimal("150000000.125")
    assert str(Money.of("1234.5", "TND")) == "TND 1,234.500"


@given(
    st.sampled_from(sorted(MINOR_UNITS)),
    st.integers(min_value=0, max_value=10**13),
    st.decimals(min_value=0, max_value=100, places=2),
)
def test_a_share_never_exceeds_the_whole_and_fits_the_currency(currency: str, units: int, pct: Decimal) -> None:
    whole = Money(amount=Decimal(units).scaleb(-MINOR_UNITS[currency]), currency=currency)
    part = whole.share(pct)
    assert part.amount <= whole.amount
    assert part.amount == part.amount.quantize(whole.quantum)
    assert whole.amount * pct / 100 - part.amount < whole.quantum


def test_amounts_in_different_currencies_do_not_add() -> None:
    with pytest.raises(ValueError, match="cannot combine USD and CNY"):
        Money.of(1, "USD") + Money.of(1, "CNY")
