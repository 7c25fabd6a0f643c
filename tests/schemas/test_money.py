import json
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


@pytest.mark.parametrize(
    ("amount", "currency", "canonical"),
    [
        ("8000000000.00", "JPY", "8000000000"),
        ("51000000.000", "USD", "51000000.00"),
        ("40000000", "USD", "40000000.00"),
        (40000000, "USD", "40000000.00"),
        ("1E+3", "TND", "1000.000"),
        ("0", "USD", "0.00"),
        ("150000000.1250", "TND", "150000000.125"),
    ],
)
def test_every_amount_leaves_in_the_currencys_minor_units(amount: str | int, currency: str, canonical: str) -> None:
    money = Money.model_validate({"amount": amount, "currency": currency})
    assert money.model_dump(mode="json") == {"amount": canonical, "currency": currency}
    assert json.loads(money.model_dump_json()) == {"amount": canonical, "currency": currency}
    assert money.model_dump()["amount"] == canonical
    assert str(money.amount) == canonical


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("8000000000.50", "JPY", "JPY has 0 decimal places; 8000000000.50 has more"),
        ("51000000.001", "USD", "USD has 2 decimal places; 51000000.001 has more"),
        ("1.0001", "TND", "TND has 3 decimal places; 1.0001 has more"),
    ],
)
def test_extra_decimals_are_accepted_only_when_they_are_zeros(amount: str, currency: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Money.model_validate({"amount": amount, "currency": currency})


@pytest.mark.parametrize(
    "text", ['{"amount": 86072154524284.51, "currency": "IDR"}', '{"amount": 1.5, "currency": "USD"}']
)
def test_a_json_number_with_a_fraction_is_refused_with_a_request_for_a_string(text: str) -> None:
    with pytest.raises(ValidationError, match=r"amount\n.*send the amount as a string"):
        Money.model_validate_json(text)


def test_a_json_number_read_from_its_text_is_exact() -> None:
    raw = json.loads('{"amount": 86072154524284.51, "currency": "IDR"}', parse_float=Decimal)
    assert Money.model_validate(raw).model_dump(mode="json")["amount"] == "86072154524284.51"


@given(
    st.sampled_from(sorted(MINOR_UNITS)),
    st.integers(min_value=0, max_value=10**14),
    st.integers(min_value=0, max_value=4),
)
def test_the_canonical_form_round_trips_and_has_exactly_the_minor_units(
    currency: str, units: int, padding: int
) -> None:
    places = MINOR_UNITS[currency]
    # The same value written with `padding` extra zeros is the same amount.
    text = f"{Decimal(units).scaleb(-places):f}" + (
        "0" * padding if places else ("." + "0" * padding if padding else "")
    )
    money = Money(amount=Decimal(text), currency=currency)
    out = money.model_dump(mode="json")["amount"]
    decimals = out.partition(".")[2]
    assert len(decimals) == places
    assert Decimal(out) == Decimal(text)
    assert Money.model_validate_json(money.model_dump_json()) == money


def test_models_carrying_money_emit_the_canonical_form() -> None:
    """Every model that carries money uses the one Money type: a proposal, an approval and a status event."""
    from schemas.decisions import Approve, Institution

    approval = Approve(
        decision_id="d-1",
        institution=Institution.cdb,
        officer="Liu Yang",
        amount=Money.of("8000000000.00", "JPY"),
    )
    assert approval.model_dump(mode="json")["amount"] == {"amount": "8000000000", "currency": "JPY"}
    assert '"amount":"8000000000"' in approval.model_dump_json()
