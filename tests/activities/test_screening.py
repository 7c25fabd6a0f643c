"""The eligibility rules of the README's table, one by one."""

from datetime import date
from decimal import Decimal
from typing import Any

from alliance.settings import Settings
from tests.support import example


def reasons(name: str, change: Any = None) -> list[str]:
    rules = Settings(_env_file=None).eligibility_rules()  # type: ignore[call-arg]
    return rules.check(example(name, change=change))


def test_an_eligible_proposal_has_no_reasons() -> None:
    assert reasons("zm-lusaka-smart-city-2") == []


def test_exim_lends_at_least_twenty_million_renminbi() -> None:
    def change(d: dict[str, Any]) -> None:
        d["financing"]["exim_loan"] = {
            "facility": "government_concessional_loan",
            "amount": {"amount": "19000000.00", "currency": "CNY"},
        }
        d["financing"]["cdb_loan"]["amount"] = "250000000.00"
        del d["financing"]["sinosure_cover_pct"]

    assert "the China Exim loan is CNY 19,000,000.00; China Exim lends at least CNY 20,000,000" in reasons(
        "zm-lusaka-smart-city-2", change
    )


def test_chinese_content_thresholds_of_exim_and_sinosure() -> None:
    def change(d: dict[str, Any]) -> None:
        d["chinese_content_pct"] = "45"

    found = reasons("zm-lusaka-smart-city-2", change)
    assert "Chinese content is 45%; China Exim requires at least 50%" in found
    assert "Chinese content is 45%; Sinosure requires at least 60%" in found


def test_buyers_credit_needs_95_percent_sinosure_cover() -> None:
    def change(d: dict[str, Any]) -> None:
        d["financing"]["sinosure_cover_pct"] = "40"

    assert "Sinosure cover is 40% of the Exim buyer's credit; 95% is required" in reasons(
        "zm-lusaka-smart-city-2", change
    )


def test_sinosure_covers_contracts_above_one_million_dollars() -> None:
    def change(d: dict[str, Any]) -> None:
        d["contract"]["amount"] = "1000000.00"
        d["down_payment"]["amount"] = "150000.00"

    assert "the contract is USD 1,000,000.00; Sinosure covers contracts above USD 1,000,000" in reasons(
        "zm-lusaka-smart-city-2", change
    )


def test_down_payment_documents_and_coverage_are_all_reported_together() -> None:
    def change(d: dict[str, Any]) -> None:
        d["down_payment"]["amount"] = "10000000.00"
        d["documents"] = {}

    found = reasons("zm-lusaka-smart-city-2", change)
    assert "the down payment is 4.0% of the contract; at least 15% is required" in found
    assert "the feasibility study is missing" in found
    assert "the environmental impact assessment is missing" in found
    assert "the commercial contract is missing" in found
    assert any(
        r.startswith("the loans requested plus the down payment fall short of the contract by USD 27,500,000.00")
        for r in found
    )


def test_amounts_in_other_currencies_are_converted_with_the_configured_rates() -> None:
    # TND 150m contract, TND 22.5m down payment, CDB USD 41m: at 0.32 USD/TND the loan is TND 128.125m (covered);
    # at 0.40 it is TND 102.5m, and TND 25m is missing.
    assert reasons("tn-smart-education") == []
    rules = Settings(  # type: ignore[call-arg]
        _env_file=None, fx_usd_per_unit={"USD": Decimal(1), "TND": Decimal("0.40")}, fx_rate_date=date(2027, 1, 4)
    ).eligibility_rules()
    assert rules.check(example("tn-smart-education")) == [
        "the loans requested plus the down payment fall short of the contract by TND 25,000,000.000 "
        "(rates of 2027-01-04)"
    ]


def test_only_partner_countries_are_eligible() -> None:
    def change(d: dict[str, Any]) -> None:
        d["country"] = "FR"

    assert "FR is not among the alliance's partner countries" in reasons("zm-lusaka-smart-city-2", change)


def test_a_failing_value_is_never_rounded_onto_the_threshold() -> None:
    def change(d: dict[str, Any]) -> None:
        d["contract"]["amount"] = "60000000.00"
        d["down_payment"]["amount"] = "8999999.99"

    found = reasons("zm-lusaka-smart-city-2", change)
    assert "the down payment is 14.99999998% of the contract; at least 15% is required" in found
