"""What staff do to projects, over a Temporal client: the one place the CLI (and later the API) goes through.

Every failure a person can cause (an invalid file, an unknown project, a refused decision, servers not running)
becomes a `UserError` whose message is one sentence in the domain's words.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
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

from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.decisions import (
    Approve,
    Cancel,
    CompleteMilestone,
    Decision,
    ProvideInformation,
    Receipt,
    Reject,
    RequestInformation,
    SatisfyCondition,
)
from schemas.identity import Identity
from schemas.proposal import Proposal
from schemas.status import ProjectStatus
from schemas.timetable import ProjectInput, Timetable
from workflows import remit, visibility
from workflows.project import ProjectWorkflow, workflow_id

MAX_PROPOSAL_BYTES = 1_000_000
# A project whose worker is gone should say so in seconds, not hang the caller.
QUERY_TIMEOUT = timedelta(seconds=30)


class UserError(Exception):
    """A mistake or a refusal to show the person as one line; nothing was changed.

    `kind` says which, for the API's status codes: invalid, unauthenticated, forbidden, unknown, refused,
    conflict, unavailable."""

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


@dataclass
class Projects:
    client: Client
    settings: Settings
    edge: Edge | None = None

    def _handle(self, project_id: str) -> WorkflowHandle[ProjectWorkflow, ProjectStatus]:
        return self.client.get_workflow_handle_for(ProjectWorkflow.run, workflow_id(project_id))

    async def propose(
        self,
        proposal: Proposal,
        timetable: Timetable | None = None,
        actor: Identity | None = None,
        idempotency_key: str | None = None,
    ) -> str:
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
                memo={"idempotency_key": idempotency_key, "proposed_by": str(actor) if actor else None},
                static_summary=f"{proposal.country} · {proposal.sector.value} · {proposal.title}",
                static_details="\n\n".join(lines),
            )
        except WorkflowAlreadyStartedError as err:
            raise UserError(
                f"project {proposal.project_id} already exists ({wf_id}); a project id is used only once", "conflict"
            ) from err
        except RPCError as err:
            raise UserError(f"could not start project {proposal.project_id}: {err.message}") from err
        return wf_id

    async def started_with(self, project_id: str, idempotency_key: str) -> bool:
        """Whether the project was started by a request with this idempotency key."""
        try:
            description = await self._handle(project_id).describe()
        except RPCError:
            return False
        return bool((await description.memo()).get("idempotency_key") == idempotency_key)

    async def decide(self, project_id: str, decision: Decision, actor: Identity | None = None) -> Receipt:
        update: Any = {
            Approve: ProjectWorkflow.approve,
            Reject: ProjectWorkflow.reject,
            RequestInformation: ProjectWorkflow.request_information,
            ProvideInformation: ProjectWorkflow.provide_information,
            SatisfyCondition: ProjectWorkflow.satisfy_condition,
            CompleteMilestone: ProjectWorkflow.complete_milestone,
            Cancel: ProjectWorkflow.cancel,
        }[type(decision)]
        if actor is not None:
            if self.edge is None:
                raise UserError("this edge has no signing key to attest who decides", "unavailable")
            decision = self.edge.attest(actor, project_id, decision)
        handle = self._handle(project_id)
        try:
            result: Receipt = await handle.execute_update(update, decision, id=update_id(decision))
            return result
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError):
                kind = "forbidden" if cause.type == "NotPermitted" else "refused"
                raise UserError(f"refused: {cause.message}", kind) from err
            raise UserError(f"refused: {cause}", "refused") from err
        except RPCError as err:
            raise await self._explain_rpc(project_id, err) from err

    async def _explain_rpc(self, project_id: str, err: RPCError) -> UserError:
        if err.status is RPCStatusCode.NOT_FOUND:
            try:
                description = await self._handle(project_id).describe()
            except RPCError:
                return UserError(f"unknown project {project_id}: no workflow {workflow_id(project_id)}", "unknown")
            if description.status is not ExecutionStatus.RUNNING:
                stage = await self._final_stage(project_id)
                return UserError(f"project {project_id} has ended ({stage}); it takes no more decisions", "refused")
        return UserError(f"Temporal refused the request for project {project_id}: {err.message}", "unavailable")

    async def _final_stage(self, project_id: str) -> str:
        try:
            status = await self._handle(project_id).result()
            return status.stage.value
        except WorkflowFailureError:
            return "failed"

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


def quote(value: str) -> str:
    """Escapes a value for a visibility query (the values come from people)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def update_id(decision: Decision) -> str:
    """Temporal's update id: the decision id plus a digest of the content. Temporal answers a repeated update id
    with the first outcome without asking the workflow, which is right for a retry but would hide a different
    decision sent under a used id; with the digest, that one reaches the validator and is refused."""
    digest = remit.decision_digest(decision)[:16]
    return f"{decision.decision_id}/{digest}"
