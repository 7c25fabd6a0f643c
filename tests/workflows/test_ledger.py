"""The decision ledger (workflows/ledger.py): a decision sent again gets its first receipt; an id never means two
decisions; what a run remembers is carried over to the next. Pure: no server."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.decisions import Approve, Institution, Receipt, Reject
from schemas.money import Money
from schemas.stage import Stage
from schemas.timetable import RememberedDecision
from tests.workflows.states import PROPERTIES, approval, cancellation
from workflows.ledger import Ledger
from workflows.refusals import Refused

CDB_ASKED = Money.of("42500000.00", "USD")


def receipt_of(decision: Approve, sequence: int = 7) -> Receipt:
    return Receipt(
        decision_id=decision.decision_id,
        message=f"{decision.institution.display} approved {decision.amount}",
        event_sequence=sequence,
    )


def refusal_of(ledger: Ledger, decision: Approve | Reject) -> str:
    """The ledger's refusal of `decision` (both ways of asking), with the ledger unchanged."""
    before = ledger.remembered()
    messages = []
    for ask in (ledger.is_repeat, ledger.repeat):
        try:
            ask(decision)
        except Refused as refusal:
            assert refusal.type == "DecisionIdReused" and refusal.non_retryable
            messages.append(refusal.message)
        else:
            raise AssertionError(f"{ask.__name__} accepted {decision}")
    assert ledger.remembered() == before
    assert messages[0] == messages[1]
    return messages[0]


def test_a_decision_never_seen_is_not_a_repeat() -> None:
    ledger = Ledger()
    decision = approval(Institution.cdb, CDB_ASKED)
    assert not ledger.is_repeat(decision)
    assert ledger.repeat(decision) is None
    assert ledger.remembered() == []


def test_a_decision_sent_again_gets_its_first_receipt() -> None:
    ledger = Ledger()
    decision = approval(Institution.cdb, CDB_ASKED)
    first = ledger.remember(decision, receipt_of(decision))
    assert ledger.is_repeat(decision)
    assert ledger.repeat(decision) == first == receipt_of(decision)
    again = Approve.model_validate_json(decision.model_dump_json())
    assert ledger.repeat(again) == first


def test_the_receipt_remembered_last_is_the_one_returned() -> None:
    # The workflow remembers the receipt once applied, then again with the stage and sequence after its effects.
    ledger = Ledger()
    decision = approval(Institution.cdb, CDB_ASKED)
    ledger.remember(decision, receipt_of(decision))
    after = receipt_of(decision).model_copy(update={"stage": Stage.effectiveness, "sequence": 9})
    ledger.remember(decision, after)
    assert ledger.repeat(decision) == after
    assert len(ledger.remembered()) == 1


def test_the_same_id_with_another_amount_is_refused_naming_the_first_decision() -> None:
    ledger = Ledger()
    decision = approval(Institution.cdb, CDB_ASKED)
    ledger.remember(decision, receipt_of(decision))
    other = decision.model_copy(update={"amount": Money.of("40000000.00", "USD")})
    message = refusal_of(ledger, other)
    assert message == (
        f"decision id {decision.decision_id} was already used for a different decision "
        "(China Development Bank approved USD 42,500,000.00); a new decision needs a new id"
    )
    assert ledger.repeat(decision) == receipt_of(decision)


def test_the_same_id_for_another_kind_of_decision_is_refused() -> None:
    ledger = Ledger()
    decision = approval(Institution.cdb, CDB_ASKED)
    ledger.remember(decision, receipt_of(decision))
    reject = Reject(
        decision_id=decision.decision_id, institution=Institution.cdb, officer=decision.officer, reason="no"
    )
    assert "was already used for a different decision" in refusal_of(ledger, reject)


def test_another_id_with_the_same_content_is_another_decision() -> None:
    ledger = Ledger()
    decision = approval(Institution.cdb, CDB_ASKED)
    ledger.remember(decision, receipt_of(decision))
    assert not ledger.is_repeat(decision.model_copy(update={"decision_id": "approve-again"}))


def test_the_basis_and_the_attestation_are_not_part_of_what_is_decided() -> None:
    # A retry after a timeout may be based on a newer status, and the edge signs every send anew.
    ledger = Ledger()
    decision = approval(Institution.cdb, CDB_ASKED, based_on=5)
    ledger.remember(decision, receipt_of(decision))
    for retry in (
        decision.model_copy(update={"based_on_sequence": 9}),
        decision.model_copy(update={"based_on_sequence": None}),
        decision.model_copy(update={"attestation": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}),
    ):
        assert ledger.is_repeat(retry)
        assert ledger.repeat(retry) == receipt_of(decision)


@PROPERTIES
@given(
    first_basis=st.none() | st.integers(min_value=0, max_value=10**6),
    retry_basis=st.none() | st.integers(min_value=0, max_value=10**6),
    attestation=st.none() | st.text(min_size=1, max_size=40),
)
def test_a_retry_is_the_same_decision_whatever_its_basis_and_attestation(
    first_basis: int | None, retry_basis: int | None, attestation: str | None
) -> None:
    ledger = Ledger()
    decision = approval(Institution.cdb, CDB_ASKED, based_on=first_basis)
    ledger.remember(decision, receipt_of(decision))
    retry = decision.model_copy(update={"based_on_sequence": retry_basis, "attestation": attestation})
    assert ledger.repeat(retry) == receipt_of(decision)


def test_what_a_run_remembers_is_carried_over_to_the_next() -> None:
    ledger = Ledger()
    first = approval(Institution.cdb, CDB_ASKED)
    second = cancellation()
    ledger.remember(first, receipt_of(first))
    stopped = Receipt(decision_id=second.decision_id, message="project cancelled in delivery", event_sequence=30)
    ledger.remember(second, stopped)

    # Continue-as-new carries the remembered decisions as JSON.
    carried = [RememberedDecision.model_validate_json(d.model_dump_json()) for d in ledger.remembered()]
    assert [d.decision_id for d in carried] == [first.decision_id, second.decision_id]
    next_run = Ledger(carried)
    assert next_run.repeat(first) == receipt_of(first)
    assert next_run.repeat(second.model_copy(update={"based_on_sequence": 31})) == stopped
    other = first.model_copy(update={"amount": Money.of("1.00", "USD")})
    assert "China Development Bank approved USD 42,500,000.00" in refusal_of(next_run, other)
    assert next_run.remembered() == ledger.remembered()
