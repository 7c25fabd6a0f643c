"""The application service: what people do to projects, over a Temporal client. It is the one path into Temporal:
the API calls it, the CLI calls it (directly, or through the API), the demo calls it.

Every call names its actor (the person acting, from a verified token); the access check (`workflows/remit.py`) runs
here, once, for every edge. `None` is an in-process caller with no person behind it (the demo's set-up, tests):
no remit check, and a decision sent without an actor carries no attestation (projects that trust keys refuse it).

Every failure a person can cause (an invalid file, an unknown project, a refused decision, servers or workers not
running) becomes a `UserError` whose message is one sentence in the domain's words.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog
from pydantic import BaseModel, Field, ValidationError
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
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
from temporalio.exceptions import ApplicationError, TemporalError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from alliance.idempotency import KeyLedger, KeyRefused, fingerprint, used_differently
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.decisions import AwaitProgress, Decision, Institution, Progress, Receipt, ReleaseProgressWaits
from schemas.identity import Identity
from schemas.money import Money
from schemas.proposal import Proposal
from schemas.status import ProjectStatus, ReviewStatus, Stage
from schemas.timetable import ProjectInput, Timetable
from workflows import basis, catalogue, remit, visibility
from workflows.project import PUBLISHED_SEQUENCE_MEMO, ProjectWorkflow, workflow_id
from workflows.refusals import has_ended
from workflows.remit import Action

log = structlog.get_logger(__name__)

MAX_PROPOSAL_BYTES = 1_000_000
WORKERS_CHECK_SECONDS = 5.0
WORKERS_RECHECK_SECONDS = 0.5
# A worker long-polls for about a minute; one not seen for longer is gone.
POLLER_RECENT = timedelta(seconds=90)
PAGE_SIZE = 100
INBOX_READS_AT_ONCE = 16


class UserError(Exception):
    """A mistake or a refusal to show the person as one line; nothing was changed.

    `kind` says which, for the API's status codes: invalid, unauthenticated, forbidden, unknown, refused,
    conflict, key_reused (an idempotency key sent with another request), in_progress (its first request is still
    running), precondition_failed (the status the decision was based on has changed), unavailable."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


T = TypeVar("T")


async def within(seconds: float, update: Awaitable[T]) -> T:
    """Awaits an Update call for at most `seconds` in all, raising `WorkflowUpdateRPCTimeoutOrCancelledError` after.

    `rpc_timeout` bounds each RPC, not the call: while an Update is not yet accepted or completed the server answers
    a long poll before its deadline and the SDK asks again, so a wait longer than the server's long poll (about 20 s
    on the dev server) would otherwise never end while the project does not answer."""
    try:
        async with asyncio.timeout(max(seconds, 0.001)):
            return await update
    except TimeoutError as err:
        raise WorkflowUpdateRPCTimeoutOrCancelledError() from err


# A wait answered `reached` false before its time (released, or the run continuing as new) is sent again after this.
ASK_AGAIN_SECONDS = 0.1
# How often a wait for a project that takes no more waits reads its stage and published sequence from Temporal.
FOLLOW_SECONDS = 0.5


def reaches(wait: AwaitProgress, stage: Stage, sequence: int) -> bool:
    """Whether a project at `stage` and `sequence` has got where `wait` waits for: `min_sequence`, one of `stages`,
    or a final stage (a wait for neither waits for nothing), as the workflow's `await_progress` judges it."""
    minimum = 0 if wait.min_sequence is None and not wait.stages else wait.min_sequence
    return (minimum is not None and sequence >= minimum) or stage in wait.stages or stage.is_final


def spent_every_update(err: RPCError) -> bool:
    """Whether Temporal refused an Update because the run has taken as many as it may in all
    (`history.maxTotalUpdates`, 2,000 by default; set below what the workflow keeps for decisions)."""
    return "total number of distinct updates" in err.message


def holds_every_update(err: RPCError) -> bool:
    """Whether Temporal refused an Update because the workflow holds as many as it may (`history.maxInFlightUpdates`;
    the server answers RESOURCE_EXHAUSTED, after the SDK's own retries)."""
    return err.status is RPCStatusCode.RESOURCE_EXHAUSTED and "in-flight updates" in err.message


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
    _workers_seen_at: float = field(default=float("-inf"), repr=False)

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
        self._permit(actor, Action.propose)
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
            raise UserError(used_differently(key, f"{PROPOSALS} ({proposal.project_id})"), "key_reused")
        return Started(project_id=proposal.project_id, workflow_id=workflow_id(proposal.project_id), replayed=True)

    def _permit(self, actor: Identity | None, action: Action, institution: Institution | None = None) -> None:
        if actor is not None and (why := remit.refusal(actor, action, institution)) is not None:
            raise UserError(why, "forbidden")

    async def decide(
        self, project_id: str, decision: Decision, actor: Identity | None = None, wait: float | None = None
    ) -> Receipt:
        """Sends the decision to the project as `actor` (attested by this edge) and returns its receipt (the stage
        and sequence the decision left the project in). Its decision id is its idempotency key: the same decision
        again returns the first receipt; another decision under a used id, or the id reused for another project, is
        refused (key_reused) and changes nothing. With no worker to take it, it returns within `wait` seconds (default
        `decision_wait_seconds`) with an `unavailable` error naming the task queue."""
        kind = catalogue.kind_of(decision)
        self._permit(actor, kind.action, kind.institution_of(decision))
        # Like the workflow's ledger: the basis (`based_on_sequence`) is when the decision applies, not what it
        # decides; a retry may carry a newer one and is the same request.
        resource = f"POST /projects/{project_id}/{kind.route}"
        print_ = fingerprint(resource, decision, exclude={"attestation", "based_on_sequence"})
        caller = str(actor) if actor else ""
        try:
            # Another decision under a used id is refused by the project's own ledger, in its words.
            async with self.keys.claim(caller, decision.decision_id, resource, print_, same_resource=False):
                return await self._decide(project_id, decision, kind, actor, wait)
        except KeyRefused as err:
            raise UserError(str(err), err.kind) from err

    async def _decide(
        self,
        project_id: str,
        decision: Decision,
        kind: catalogue.DecisionKind,
        actor: Identity | None,
        wait: float | None,
    ) -> Receipt:
        if actor is not None:
            if self.edge is None:
                raise UserError("this edge has no signing key to attest who decides", "unavailable")
            decision = self.edge.attest(actor, project_id, decision)
        seconds = wait if wait is not None else self.settings.decision_wait_seconds
        await self._check_workers(project_id, decision, seconds)
        handle = self._handle(project_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        pause = 0.05
        not_reached: WorkflowUpdateFailedError | None = None
        released = False
        try:
            while True:
                try:
                    receipt: Receipt = await within(
                        deadline - loop.time(),
                        handle.execute_update(
                            kind.update,
                            decision,
                            id=update_id(decision),
                            result_type=Receipt,
                            rpc_timeout=timedelta(seconds=max(deadline - loop.time(), 1)),
                        ),
                    )
                    return receipt
                except WorkflowUpdateFailedError as err:
                    # Based on a status the project has not reached yet (read through a query, ahead of the workflow
                    # task): refused without a trace, so sent again until it gets there or the wait is over.
                    cause = err.cause
                    if not (isinstance(cause, ApplicationError) and cause.type == basis.NOT_REACHED):
                        raise
                    not_reached = err
                    if loop.time() + pause > deadline:
                        raise
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 1.0)
                except RPCError as err:
                    # Every Update slot of the project is held (waits whose callers vanished, on a server that
                    # allows fewer than the workflow's MAX_PROGRESS_WAITS): release the waits, send once more.
                    if released or not holds_every_update(err) or loop.time() >= deadline:
                        raise
                    released = True
                    await self._release_waits(project_id, [])
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            if not_reached is not None:
                # The wait for the basis ran out while the decision was sent once more: the last answer stands.
                raise refusal(not_reached) from err
            # A worker polled the task queue (`_check_workers`), but none answered in time: busy, or gone since.
            raise UserError(
                f"project {project_id} did not answer within {seconds:g} s (the workers of task queue "
                f"{self.settings.task_queue} are busy, or stopped since they last polled), so decision "
                f"{decision.decision_id} has no outcome yet: Temporal keeps it for the project, which takes or "
                "refuses it when a worker does (within the attestation's "
                f"{self.settings.attestation_seconds} s, else it is refused as expired); send the same decision "
                f"again (decision id {decision.decision_id}) to learn its outcome: it is never taken twice",
                "unavailable",
            ) from err
        except WorkflowUpdateFailedError as err:
            raise refusal(err) from err
        except RPCError as err:
            raise await self._explain_rpc(project_id, err) from err

    async def _release_waits(self, project_id: str, wait_ids: list[str]) -> None:
        """Ends the project's `await_progress` waits named (all when none is), best effort: a project that cannot be
        signalled (ended, unknown, Temporal unreachable) has no wait to end, or the next call says what is wrong."""
        try:
            await self._handle(project_id).signal(
                catalogue.RELEASE_PROGRESS_WAITS, ReleaseProgressWaits(wait_ids=wait_ids)
            )
        except (RPCError, TemporalError):
            log.info("progress_waits_not_released", project=project_id, waits=wait_ids or "all")

    async def _check_workers(self, project_id: str, decision: Decision | None, seconds: float) -> None:
        """Waits up to `seconds` for a worker to poll the task queue (one starting up, say), and refuses to send
        when none does (nothing was sent). Asked of the server at most every WORKERS_CHECK_SECONDS per process once
        a worker was seen, so a burst of decisions costs one call."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._workers_seen_at < WORKERS_CHECK_SECONDS:
            return
        deadline = loop.time() + seconds
        while True:
            try:
                answer = await self.client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.client.namespace,
                        task_queue=TaskQueue(name=self.settings.task_queue),
                        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                    ),
                    timeout=timedelta(seconds=10),
                )
            except RPCError:
                return  # the update itself reports what is wrong with Temporal
            now = datetime.now(UTC)
            if any(now - p.last_access_time.ToDatetime(tzinfo=UTC) < POLLER_RECENT for p in answer.pollers):
                self._workers_seen_at = loop.time()
                return
            if loop.time() + WORKERS_RECHECK_SECONDS > deadline:
                break
            await asyncio.sleep(WORKERS_RECHECK_SECONDS)
        what = f"decision {decision.decision_id} was not sent to" if decision else "nothing was asked of"
        again = "send it again" if decision else "ask again"
        raise UserError(
            f"no worker polled task queue {self.settings.task_queue} within {seconds:g} s, so {what} project "
            f"{project_id} and nothing changed: start a worker (`alliance worker`) and {again}",
            "unavailable",
        )

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
        if err.status is RPCStatusCode.INVALID_ARGUMENT:
            return UserError(f"Temporal refused the request for project {project_id}: {err.message}", "invalid")
        return UserError(f"Temporal refused the request for project {project_id}: {err.message}", "unavailable")

    async def await_progress(self, project_id: str, wait: AwaitProgress, actor: Identity | None = None) -> Progress:
        """Waits up to `wait.timeout_seconds` for the project to reach `wait.min_sequence` or one of `wait.stages`
        (or to end), through the workflow's `await_progress` Update: no status polling. At the timeout it answers
        where the project stands, `reached` false (one status read), and releases the wait in the workflow, so that
        a wait given up never holds one of the project's Updates. A wait answered early without the progress (the
        project's waits were released, or its run continues as new) is sent again for the time left; a project
        whose waits are all held by callers that vanished has them released; one that takes no more waits (it keeps
        its Updates for decisions: `workflows.limits.check_wait`) is followed through Temporal's description of it
        (`_follow`). An ended project answers from its result."""
        self._permit(actor, Action.read)
        await self._check_workers(project_id, None, self.settings.decision_wait_seconds)
        handle = self._handle(project_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait.timeout_seconds
        released = False
        while True:
            wait_id = f"progress-{uuid.uuid4().hex}"
            try:
                progress: Progress = await within(
                    deadline - loop.time(),
                    handle.execute_update(
                        catalogue.AWAIT_PROGRESS,
                        wait,
                        id=wait_id,
                        result_type=Progress,
                        rpc_timeout=timedelta(seconds=max(deadline - loop.time(), 1)),
                    ),
                )
                if progress.reached or loop.time() + ASK_AGAIN_SECONDS >= deadline:
                    return progress
                # Released (another caller found the project's waits full) or the run continues as new: ask again.
                await asyncio.sleep(ASK_AGAIN_SECONDS)
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                # Given up: the wait must not go on holding one of the project's Updates.
                await self._release_waits(project_id, [wait_id])
                status = await self.status(project_id, actor)
                return Progress(stage=status.stage, sequence=status.sequence, details=status.details, reached=False)
            except WorkflowUpdateFailedError as err:
                cause = err.cause
                if isinstance(cause, ApplicationError) and cause.type == catalogue.WAITS_SPENT:
                    return await self._follow(project_id, wait, deadline, actor)
                if released or not (isinstance(cause, ApplicationError) and cause.type == catalogue.WAITS_FULL):
                    raise refusal(err) from err
                # Every wait the project takes is open (callers that vanished without releasing theirs): end them;
                # callers still waiting ask again, as this one does.
                released = True
                await self._release_waits(project_id, [])
                await asyncio.sleep(ASK_AGAIN_SECONDS)
            except RPCError as err:
                if spent_every_update(err):
                    return await self._follow(project_id, wait, deadline, actor)
                if holds_every_update(err) and not released:
                    released = True
                    await self._release_waits(project_id, [])
                    await asyncio.sleep(ASK_AGAIN_SECONDS)
                    continue
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise await self._explain_rpc(project_id, err) from err
                try:
                    status = await handle.result()
                except (RPCError, WorkflowFailureError):
                    raise await self._explain_rpc(project_id, err) from err
                return Progress(stage=status.stage, sequence=status.sequence, details=status.details, reached=True)

    async def _follow(self, project_id: str, wait: AwaitProgress, deadline: float, actor: Identity | None) -> Progress:
        """A wait for a project that takes no more waits (`workflows.limits.check_wait`): reads from Temporal, every
        FOLLOW_SECONDS until the loop time `deadline`, the project's stage (its `ProjectStage` search attribute) and
        how far its events are on Kafka (its `published_sequence` memo), which asks nothing of its worker and adds
        nothing to its history; then answers from one status read."""
        handle = self._handle(project_id)
        loop = asyncio.get_running_loop()
        while True:
            try:
                description = await handle.describe()
            except RPCError as err:
                raise await self._explain_rpc(project_id, err) from err
            if description.status is not ExecutionStatus.RUNNING:
                break
            stage = description.typed_search_attributes.get(visibility.STAGE)
            published = await description.memo_value(PUBLISHED_SEQUENCE_MEMO, 0, type_hint=int)
            if stage is not None and reaches(wait, Stage(stage), published):
                break
            if loop.time() + FOLLOW_SECONDS >= deadline:
                break
            await asyncio.sleep(FOLLOW_SECONDS)
        status = await self.status(project_id, actor)
        reached = reaches(wait, status.stage, status.sequence)
        return Progress(stage=status.stage, sequence=status.sequence, details=status.details, reached=reached)

    async def status(self, project_id: str, actor: Identity | None = None) -> ProjectStatus:
        """The project's status (a query to its worker, or its result once it has ended); without loan terms for an
        actor outside the borrower and the institutions. A status that cannot be read is an `unavailable` error."""
        self._permit(actor, Action.read)
        handle = self._handle(project_id)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                raise UserError(
                    f"unknown project {project_id}: no workflow {workflow_id(project_id)}", "unknown"
                ) from err
            raise UserError(f"cannot read project {project_id}: {err.message}", "unavailable") from err
        seconds = self.settings.decision_wait_seconds
        asked = time.monotonic()
        try:
            if description.status is ExecutionStatus.COMPLETED:
                status = await handle.result()
            else:
                # Without a worker the query would wait out its deadline and fail as a transport error ("h2
                # protocol error"): a task queue no worker polls is named, in words, within the same wait.
                await self._check_workers(project_id, None, seconds)
                asked = time.monotonic()
                status = await handle.query(ProjectWorkflow.status, rpc_timeout=timedelta(seconds=seconds))
        except WorkflowFailureError as err:
            raise UserError(f"project {project_id}'s workflow failed: {err.cause}", "unavailable") from err
        except RPCError as err:
            if err.status is RPCStatusCode.DEADLINE_EXCEEDED or time.monotonic() - asked >= seconds * 0.95:
                # A worker polled a moment ago (`_check_workers`) but none answered before the deadline.
                raise UserError(
                    f"cannot read the status of project {project_id}: it did not answer within "
                    f"{seconds:g} s (the workers of task queue {self.settings.task_queue} "
                    "are busy, or stopped since they last polled)",
                    "unavailable",
                ) from err
            raise self._unreadable(project_id, err) from err
        except (WorkflowQueryFailedError, TemporalError) as err:
            raise self._unreadable(project_id, err) from err
        if actor is not None and remit.refusal(actor, Action.read_terms) is not None:
            status = redacted(status)
        return status

    def _unreadable(self, project_id: str, err: Exception) -> UserError:
        # A status too large to send (Blob data size exceeds limit), a query the worker failed.
        message = (
            f"cannot read the status of project {project_id}: {getattr(err, 'message', None) or err} (is a "
            f"worker running on task queue {self.settings.task_queue}? `alliance worker` starts one)"
        )
        return UserError(message, "unavailable")

    async def page(
        self,
        actor: Identity | None = None,
        *,
        stage: str | None = None,
        country: str | None = None,
        sector: str | None = None,
        pending: str | None = None,
        page_size: int = PAGE_SIZE,
        page_token: str | None = None,
    ) -> ProjectPage:
        """One page of projects from Temporal visibility (newest first), with the total that match the filters and
        the token of the next page (None on the last)."""
        self._permit(actor, Action.read)
        query = visibility_query(stage, country, sector, pending)
        listing = self.client.list_workflows(
            query, page_size=page_size, next_page_token=_temporal_token(query, page_token)
        )
        try:
            await listing.fetch_next_page()
            total = (await self.client.count_workflows(query)).count
        except RPCError as err:
            if page_token and err.status is RPCStatusCode.INVALID_ARGUMENT:
                raise UserError("page_token: it is not a token of this listing; start from the first page") from err
            raise UserError(f"cannot list projects: {err.message}", "unavailable") from err
        rows = [project_row(execution) for execution in listing.current_page or []]
        token = _page_token(query, listing.next_page_token) if listing.next_page_token and rows else None
        return ProjectPage(projects=rows, total=total, next_page_token=token)

    async def list(
        self,
        stage: str | None = None,
        country: str | None = None,
        sector: str | None = None,
        pending: str | None = None,
        actor: Identity | None = None,
    ) -> list[ProjectRow]:
        """Every project that matches the filters (all pages)."""
        rows: list[ProjectRow] = []
        token: str | None = None
        while True:
            page = await self.page(
                actor, stage=stage, country=country, sector=sector, pending=pending, page_size=1000, page_token=token
            )
            rows.extend(page.projects)
            if (token := page.next_page_token) is None:
                return rows

    async def inbox(
        self,
        institution: Institution,
        actor: Identity | None = None,
        page_size: int = PAGE_SIZE,
        page_token: str | None = None,
    ) -> InboxPage:
        """The reviews open at `institution`, nearest deadline first across all pages (the token carries the
        last deadline and project shown). Every project waiting for the institution is read; one that does not
        answer is listed in `unanswered`, never silently left out."""
        self._permit(actor, Action.inbox, institution)
        rows = [row for row in await self.list(pending=institution.value) if row.running]
        gate = asyncio.Semaphore(INBOX_READS_AT_ONCE)

        async def read(project_id: str) -> ProjectStatus:
            async with gate:
                return await self.status(project_id)

        answers = await asyncio.gather(*(read(row.project_id) for row in rows), return_exceptions=True)
        items: list[InboxItem] = []
        unanswered: list[str] = []
        for row, status in zip(rows, answers, strict=True):
            if not isinstance(status, ProjectStatus):
                log.warning("inbox_project_unanswered", project_id=row.project_id, error=str(status))
                unanswered.append(row.project_id)
                continue
            items.extend(inbox_items(status, institution))
        items.sort(key=lambda item: (item.deadline, item.project_id))
        after = _inbox_after(page_token)
        items_after = [i for i in items if after is None or (i.deadline, i.project_id) > after]
        shown = items_after[:page_size]
        more = len(items_after) > page_size
        token = _inbox_token(shown[-1].deadline, shown[-1].project_id) if more and shown else None
        return InboxPage(items=shown, total=len(items), next_page_token=token, unanswered=sorted(unanswered))


class ProjectRow(BaseModel):
    project_id: str
    stage: str
    country: str
    sector: str
    pending: list[str]
    contract_usd: Decimal | None = Field(
        description="The contract in USD at the screening's rates, to the cent (a decimal string, like every amount)"
    )
    started: datetime
    running: bool


class ProjectPage(BaseModel):
    """A page of projects: `total` match the filters; `next_page_token` fetches the next page (None: last page)."""

    projects: list[ProjectRow]
    total: int = Field(description="How many projects match the filters, over all pages")
    next_page_token: str | None = Field(default=None, description="Pass as `page_token` for the next page")


class InboxItem(BaseModel):
    project_id: str
    title: str
    country: str
    institution: Institution
    requested: Money
    deadline: datetime = Field(description="When the review expires (ISO 8601)")
    status: ReviewStatus
    open_information_request: str | None = None


class InboxPage(BaseModel):
    """Open reviews at one institution, nearest deadline first across pages."""

    items: list[InboxItem]
    total: int = Field(description="How many open reviews the institution has, over all pages")
    next_page_token: str | None = Field(default=None, description="Pass as `page_token` for the next page")
    unanswered: list[str] = Field(
        default_factory=list,
        description="Projects waiting for the institution whose status could not be read now (not in `items`)",
    )


def inbox_items(status: ProjectStatus, institution: Institution) -> list[InboxItem]:
    items = []
    for review in status.reviews:
        if review.institution is institution and review.status.is_open:
            open_request = next((r.request_id for r in review.information_requests if r.answer is None), None)
            items.append(
                InboxItem(
                    project_id=status.project_id,
                    title=status.title,
                    country=status.country,
                    institution=institution,
                    requested=review.requested,
                    deadline=review.deadline,
                    status=review.status,
                    open_information_request=open_request,
                )
            )
    return items


def redacted(status: ProjectStatus) -> ProjectStatus:
    """The status without loan terms, for readers outside the borrower and the institutions."""
    reviews = [review.model_copy(update={"terms": None}) for review in status.reviews]
    return status.model_copy(update={"reviews": reviews})


def project_row(execution: WorkflowExecution) -> ProjectRow:
    attrs = execution.typed_search_attributes
    return ProjectRow(
        project_id=execution.id.removeprefix("project-"),
        stage=attrs.get(visibility.STAGE) or "?",
        country=attrs.get(visibility.COUNTRY) or "?",
        sector=attrs.get(visibility.SECTOR) or "?",
        pending=list(attrs.get(visibility.PENDING) or []),
        contract_usd=usd(attrs.get(visibility.CONTRACT_USD)),
        started=execution.start_time,
        running=execution.status is ExecutionStatus.RUNNING,
    )


def usd(value: float | None) -> Decimal | None:
    """A USD amount kept as a search attribute (a double) back to cents: its shortest repr is what was stored."""
    return None if value is None else Decimal(repr(value)).quantize(Decimal("0.01"))


def visibility_query(stage: str | None, country: str | None, sector: str | None, pending: str | None) -> str:
    clauses = ["WorkflowType = 'AllianceProject'"]
    for key, value in (
        (visibility.STAGE, stage),
        (visibility.COUNTRY, country and country.upper()),
        (visibility.SECTOR, sector),
        (visibility.PENDING, pending),
    ):
        if value:
            clauses.append(f"{key.name} = '{quote(value)}'")
    return " AND ".join(clauses)


def _query_tag(query: str) -> bytes:
    return hashlib.sha256(query.encode()).digest()[:8]


def _page_token(query: str, temporal_token: bytes) -> str:
    """Temporal's page token, tagged with the listing's filters so that it is not used with others."""
    return base64.urlsafe_b64encode(_query_tag(query) + temporal_token).decode().rstrip("=")


def _temporal_token(query: str, token: str | None) -> bytes | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError as err:
        raise UserError("page_token: it is not a page token of this API") from err
    if raw[:8] != _query_tag(query) or len(raw) <= 8:
        raise UserError("page_token: it belongs to a listing with other filters; start from the first page")
    return raw[8:]


def _inbox_token(deadline: datetime, project_id: str) -> str:
    return base64.urlsafe_b64encode(f"{deadline.isoformat()}|{project_id}".encode()).decode().rstrip("=")


def _inbox_after(token: str | None) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        moment, project_id = text.split("|", 1)
        return datetime.fromisoformat(moment), project_id
    except ValueError as err:
        raise UserError("page_token: it is not a page token of this inbox") from err


# The workflow's refusals (ApplicationError types) and the kinds of UserError they become.
REFUSAL_KINDS = {
    "NotPermitted": "forbidden",
    "PreconditionFailed": "precondition_failed",
    "BasisNotReached": "precondition_failed",
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


class Operations(Protocol):
    """What one person can do to projects, whichever way their edge reaches Temporal: the service bound to them
    (`Acting`), or the API on their behalf (`alliance.api_client.ApiProjects`). The CLI is written against this."""

    async def propose(self, proposal: Proposal) -> Started: ...
    async def decide(self, project_id: str, decision: Decision, wait: float | None = None) -> Receipt: ...
    async def status(self, project_id: str) -> ProjectStatus: ...
    async def await_progress(self, project_id: str, wait: AwaitProgress) -> Progress: ...
    async def page(self, filters: Filters, page_size: int, page_token: str | None) -> ProjectPage: ...
    async def inbox(self, institution: Institution, page_size: int, page_token: str | None) -> InboxPage: ...


@dataclass(frozen=True)
class Filters:
    stage: str | None = None
    country: str | None = None
    sector: str | None = None
    pending: str | None = None


@dataclass(frozen=True)
class Acting:
    """The service as one person uses it: every call goes through `Projects` with that person as the actor."""

    projects: Projects
    actor: Identity

    async def propose(self, proposal: Proposal) -> Started:
        # The project id is the proposal's idempotency key: the same file again changes nothing and says so.
        return await self.projects.propose(proposal, actor=self.actor, idempotency_key=proposal.project_id)

    async def decide(self, project_id: str, decision: Decision, wait: float | None = None) -> Receipt:
        return await self.projects.decide(project_id, decision, self.actor, wait=wait)

    async def status(self, project_id: str) -> ProjectStatus:
        return await self.projects.status(project_id, self.actor)

    async def await_progress(self, project_id: str, wait: AwaitProgress) -> Progress:
        return await self.projects.await_progress(project_id, wait, self.actor)

    async def page(self, filters: Filters, page_size: int, page_token: str | None) -> ProjectPage:
        return await self.projects.page(
            self.actor,
            stage=filters.stage,
            country=filters.country,
            sector=filters.sector,
            pending=filters.pending,
            page_size=page_size,
            page_token=page_token,
        )

    async def inbox(self, institution: Institution, page_size: int, page_token: str | None) -> InboxPage:
        return await self.projects.inbox(institution, self.actor, page_size=page_size, page_token=page_token)
