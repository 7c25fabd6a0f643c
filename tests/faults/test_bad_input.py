"""Bad input, generated: decisions of every kind, valid and invalid, sent to a running project through each of its
three doors: the edge the CLI and the API share (parse, attest, Update), the HTTP API, and the command line. Every one
ends in success or a clear refusal; a refusal changes nothing; the workflow keeps answering; the worker never
crashes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alliance.api import create_app
from alliance.demo import CONTRACTOR, OPERATOR, Driver, officer_of
from alliance.projects import Projects, UserError, explain_validation
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.decisions import (
    Approve,
    Cancel,
    CompleteMilestone,
    Decision,
    Institution,
    ProvideInformation,
    Reject,
    RequestInformation,
    SatisfyCondition,
)
from schemas.identity import Identity
from schemas.status import ProjectStatus, Stage
from tests.support import cli, example, one_line_error
from workflows import catalogue

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
        # key_reused: an id of an earlier example sent with another decision (this process's ledger refuses it).
        assert err.kind in ("refused", "forbidden", "key_reused"), err
        event(f"refused by the workflow: {kind}")
        assert str(err).strip()
        after = await projects.status(financing)  # answers: the workflow is not stuck
        assert after.events == before.events and after.stage is before.stage, "a refusal changed the project"
        return
    await projects.status(financing)  # still answers after an accepted decision


PATHS = {kind: catalogue.BY_MODEL[model].route for kind, model in KINDS.items()}
ALL_KINDS = st.sampled_from(sorted(KINDS))
DECISION_IDS = st.sampled_from(["d-1", "d-2", "d-3", "!"])


def caller_for(kind: str, body: dict[str, Any]) -> Identity:
    """Whoever may send this kind of decision (an officer of the institution it names, when it names one)."""
    if kind in ("approve", "reject", "request_information"):
        try:
            return officer_of(Institution(str(body.get("institution"))), "Liu Yang")
        except ValueError:
            return officer_of(Institution.cdb, "Liu Yang")
    return OPERATOR if kind == "cancel" else CONTRACTOR


def unchanged(before: ProjectStatus, after: ProjectStatus) -> bool:
    return after.events == before.events and after.stage is before.stage


@pytest.fixture
async def http(projects: Projects, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=projects.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=ALL_KINDS, changed=change, decision_id=DECISION_IDS)
async def test_generated_decisions_through_the_api_get_a_result_or_a_clear_refusal_that_changes_nothing(
    projects: Projects, financing: str, http: httpx.AsyncClient, kind: str, changed: dict[str, Any], decision_id: str
) -> None:
    before = await settled(projects, financing)
    body = {"decision_id": decision_id, **VALID[kind], **changed}
    token = Edge(projects.settings).issue(caller_for(kind, body))
    response = await http.post(
        f"/projects/{financing}/{PATHS[kind]}",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": decision_id},
    )
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        event(f"accepted: {kind}")
        await projects.status(financing)  # still answers
        return
    problem = response.json()
    assert problem["code"] and problem["message"].strip(), problem
    event(f"{response.status_code} {problem['code']}")
    assert unchanged(before, await projects.status(financing)), f"a refusal changed the project: {problem}"


def text_arg(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def command_line(kind: str, project: str, body: dict[str, Any]) -> list[str]:
    """The `alliance` arguments a person would type for this decision; a value of the wrong shape is typed as it
    is (JSON for what is not text), and a field the command does not have becomes an option it does not know."""
    args = {
        "approve": ["decide", project],
        "reject": ["decide", project],
        "request_information": ["decide", project],
        "provide_information": ["respond", project],
        "satisfy_condition": ["satisfy", project],
        "complete_milestone": ["complete-milestone", project],
        "cancel": ["cancel", project],
    }[kind]
    args += ["--decision-id", body["decision_id"]]
    options = {
        "institution": "--institution",
        "officer": "--officer",
        "reason": "--reject" if kind == "reject" else "--reason",
        "questions": "--request-info",
        "responder": "--by",
        "answer": "--answer",
        "evidence": "--evidence",
        "by": "--by",
    }
    for field, value in body.items():
        if field == "decision_id":
            continue
        if field in ("condition_id", "milestone_id"):
            args.insert(2, text_arg(value))
        elif field == "amount":
            money = f"{value['currency']} {value['amount']}" if isinstance(value, dict) else text_arg(value)
            args += ["--approve", money]
        elif field == "conditions":
            for condition in value if isinstance(value, list) else [value]:
                args += ["--condition", text_arg(condition)]
        elif field == "certificate":
            if isinstance(value, dict):
                args += ["--certificate", value["reference"], "--issued-by", value["issued_by"]]
                args += ["--issued-on", value["issued_on"]]
        elif field in options and (kind != "cancel" or field != "reason"):
            args += [options[field], text_arg(value)]
        elif field == "reason":
            args += ["--reason", text_arg(value)]
        else:
            args += [f"--{field.replace('_', '-')}", text_arg(value)]
    return args


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=ALL_KINDS, changed=change, decision_id=DECISION_IDS)
async def test_generated_decisions_on_the_command_line_end_in_a_receipt_or_one_clear_error(
    projects: Projects, financing: str, kind: str, changed: dict[str, Any], decision_id: str
) -> None:
    body = {"decision_id": decision_id, **VALID[kind], **changed}
    args = command_line(kind, financing, body)
    assume(not any("\x00" in arg for arg in args))  # no command line can carry a NUL byte
    before = await settled(projects, financing)
    run = await cli(projects.settings, *args, as_=caller_for(kind, body))
    assert "Traceback" not in run.out + run.err, run.err
    if run.code == 0:
        assert f"decision id {decision_id}" in run.out, run.out
        event(f"accepted: {kind}")
        return
    if run.code == 2:  # the command line's own usage errors: a missing, unknown or ill-typed option
        assert "Error" in run.err and ("Usage:" in run.err or "Try " in run.err), run.err
        event("usage error")
    else:
        event(one_line_error(run).replace(financing, "<project>")[:50])
    assert unchanged(before, await projects.status(financing)), f"a refusal changed the project: {run.err}"
