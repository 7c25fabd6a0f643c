"""`alliance`: the staff command line.

A person's mistake prints one line (`error: ...`) and exits 1; only a bug prints a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import jwt
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from alliance import logs, tracing
from alliance.api_client import ApiProjects
from alliance.connections import connect_temporal
from alliance.projects import ProjectRow, Projects, Started, UserError, explain_validation, load_proposal
from alliance.settings import Settings, get_settings
from alliance.tokens import CredentialError, Edge
from schemas.decisions import (
    AcceptanceCertificate,
    Approve,
    Cancel,
    CompleteMilestone,
    Decision,
    Institution,
    ProvideInformation,
    Receipt,
    Reject,
    RequestInformation,
    SatisfyCondition,
    Terms,
)
from schemas.identity import Identity, Role
from schemas.money import Money
from schemas.proposal import Proposal
from schemas.status import Milestone, ProjectStatus

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Alliance Workflows: projects on Temporal, events on Kafka."
)
events_app = typer.Typer(no_args_is_help=True, help="Read the status events on Kafka.")
app.add_typer(events_app, name="events")

out = Console()
ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "deploy" / "local" / "services.sh"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Operations(Protocol):
    async def propose(self, proposal: Proposal) -> Started: ...
    async def decide(self, project_id: str, decision: Decision) -> Receipt: ...
    async def status(self, project_id: str) -> ProjectStatus: ...
    async def list(self, **filters: str | None) -> list[ProjectRow]: ...


@dataclass
class Caller:
    """Who runs this command and where it goes: directly to Temporal, or through the API (`--api`)."""

    token: str | None = None
    api: str | None = None

    def person(self) -> str | None:
        """The person the token names, for the decision's name fields (the edge verifies the token itself)."""
        if not self.token:
            return None
        try:
            return str(jwt.decode(self.token, options={"verify_signature": False}).get("sub")) or None
        except jwt.PyJWTError:
            return None


CALLER = Caller()


@dataclass
class Direct:
    """Straight to Temporal; decisions are attested with this machine's signing key for the token's identity."""

    projects: Projects
    token: str | None

    def _identity(self) -> Identity:
        assert self.projects.edge is not None
        try:
            return self.projects.edge.identify(self.token)
        except CredentialError as err:
            raise UserError(f"{err} (pass --token or set ALLIANCE_TOKEN)", "unauthenticated") from err

    async def propose(self, proposal: Proposal) -> Started:
        # The project id is the proposal's idempotency key: the same file again changes nothing and says so.
        return await self.projects.propose(proposal, actor=self._identity(), idempotency_key=proposal.project_id)

    async def decide(self, project_id: str, decision: Decision) -> Receipt:
        return await self.projects.decide(project_id, decision, self._identity())

    async def status(self, project_id: str) -> ProjectStatus:
        return await self.projects.status(project_id)

    async def list(self, **filters: str | None) -> list[ProjectRow]:
        return await self.projects.list(
            stage=filters.get("stage"),
            country=filters.get("country"),
            sector=filters.get("sector"),
            pending=filters.get("pending"),
        )


async def _projects(settings: Settings) -> Projects:
    try:
        client = await connect_temporal(settings)
    except RuntimeError as err:
        raise UserError(
            f"cannot reach the Temporal server at {settings.temporal_address} ({err}); "
            "start it with `alliance dev` or `deploy/local/services.sh start`"
        ) from err
    return Projects(client, settings, Edge(settings))


def _with_projects(action: Callable[[Projects], Awaitable[T]]) -> T:
    async def go() -> T:
        return await action(await _projects(get_settings()))

    return run(go())


def _act(action: Callable[[Operations], Awaitable[T]]) -> T:
    async def go() -> T:
        operations: Operations
        if CALLER.api:
            operations = ApiProjects(CALLER.api, CALLER.token)
        else:
            operations = Direct(await _projects(get_settings()), CALLER.token)
        return await action(operations)

    return run(go())


def _me(named: str | None, option: str) -> str:
    person = named or CALLER.person()
    if not person:
        raise UserError(f"say who you are: {option} NAME, or a token (--token / ALLIANCE_TOKEN)", "unauthenticated")
    return person


def _decision(model: type[Decision], **fields: Any) -> Decision:
    fields["decision_id"] = fields.get("decision_id") or f"cli-{uuid.uuid4()}"
    try:
        return model.model_validate(fields)
    except ValidationError as err:
        raise UserError(explain_validation(err, "decision")) from err


def _submit(project_id: str, decision: Decision) -> None:
    receipt = _act(lambda operations: operations.decide(project_id, decision))
    out.print(f"{project_id}: {receipt.message} (event #{receipt.event_sequence}, decision id {receipt.decision_id})")


def _money(text: str) -> Money:
    """'USD 120000000' or '120000000 USD' or '120,000,000.00 USD'."""
    parts = text.replace(",", "").split()
    if len(parts) != 2:
        raise UserError(f"amount '{text}': write the currency and the amount, e.g. 'USD 120000000'")
    currency, number = (parts[0], parts[1]) if parts[0].isalpha() else (parts[1], parts[0])
    try:
        return Money(amount=Decimal(number), currency=currency)
    except (InvalidOperation, ValueError) as err:
        detail = explain_validation(err, "amount") if isinstance(err, ValidationError) else f"'{number}' is no number"
        raise UserError(f"amount '{text}': {detail}") from err


DecisionIdOpt = Annotated[
    str | None, typer.Option("--decision-id", help="Your id for this decision; re-sending it changes nothing")
]
ProjectArg = Annotated[str, typer.Argument(help="Project id, e.g. zm-lusaka-smart-city-2")]


@app.callback()
def caller(
    token: Annotated[
        str | None, typer.Option(envvar="ALLIANCE_TOKEN", help="Your bearer token (alliance token issue ...)")
    ] = None,
    api: Annotated[
        str | None, typer.Option(envvar="ALLIANCE_API_URL", help="Act through the API at this URL, not on Temporal")
    ] = None,
) -> None:
    """Alliance Workflows: projects on Temporal, events on Kafka."""
    CALLER.token, CALLER.api = token, api


token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens for local use.")
app.add_typer(token_app, name="token")


@token_app.command("issue")
def token_issue(
    person: Annotated[str, typer.Option(help="e.g. 'Liu Yang'")],
    role: Annotated[Role, typer.Option(help="What the person is")],
    org: Annotated[str, typer.Option(help="inspur; cdb, exim or sinosure; cisco, ibm, ...; the borrower's name")],
    minutes: Annotated[int, typer.Option(min=1, max=60 * 24 * 30, help="How long it is valid")] = 60 * 8,
) -> None:
    """Issue a token signed with this machine's signing key (created on first use)."""
    try:
        identity = Identity(person=person, organisation=org, role=role)
    except ValidationError as err:
        raise UserError(explain_validation(err, "identity")) from err
    sys.stdout.write(Edge(get_settings()).issue(identity, minutes) + "\n")


@app.command()
def api() -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    import uvicorn

    from alliance.api import create_app

    settings = get_settings()
    logs.configure(settings)
    tracing.configure(settings, "alliance-api")
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None)


# ------------------------------------------------------------------ running


@app.command()
def worker() -> None:
    """Run a worker: the project workflows and their activities."""
    from alliance.worker import run_worker

    settings = get_settings()
    logs.configure(settings)
    tracing.configure(settings, "alliance-worker")
    _run_until_interrupted(lambda stop: run_worker(settings, stop))


@app.command()
def dev(
    demo: Annotated[bool, typer.Option(help="Load the example projects once the worker runs")] = True,
    headless: Annotated[bool, typer.Option(help="Run the Temporal dev server without its Web UI")] = False,
) -> None:
    """Start the local Temporal dev server (with its Web UI), the Kafka broker, a worker, the API and the stream
    worker; Ctrl-C stops all."""
    from alliance.demo import run_demo
    from alliance.worker import run_worker

    settings = get_settings()
    logs.configure(settings)
    tracing.configure(settings, "alliance-worker")
    env = {**os.environ, "ALLIANCE_TEMPORAL_HEADLESS": "1" if headless else "0"}
    if subprocess.run(["bash", str(SERVICES), "start"], env=env).returncode != 0:
        raise UserError("the local services did not start; see the lines above")
    alliance = str(Path(sys.executable).parent / "alliance")
    helpers = [subprocess.Popen([alliance, "api"]), subprocess.Popen([alliance, "streams"])]
    try:

        async def main(stop: asyncio.Event) -> None:
            worker_task = asyncio.create_task(run_worker(settings, stop))
            if demo:
                projects = await _projects(settings)
                for line in await run_demo(projects):
                    out.print(line)
            out.print(
                "[bold]Ready.[/] Temporal Web UI: http://127.0.0.1:8233 · API: "
                f"http://{settings.api_host}:{settings.api_port}/docs · portfolio: `alliance portfolio` · Kafka: "
                f"{settings.kafka_bootstrap_servers}, topic {settings.status_topic}. Ctrl-C stops everything."
            )
            await worker_task

        _run_until_interrupted(main)
    finally:
        for helper in helpers:
            helper.terminate()
        for helper in helpers:
            try:
                helper.wait(timeout=20)
            except subprocess.TimeoutExpired:
                helper.kill()
        subprocess.run(["bash", str(SERVICES), "stop"])


def _run_until_interrupted(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    run(go())


@app.command()
def streams() -> None:
    """Run the stream worker: project views, portfolio, alerts and the deduplicated feed (HTTP on :6066)."""
    from faust import Worker

    from alliance.connections import TopicMismatch, ensure_topics
    from streams.app import create_app

    settings = get_settings()
    logs.configure(settings)
    try:
        run(ensure_topics(settings, streams=True))
    except TopicMismatch as err:
        raise UserError(str(err), "invalid") from err
    Worker(create_app(settings).app, loglevel=settings.log_level.lower()).execute_from_commandline()


@app.command()
def portfolio(
    dimension: Annotated[str, typer.Argument(help="country, sector or institution")] = "country",
) -> None:
    """The portfolio from the stream worker, as a table (amounts in USD at the configured rates)."""
    import httpx

    settings = get_settings()
    url = f"http://{settings.streams_web_host}:{settings.streams_web_port}/portfolio/{dimension}/"
    try:
        response = httpx.get(url, timeout=10)
    except httpx.HTTPError as err:
        raise UserError(
            f"cannot reach the stream worker at {url}: is `alliance streams` running?", "unavailable"
        ) from err
    if response.status_code != 200:
        raise UserError(response.json().get("message", response.text), "invalid")
    body = response.json()
    table = Table(title=f"Portfolio by {dimension} (USD at rates of {body['rate_date']})")
    for col in (dimension, "projects by stage", "requested", "approved", "released", "disbursed"):
        table.add_column(col)
    for value, totals in sorted(body[dimension].items()):
        stages = ", ".join(f"{stage} {n}" for stage, n in sorted(totals["projects_by_stage"].items()))
        table.add_row(
            value,
            stages,
            *(f"{Decimal(totals[k]):,.0f}" for k in ("requested_usd", "approved_usd", "released_usd", "disbursed_usd")),
        )
    out.print(table)


@app.command()
def demo() -> None:
    """Drive the example projects through every path, so the Web UI shows projects in each stage."""
    from alliance.demo import run_demo

    for line in _with_projects(run_demo):
        out.print(line)


# ------------------------------------------------------------------ acting on projects


@app.command()
def propose(file: Annotated[Path, typer.Argument(help="Proposal as JSON (see examples/)")]) -> None:
    """Start a project from a proposal file."""
    proposal = load_proposal(file)
    started = _act(lambda operations: operations.propose(proposal))
    if started.replayed:
        out.print(
            f"Project {proposal.project_id} was already started by this same proposal (workflow "
            f"{started.workflow_id}); nothing changed."
        )
    else:
        out.print(f"Started project {proposal.project_id} (workflow {started.workflow_id}); screening runs now.")


@app.command()
def decide(
    project: ProjectArg,
    institution: Annotated[Institution, typer.Option(help="Whose decision this is")],
    officer: Annotated[str | None, typer.Option(help="The officer deciding (default: the token's person)")] = None,
    approve: Annotated[str | None, typer.Option(help="Approve this amount, e.g. 'USD 120000000'")] = None,
    reject: Annotated[str | None, typer.Option(help="Reject, with this reason")] = None,
    request_info: Annotated[str | None, typer.Option(help="Ask the contractor these questions")] = None,
    rate: Annotated[Decimal | None, typer.Option(help="Interest rate, % a year")] = None,
    tenor: Annotated[int | None, typer.Option(help="Tenor, years")] = None,
    grace: Annotated[int | None, typer.Option(help="Grace period, years")] = None,
    fee: Annotated[Decimal | None, typer.Option(help="Management fee or premium, %")] = None,
    condition: Annotated[
        list[str] | None, typer.Option(help="A condition attached to the approval (repeatable)")
    ] = None,
    decision_id: DecisionIdOpt = None,
) -> None:
    """An institution's decision: --approve AMOUNT, --reject REASON or --request-info QUESTIONS."""
    chosen = [
        name for name, value in (("approve", approve), ("reject", reject), ("request-info", request_info)) if value
    ]
    if len(chosen) != 1:
        raise UserError("say exactly one of --approve AMOUNT, --reject REASON, --request-info QUESTIONS")
    common = {"decision_id": decision_id, "institution": institution, "officer": _me(officer, "--officer")}
    decision: Decision
    if approve:
        try:
            terms = Terms(interest_rate_pct=rate, tenor_years=tenor, grace_period_years=grace, fee_pct=fee)
        except ValidationError as err:
            raise UserError(explain_validation(err, "terms")) from err
        decision = _decision(Approve, **common, amount=_money(approve), terms=terms, conditions=condition or [])
    elif reject:
        decision = _decision(Reject, **common, reason=reject)
    else:
        decision = _decision(RequestInformation, **common, questions=request_info)
    _submit(project, decision)


@app.command()
def respond(
    project: ProjectArg,
    institution: Annotated[Institution, typer.Option(help="The institution whose request is answered")],
    answer: Annotated[str, typer.Option(help="The contractor's answer")],
    by: Annotated[str | None, typer.Option(help="Who answers (default: the token's person)")] = None,
    document: Annotated[list[str] | None, typer.Option(help="Reference of a document sent (repeatable)")] = None,
    decision_id: DecisionIdOpt = None,
) -> None:
    """The contractor answers an institution's information request."""
    _submit(
        project,
        _decision(
            ProvideInformation,
            decision_id=decision_id,
            institution=institution,
            responder=_me(by, "--by"),
            answer=answer,
            documents=document or [],
        ),
    )


@app.command()
def satisfy(
    project: ProjectArg,
    condition: Annotated[str, typer.Argument(help="Condition id, as `alliance status` lists it")],
    evidence: Annotated[str, typer.Option(help="Reference of the document that shows it")],
    by: Annotated[str | None, typer.Option(help="Who reports it (default: the token's person)")] = None,
    decision_id: DecisionIdOpt = None,
) -> None:
    """Record a condition precedent as satisfied."""
    _submit(
        project,
        _decision(
            SatisfyCondition, decision_id=decision_id, condition_id=condition, evidence=evidence, by=_me(by, "--by")
        ),
    )


@app.command("complete-milestone")
def complete_milestone(
    project: ProjectArg,
    milestone: Annotated[str, typer.Argument(help="Milestone id from the proposal's plan")],
    certificate: Annotated[str, typer.Option(help="Acceptance certificate reference")],
    issued_by: Annotated[str, typer.Option(help="Who signed the certificate")],
    by: Annotated[str | None, typer.Option(help="Who reports the milestone (default: the token's person)")] = None,
    issued_on: Annotated[str | None, typer.Option(help="Certificate date, YYYY-MM-DD (default today)")] = None,
    decision_id: DecisionIdOpt = None,
) -> None:
    """Complete a delivery milestone with its acceptance certificate; its payment share is disbursed."""
    try:
        issued = date.fromisoformat(issued_on) if issued_on else date.today()
    except ValueError as err:
        raise UserError(f"--issued-on '{issued_on}' is not a date like 2027-03-31") from err
    try:
        cert = AcceptanceCertificate(reference=certificate, issued_by=issued_by, issued_on=issued)
    except ValidationError as err:
        raise UserError(explain_validation(err, "certificate")) from err
    _submit(
        project,
        _decision(
            CompleteMilestone, decision_id=decision_id, milestone_id=milestone, certificate=cert, by=_me(by, "--by")
        ),
    )


@app.command()
def cancel(
    project: ProjectArg,
    reason: Annotated[str, typer.Option(help="Why the project is cancelled")],
    by: Annotated[str | None, typer.Option(help="Who cancels (default: the token's person)")] = None,
    decision_id: DecisionIdOpt = None,
) -> None:
    """Cancel a project at any stage; approved commitments not drawn are released."""
    _submit(project, _decision(Cancel, decision_id=decision_id, reason=reason, by=_me(by, "--by")))


# ------------------------------------------------------------------ reading


@app.command()
def status(
    project: ProjectArg,
    as_json: Annotated[bool, typer.Option("--json", help="The typed status as JSON")] = False,
) -> None:
    """Where a project stands."""
    current = _act(lambda operations: operations.status(project))
    if as_json:
        sys.stdout.write(current.model_dump_json(indent=2) + "\n")
        return
    _print_status(current)


def _print_status(s: ProjectStatus) -> None:
    out.print(f"[bold]{s.project_id}[/] — {s.title}")
    out.print(
        f"{s.country} · {s.sector.value} · contract {s.contract}"
        + (f" (USD {s.contract_usd:,})" if s.contract_usd else "")
    )
    out.print(f"Stage: [bold]{s.stage.value}[/] since {s.stage_since:%Y-%m-%d %H:%M} UTC — {s.details}")
    for reason in s.screening_reasons:
        out.print(f"  ✗ {reason}")
    if s.reviews:
        table = Table(title="Financing reviews")
        for col in ("institution", "status", "requested", "approved", "deadline", "by / reason"):
            table.add_column(col)
        for r in s.reviews:
            table.add_row(
                r.institution.display,
                r.status.value,
                str(r.requested),
                str(r.approved) if r.approved else "",
                f"{r.deadline:%Y-%m-%d}",
                r.decided_by or r.reason or "",
            )
        out.print(table)
    if s.conditions:
        table = Table(title="Conditions precedent")
        for col in ("id", "condition", "required by", "satisfied"):
            table.add_column(col)
        for c in s.conditions:
            table.add_row(c.condition_id, c.title, c.required_by, c.evidence or "")
        out.print(table)
    if s.tranches:
        table = Table(title="Tranches")
        for col in ("institution", "approved", "disbursed", "retained", "released"):
            table.add_column(col)
        for t in s.tranches:
            table.add_row(t.institution.display, str(t.approved), str(t.disbursed), str(t.retained), str(t.released))
        out.print(table)
    if s.stage.value in ("delivery", "warranty", "completed") or any(m.completed_at for m in s.milestones):
        table = Table(title="Milestones")
        for col in ("id", "milestone", "share", "certificate", "completed"):
            table.add_column(col)
        for m in s.milestones:
            table.add_row(
                m.milestone_id,
                m.title,
                f"{m.payment_share_pct}%",
                m.certificate.reference if m.certificate else "",
                _milestone_state(m),
            )
        out.print(table)
    published = sum(e.published for e in s.events)
    out.print(f"Status events: {len(s.events)} ({published} published)")


def _milestone_state(m: Milestone) -> str:
    if m.completed_at:
        return f"{m.completed_at:%Y-%m-%d}"
    if m.awaited_since:
        return f"awaited since {m.awaited_since:%Y-%m-%d}" + (f", {m.reminders} reminder(s)" if m.reminders else "")
    return ""


@app.command("list")
def list_projects(
    stage: Annotated[str | None, typer.Option(help="e.g. financing, delivery, completed")] = None,
    country: Annotated[str | None, typer.Option(help="ISO code, e.g. ZM")] = None,
    sector: Annotated[str | None, typer.Option(help="e.g. smart_cities")] = None,
    pending: Annotated[Institution | None, typer.Option(help="Projects waiting for this institution")] = None,
) -> None:
    """Projects, from Temporal visibility, filtered by stage, country, sector or pending institution."""
    rows = _act(
        lambda operations: operations.list(
            stage=stage, country=country, sector=sector, pending=pending.value if pending else None
        )
    )
    table = Table()
    for col in ("project", "stage", "country", "sector", "pending", "contract (USD)", "started"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row.project_id,
            row.stage,
            row.country,
            row.sector,
            ", ".join(row.pending),
            f"{row.contract_usd:,.0f}" if row.contract_usd is not None else "",
            f"{row.started:%Y-%m-%d %H:%M}",
        )
    out.print(table)
    out.print(f"{len(rows)} project(s)")


@events_app.command("tail")
def events_tail(
    project: Annotated[str | None, typer.Option(help="Only this project's events")] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest event kept")] = True,
    follow: Annotated[bool, typer.Option(help="Keep waiting for new events")] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many events")] = None,
) -> None:
    """Print status events from Kafka, one JSON line each."""
    from alliance.event_feed import tail

    settings = get_settings()

    def show(event_json: str) -> None:
        sys.stdout.write(event_json + "\n")
        sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        run(tail(settings, show, project=project, from_beginning=from_beginning, follow=follow, limit=limit))


# ------------------------------------------------------------------ entry point


def main() -> None:
    """Runs the CLI and ends the process with os._exit: a process that used a Temporal client can otherwise
    abort at interpreter exit (temporalio/sdk-python issue 300)."""
    code = 0
    # A one-shot command reports a broker it cannot reach in one line of its own; the client's retries stay quiet.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        app(standalone_mode=False)
    except typer.Exit as stop:
        code = stop.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except typer.TyperException as err:
        # Usage errors (an unknown, missing or ill-typed option): typer's own message with the usage line, exit 2.
        # typer carries its own click (typer._click), so these are not the `click` package's exceptions.
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            Console(stderr=True).print(f"[red]error:[/] {err.format_message()}", highlight=False, soft_wrap=True)
        code = int(getattr(err, "exit_code", 2))
    except (UserError, CredentialError) as err:
        Console(stderr=True).print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        code = 1
    except SystemExit as stop:  # the stream worker (faust's `mode`) ends with sys.exit, 0 on a clean stop
        code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
