"""Each proposal rule, with the message a bid manager sees."""

import json
from pathlib import Path
from typing import Any

import pytest

from alliance.projects import UserError, load_proposal, parse_proposal
from tests.support import raw_example


def refused(change: Any) -> str:
    data = raw_example("zm-lusaka-smart-city-2")
    change(data)
    with pytest.raises(UserError) as caught:
        parse_proposal(data)
    return str(caught.value)


def test_the_examples_are_valid_proposals() -> None:
    for name in ("zm-lusaka-smart-city-2", "ke-national-data-centre-2", "tn-smart-education"):
        assert parse_proposal(raw_example(name)).project_id == name


def test_milestone_shares_must_add_up_to_100() -> None:
    def change(d: dict[str, Any]) -> None:
        d["milestones"][0]["payment_share_pct"] = "15"

    assert "milestones: payment shares add up to 105%, they must add up to 100%" in refused(change)


def test_milestones_follow_the_delivery_order() -> None:
    def change(d: dict[str, Any]) -> None:
        d["milestones"][0], d["milestones"][1] = d["milestones"][1], d["milestones"][0]

    assert "'survey' (site_survey_and_design) cannot come after 'procurement'" in refused(change)


def test_a_buyers_credit_is_lent_in_usd() -> None:
    def change(d: dict[str, Any]) -> None:
        d["financing"]["exim_loan"]["amount"]["currency"] = "CNY"

    assert "financing.exim_loan: a preferential buyers credit is lent in USD, not CNY" in refused(change)


def test_sinosure_cover_needs_an_exim_loan() -> None:
    def change(d: dict[str, Any]) -> None:
        del d["financing"]["exim_loan"]

    assert "Sinosure cover insures the China Exim loan" in refused(change)


def test_down_payment_is_in_the_contract_currency() -> None:
    def change(d: dict[str, Any]) -> None:
        d["down_payment"]["currency"] = "EUR"

    assert "down_payment is paid in the contract currency (USD), not EUR" in refused(change)


def test_unknown_fields_and_bad_ids_name_the_field() -> None:
    def change(d: dict[str, Any]) -> None:
        d["project_id"] = "Bad Id!"
        d["sinosure"] = 95

    message = refused(change)
    assert message.startswith("invalid proposal: ")
    assert "project_id: String should match pattern" in message
    assert "sinosure: Extra inputs are not permitted" in message


def test_each_partner_is_listed_once() -> None:
    def change(d: dict[str, Any]) -> None:
        d["partners"] = ["cisco", "cisco"]

    assert "partners: each technology partner is listed once" in refused(change)


def test_a_proposal_file_with_json_numbers_is_read_exactly(tmp_path: Path) -> None:
    data = raw_example("zm-lusaka-smart-city-2")
    text = json.dumps(data).replace(
        json.dumps(data["contract"]),
        '{"amount": 86072154524284.51, "currency": "' + data["contract"]["currency"] + '"}',
    )
    path = tmp_path / "proposal.json"
    path.write_text(text)
    try:
        proposal = load_proposal(path)
    except UserError as err:  # the example's other amounts may not fit such a contract; the amount is what counts
        raise AssertionError(str(err)) from err
    assert proposal.contract.model_dump(mode="json")["amount"] == "86072154524284.51"


def test_a_json_number_with_a_fraction_given_as_python_float_is_refused_naming_the_field() -> None:
    def change(d: dict[str, Any]) -> None:
        d["contract"]["amount"] = 86072154524284.51

    message = refused(change)
    assert "contract.amount: send the amount as a string" in message
