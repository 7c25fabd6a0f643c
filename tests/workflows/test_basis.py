"""Decisions based on a status (workflows/basis.py): refused only when what they are about, or the project's stage,
changed since the sequence they were based on. Pure functions: no server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import events as ev
from schemas.decisions import Decision, Institution
from schemas.money import Money
from schemas.stage import Stage
from schemas.status import ProjectStatus
from tests.workflows.states import (
    CONTRACTOR,
    OFFICERS,
    PROPERTIES,
    T0,
    answer,
    applied,
    approval,
    approve,
    cancellation,
    complete,
    completion,
    in_delivery,
    in_effectiveness,
    in_financing,
    proposal,
    question,
    record,
    refused,
    rejection,
    review,
    satisfaction,
    satisfy,
)
from workflows import basis, effectiveness, financing
from workflows import cancellation as cancelling
from workflows.delivery import complete_milestone

NOW = T0 + timedelta(days=7)
CDB_ASKED = Money.of("42500000.00", "USD")
USD = Money.of("1000000.00", "USD")


def precondition_failed(status: ProjectStatus, decision: Decision) -> str:
    return refused(status, lambda: basis.check(status, decision), kind="PreconditionFailed")


# ------------------------------------------------------------------ what events and decisions are about

EVENT_SUBJECTS: dict[type[ev.EventData], str | None] = {
    ev.Proposed: None,
    ev.ScreeningPassed: None,
    ev.ScreeningFailed: None,
    ev.ReviewOpened: "review:exim",
    ev.InformationRequested: "review:exim",
    ev.InformationProvided: "review:exim",
    ev.ReviewReminder: None,
    ev.ReviewApproved: "review:exim",
    ev.ReviewRejected: "review:exim",
    ev.ReviewExpired: "review:exim",
    ev.ReviewWithdrawn: "review:exim",
    ev.CommitmentReleased: None,
    ev.FinancingClosed: None,
    ev.FinancingDeclined: None,
    ev.ConditionSatisfied: "condition:legal-opinion",
    ev.ProjectEffective: None,
    ev.EffectivenessLapsed: None,
    ev.MilestoneCompleted: "milestone:survey",
    ev.MilestoneReminder: None,
    ev.DisbursementInstructed: None,
    ev.WarrantyStarted: None,
    ev.RetentionReleased: None,
    ev.ProjectCompleted: None,
    ev.ProjectCancelled: "project",
}


def test_every_event_type_is_classified() -> None:
    assert set(EVENT_SUBJECTS) == set(ev.PAYLOAD_MODELS)


@pytest.mark.parametrize("model", list(EVENT_SUBJECTS), ids=lambda m: ev.kind_of(m))
def test_an_event_is_about_its_review_condition_milestone_or_the_project(model: type[ev.EventData]) -> None:
    # Only the fields a subject could be read from; the rest does not matter here.
    fields: dict[str, Any] = {
        "project_id": "p",
        "sequence": 1,
        "stage": Stage.financing,
        "institution": Institution.exim,
        "condition_id": "legal-opinion",
        "milestone_id": "survey",
    }
    data = model.model_construct(**fields)
    assert basis.subject_of(data) == EVENT_SUBJECTS[model]


def test_a_reminder_about_a_review_is_not_about_the_review() -> None:
    data = ev.ReviewReminder(
        project_id="p", sequence=9, stage=Stage.financing, institution=Institution.cdb, deadline=T0
    )
    assert basis.subject_of(data) is None


def test_each_decision_is_about_what_its_event_changes() -> None:
    """The subject a decision names is the subject of the event it produces: a decision conflicts with its own kind."""
    p = proposal()
    status = in_financing(p)
    rfi = question(Institution.exim)
    applied(status, financing.request_information(status, rfi, OFFICERS[Institution.exim], NOW))
    assert basis.subject_of_decision(rfi) == status.events[-1].subject == "review:exim"
    reply = answer(Institution.exim)
    applied(status, financing.provide_information(status, reply, CONTRACTOR, NOW))
    assert basis.subject_of_decision(reply) == status.events[-1].subject == "review:exim"
    yes = approval(Institution.sinosure, review(status, Institution.sinosure).requested)
    applied(status, financing.approve(status, yes, OFFICERS[Institution.sinosure], NOW))
    assert basis.subject_of_decision(yes) == status.events[-1].subject == "review:sinosure"
    no = rejection(Institution.cdb)
    applied(status, financing.reject(status, no, OFFICERS[Institution.cdb], NOW))
    assert basis.subject_of_decision(no) == status.events[-1].subject == "review:cdb"

    status = in_effectiveness(p)
    met = satisfaction("legal-opinion")
    applied(status, effectiveness.satisfy_condition(status, met, CONTRACTOR, NOW))
    assert basis.subject_of_decision(met) == status.events[-1].subject == "condition:legal-opinion"

    status = in_delivery(p)
    done = completion("survey")
    applied(status, complete_milestone(status, done, CONTRACTOR, NOW))
    assert basis.subject_of_decision(done) == status.events[-1].subject == "milestone:survey"
    stop = cancellation()
    applied(status, cancelling.cancel(status, stop, CONTRACTOR, NOW))
    assert basis.subject_of_decision(stop) == status.events[-1].subject == "project"


def test_a_decision_of_no_known_kind_has_no_subject() -> None:
    with pytest.raises(TypeError, match="no subject for Decision"):
        basis.subject_of_decision(Decision(decision_id="d-1"))


# ------------------------------------------------------------------ what does not conflict


def test_a_decision_without_a_basis_is_judged_against_the_status_as_it_is() -> None:
    p = proposal()
    status = in_financing(p)
    applied(status, financing.request_information(status, question(Institution.cdb), "x", NOW))
    decision = approval(Institution.cdb, CDB_ASKED)
    assert basis.reached(status, decision)
    assert basis.conflicts(status, decision) == []
    basis.check(status, decision)


def test_a_decision_based_on_the_latest_status_does_not_conflict() -> None:
    status = in_financing(proposal())
    decision = approval(Institution.cdb, CDB_ASKED, based_on=status.sequence)
    assert basis.reached(status, decision)
    assert basis.conflicts(status, decision) == []


def test_another_institutions_approval_does_not_conflict() -> None:
    # Three banks deciding on the same status do not refuse each other.
    p = proposal()
    status = in_financing(p)
    read = status.sequence
    approve(status, p, Institution.sinosure)
    approve(status, p, Institution.exim)
    decision = approval(Institution.cdb, CDB_ASKED, based_on=read)
    assert status.sequence == read + 2
    assert basis.conflicts(status, decision) == []
    basis.check(status, decision)


def test_a_reminder_does_not_conflict() -> None:
    status = in_financing(proposal())
    read = status.sequence
    cdb = review(status, Institution.cdb)
    record(status, ev.ReviewReminder, institution=Institution.cdb, deadline=cdb.deadline)
    decision = rejection(Institution.cdb, based_on=read)
    assert basis.conflicts(status, decision) == []
    basis.check(status, decision)


def test_instructions_and_milestone_reminders_do_not_conflict() -> None:
    p = proposal()
    status = in_delivery(p, completed=1)
    read = status.sequence
    for tranche in status.tranches:
        record(
            status,
            ev.DisbursementInstructed,
            milestone_id="survey",
            institution=tranche.institution,
            paid=tranche.approved.share(Decimal(9)),
            retained=tranche.approved.share(Decimal(1)),
            instruction_id=f"survey-{tranche.institution.value}",
        )
    record(status, ev.MilestoneReminder, milestone_id="procurement", title="Procurement", awaited_since=T0, reminder=1)
    decision = completion("procurement", based_on=read)
    assert status.sequence == read + 3
    assert basis.conflicts(status, decision) == []
    basis.check(status, decision)


def test_another_condition_satisfied_does_not_conflict() -> None:
    p = proposal()
    status = in_effectiveness(p)
    read = status.sequence
    satisfy(status, p, "loan-agreements-signed")
    satisfy(status, p, "management-fee-paid")
    basis.check(status, satisfaction("legal-opinion", based_on=read))


def test_a_basis_the_project_has_not_reached_yet_is_not_judged() -> None:
    # The workflow waits for it (bounded) and judges the decision then.
    status = in_financing(proposal())
    decision = approval(Institution.cdb, CDB_ASKED, based_on=status.sequence + 3)
    assert not basis.reached(status, decision)
    assert basis.conflicts(status, decision) == []
    basis.check(status, decision)


def test_a_basis_not_reached_yet_is_refused_naming_both_sequences_for_the_edge_to_send_again() -> None:
    status = in_financing(proposal())
    decision = approval(Institution.cdb, CDB_ASKED, based_on=12)
    failed = basis.not_reached(status, decision)
    assert failed.type == basis.NOT_REACHED == "BasisNotReached" and failed.non_retryable
    assert failed.message == (
        "project zm-lusaka-smart-city-2 is at sequence 5; this decision was based on sequence 12, which it has not "
        "reached yet"
    )


# ------------------------------------------------------------------ what conflicts


def test_a_change_to_the_same_review_since_the_basis_refuses_the_decision() -> None:
    p = proposal()
    status = in_financing(p)
    read = status.sequence  # 5
    approve(status, p, Institution.sinosure)  # 6: another review
    applied(status, financing.request_information(status, question(Institution.cdb), "x", NOW))  # 7
    decision = approval(Institution.cdb, CDB_ASKED, based_on=read)
    assert [ref.sequence for ref in basis.conflicts(status, decision)] == [7]
    message = precondition_failed(status, decision)
    assert message == (
        "project zm-lusaka-smart-city-2 changed since sequence 5, which this decision was based on: "
        "#7 information_requested (now financing); read its status (now at sequence 7) and decide again"
    )


def test_the_refusal_names_every_change_to_the_subject_and_nothing_else() -> None:
    p = proposal()
    status = in_financing(p)
    read = status.sequence  # 5
    applied(status, financing.request_information(status, question(Institution.cdb), "x", NOW))  # 6
    approve(status, p, Institution.sinosure)  # 7
    applied(status, financing.provide_information(status, answer(Institution.cdb), CONTRACTOR, NOW))  # 8
    applied(status, financing.request_information(status, question(Institution.exim), "x", NOW))  # 9
    message = precondition_failed(status, rejection(Institution.cdb, based_on=read))
    assert "#6 information_requested (now financing), #8 information_provided (now financing);" in message
    assert "#7" not in message and "#9" not in message
    assert message.endswith("read its status (now at sequence 9) and decide again")


def test_a_stage_change_since_the_basis_refuses_the_decision() -> None:
    p = proposal()
    status = in_financing(p)
    approve(status, p, Institution.sinosure)
    approve(status, p, Institution.cdb)
    read = status.sequence  # 7, in financing
    status = in_effectiveness(p)  # 8: exim approved, 9: financing closed (effectiveness)
    assert status.sequence == 9
    message = precondition_failed(status, satisfaction("legal-opinion", based_on=read))
    assert message == (
        "project zm-lusaka-smart-city-2 changed since sequence 7, which this decision was based on: "
        "#9 financing_closed (now effectiveness); read its status (now at sequence 9) and decide again"
    )


def test_a_decision_based_on_a_status_before_screening_passed_conflicts_with_the_opening_of_financing() -> None:
    status = in_financing(proposal())
    conflicts = basis.conflicts(status, approval(Institution.exim, USD, based_on=0))
    # The first event in financing moves the stage; Exim's own review opening changes the subject.
    assert [(ref.sequence, ref.subject) for ref in conflicts] == [(3, "review:cdb"), (4, "review:exim")]


def test_each_stage_change_is_named_once() -> None:
    p = proposal()
    status = in_delivery(p, completed=1)
    read = 8  # before the package closed
    named = basis.conflicts(status, cancellation(based_on=read))
    assert [(ref.sequence, ref.stage) for ref in named] == [(9, Stage.effectiveness), (15, Stage.delivery)]


def test_a_cancellation_since_the_basis_refuses_every_decision() -> None:
    p = proposal()
    status = in_delivery(p, completed=2)
    read = status.sequence
    applied(status, cancelling.cancel(status, cancellation(), CONTRACTOR, NOW))
    for decision in (completion("installation", based_on=read), cancellation(based_on=read)):
        message = precondition_failed(status, decision)
        assert f"#{read + 1} project_cancelled (now cancelled)" in message


def test_the_same_milestone_completed_since_the_basis_refuses_a_second_report() -> None:
    p = proposal()
    status = in_delivery(p, completed=1)
    read = status.sequence
    complete(status, p, "procurement")
    message = precondition_failed(status, completion("procurement", based_on=read))
    assert f"#{read + 1} milestone_completed (now delivery)" in message


# ------------------------------------------------------------------ properties

OTHER_INSTITUTIONS = st.sampled_from([Institution.exim, Institution.sinosure])


def other_event(status: ProjectStatus, kind: str, institution: Institution) -> None:
    """Files an event of `kind` about `institution`'s review (or no review), in the status's stage."""
    deadline = review(status, institution).deadline
    if kind == "reminder":
        record(status, ev.ReviewReminder, institution=institution, deadline=deadline)
    elif kind == "question":
        record(status, ev.InformationRequested, institution=institution, request_id="r", questions="q", officer="o")
    elif kind == "answer":
        record(status, ev.InformationProvided, institution=institution, request_id="r", responder="c", documents=[])
    elif kind == "approval":
        record(status, ev.ReviewApproved, institution=institution, amount=USD, terms={}, conditions=[], officer="o")
    else:
        record(status, ev.CommitmentReleased, institution=institution, amount=USD, reason="r")


EVENT_KINDS = st.sampled_from(["reminder", "question", "answer", "approval", "release"])
CDB_DECISIONS: list[Callable[[int], Decision]] = [
    lambda read: approval(Institution.cdb, CDB_ASKED, based_on=read),
    lambda read: rejection(Institution.cdb, based_on=read),
    lambda read: question(Institution.cdb).model_copy(update={"based_on_sequence": read}),
    lambda read: answer(Institution.cdb).model_copy(update={"based_on_sequence": read}),
]


@PROPERTIES
@given(
    later=st.lists(st.tuples(EVENT_KINDS, OTHER_INSTITUTIONS), max_size=12),
    reminders_about_cdb=st.integers(min_value=0, max_value=3),
    decide=st.sampled_from(CDB_DECISIONS),
)
def test_no_conflict_when_every_later_event_is_about_another_subject_in_the_same_stage(
    later: list[tuple[str, Institution]], reminders_about_cdb: int, decide: Callable[[int], Decision]
) -> None:
    status = in_financing(proposal())
    read = status.sequence
    for kind, institution in later:
        other_event(status, kind, institution)
    for _ in range(reminders_about_cdb):
        other_event(status, "reminder", Institution.cdb)
    decision = decide(read)
    assert basis.conflicts(status, decision) == []
    basis.check(status, decision)


@PROPERTIES
@given(
    before=st.lists(st.tuples(EVENT_KINDS, OTHER_INSTITUTIONS), max_size=6),
    after=st.lists(st.tuples(EVENT_KINDS, OTHER_INSTITUTIONS), max_size=6),
    kind=st.sampled_from(["question", "answer", "approval"]),
    decide=st.sampled_from(CDB_DECISIONS),
)
def test_one_change_to_the_subject_among_others_is_the_one_conflict_named(
    before: list[tuple[str, Institution]],
    after: list[tuple[str, Institution]],
    kind: str,
    decide: Callable[[int], Decision],
) -> None:
    status = in_financing(proposal())
    read = status.sequence
    for other_kind, institution in before:
        other_event(status, other_kind, institution)
    other_event(status, kind, Institution.cdb)
    change = status.sequence
    for other_kind, institution in after:
        other_event(status, other_kind, institution)
    decision = decide(read)
    assert [ref.sequence for ref in basis.conflicts(status, decision)] == [change]
    message = precondition_failed(status, decision)
    assert message.count("#") == 1 and f"#{change} " in message


@PROPERTIES
@given(read=st.integers(min_value=0, max_value=15))
def test_a_decision_conflicts_with_the_first_event_in_another_stage_after_its_basis(read: int) -> None:
    """Whatever the basis, each later event that moved the stage is named, and only those, for a decision about a
    condition no event touched (here: the first review opening, #3, the package closing, #9, the project becoming
    effective, #15)."""
    status = in_delivery(proposal())
    decision = satisfaction("no-such-condition", based_on=read)
    named = [ref.sequence for ref in basis.conflicts(status, decision)]
    stages = [Stage.screening, *(ref.stage for ref in status.events)]
    expected = [ref.sequence for ref in status.events[read:] if ref.stage != stages[ref.sequence - 1]]
    assert named == expected
