"""Size limits (workflows/limits.py): a decision over 64 KiB, or one that would grow the status past 1 MiB, is
refused with the sizes, and nothing changes. Pure functions: no server."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas.decisions import Approve, Decision, Institution
from schemas.money import Money
from schemas.status import InformationRequest, ProjectStatus
from tests.workflows.states import PROPERTIES, T0, approval, in_financing, proposal, refused, review
from workflows import limits
from workflows.refusals import Refused

CDB_ASKED = Money.of("42500000.00", "USD")


def size_of(decision: Decision) -> int:
    """A decision's size as its event carries it: UTF-8 JSON, without the edge's attestation."""
    return len(decision.model_dump_json(exclude={"attestation"}).encode())


def approval_of(size: int, attestation: str | None = None) -> Approve:
    """A CDB approval whose conditions make it exactly `size` bytes (each condition at most 2,000 characters)."""
    conditions: list[str] = []

    def made(last: str) -> Approve:
        fields = approval(Institution.cdb, CDB_ASKED).model_dump()
        return Approve.model_validate({**fields, "conditions": [*conditions, last], "attestation": attestation})

    while (missing := size - size_of(made("x"))) >= 2000:
        conditions.append("x" * 2000)
    assert missing >= 0, f"an approval is at least {size_of(made('x'))} bytes"
    decision = made("x" * (1 + missing))
    assert size_of(decision) == size
    return decision


def grown_to(status: ProjectStatus, size: int) -> ProjectStatus:
    """`status` grown to exactly `size` bytes of JSON: China Exim's long questions, then the details' words."""
    exim = review(status, Institution.exim)

    def asked(n: int) -> InformationRequest:
        return InformationRequest(
            request_id=f"exim-rfi-{n}",
            questions="q" * 2000,
            asked_by="Chen Jie",
            asked_at=T0 + timedelta(days=1),
            answer="a" * 2000,
            answered_by="Zhang Min",
            answered_at=T0 + timedelta(days=2),
        )

    before = len(status.model_dump_json().encode())
    each = len(asked(100).model_dump_json().encode()) + 1
    exim.information_requests.extend(asked(n) for n in range(100, 100 + (size - before) // each))
    status.details += "x" * (size - len(status.model_dump_json().encode()))
    assert len(status.model_dump_json().encode()) == size
    return status


def test_a_decision_over_64_kib_is_refused_with_its_size() -> None:
    status = in_financing(proposal())
    decision = approval_of(64 * 1024 + 1)
    message = refused(status, lambda: limits.check(status, decision))
    assert message == (
        "this decision is 65,537 bytes of text; a decision is at most 65,536 bytes (shorten its texts, or refer to a "
        "document instead of quoting it)"
    )


def test_a_decision_of_exactly_64_kib_is_accepted() -> None:
    status = in_financing(proposal())
    limits.check(status, approval_of(64 * 1024))


def test_the_size_of_a_decision_is_counted_in_bytes_not_characters() -> None:
    # 11 conditions of 2,000 Chinese characters: 22,000 characters, but three bytes each in UTF-8.
    status = in_financing(proposal())
    decision = approval(Institution.cdb, CDB_ASKED, ["贷款协议须经议会批准" * 200] * 11)
    assert len(decision.model_dump_json()) < 64 * 1024 < size_of(decision)
    message = refused(status, lambda: limits.check(status, decision))
    assert message.startswith(f"this decision is {size_of(decision):,} bytes of text; a decision is at most 65,536")


def test_the_attestation_is_not_part_of_the_decisions_size() -> None:
    # The edge's signed statement travels with the Update, not in the event.
    status = in_financing(proposal())
    limits.check(status, approval_of(64 * 1024, attestation="e" * 20_000))


@PROPERTIES
@given(
    character=st.sampled_from(["a", "é", "数", "😀"]),  # 1 to 4 bytes in UTF-8
    conditions=st.integers(min_value=0, max_value=40),
    length=st.integers(min_value=1, max_value=2000),
)
def test_a_decision_is_refused_exactly_when_its_bytes_exceed_64_kib(
    character: str, conditions: int, length: int
) -> None:
    status = in_financing(proposal())
    decision = approval(Institution.cdb, CDB_ASKED, [character * length] * conditions)
    too_big = size_of(decision) > 64 * 1024
    try:
        limits.check(status, decision)
    except Refused as refusal:
        assert too_big, refusal.message
        assert f"this decision is {size_of(decision):,} bytes" in refusal.message
    else:
        assert not too_big


def test_a_decision_that_would_grow_the_status_past_1_mib_is_refused_with_the_sizes() -> None:
    decision = approval(Institution.cdb, CDB_ASKED)
    status = grown_to(in_financing(proposal()), 1024 * 1024 + 1 - size_of(decision))
    message = refused(status, lambda: limits.check(status, decision))
    assert message == (
        "project zm-lusaka-smart-city-2's status would grow to 1,048,577 bytes with this decision; a status is at "
        "most 1,048,576 bytes so that it can always be read and carried over (refer to documents instead of quoting "
        "them)"
    )


def test_a_decision_that_brings_the_status_to_exactly_1_mib_is_accepted() -> None:
    decision = approval(Institution.cdb, CDB_ASKED)
    status = grown_to(in_financing(proposal()), 1024 * 1024 - size_of(decision))
    limits.check(status, decision)


def test_a_small_decision_is_refused_on_a_full_status_and_the_size_names_the_status() -> None:
    small = approval(Institution.cdb, CDB_ASKED)
    status = grown_to(in_financing(proposal()), 1024 * 1024)
    message = refused(status, lambda: limits.check(status, small))
    assert f"status would grow to {1024 * 1024 + size_of(small):,} bytes with this decision" in message
