"""Bad input, generated: decisions of every kind, valid and invalid, sent to a running project through the same edge
as the CLI and the API (parse, attest, Update). Every one ends in success or a clear refusal; a refusal changes
nothing; the workflow keeps answering; the worker never crashes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alliance.demo import Driver
from alliance.projects import Projects, UserError, explain_validation
from schemas.decisions import (
    Approve,
    Cancel,
    CompleteMilestone,
    Decision,
    ProvideInformation,
    Reject,
    RequestInformation,
    SatisfyCondition,
)
from schemas.status import ProjectStatus, Stage
from tests.support import example

pytestmark = pytest.mark.timeout(600)

KINDS: dict[str, type[Decision]] = {
    "approve": Approve,
    "reject": Reject,
    "request_information": RequestInformation,
    "provide_information": ProvideInformation,
    "satisfy_condition": SatisfyCondition,
    "complete_milestone": CompleteMilestone,
    "cancel": Cancel,
}
text = st.one_of(
    st.sampled_from(["Liu Yang, CDB Africa division", "Wang Fang", "", " ", "x" * 5000, "\x00", "名字"]),
    st.text(max_size=40),
)
amount = st.one_of(
    st.sampled_from(["42500000.00", "0", "-1", "NaN", "Infinity", "1e400", "0.001", "999999999999999999999", "abc"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10, max_value=10**9).map(str),
)
money = st.one_of(
    st.fixed_dictionaries({"amount": amount, "currency": st.sampled_from(["USD", "CNY", "ZMW", "XXX", "usd", ""])}),
    st.none(),
    st.integers(),
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "institution": st.sampled_from(["cdb", "exim", "sinosure", "worldbank", "", "CDB"]),
    "officer": text,
    "amount": money,
    "conditions": st.lists(text, max_size=3),
    "reason": text,
    "questions": text,
    "responder": text,
    "answer": text,
    "condition_id": st.sampled_from(["cp-1", "cp-2", "nope", ""]),
    "evidence": text,
    "by": text,
    "milestone_id": st.sampled_from(["survey", "procurement", "final", "nope"]),
    "certificate": st.none() | st.fixed_dictionaries({"reference": text, "issued_by": text, "issued_on": text}),
    "unexpected": st.integers(),
}
CERTIFICATE = {"reference": "AC-1", "issued_by": "Lusaka City Council", "issued_on": "2026-11-20"}
# A well-formed decision of each kind; each example changes at most one field of it (or none).
VALID: dict[str, dict[str, Any]] = {
    "approve": {"institution": "cdb", "officer": "Liu Yang", "amount": {"amount": "1000.00", "currency": "USD"}},
    "reject": {"institution": "exim", "officer": "Chen Jie", "reason": "Country limit used"},
    "request_information": {"institution": "sinosure", "officer": "Wang Fang", "questions": "Audited accounts?"},
    "provide_information": {"institution": "sinosure", "responder": "Li Wei", "answer": "Attached."},
    "satisfy_condition": {"condition_id": "cp-1", "evidence": "DOC-1", "by": "Li Wei"},
    "complete_milestone": {"milestone_id": "survey", "certificate": CERTIFICATE, "by": "Zhang Min"},
    "cancel": {"reason": "Re-tendered", "by": "Operations, Alliance PMO"},
}
change = st.one_of(
    st.just({}), st.sampled_from(sorted(FIELDS)).flatmap(lambda f: st.fixed_dictionaries({f: FIELDS[f]}))
)


async def settled(projects: Projects, project_id: str) -> ProjectStatus:
    """The status once the project has stopped moving: an accepted decision can set off work that goes on after
    it returns (a rejection withdraws the other reviews, releases commitments, declines the financing)."""
    previous = await projects.status(project_id)
    for _ in range(100):
        await asyncio.sleep(0.3)
        current = await projects.status(project_id)
        if current == previous and all(ref.published for ref in current.events):
            return current
        previous = current
    raise AssertionError(f"{project_id} kept changing for 30 s")


@pytest.fixture
async def financing(projects: Projects) -> str:
    proposal = example("zm-lusaka-smart-city-2", f"zm-bad-input-{uuid.uuid4().hex[:8]}")
    d = Driver(projects, proposal)
    await d.start()
    await d.wait(lambda s: s.stage is Stage.financing and len(s.reviews) == 3)
    return proposal.project_id


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(sorted(KINDS)), changed=change, decision_id=st.sampled_from(["d-1", "d-2", "d-3", "!"]))
async def test_generated_decisions_end_in_success_or_a_clear_refusal_and_refusals_change_nothing(
    projects: Projects, financing: str, kind: str, changed: dict[str, Any], decision_id: str
) -> None:
    before = await settled(projects, financing)
    try:
        decision = KINDS[kind].model_validate({"decision_id": decision_id, **VALID[kind], **changed})
    except ValidationError as err:
        message = explain_validation(err, "decision")
        assert message.startswith("invalid decision: ") and len(message) > len("invalid decision: ")
        event("invalid at the edge")
        return
    try:
        await projects.decide(financing, decision, Driver.actor_for(decision))
        event(f"accepted: {kind}")
    except UserError as err:
        assert err.kind in ("refused", "forbidden"), err
        event(f"refused by the workflow: {kind}")
        assert str(err).strip()
        after = await projects.status(financing)  # answers: the workflow is not stuck
        assert after.events == before.events and after.stage is before.stage, "a refusal changed the project"
        return
    await projects.status(financing)  # still answers after an accepted decision
