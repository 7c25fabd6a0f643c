"""What staff do to projects, over a Temporal client: the one place the CLI (and later the API) goes through.

Every failure a person can cause (an invalid file, an unknown project, a refused decision, servers not running)
becomes a `UserError` whose message is one sentence in the domain's words.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.client import (
    WorkflowExecutionStatus as ExecutionStatus,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from alliance.idempotency import KeyLedger, KeyRefused, fingerprint
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.decisions import AwaitProgress, Decision, Progress, Receipt
from schemas.identity import Identity
from schemas.proposal import Proposal
from schemas.status import ProjectStatus
from schemas.timetable import ProjectInput, Timetable
from workflows import catalogue, remit, visibility
from workflows.project import ProjectWorkflow, workflow_id
from workflows.refusals import has_ended

MAX_PROPOSAL_BYTES = 1_000_000
# A project whose worker is gone should say so in seconds, not hang the caller.
QUERY_TIMEOUT = timedelta(seconds=30)


class UserError(Exception):
    """A mistake or a refusal to show the person as one line; nothing was changed.

    `kind` says which, for the API's status codes: invalid, unauthenticated, forbidden, unknown, refused,
    conflict, key_reused (an idempotency key sent with another request), in_progress (its first request is still
    running), precondition_failed (the status the decision was based on has changed), unavailable."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


def explain_validation(err: ValidationError, what: str) -> str:
    return f"invalid {what}: " + describe_errors(err.errors())


def describe_errors(errors: Sequence[Any]) -> str:
    """Pydantic errors as 'field: rule; field: rule'. A rule across fields (no location) names its fields itself."""
    problems = []
    for e in errors:
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header"))
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def load_proposal(path: Path) -> Proposal:
    try:
        size = path.stat().st_size
    except OSError as err:
        raise UserError(f"cannot read proposal file {path}: {err.strerror}") from err
    if size > MAX_PROPOSAL_BYTES:
        raise UserError(f"proposal file {path} is {size:,} bytes; a proposal is at most {MAX_PROPOSAL_BYTES:,}")
    try:
        # Numbers with a fraction are read as Decimals from their text, never through a float (schemas/money.py).
        raw = json.loads(path.read_bytes().decode("utf-8"), parse_float=Decimal)
    except UnicodeDecodeError as err:
        raise UserError(f"proposal file {path} is not UTF-8 text") from err
    except (json.JSONDecodeError, RecursionError) as err:
        raise UserError(f"proposal file {path} is not valid JSON: {err}") from err
    return parse_proposal(raw)


def parse_proposal(raw: Any) -> Proposal:
    try:
        return Proposal.model_validate(raw)
    except ValidationError as err:
        raise UserError(explain_validation(err, "proposal")) from err


class Started(BaseModel):
    """What `propose` did: started the project, or found it started earlier by this very request (same idempotency
    key, same proposal), in which case nothing changed."""

    project_id: str
    workflow_id: str
    replayed: bool = Field(
        default=False, description="True when an earlier request with the same key and proposal had started it"
    )


PROPOSALS = "POST /projects"


@dataclass
class Projects:
    client: Client
    settings: Settings
    edge: Edge | None = None
    keys: KeyLedger = field(default_factory=KeyLedger)

    def _handle(self, project_id: str) -> WorkflowHandle[ProjectWorkflow, ProjectStatus]:
        return self.client.get_workflow_handle_for(ProjectWorkflow.run, workflow_id(project_id))

    async def propose(
        self,
        proposal: Proposal,
        timetable: Timetable | None = None,
        actor: Identity | None = None,
        idempotency_key: str | None = None,
    ) -> Started:
        """Starts the project. With an idempotency key, the key is bound to this proposal (its fingerprint is kept
        with the project): the same request again returns the first result (`replayed`); the same key with another
        proposal, or for another project, is refused (key_reused) and changes nothing."""
        if idempotency_key is None:
            return await self._propose(proposal, timetable, actor, None)
        print_ = fingerprint(PROPOSALS, proposal)
        caller = str(actor) if actor else ""
        try:
            async with self.keys.claim(caller, idempotency_key, f"{PROPOSALS} ({proposal.project_id})", print_):
                return await self._propose(proposal, timetable, actor, (idempotency_key, print_))
        except KeyRefused as err:
            raise UserError(str(err), err.kind) from err

    async def _propose(
        self,
        proposal: Proposal,
        timetable: Timetable | None,
        actor: Identity | None,
        key: tuple[str, str] | None,
    ) -> Started:
        if actor is not None and (why := remit.refusal(actor, remit.Action.propose)) is not None:
            raise UserError(why, "forbidden")
        if proposal.country not in {c.upper() for c in self.settings.partner_countries}:
            raise UserError(
                f"country: {proposal.country} is not a partner country of the alliance "
                f"(partners: {', '.join(sorted(self.settings.partner_countries))})"
            )
        wf_id = workflow_id(proposal.project_id)
        financing = proposal.financing
        lines = [f"**{proposal.title}**", f"Borrower: {proposal.borrower}", f"Contract: {proposal.contract}"]
        if financing.cdb_loan:
            lines.append(f"CDB loan requested: {financing.cdb_loan}")
        if financing.exim_loan:
            lines.append(f"China Exim {financing.exim_loan.facility.value}: {financing.exim_loan.amount}")
        if financing.sinosure_cover_pct is not None:
            lines.append(f"Sinosure cover: {financing.sinosure_cover_pct}% of the Exim loan")
        try:
            await self.client.start_workflow(
                ProjectWorkflow.run,
                ProjectInput(
                    proposal=proposal,
                    timetable=timetable or self.settings.timetable(),
                    trusted_keys=[self.edge.public_pem] if self.edge else [],
                    continue_as_new_after_events=self.settings.continue_as_new_after_events,
                ),
                id=wf_id,
                task_queue=self.settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(visibility.STAGE, "screening"),
                        SearchAttributePair(visibility.COUNTRY, proposal.country),
                        SearchAttributePair(visibility.SECTOR, proposal.sector.value),
                    ]
                ),
                memo={
                    "idempotency_key": key[0] if key else None,
                    "fingerprint": key[1] if key else None,
                    "proposed_by": str(actor) if actor else None,
                },
                static_summary=f"{proposal.country} · {proposal.sector.value} · {proposal.title}",
                static_details="\n\n".join(lines),
            )
        except WorkflowAlreadyStartedError as err:
            if key is not None and (replayed := await self._started_by(proposal, *key)) is not None:
                return replayed
            raise UserError(
                f"project {proposal.project_id} already exists ({wf_id}); a project id is used only once", "conflict"
            ) from err
        except RPCError as err:
            raise UserError(f"could not start project {proposal.project_id}: {err.message}") from err
        return Started(project_id=proposal.project_id, workflow_id=wf_id)

    async def _started_by(self, proposal: Proposal, key: str, print_: str) -> Started | None:
        """The first result when the existing project was started with this key: `replayed` for the same proposal,
        key_reused for another. None when another key (or none) started it."""
        try:
            memo = await (await self._handle(proposal.project_id).describe()).memo()
        except RPCError:
            return None
        if memo.get("idempotency_key") != key:
            return None
        if memo.get("fingerprint") not in (None, print_):
            raise UserError(
                f"Idempotency-Key {key} started project {proposal.project_id} with a different proposal; nothing "
                "was changed: a changed proposal needs a new project id and a new key",
                "key_reused",
            )
        return Started(project_id=proposal.project_id, workflow_id=workflow_id(proposal.project_id), replayed=True)

    async def decide(self, project_id: str, decision: Decision, actor: Identity | None = None) -> Receipt:
        """Sends the decision to the project as `actor` (attested by this edge). Its decision id is its idempotency
        key: the same decision again returns the first receipt; another decision under a used id, or the id reused
        for another project, is refused (key_reused) and changes nothing."""
        kind = catalogue.kind_of(decision)
        # Like the workflow's ledger: the basis (`based_on_sequence`) is when the decision applies, not what it
        # decides; a retry may carry a newer one and is the same request.
        print_ = fingerprint(
            f"POST /projects/{project_id}/{kind.route}", decision, exclude={"attestation", "based_on_sequence"}
        )
        caller = str(actor) if actor else ""
        resource = f"POST /projects/{project_id}/{kind.route}"
        try:
            async with self.keys.claim(caller, decision.decision_id, resource, print_):
                return await self._decide(project_id, decision, kind, actor)
        except KeyRefused as err:
            raise UserError(str(err), err.kind) from err

    async def _decide(
        self, project_id: str, decision: Decision, kind: catalogue.DecisionKind, actor: Identity | None
    ) -> Receipt:
        if actor is not None:
            if self.edge is None:
                raise UserError("this edge has no signing key to attest who decides", "unavailable")
            decision = self.edge.attest(actor, project_id, decision)
        handle = self._handle(project_id)
        try:
            receipt: Receipt = await handle.execute_update(
                kind.update, decision, id=update_id(decision), result_type=Receipt
            )
            return receipt
        except WorkflowUpdateFailedError as err:
            raise refusal(err) from err
        except RPCError as err:
            raise await self._explain_rpc(project_id, err) from err

    async def _explain_rpc(self, project_id: str, err: RPCError) -> UserError:
        if err.status is RPCStatusCode.NOT_FOUND:
            try:
                description = await self._handle(project_id).describe()
            except RPCError:
                return UserError(f"unknown project {project_id}: no workflow {workflow_id(project_id)}", "unknown")
            if description.status is not ExecutionStatus.RUNNING:
                try:
                    stage = (await self._handle(project_id).result()).stage
                except WorkflowFailureError:
                    return UserError(f"project {project_id}'s workflow failed; it takes no more decisions", "refused")
                return UserError(f"refused: {has_ended(project_id, stage).message}", "refused")
        return UserError(f"Temporal refused the request for project {project_id}: {err.message}", "unavailable")

    async def await_progress(self, project_id: str, wait: AwaitProgress, actor: Identity | None = None) -> Progress:
        """Waits (up to `wait.timeout_seconds` of workflow time) for the project to reach `wait.min_sequence` or one
        of `wait.stages` (or to end), through the workflow's `await_progress` Update: no status polling. An ended
        project answers from its result."""
        handle = self._handle(project_id)
        try:
            progress: Progress = await handle.execute_update(catalogue.AWAIT_PROGRESS, wait, result_type=Progress)
            return progress
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise await self._explain_rpc(project_id, err) from err
            try:
                status = await handle.result()
            except (RPCError, WorkflowFailureError):
                raise await self._explain_rpc(project_id, err) from err
            return Progress(stage=status.stage, sequence=status.sequence, details=status.details, reached=True)

    async def status(self, project_id: str) -> ProjectStatus:
        handle = self._handle(project_id)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                raise UserError(
                    f"unknown project {project_id}: no workflow {workflow_id(project_id)}", "unknown"
                ) from err
            raise UserError(f"cannot read project {project_id}: {err.message}", "unavailable") from err
        try:
            if description.status is ExecutionStatus.COMPLETED:
                return await handle.result()
            return await handle.query(ProjectWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
        except WorkflowFailureError as err:
            raise UserError(f"project {project_id}'s workflow failed: {err.cause}") from err
        except RPCError as err:
            raise UserError(
                f"project {project_id} did not answer ({err.message}); is a worker running (`alliance worker`)?",
                "unavailable",
            ) from err

    async def list(
        self,
        stage: str | None = None,
        country: str | None = None,
        sector: str | None = None,
        pending: str | None = None,
        limit: int = 200,
    ) -> list[ProjectRow]:
        clauses = ["WorkflowType = 'AllianceProject'"]
        for key, value in (
            (visibility.STAGE, stage),
            (visibility.COUNTRY, country and country.upper()),
            (visibility.SECTOR, sector),
            (visibility.PENDING, pending),
        ):
            if value:
                clauses.append(f"{key.name} = '{quote(value)}'")
        rows = []
        async for execution in self.client.list_workflows(" AND ".join(clauses), limit=limit):
            attrs = execution.typed_search_attributes
            rows.append(
                ProjectRow(
                    project_id=execution.id.removeprefix("project-"),
                    stage=attrs.get(visibility.STAGE) or "?",
                    country=attrs.get(visibility.COUNTRY) or "?",
                    sector=attrs.get(visibility.SECTOR) or "?",
                    pending=list(attrs.get(visibility.PENDING) or []),
                    contract_usd=attrs.get(visibility.CONTRACT_USD),
                    started=execution.start_time,
                    running=execution.status is ExecutionStatus.RUNNING,
                )
            )
        return rows


class ProjectRow(BaseModel):
    project_id: str
    stage: str
    country: str
    sector: str
    pending: list[str]
    contract_usd: float | None
    started: datetime
    running: bool


# The workflow's refusals (ApplicationError types) and the kinds of UserError they become.
REFUSAL_KINDS = {
    "NotPermitted": "forbidden",
    "PreconditionFailed": "precondition_failed",
    "DecisionIdReused": "key_reused",
    "DecisionRefused": "refused",
}


def refusal(err: WorkflowUpdateFailedError) -> UserError:
    """The project's refusal of a decision as one line; nothing was changed."""
    cause = err.cause
    if not isinstance(cause, ApplicationError):
        return UserError(f"refused: {cause}", "refused")
    kind = REFUSAL_KINDS.get(cause.type or "", "refused")
    if kind == "refused" and "was already used for a different decision" in cause.message:
        kind = "key_reused"  # the workflow's rule for a reused decision id, before it had a type of its own
    return UserError(f"refused: {cause.message}", kind)


def quote(value: str) -> str:
    """Escapes a value for a visibility query (the values come from people)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def update_id(decision: Decision) -> str:
    """Temporal's update id: the decision id plus a digest of the content. Temporal answers a repeated update id
    with the first outcome without asking the workflow, which is right for a retry but would hide a different
    decision sent under a used id; with the digest, that one reaches the validator and is refused."""
    digest = remit.decision_digest(decision)[:16]
    return f"{decision.decision_id}/{digest}"
