"""Effectiveness rules (workflows/effectiveness.py): the conditions precedent a closed package sets, and satisfying
them. Pure functions: no server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas import events as ev
from schemas.decisions import Institution
from schemas.stage import Stage
from tests.workflows.states import (
    CDB_ONLY,
    CONTRACTOR,
    T0,
    THREE_BANKS,
    applied,
    in_delivery,
    in_effectiveness,
    in_financing,
    in_screening,
    in_warranty,
    proposal,
    refused,
    satisfaction,
    satisfy,
)
from workflows import effectiveness

NOW = T0 + timedelta(days=40)
STANDARD = ["loan-agreements-signed", "legal-opinion", "down-payment-received", "management-fee-paid"]


@pytest.mark.parametrize("stage", ["screening", "financing", "delivery", "warranty"])
def test_conditions_precedent_are_satisfied_only_during_effectiveness(stage: str) -> None:
    p = proposal()
    status = {"screening": in_screening, "financing": in_financing, "delivery": in_delivery, "warranty": in_warranty}[
        stage
    ](p)
    decision = satisfaction("legal-opinion")
    message = refused(status, lambda: effectiveness.check_satisfy_condition(status, p, decision))
    assert message == (
        f"project zm-lusaka-smart-city-2 is in {stage}: conditions precedent are satisfied during effectiveness"
    )


def test_a_condition_precedent_is_not_satisfied_after_the_project_was_cancelled() -> None:
    p = proposal()
    status = in_effectiveness(p)
    status.stage = Stage.cancelled
    message = refused(status, lambda: effectiveness.check_satisfy_condition(status, p, satisfaction("legal-opinion")))
    assert "is in cancelled: conditions precedent are satisfied during effectiveness" in message


def test_an_unknown_condition_is_refused_naming_the_outstanding_ones() -> None:
    p = proposal()
    status = in_effectiveness(p)
    satisfy(status, p, "legal-opinion")
    decision = satisfaction("board-approval")
    message = refused(status, lambda: effectiveness.check_satisfy_condition(status, p, decision))
    assert message == (
        "unknown condition 'board-approval'; outstanding: loan-agreements-signed, down-payment-received, "
        "sinosure-policy-issued, management-fee-paid"
    )


def test_a_condition_is_satisfied_once() -> None:
    p = proposal()
    status = in_effectiveness(p)
    satisfy(status, p, "legal-opinion")  # on T0 + 20 days, with EV-legal-opinion
    again = satisfaction("legal-opinion", evidence="LO-2")
    message = refused(status, lambda: effectiveness.check_satisfy_condition(status, p, again))
    assert message == "condition legal-opinion was already satisfied on 2026-03-22 with EV-legal-opinion"


def test_satisfying_a_condition_records_its_evidence_and_who_satisfied_it() -> None:
    p = proposal()
    status = in_effectiveness(p, conditions={Institution.exim: ["Parliament ratifies the loan agreement"]})
    decision = satisfaction("exim-1", evidence="GAZ-ZM-2026-114")
    effectiveness.check_satisfy_condition(status, p, decision)
    change = effectiveness.satisfy_condition(status, decision, CONTRACTOR, NOW)

    condition = next(c for c in status.conditions if c.condition_id == "exim-1")
    assert (condition.satisfied_at, condition.evidence, condition.satisfied_by) == (NOW, "GAZ-ZM-2026-114", CONTRACTOR)
    assert "exim-1" not in effectiveness.outstanding(status)
    assert all(c.satisfied_at is None for c in status.conditions if c.condition_id != "exim-1")
    assert change.event is ev.ConditionSatisfied
    assert change.fields == {
        "condition_id": "exim-1",
        "title": "Parliament ratifies the loan agreement",
        "evidence": "GAZ-ZM-2026-114",
        "by": CONTRACTOR,
    }
    assert change.message == "condition exim-1 satisfied"
    assert change.stage is None and change.details is None
    event = applied(status, change)
    assert isinstance(event, ev.ConditionSatisfied) and event.stage is Stage.effectiveness
    assert status.events[-1].subject == "condition:exim-1"


def test_the_standard_conditions_come_first_then_each_institutions_own_in_order() -> None:
    status = in_effectiveness(
        proposal(THREE_BANKS),
        conditions={
            Institution.cdb: ["Escrow account opened", "Project audit appointed"],
            Institution.sinosure: ["Premium paid"],
        },
    )
    assert [(c.condition_id, c.required_by) for c in status.conditions] == [
        ("loan-agreements-signed", "standard"),
        ("legal-opinion", "standard"),
        ("down-payment-received", "standard"),
        ("sinosure-policy-issued", "standard"),
        ("management-fee-paid", "standard"),
        ("cdb-1", "cdb"),
        ("cdb-2", "cdb"),
        ("sinosure-1", "sinosure"),
    ]
    assert [c.title for c in status.conditions][5:] == [
        "Escrow account opened",
        "Project audit appointed",
        "Premium paid",
    ]


def test_no_sinosure_policy_is_required_without_sinosure_cover() -> None:
    status = in_effectiveness(proposal(CDB_ONLY))
    assert [c.condition_id for c in status.conditions] == STANDARD


def test_details_count_the_outstanding_conditions_until_none_is_left() -> None:
    p = proposal(CDB_ONLY)
    status = in_effectiveness(p)
    satisfy(status, p, "legal-opinion")
    assert effectiveness.details(status) == (
        "Effectiveness: 3 condition(s) precedent outstanding (loan-agreements-signed, down-payment-received, "
        "management-fee-paid); deadline 2026-08-29"
    )
    for condition_id in ("loan-agreements-signed", "down-payment-received", "management-fee-paid"):
        satisfy(status, p, condition_id)
    assert effectiveness.outstanding(status) == []
    assert effectiveness.details(status) == "Effectiveness: all conditions precedent satisfied"
