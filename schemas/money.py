"""Money with ISO 4217 minor units.

Amounts are Decimals, never floats: a disbursement split across tranches must add up to the cent (or the
millime: the Tunisian dinar has three decimals, the yen none).

The canonical form (one definition, used by every model that carries money): the amount is a decimal string with
exactly the currency's minor units, no exponent, no separators: `"40000000.00"` USD, `"8000000000"` JPY,
`"1234.500"` TND. Input with more decimals than the currency has is accepted only when the extra digits are zeros
(`"8000000000.00"` JPY becomes `"8000000000"`); input with fewer is padded (`"40000000"` USD becomes
`"40000000.00"`). A JSON number with a fraction is refused: it has already been through a binary float, which can
change its digits (86072154524284.51 reads as 86072154524284.52); send the amount as a string. Whole JSON numbers
are exact and accepted.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema

# ISO 4217 minor units of the currencies the alliance's projects are priced, financed or paid in.
MINOR_UNITS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "CNY": 2,
    "JPY": 0,
    "GBP": 2,
    "THB": 2,
    "BDT": 2,
    "MYR": 2,
    "NGN": 2,
    "ETB": 2,
    "TND": 3,
    "TZS": 2,
    "ZMW": 2,
    "KES": 2,
    "PKR": 2,
    "EGP": 2,
    "KZT": 2,
    "IDR": 2,
    "LAK": 2,
    "KHR": 2,
}


# The canonical amount's shape in the JSON Schemas: digits, then the minor units if the currency has any.
AMOUNT_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]{1,3})?$"

# Well above the largest informatization loan; keeps Decimal arithmetic far from its precision limit.
MAX_AMOUNT = Decimal(10) ** 15


def _known_currency(code: str) -> str:
    code = code.upper()
    if code not in MINOR_UNITS:
        known = ", ".join(sorted(MINOR_UNITS))
        raise ValueError(
            f"unknown currency '{code}': the alliance prices, finances and pays in these ISO 4217 currencies: {known}"
        )
    return code


def canonical_amount(amount: Decimal, currency: str) -> str:
    """The canonical text of an amount in `currency`: exactly its minor units, fixed-point (no exponent)."""
    return format(amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency])), "f")


CurrencyCode = Annotated[str, AfterValidator(_known_currency)]


class Money(BaseModel):
    """A non-negative amount in one currency, with no more decimals than the currency has minor units."""

    model_config = ConfigDict(frozen=True)

    amount: Annotated[Decimal, WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN})] = Field(
        description="Amount as a decimal string with exactly the currency's minor units, e.g. '12500000.00' USD, "
        "'8000000000' JPY, '1234.500' TND (more decimals are accepted only when they are zeros; a JSON number "
        "with a fraction is refused: send a string)",
    )
    currency: CurrencyCode = Field(description="ISO 4217 code, e.g. 'USD', 'CNY', 'TND'")

    @field_validator("amount", mode="before")
    @classmethod
    def _exact_input(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError(
                'send the amount as a string, e.g. "12500000.00": a JSON number with a fraction is read as a '
                "binary float, which can change its digits"
            )
        return value

    @field_validator("amount")
    @classmethod
    def _finite_and_not_negative(cls, value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError("amount must be a finite number")
        if value < 0:
            raise ValueError("amount cannot be negative")
        return value

    @model_validator(mode="after")
    def _fits_minor_units(self) -> Money:
        places = MINOR_UNITS[self.currency]
        if self.amount >= MAX_AMOUNT:
            raise ValueError(f"amount {self.amount} is beyond any project's size (limit {MAX_AMOUNT:,})")
        canonical = self.amount.quantize(Decimal(1).scaleb(-places))
        if self.amount != canonical:
            raise ValueError(
                f"{self.currency} has {places} decimal place{'s' if places != 1 else ''}; {self.amount} has more"
            )
        # Frozen model: the canonical value is set once, here, before anyone can read the instance.
        object.__setattr__(self, "amount", canonical)
        return self

    @field_serializer("amount")
    def _canonical(self, amount: Decimal) -> str:
        return canonical_amount(amount, self.currency)

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        return cls(amount=Decimal(amount), currency=currency)

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-MINOR_UNITS[self.currency])

    def share(self, percent: Decimal) -> Money:
        """`percent` of this amount, rounded down to the currency's minor unit (the remainder is settled last)."""
        value = (self.amount * percent / Decimal(100)).quantize(self.quantum, rounding=ROUND_DOWN)
        return Money(amount=value, currency=self.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def zero(self) -> Money:
        return Money(amount=Decimal(0), currency=self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency} amounts")

    def __str__(self) -> str:
        places = MINOR_UNITS[self.currency]
        return f"{self.currency} {self.amount.quantize(Decimal(1).scaleb(-places)):,}"
