"""What people do to projects from the command line: propose, decide, read. Each command takes the session (the
person and the way in) from typer's context and goes through the same `Operations`."""

from __future__ import annotations

import contextlib
import re
import sys
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from alliance.cli import render
from alliance.cli.session import Session, run, session
from alliance.projects import Filters, Operations, ProjectRow, UserError, explain_validation, load_proposal
from alliance.settings import get_settings
from alliance.tokens import Edge
from schemas.decisions import (
    AcceptanceCertificate,
    Approve,
    AwaitProgress,
    Cancel,
    CompleteMilestone,
    Decision,
    Institution,
    ProvideInformation,
    Reject,
    RequestInformation,
    SatisfyCondition,
    Terms,
)
from schemas.identity import Identity, Role
from schemas.money import Money
from schemas.proposal import Sector
from schemas.stage import Stage
from workflows.project import named

DecisionIdOpt = Annotated[
    str | None, typer.Option("--decision-id", help="Your id for this decision; re-sending it changes nothing")
]
BasedOnOpt = Annotated[
    int | None,
    typer.Option(
        "--based-on",
        min=0,
        help="The status sequence you decided on (`alliance status` shows it): refused if what you decide on has "
        "changed since",
    ),
]
WaitOpt = Annotated[
    float | None,
    typer.Option(
        "--wait", min=1, max=600, help="Seconds to wait for the outcome (default ALLIANCE_DECISION_WAIT_SECONDS, 30)"
    ),
]
ProjectArg = Annotated[str, typer.Argument(help="Project id, e.g. zm-lusaka-smart-city-2")]
LIST_LIMIT = 100


def register(app: typer.Typer) -> None:
    for command in (propose, decide, respond, satisfy, cancel, status, inbox, wait):
        app.command()(command)
    app.command("complete-milestone")(complete_milestone)
    app.command("list")(list_projects)
    token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens for local use.")
    token_app.command("issue")(token_issue)
    app.add_typer(token_app, name="token")
    events_app = typer.Typer(no_args_is_help=True, help="Read the status events on Kafka.")
    events_app.command("tail")(events_tail)
    app.add_typer(events_app, name="events")


def _me(s: Session, named: str | None, option: str) -> str:
    person = named or s.person()
    if not person:
        raise UserError(f"say who you are: {option} NAME, or a token (--token / ALLIANCE_TOKEN)", "unauthenticated")
    return person


def _decision(model: type[Decision], **fields: Any) -> Decision:
    fields["decision_id"] = fields.get("decision_id") or f"cli-{uuid.uuid4()}"
    try:
        return model.model_validate(fields)
    except ValidationError as err:
        raise UserError(explain_validation(err, "decision")) from err


def _submit(ctx: typer.Context, project_id: str, decision: Decision, wait: float | None) -> None:
    s = session(ctx)
    receipt = s.act(lambda ops: ops.decide(project_id, decision, wait))
    render.receipt(project_id, receipt)
    # With a token the project records the token's person (attested by the edge: workflows.remit.claimed), not the
    # name given with --officer / --by: said, so that nobody believes another name was recorded.
    person, given = s.person(), named(decision)
    if person and given != person:
        render.note(f"the decision is recorded as made by {person} (the token's person), not {given}")


# An amount as people write it: ASCII digits, commas between groups of three if any, an optional decimal part.
DIGITS = re.compile(r"([0-9]{1,3}(,[0-9]{3})+|[0-9]+)(\.[0-9]+)?")


def _money(text: str) -> Money:
    """'USD 120000000' or '120000000 USD' or '120,000,000.00 USD'."""
    parts = text.split()
    if len(parts) != 2:
        raise UserError(f"amount '{text}': write the currency and the amount, e.g. 'USD 120000000'")
    currency, number = (parts[0], parts[1]) if parts[0].isalpha() else (parts[1], parts[0])
    if not DIGITS.fullmatch(number):
        # Python's Decimal also reads '1e3', '1_000', 'NaN' and digits of other scripts (fullwidth, Arabic-Indic);
        # none is how a person writes an amount in a decision, and each can hide what was meant.
        raise UserError(
            f"amount '{text}': '{number}' is not an amount written in digits 0-9, with commas between groups of "
            "three digits if any and an optional decimal point, e.g. '120,000,000.00'"
        )
    try:
        return Money(amount=Decimal(number.replace(",", "")), currency=currency)
    except ValueError as err:
        detail = explain_validation(err, "amount") if isinstance(err, ValidationError) else str(err)
        raise UserError(f"amount '{text}': {detail}") from err


# ------------------------------------------------------------------ acting on projects


def propose(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="Proposal as JSON (see examples/)")]) -> None:
    """Start a project from a proposal file (the same file again changes nothing, and says so)."""
    proposal = load_proposal(file)
    render.started(proposal.project_id, session(ctx).act(lambda ops: ops.propose(proposal)))


def decide(
    ctx: typer.Context,
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
    based_on: BasedOnOpt = None,
    wait: WaitOpt = None,
) -> None:
    """An institution's decision: --approve AMOUNT, --reject REASON or --request-info QUESTIONS."""
    chosen = [
        name for name, value in (("approve", approve), ("reject", reject), ("request-info", request_info)) if value
    ]
    if len(chosen) != 1:
        raise UserError("say exactly one of --approve AMOUNT, --reject REASON, --request-info QUESTIONS")
    s = session(ctx)
    common = {
        "decision_id": decision_id,
        "based_on_sequence": based_on,
        "institution": institution,
        "officer": _me(s, officer, "--officer"),
    }
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
    _submit(ctx, project, decision, wait)


def respond(
    ctx: typer.Context,
    project: ProjectArg,
    institution: Annotated[Institution, typer.Option(help="The institution whose request is answered")],
    answer: Annotated[str, typer.Option(help="The contractor's answer")],
    by: Annotated[str | None, typer.Option(help="Who answers (default: the token's person)")] = None,
    document: Annotated[list[str] | None, typer.Option(help="Reference of a document sent (repeatable)")] = None,
    decision_id: DecisionIdOpt = None,
    based_on: BasedOnOpt = None,
    wait: WaitOpt = None,
) -> None:
    """The contractor answers an institution's information request."""
    decision = _decision(
        ProvideInformation,
        decision_id=decision_id,
        based_on_sequence=based_on,
        institution=institution,
        responder=_me(session(ctx), by, "--by"),
        answer=answer,
        documents=document or [],
    )
    _submit(ctx, project, decision, wait)


def satisfy(
    ctx: typer.Context,
    project: ProjectArg,
    condition: Annotated[str, typer.Argument(help="Condition id, as `alliance status` lists it")],
    evidence: Annotated[str, typer.Option(help="Reference of the document that shows it")],
    by: Annotated[str | None, typer.Option(help="Who reports it (default: the token's person)")] = None,
    decision_id: DecisionIdOpt = None,
    based_on: BasedOnOpt = None,
    wait: WaitOpt = None,
) -> None:
    """Record a condition precedent as satisfied."""
    decision = _decision(
        SatisfyCondition,
        decision_id=decision_id,
        based_on_sequence=based_on,
        condition_id=condition,
        evidence=evidence,
        by=_me(session(ctx), by, "--by"),
    )
    _submit(ctx, project, decision, wait)


def complete_milestone(
    ctx: typer.Context,
    project: ProjectArg,
    milestone: Annotated[str, typer.Argument(help="Milestone id from the proposal's plan")],
    certificate: Annotated[str, typer.Option(help="Acceptance certificate reference")],
    issued_by: Annotated[str, typer.Option(help="Who signed the certificate")],
    by: Annotated[str | None, typer.Option(help="Who reports the milestone (default: the token's person)")] = None,
    issued_on: Annotated[str | None, typer.Option(help="Certificate date, YYYY-MM-DD (default today)")] = None,
    decision_id: DecisionIdOpt = None,
    based_on: BasedOnOpt = None,
    wait: WaitOpt = None,
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
    decision = _decision(
        CompleteMilestone,
        decision_id=decision_id,
        based_on_sequence=based_on,
        milestone_id=milestone,
        certificate=cert,
        by=_me(session(ctx), by, "--by"),
    )
    _submit(ctx, project, decision, wait)


def cancel(
    ctx: typer.Context,
    project: ProjectArg,
    reason: Annotated[str, typer.Option(help="Why the project is cancelled")],
    by: Annotated[str | None, typer.Option(help="Who cancels (default: the token's person)")] = None,
    decision_id: DecisionIdOpt = None,
    based_on: BasedOnOpt = None,
    wait: WaitOpt = None,
) -> None:
    """Cancel a project at any stage; approved commitments not drawn are released."""
    decision = _decision(
        Cancel, decision_id=decision_id, based_on_sequence=based_on, reason=reason, by=_me(session(ctx), by, "--by")
    )
    _submit(ctx, project, decision, wait)


# ------------------------------------------------------------------ reading


def status(
    ctx: typer.Context,
    project: ProjectArg,
    as_json: Annotated[bool, typer.Option("--json", help="The typed status as JSON")] = False,
) -> None:
    """Where a project stands (with the sequence to decide on: --based-on)."""
    current = session(ctx).act(lambda ops: ops.status(project))
    if as_json:
        sys.stdout.write(current.model_dump_json(indent=2) + "\n")
        return
    render.status(current)


def wait(
    ctx: typer.Context,
    project: ProjectArg,
    stage: Annotated[list[Stage] | None, typer.Option(help="Until the project is in this stage (repeatable)")] = None,
    sequence: Annotated[int | None, typer.Option(min=0, help="Until its status sequence reaches this")] = None,
    timeout: Annotated[float, typer.Option(min=1, max=600, help="Seconds to wait at most")] = 60,
) -> None:
    """Wait until a project reaches a stage or a status sequence; exits 1 if it has not by --timeout, or if it
    ended elsewhere (a project cancelled in financing never reaches delivery). For scripts that follow a project
    without reading its status again and again."""
    awaited = AwaitProgress(min_sequence=sequence, stages=stage or [], timeout_seconds=timeout)
    progress = session(ctx).act(lambda ops: ops.await_progress(project, awaited))
    render.progress(project, progress)
    if not progress.reached:
        raise UserError(f"project {project} did not get there within {timeout:g} s: it is {progress.stage.value}")
    got_there = progress.stage in (stage or []) or (sequence is not None and progress.sequence >= sequence)
    if (stage or sequence is not None) and not got_there:
        # The wait answered because the project ended, somewhere else.
        wanted = [f"in {s.value}" for s in stage or []] + ([f"at sequence {sequence}"] if sequence is not None else [])
        raise UserError(f"project {project} has ended ({progress.stage.value}): it will never be {' or '.join(wanted)}")


def list_projects(
    ctx: typer.Context,
    stage: Annotated[Stage | None, typer.Option(help="Projects in this stage")] = None,
    country: Annotated[str | None, typer.Option(help="ISO code, e.g. ZM")] = None,
    sector: Annotated[Sector | None, typer.Option(help="Projects of this sector")] = None,
    pending: Annotated[Institution | None, typer.Option(help="Projects waiting for this institution")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every matching project, not only the first --limit")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many to show without --all")] = LIST_LIMIT,
) -> None:
    """Projects, from Temporal visibility (newest first), filtered by stage, country, sector or pending
    institution."""
    filters = Filters(
        stage=stage.value if stage else None,
        country=country,
        sector=sector.value if sector else None,
        pending=pending.value if pending else None,
    )

    async def rows(ops: Operations) -> tuple[list[ProjectRow], int]:
        page = await ops.page(filters, limit if not all_ else 1000, None)
        found, total = list(page.projects), page.total
        while all_ and page.next_page_token:
            page = await ops.page(filters, 1000, page.next_page_token)
            found.extend(page.projects)
        return found, total

    found, total = session(ctx).act(rows)
    render.projects(found, total if not all_ else max(total, len(found)))


def inbox(
    ctx: typer.Context,
    institution: Annotated[Institution, typer.Argument(help="cdb, exim or sinosure")],
    all_: Annotated[bool, typer.Option("--all", help="Every open review, not only the first --limit")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many to show without --all")] = LIST_LIMIT,
) -> None:
    """The reviews open at an institution, nearest deadline first."""

    async def read(ops: Operations) -> tuple[Any, int]:
        page = await ops.inbox(institution, limit if not all_ else 1000, None)
        items = list(page.items)
        while all_ and page.next_page_token:
            following = await ops.inbox(institution, 1000, page.next_page_token)
            items.extend(following.items)
            page = following.model_copy(update={"unanswered": page.unanswered})
        return page.model_copy(update={"items": items}), len(items)

    page, count = session(ctx).act(read)
    render.inbox(page, count)


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


def events_tail(
    project: Annotated[str | None, typer.Option(help="Only this project's events")] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest event kept")] = True,
    follow: Annotated[bool, typer.Option(help="Keep waiting for new events")] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many events")] = None,
) -> None:
    """Print status events from Kafka, one JSON line each (stdout); when none matched, a note saying so (stderr)."""
    from alliance.event_feed import tail

    settings = get_settings()

    def show(event_json: str) -> None:
        sys.stdout.write(event_json + "\n")
        sys.stdout.flush()

    shown = None
    with contextlib.suppress(KeyboardInterrupt):
        shown = run(tail(settings, show, project=project, from_beginning=from_beginning, follow=follow, limit=limit))
    if shown == 0:
        # An empty output alone cannot be told from a mistyped project id.
        whose = f" of project {project}" if project else ""
        where = "kept" if from_beginning else "new"
        render.note(f"no status events{whose} {where} on topic {settings.status_topic}")
