"""The API with real Temporal behind it: the access matrix, credentials, idempotency and the error contract."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from alliance.api import OPENAPI_FILE, create_app, openapi_document
from alliance.demo import CONTRACTOR, OPERATOR, Driver, officer_of
from alliance.projects import Projects, UserError
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import project_worker
from schemas.decisions import Approve, AwaitProgress, Cancel, Institution, RequestInformation
from schemas.identity import Identity, Role
from schemas.money import Money
from schemas.proposal import Proposal
from schemas.status import ProjectStatus, Stage
from schemas.timetable import Timetable
from tests.support import example, finished, raw_example
from workflows.project import ProjectWorkflow, workflow_id
from workflows.remit import attest

pytestmark = pytest.mark.timeout(240)

CDB = officer_of(Institution.cdb, "Liu Yang")
EXIM = officer_of(Institution.exim, "Chen Jie")
SINOSURE = officer_of(Institution.sinosure, "Wang Fang")
BORROWER = Identity(person="Mwila Banda", organisation="Ministry of Finance, Kenya", role=Role.borrower)
AUDITOR = Identity(person="Grace Otieno", organisation="Kenya National Audit Office", role=Role.auditor)
PARTNER = Identity(person="Sam Lee", organisation="cisco", role=Role.partner)
EVERYONE = {
    "contractor": CONTRACTOR,
    "cdb officer": CDB,
    "exim officer": EXIM,
    "sinosure officer": SINOSURE,
    "borrower": BORROWER,
    "operator": OPERATOR,
    "auditor": AUDITOR,
    "partner": PARTNER,
}

# Written out, not derived from workflows/remit.py: this is the product's access policy as the issue states it.
ALLOWED = {
    "propose": {"contractor"},
    "read status": set(EVERYONE),
    "list": set(EVERYONE),
    "cdb inbox": {"cdb officer", "operator"},
    "approve for cdb": {"cdb officer"},
    "reject for cdb": {"cdb officer"},
    "request information for cdb": {"cdb officer"},
    "answer information": {"contractor"},
    "satisfy condition": {"contractor", "borrower"},
    "complete milestone": {"contractor"},
    "cancel": {"contractor", "operator"},
}


class Api:
    def __init__(self, http: httpx.AsyncClient, edge: Edge) -> None:
        self.http = http
        self.edge = edge

    async def call(
        self, who: Identity | None, method: str, path: str, body: Any = None, key: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.edge.issue(who)}"} if who else {}
        if key:
            headers["Idempotency-Key"] = key
        return await self.http.request(method, path, json=body, headers=headers)

    async def decide(self, who: Identity | None, project: str, path: str, body: dict[str, Any]) -> httpx.Response:
        body = {"decision_id": f"d-{uuid.uuid4().hex[:12]}", **body}
        return await self.call(who, "POST", f"/projects/{project}/{path}", body, key=body["decision_id"])


@pytest.fixture
async def api(projects: Projects, settings: Settings, temporal_env: WorkflowEnvironment) -> AsyncIterator[Api]:
    app = create_app(settings, client=temporal_env.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield Api(http, Edge(settings))


async def project_in_financing(projects: Projects, project_id: str) -> str:
    d = Driver(projects, example("ke-national-data-centre-2", project_id))
    await d.start()
    await projects.await_progress(project_id, AwaitProgress(stages=[Stage.financing]))
    return project_id


async def project_in_effectiveness(projects: Projects, project_id: str) -> str:
    d = Driver(projects, example("ke-national-data-centre-2", project_id))
    await d.start()
    await d.approve(Institution.exim, "Chen Jie")
    await d.reach(Stage.effectiveness)
    return project_id


async def test_every_role_may_do_exactly_what_its_remit_allows(api: Api, projects: Projects) -> None:
    project = await project_in_effectiveness(projects, "ke-matrix")
    certificate = {"reference": "AC-1", "issued_by": "Ministry", "issued_on": "2027-01-01"}
    proposals = iter(range(100))

    async def attempt(action: str, who: Identity) -> httpx.Response:
        if action == "propose":
            body = raw_example("th-smart-taxation") | {"project_id": f"th-matrix-{next(proposals)}"}
            return await api.call(who, "POST", "/projects", body, key=body["project_id"])
        if action == "read status":
            return await api.call(who, "GET", f"/projects/{project}")
        if action == "list":
            return await api.call(who, "GET", "/projects?country=KE")
        if action == "cdb inbox":
            return await api.call(who, "GET", "/institutions/cdb/inbox")
        if action == "cancel":
            # An allowed cancellation really cancels: each gets a project of its own.
            target = await project_in_effectiveness(projects, f"ke-cancel-{uuid.uuid4().hex[:6]}")
            return await api.decide(who, target, "cancellation", {"reason": "matrix", "by": who.person})
        # The rest are refused by the project after the remit check (no CDB review here; the project is in
        # effectiveness), so a permitted caller gets 409 and the project does not change.
        path, body = {
            "approve for cdb": (
                "approvals",
                {"institution": "cdb", "officer": who.person, "amount": {"amount": "1.00", "currency": "USD"}},
            ),
            "reject for cdb": ("rejections", {"institution": "cdb", "officer": who.person, "reason": "no"}),
            "request information for cdb": (
                "information-requests",
                {"institution": "cdb", "officer": who.person, "questions": "?"},
            ),
            "answer information": (
                "information-responses",
                {"institution": "exim", "responder": who.person, "answer": "a"},
            ),
            "satisfy condition": ("conditions-satisfied", {"condition_id": "no-such", "evidence": "e", "by": "x"}),
            "complete milestone": (
                "milestones-completed",
                {"milestone_id": "survey", "certificate": certificate, "by": who.person},
            ),
        }[action]
        return await api.decide(who, project, path, body)

    before = await projects.status(project)
    outcomes: dict[tuple[str, str], int] = {}
    for action, allowed in ALLOWED.items():
        for name, who in EVERYONE.items():
            response = await attempt(action, who)
            outcomes[(action, name)] = response.status_code
            if name in allowed:
                assert response.status_code in (200, 201, 409), (action, name, response.text)
            else:
                assert response.status_code == 403, (action, name, response.text)
                assert response.json()["code"] == "forbidden"
    print(f"checked {len(outcomes)} role x action pairs")
    after = await projects.status(project)
    assert [e.event_id for e in after.events] == [e.event_id for e in before.events]
    assert after.stage is Stage.effectiveness


async def test_partners_read_without_loan_terms(api: Api, projects: Projects) -> None:
    project = await project_in_effectiveness(projects, "ke-terms")
    seen = {}
    for who in (PARTNER, AUDITOR, BORROWER):
        response = await api.call(who, "GET", f"/projects/{project}")
        assert response.status_code == 200
        seen[who.role] = ProjectStatus.model_validate(response.json()).reviews[0].terms
    assert seen[Role.partner] is None
    assert seen[Role.auditor] is not None and seen[Role.auditor].tenor_years == 20
    assert seen[Role.borrower] == seen[Role.auditor]


async def test_bad_credentials_are_refused_and_change_nothing(api: Api, projects: Projects, settings: Settings) -> None:
    project = await project_in_effectiveness(projects, "ke-tokens")
    good = api.edge.issue(EXIM)
    header, payload, signature = good.split(".")
    tampered_claims = json.loads(_b64decode(payload)) | {"org": "cdb"}
    tampered = ".".join([header, _b64encode(json.dumps(tampered_claims).encode()), signature])
    foreign_key = Edge(
        settings.model_copy(update={"signing_key_file": settings.signing_key_file.with_name("other.pem")})
    )
    other_audience = Edge(settings.model_copy(update={"token_audience": "someone-else"}))
    tokens = {
        "missing": None,
        "garbage": "not-a-token",
        "expired": api.edge.issue(EXIM, minutes=5, now=datetime.now(UTC) - timedelta(hours=1)),
        "tampered": tampered,
        "foreign key": foreign_key.issue(EXIM),
        "wrong audience": other_audience.issue(EXIM),
    }
    before = await projects.status(project)
    for name, token in tokens.items():
        headers = {"Idempotency-Key": "k-1"} | ({"Authorization": f"Bearer {token}"} if token else {})
        body = {"decision_id": "k-1", "condition_id": "legal-opinion", "evidence": "LO-1", "by": "x"}
        response = await api.http.post(f"/projects/{project}/conditions-satisfied", json=body, headers=headers)
        assert response.status_code == 401, (name, response.text)
        assert response.json()["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert [e.event_id for e in (await projects.status(project)).events] == [e.event_id for e in before.events]


async def test_a_caller_reaching_temporal_directly_cannot_decide_for_another_bank(
    projects: Projects, settings: Settings
) -> None:
    proposal = example("zm-lusaka-smart-city-2", "zm-direct")
    d = Driver(projects, proposal)
    await d.start()
    await d.reach(Stage.financing)
    handle = projects.client.get_workflow_handle_for(ProjectWorkflow.run, workflow_id(proposal.project_id))
    approve = Approve(
        decision_id="direct-1", institution=Institution.cdb, officer="Liu Yang", amount=Money.of("1000.00", "USD")
    )
    key = Edge(settings)._key  # the edge's key, as a process holding it would sign
    now = datetime.now(UTC)
    forged = {
        "no attestation": (approve, "carries no attestation"),
        "officer of another bank": (
            approve.model_copy(update={"attestation": attest(EXIM, proposal.project_id, approve, key, now, 300)}),
            "Chen Jie is an officer of China Exim and cannot act for China Development Bank",
        ),
        "contractor": (
            approve.model_copy(update={"attestation": attest(CONTRACTOR, proposal.project_id, approve, key, now, 300)}),
            "Zhang Min \\(contractor\\) may not approve",
        ),
        "attestation of another decision": (
            approve.model_copy(
                update={
                    "amount": Money.of("42500000.00", "USD"),
                    "attestation": attest(CDB, proposal.project_id, approve, key, now, 300),
                }
            ),
            "made for a different decision",
        ),
        "attestation for another project": (
            approve.model_copy(update={"attestation": attest(CDB, "other-project", approve, key, now, 300)}),
            "for project other-project",
        ),
    }
    for name, (decision, message) in forged.items():
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ProjectWorkflow.approve, decision, id=f"forged-{name}")
        assert refused.value.cause is not None
        assert getattr(refused.value.cause, "type", None) == "NotPermitted", name
        assert re.search(message, str(refused.value.cause)), (name, str(refused.value.cause))
    history = await handle.fetch_history()
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert "approve" not in accepted, accepted
    # The officer of CDB, attested, is accepted and recorded as the decider.
    await d.approve(Institution.cdb, "Liu Yang")
    status = await projects.status(proposal.project_id)
    cdb = next(r for r in status.reviews if r.institution is Institution.cdb)
    assert cdb.decided_by == "Liu Yang (officer, cdb)"


async def test_idempotency_keys_return_the_first_result(api: Api, projects: Projects) -> None:
    body = raw_example("ke-national-data-centre-2") | {"project_id": "ke-idempotent"}
    first = await api.call(CONTRACTOR, "POST", "/projects", body, key="proposal-ke-1")
    again = await api.call(CONTRACTOR, "POST", "/projects", body, key="proposal-ke-1")
    other = await api.call(CONTRACTOR, "POST", "/projects", body, key="proposal-ke-2")
    assert first.status_code == again.status_code == 201
    assert first.json() == {"project_id": "ke-idempotent", "workflow_id": "project-ke-idempotent", "replayed": False}
    assert again.json() == first.json() | {"replayed": True}
    assert other.status_code == 409 and "already exists" in other.json()["message"]
    missing = await api.call(CONTRACTOR, "POST", "/projects", body)
    assert missing.status_code == 400 and missing.json()["field"] == "Idempotency-Key"
    assert missing.json()["code"] == "missing_key"

    await projects.await_progress("ke-idempotent", AwaitProgress(stages=[Stage.financing]))
    decision = {
        "decision_id": "exim-ok",
        "institution": "exim",
        "officer": "Chen Jie",
        "amount": {"amount": "1300000000.00", "currency": "CNY"},
    }
    path = "/projects/ke-idempotent/approvals"
    approved = await api.call(EXIM, "POST", path, decision, key="exim-ok")
    repeated = await api.call(EXIM, "POST", path, decision, key="exim-ok")
    assert approved.status_code == repeated.status_code == 200
    assert approved.json() == repeated.json()
    status = await projects.status("ke-idempotent")
    assert [e.type for e in status.events].count("org.alliance.project.review_approved") == 1
    mismatch = await api.call(EXIM, "POST", path, decision, key="another-key")
    assert mismatch.status_code == 422 and "Idempotency-Key" in mismatch.json()["message"]


async def test_a_key_is_bound_to_its_request_and_refused_with_another(api: Api, projects: Projects) -> None:
    """draft-ietf-httpapi-idempotency-key-header: the same key with another body, or for another resource, is
    refused (422) and changes nothing, whichever door it comes through."""
    body = raw_example("ke-national-data-centre-2") | {"project_id": "ke-bound"}
    first = await api.call(CONTRACTOR, "POST", "/projects", body, key="bound-1")
    assert first.status_code == 201, first.text
    corrected = body | {"title": "Kenya National Data Centre, phase 2 (corrected)"}
    refused = await api.call(CONTRACTOR, "POST", "/projects", corrected, key="bound-1")
    assert refused.status_code == 422 and refused.json()["code"] == "key_reused", refused.text
    assert "different request" in refused.json()["message"]
    elsewhere = await api.call(CONTRACTOR, "POST", "/projects", body | {"project_id": "ke-bound-2"}, key="bound-1")
    assert elsewhere.status_code == 422 and elsewhere.json()["code"] == "key_reused", elsewhere.text
    assert "already used for POST /projects (ke-bound)" in elsewhere.json()["message"]
    with pytest.raises(UserError, match="unknown project"):
        await projects.status("ke-bound-2")
    assert (await projects.status("ke-bound")).title == body["title"]
    # A fresh API (another process, or a restart) has no ledger: the project's own binding refuses the changed body.
    fresh = Projects(projects.client, projects.settings, projects.edge)
    with pytest.raises(UserError, match="different request to POST /projects \\(ke-bound\\)") as caught:
        await fresh.propose(Proposal.model_validate(corrected), actor=CONTRACTOR, idempotency_key="bound-1")
    assert caught.value.kind == "key_reused"

    # Decisions: the decision id is the key.
    await projects.await_progress("ke-bound", AwaitProgress(stages=[Stage.financing]))
    other = await project_in_financing(projects, "ke-bound-other")
    info = {"decision_id": "ask-1", "institution": "exim", "officer": "Chen Jie", "questions": "Audited accounts?"}
    asked = await api.call(EXIM, "POST", "/projects/ke-bound/information-requests", info, key="ask-1")
    assert asked.status_code == 200, asked.text
    changed = info | {"questions": "Something else?"}
    again = await api.call(EXIM, "POST", "/projects/ke-bound/information-requests", changed, key="ask-1")
    assert again.status_code == 422 and again.json()["code"] == "key_reused", again.text
    moved = await api.call(EXIM, "POST", f"/projects/{other}/information-requests", info, key="ask-1")
    assert moved.status_code == 422 and moved.json()["code"] == "key_reused", moved.text
    # The project's own record refuses it too, for a process that never saw the key.
    with pytest.raises(UserError) as caught:
        await fresh.decide("ke-bound", RequestInformation.model_validate(changed), EXIM)
    assert caught.value.kind == "key_reused", caught.value

    def asked_of(status: ProjectStatus) -> list[str]:
        exim = next(r for r in status.reviews if r.institution is Institution.exim)
        return [r.questions for r in exim.information_requests]

    assert asked_of(await projects.status(other)) == []
    assert asked_of(await projects.status("ke-bound")) == ["Audited accounts?"]
    # A key whose request was refused before anything changed stays free for the corrected request.
    bad = {"decision_id": "ask-2", "institution": "exim", "officer": "Chen Jie", "questions": ""}
    assert (
        await api.call(EXIM, "POST", f"/projects/{other}/information-requests", bad, key="ask-2")
    ).status_code == 422
    good = bad | {"questions": "Co-funding letters?"}
    assert (
        await api.call(EXIM, "POST", f"/projects/{other}/information-requests", good, key="ask-2")
    ).status_code == 200


async def test_an_amount_sent_as_a_json_number_keeps_its_digits(api: Api, projects: Projects) -> None:
    body = raw_example("ke-national-data-centre-2") | {"project_id": "ke-number"}
    text = json.dumps(body).replace(json.dumps(body["contract"]), '{"amount": 86072154524284.51, "currency": "USD"}')
    headers = {"Authorization": f"Bearer {api.edge.issue(CONTRACTOR)}", "Idempotency-Key": "number-1"}
    started = await api.http.post("/projects", content=text, headers=headers | {"Content-Type": "application/json"})
    assert started.status_code == 201, started.text
    status = await api.call(AUDITOR, "GET", "/projects/ke-number")
    assert status.json()["contract"] == {"amount": "86072154524284.51", "currency": "USD"}


async def test_errors_have_a_stable_code_and_name_the_field(api: Api) -> None:
    unknown = await api.call(AUDITOR, "GET", "/projects/no-such-project")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown"
    for path in ("/projects/Not_A_Slug", "/projects/x/progress", "/projects/%E5%90%8D/cancellation"):
        method = "POST" if path.endswith("cancellation") else "GET"
        bad_id = await api.call(OPERATOR, method, path, {"decision_id": "k", "reason": "r", "by": "x"}, key="k")
        assert bad_id.status_code == 422 and bad_id.json()["field"] == "project_id", (path, bad_id.text)
    bad = raw_example("ke-national-data-centre-2") | {"chinese_content_pct": "150"}
    invalid = await api.call(CONTRACTOR, "POST", "/projects", bad, key="bad-1")
    assert invalid.status_code == 422
    assert invalid.json()["code"] == "invalid" and invalid.json()["field"] == "chinese_content_pct"
    not_json = await api.http.post(
        "/projects",
        content=b"{",
        headers={"Authorization": f"Bearer {api.edge.issue(CONTRACTOR)}", "Idempotency-Key": "x"},
    )
    assert not_json.status_code == 422 and not_json.json()["code"] == "invalid"
    broken = await api.http.post(
        "/projects",
        content=b'{"project_id": ',
        headers={
            "Authorization": f"Bearer {api.edge.issue(CONTRACTOR)}",
            "Idempotency-Key": "x",
            "Content-Type": "application/json",
        },
    )
    assert broken.status_code == 422 and "field" not in broken.json(), broken.text  # it was a field named "15"
    assert "the request body is not valid JSON at character 15" in broken.json()["message"], broken.text
    # The framework's own answers are problems too (they were {"detail": "Not Found"}, found by a fresh-clone try).
    no_route = await api.call(AUDITOR, "GET", "/no-such-route")
    assert no_route.status_code == 404 and no_route.headers["content-type"] == "application/problem+json"
    assert no_route.json()["code"] == "unknown"
    wrong_method = await api.call(AUDITOR, "DELETE", "/projects")
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"
    refused = await api.decide(
        CDB, "no-such-project", "rejections", {"institution": "cdb", "officer": "Liu Yang", "reason": "r"}
    )
    assert refused.status_code == 404


async def test_oversized_and_malformed_bodies_are_refused_at_the_edge_with_a_clear_message(api: Api) -> None:
    auth = {"Authorization": f"Bearer {api.edge.issue(CONTRACTOR)}", "Idempotency-Key": "edge-1"}
    huge = await api.http.post("/projects", content=b" " * 2_000_000, headers=auth)
    assert huge.status_code == 413 and huge.json()["code"] == "too_large"
    assert "2,000,000 bytes" in huge.json()["message"]
    deep = await api.http.post("/projects", content=b"[" * 50_000 + b"]" * 50_000, headers=auth)
    assert deep.status_code == 422 and deep.json()["code"] == "invalid"
    latin1 = (
        json.dumps(raw_example("ke-national-data-centre-2") | {"title": "Café"}).encode().replace(b"\\u00e9", b"\xe9")
    )
    wrong_encoding = await api.http.post("/projects", content=latin1, headers=auth)
    assert wrong_encoding.status_code == 422 and wrong_encoding.json()["code"] == "invalid"
    for amount, currency in (("NaN", "USD"), ("-5", "USD"), ("Infinity", "USD"), ("100", "XXX")):
        bad = raw_example("ke-national-data-centre-2")
        bad["contract"] = {"amount": amount, "currency": currency}
        refused = await api.call(CONTRACTOR, "POST", "/projects", bad, key=f"edge-{amount}")
        assert refused.status_code == 422, (amount, refused.text)
        assert refused.json()["code"] == "invalid" and refused.json()["field"].startswith("contract")


async def test_a_decision_based_on_a_status_that_changed_is_refused_412(api: Api, projects: Projects) -> None:
    project = await project_in_financing(projects, "ke-if-match")
    read = await api.call(EXIM, "GET", f"/projects/{project}")
    assert read.status_code == 200 and read.headers["ETag"] == f'"{read.json()["sequence"]}"'
    etag = read.headers["ETag"]
    asked = await api.decide(
        EXIM, project, "information-requests", {"institution": "exim", "officer": "Chen Jie", "questions": "Why?"}
    )
    assert asked.status_code == 200, asked.text
    receipt = asked.json()
    assert receipt["stage"] == "financing" and receipt["sequence"] > int(etag.strip('"'))
    approval = {
        "decision_id": "approve-on-old-read",
        "institution": "exim",
        "officer": "Chen Jie",
        "amount": {"amount": "1300000000.00", "currency": "CNY"},
    }
    headers = {
        "Authorization": f"Bearer {api.edge.issue(EXIM)}",
        "Idempotency-Key": approval["decision_id"],
        "If-Match": etag,
    }
    stale = await api.http.post(f"/projects/{project}/approvals", json=approval, headers=headers)
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"] == "application/problem+json"
    problem = stale.json()
    assert problem["code"] == "precondition_failed" and problem["status"] == 412
    assert "information_requested" in problem["detail"] and "decide again" in problem["detail"]
    status = await projects.status(project)
    assert all(r.status.value != "approved" for r in status.reviews)
    # Read again, decide on what was read: accepted (the same key, now with a basis that holds).
    current = (await api.call(EXIM, "GET", f"/projects/{project}")).headers["ETag"]
    bad = await api.http.post(f"/projects/{project}/approvals", json=approval, headers=headers | {"If-Match": "W/7"})
    assert bad.status_code == 422 and "If-Match" in bad.json()["detail"]
    accepted = await api.http.post(
        f"/projects/{project}/approvals", json=approval, headers=headers | {"If-Match": current}
    )
    assert accepted.status_code == 200, accepted.text
    # The receipt says where the approval left the project; its effects (the package closing) follow.
    assert accepted.json()["stage"] == "financing"
    assert accepted.json()["sequence"] == accepted.json()["event_sequence"] == int(current.strip('"')) + 1


async def test_lists_are_complete_a_page_at_a_time(api: Api, projects: Projects) -> None:
    ids = [f"ke-page-{n}" for n in range(7)]
    for project_id in ids:
        await Driver(projects, example("ke-national-data-centre-2", project_id)).start()
    for _ in range(100):  # visibility follows the projects, eventually
        if (await api.call(AUDITOR, "GET", "/projects?country=KE")).json()["total"] >= len(ids):
            break
        await asyncio.sleep(0.1)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        query = "/projects?country=KE&page_size=3" + (f"&page_token={token}" if token else "")
        page = (await api.call(AUDITOR, "GET", query)).json()
        pages += 1
        assert page["total"] >= len(ids)
        seen += [row["project_id"] for row in page["projects"]]
        # Amounts leave as decimal strings to the cent, like every amount (not as floats).
        assert all(
            r["contract_usd"] is None or re.fullmatch(r"\d+\.\d{2}", r["contract_usd"]) for r in page["projects"]
        )
        if (token := page["next_page_token"]) is None:
            break
    assert set(ids) <= set(seen) and len(seen) == len(set(seen)) == page["total"]
    # Temporal may hand a token for a last page that turns out empty: at most one page more than the rows need.
    assert -(-page["total"] // 3) <= pages <= -(-page["total"] // 3) + 1
    first = (await api.call(AUDITOR, "GET", "/projects?country=KE&page_size=3")).json()
    elsewhere = await api.call(
        AUDITOR, "GET", f"/projects?country=ZM&page_size=3&page_token={first['next_page_token']}"
    )
    assert elsewhere.status_code == 422 and "other filters" in elsewhere.json()["message"]
    # A stage or sector outside its fixed set is refused, never answered with an empty page that reads as "none".
    for query in ("/projects?stage=nonsense", "/projects?sector=farming"):
        refused = await api.call(AUDITOR, "GET", query)
        assert refused.status_code == 422, (query, refused.text)


async def test_an_inbox_is_ordered_by_deadline_across_pages(api: Api, projects: Projects) -> None:
    days = {"ke-inbox-a": 30, "ke-inbox-b": 5, "ke-inbox-c": 20, "ke-inbox-d": 10, "ke-inbox-e": 25}
    for project_id, review_days in days.items():
        d = Driver(projects, example("ke-national-data-centre-2", project_id))
        await d.start(Timetable(review_days=review_days, reminder_days_before=1))
        await d.reach(Stage.financing)
    for _ in range(100):  # visibility (which projects wait for whom) follows the projects, eventually
        if (await api.call(EXIM, "GET", "/institutions/exim/inbox?page_size=2")).json()["total"] >= len(days):
            break
        await asyncio.sleep(0.1)
    items: list[dict[str, Any]] = []
    token = None
    while True:
        query = "/institutions/exim/inbox?page_size=2" + (f"&page_token={token}" if token else "")
        page = (await api.call(EXIM, "GET", query)).json()
        # Projects of earlier tests whose workers are gone do not answer: named, not silently left out.
        assert page["total"] >= len(days) and not set(page["unanswered"]) & set(days)
        items += page["items"]
        if (token := page["next_page_token"]) is None:
            break
    ours = [item["project_id"] for item in items if item["project_id"] in days]
    assert ours == sorted(days, key=days.__getitem__)
    assert [item["deadline"] for item in items] == sorted(item["deadline"] for item in items)
    assert len(items) == page["total"]


async def test_no_worker_means_a_bounded_answer_naming_the_task_queue(
    api: Api, projects: Projects, settings: Settings, temporal_env: WorkflowEnvironment
) -> None:
    """A decision for a project whose task queue no worker polls is not sent (503, in words); a status that
    cannot be read is a JSON problem, not a plain-text 500."""
    idle = settings.model_copy(update={"task_queue": f"nobody-{uuid.uuid4().hex[:8]}", "decision_wait_seconds": 2})
    stranded = Projects(temporal_env.client, idle, projects.edge)
    await stranded.propose(example("ke-national-data-centre-2", "ke-no-worker"), actor=CONTRACTOR)
    with pytest.raises(UserError) as caught:
        await stranded.decide("ke-no-worker", Cancel(decision_id="c-1", reason="r", by="PMO"), OPERATOR)
    assert caught.value.kind == "unavailable"
    assert f"no worker polled task queue {idle.task_queue} within 2 s" in str(caught.value)
    assert "was not sent" in str(caught.value)
    app = create_app(idle, client=temporal_env.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        unread = await Api(http, api.edge).call(AUDITOR, "GET", "/projects/ke-no-worker")
        assert unread.status_code == 503 and unread.headers["content-type"] == "application/problem+json"
        assert unread.json()["code"] == "unavailable"
        assert f"no worker polled task queue {idle.task_queue} within 2 s" in unread.json()["detail"]
        assert "nothing was asked of project ke-no-worker" in unread.json()["detail"]
        refused = await Api(http, api.edge).decide(OPERATOR, "ke-no-worker", "cancellation", {"reason": "r", "by": "x"})
        assert refused.status_code == 503 and idle.task_queue in refused.json()["detail"]
    await temporal_env.client.get_workflow_handle(workflow_id("ke-no-worker")).terminate("test over")


async def test_a_decision_no_worker_answers_returns_in_time_and_counts_once_a_worker_comes(
    projects: Projects, settings: Settings, temporal_env: WorkflowEnvironment
) -> None:
    """The worker polled a moment ago (so the decision is sent) but is gone: the caller gets an answer within the
    bounded wait, and sending the same decision again once a worker is back returns its one outcome."""
    queue = settings.model_copy(update={"task_queue": f"gone-{uuid.uuid4().hex[:8]}"})
    with_worker = Projects(temporal_env.client, queue, projects.edge)
    async with project_worker(temporal_env.client, queue):
        d = Driver(with_worker, example("ke-national-data-centre-2", "ke-worker-gone"))
        await d.start()
        await d.reach(Stage.financing)
    cancel = Cancel(decision_id="cancel-while-gone", reason="no worker", by="PMO")
    with pytest.raises(UserError) as caught:
        await with_worker.decide("ke-worker-gone", cancel, OPERATOR, wait=2)
    message = str(caught.value)
    assert caught.value.kind == "unavailable" and "project ke-worker-gone did not answer within 2 s" in message
    assert f"the workers of task queue {queue.task_queue} are busy, or stopped" in message
    assert "send the same decision again (decision id cancel-while-gone)" in message
    # A status read likewise: in words, within its wait (it used to be "h2 protocol error" after the deadline).
    unread_settings = queue.model_copy(update={"decision_wait_seconds": 2})
    with pytest.raises(UserError) as caught:
        await Projects(temporal_env.client, unread_settings, projects.edge).status("ke-worker-gone", OPERATOR)
    message = str(caught.value)
    assert caught.value.kind == "unavailable", message
    assert "cannot read the status of project ke-worker-gone: it did not answer within 2 s" in message
    assert f"the workers of task queue {queue.task_queue} are busy, or stopped" in message
    async with project_worker(temporal_env.client, queue):
        receipt = await with_worker.decide("ke-worker-gone", cancel, OPERATOR)
        assert receipt.stage is Stage.cancelled
        status = await finished(with_worker, "ke-worker-gone")
    assert [e.type for e in status.events].count("org.alliance.project.project_cancelled") == 1


def test_the_checked_in_openapi_document_is_current() -> None:
    assert OPENAPI_FILE.read_text() == openapi_document(), "run `make openapi` and commit alliance/openapi.json"


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
