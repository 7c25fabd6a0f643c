"""Delivery decision rules (workflows/delivery.py): completing milestones in plan order, final acceptance after the
warranty. The payment split is pinned in test_delivery.py. Pure functions: no server."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from schemas import events as ev
from schemas.decisions import AcceptanceCertificate
from schemas.proposal import MilestoneKind
from schemas.stage import Stage
from tests.workflows.states import (
    CONTRACTOR,
    T0,
    applied,
    completion,
    enter,
    in_delivery,
    in_effectiveness,
    in_financing,
    in_screening,
    in_warranty,
    proposal,
    refused,
)
from workflows.delivery import check_complete_milestone, complete_milestone

NOW = T0 + timedelta(days=100)
PLAN = "survey, procurement, installation, commissioning, training, provisional, final"


@pytest.mark.parametrize("stage", ["screening", "financing", "effectiveness"])
def test_no_milestone_is_completed_before_the_project_is_effective(stage: str) -> None:
    p = proposal()
    status = {"screening": in_screening, "financing": in_financing, "effectiveness": in_effectiveness}[stage](p)
    message = refused(status, lambda: check_complete_milestone(status, p, completion("survey")))
    assert message == f"project zm-lusaka-smart-city-2 is in {stage}: milestones are completed during delivery"


@pytest.mark.parametrize("final", [Stage.completed, Stage.cancelled])
def test_no_milestone_is_completed_after_the_project_ended(final: Stage) -> None:
    p = proposal()
    status = in_delivery(p)
    enter(status, final)
    message = refused(status, lambda: check_complete_milestone(status, p, completion("survey")))
    assert message == f"project zm-lusaka-smart-city-2 is in {final.value}: milestones are completed during delivery"


def test_an_unknown_milestone_is_refused_naming_the_plan() -> None:
    p = proposal()
    status = in_delivery(p)
    message = refused(status, lambda: check_complete_milestone(status, p, completion("handover")))
    assert message == f"unknown milestone 'handover'; the plan has: {PLAN}"


def test_a_milestone_is_completed_once() -> None:
    p = proposal()
    status = in_delivery(p, completed=2)  # procurement completed on T0 + 120 days
    message = refused(status, lambda: check_complete_milestone(status, p, completion("procurement")))
    assert message == "milestone procurement was already completed on 2026-06-30"


def test_milestones_are_completed_in_plan_order() -> None:
    p = proposal()
    status = in_delivery(p, completed=1)
    message = refused(status, lambda: check_complete_milestone(status, p, completion("installation")))
    assert message == (
        "milestone installation cannot be completed before procurement (Procurement and shipment of equipment)"
    )


def test_final_acceptance_is_refused_while_the_warranty_runs() -> None:
    p = proposal()
    status = in_warranty(p)  # provisional acceptance on T0 + 360 days: 2027-02-25, warranty of 12 months
    message = refused(status, lambda: check_complete_milestone(status, p, completion("final")))
    assert message == "final acceptance comes after the warranty period, which runs until 2028-02-25"


def test_final_acceptance_is_refused_before_the_warranty_has_started() -> None:
    # Provisional acceptance certified, its payment still being instructed: the warranty has no end date yet.
    p = proposal()
    status = in_delivery(p, completed=len(p.milestones) - 1)
    assert status.warranty_ends_at is None
    message = refused(status, lambda: check_complete_milestone(status, p, completion("final")))
    assert message == "final acceptance comes after the warranty period, which runs after provisional acceptance"


def test_final_acceptance_is_accepted_once_the_warranty_is_over() -> None:
    p = proposal()
    status = in_warranty(p, over=True)
    check_complete_milestone(status, p, completion("final"))


def test_the_next_milestone_is_accepted_in_delivery() -> None:
    p = proposal()
    status = in_delivery(p, completed=3)
    check_complete_milestone(status, p, completion("commissioning"))


def test_completing_a_milestone_records_its_certificate_and_who_reported_it() -> None:
    p = proposal()
    status = in_delivery(p, completed=1)
    report = completion("procurement").model_copy(
        update={
            "certificate": AcceptanceCertificate(
                reference="AC-ZM-0002", issued_by="Zambia Police Service", issued_on=date(2026, 6, 10)
            )
        }
    )
    check_complete_milestone(status, p, report)
    change = complete_milestone(status, report, CONTRACTOR, NOW)

    procurement = status.milestones[1]
    assert (procurement.certificate, procurement.completed_at, procurement.completed_by) == (
        report.certificate,
        NOW,
        CONTRACTOR,
    )
    assert [m.completed_at is not None for m in status.milestones] == [True, True] + [False] * 5
    assert change.event is ev.MilestoneCompleted
    assert change.fields == {
        "milestone_id": "procurement",
        "milestone_kind": MilestoneKind.procurement_and_shipment,
        "certificate": report.certificate,
        "by": CONTRACTOR,
    }
    assert change.message == "milestone procurement completed"
    assert change.stage is None and change.details is None
    event = applied(status, change)
    assert isinstance(event, ev.MilestoneCompleted) and event.stage is Stage.delivery
    assert status.events[-1].subject == "milestone:procurement"
    check_complete_milestone(status, p, completion("installation"))
