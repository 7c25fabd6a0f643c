"""The staff and integration API (FastAPI): `alliance api`, and started by `alliance dev`.

Every caller presents a bearer token naming a person, an organisation and a role. The routes are thin: each passes
the caller, as the actor, to the application service (`alliance/projects.py`), which checks the remit once for every
edge; every decision carries the edge's attestation into the workflow, whose validators check the remit again.

- Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code` and the `field` at fault.
- `GET /projects/{id}` answers with `ETag: "<sequence>"`; a decision may carry `If-Match: "<sequence>"` (the status
  it was based on): a project that changed what the decision is about since then refuses it with 412.
- A decision waits for its outcome at most `ALLIANCE_DECISION_WAIT_SECONDS` (30); `Prefer: wait=N` (RFC 7240)
  sets another bound for one request. The answer names the task queue when no worker took the decision.
- Lists are paged: `page_size` and `next_page_token`, with the `total` over all pages.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path as FilePath
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from alliance import metrics, tracing
from alliance.connections import connect_temporal
from alliance.projects import (
    MAX_PROPOSAL_BYTES,
    PAGE_SIZE,
    InboxPage,
    ProjectPage,
    Projects,
    Started,
    UserError,
    describe_errors,
)
from alliance.settings import Settings, get_settings
from alliance.tokens import CredentialError, Edge
from schemas.decisions import AwaitProgress, Decision, Institution, Progress, Receipt
from schemas.identity import Identity
from schemas.proposal import PROJECT_ID_PATTERN, Proposal, Sector
from schemas.status import ProjectStatus, Stage
from workflows import catalogue

log = structlog.get_logger(__name__)
OPENAPI_FILE = FilePath(__file__).with_name("openapi.json")
API_REQUESTS = Counter("alliance_api_requests", "API requests answered", ["method", "route", "status"])
API_SECONDS = Histogram("alliance_api_request_seconds", "API request duration", ["method", "route"])

STATUS_OF = {
    "invalid": 422,
    "missing_key": 400,
    "key_reused": 422,
    "unauthenticated": 401,
    "forbidden": 403,
    "unknown": 404,
    "refused": 409,
    "conflict": 409,
    "in_progress": 409,
    "precondition_failed": 412,
    "unavailable": 503,
}
PROBLEM_TYPE = "https://alliance.example/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An error as RFC 9457 problem details (`application/problem+json`), with the product's stable `code` and
    the `field` at fault when there is one."""

    type: str = Field(description=f"{PROBLEM_TYPE}<code>")
    title: str = Field(description="The code in words")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What went wrong, in one sentence (the same as `message`)")
    code: str = Field(
        description="Stable: invalid, missing_key, key_reused, in_progress, unauthenticated, forbidden, unknown, "
        "refused, conflict, precondition_failed, too_large, unavailable, internal"
    )
    message: str
    field: str | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in {
        400: "No Idempotency-Key header on a request that needs one",
        401: "No valid credential",
        403: "Outside the caller's remit",
        404: "Unknown project",
        409: "Refused by the project, a conflicting request, or the same key still being processed",
        413: "Request body larger than the API takes",
        422: "Invalid input (the field is named), or an idempotency key used before for another request",
        503: "Temporal or the project's worker did not answer in time",
    }.items()
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$",
        description="Required (draft-ietf-httpapi-idempotency-key-header). The key is bound to this request's "
        "fingerprint: the same request again returns the first result and changes nothing; the same key with "
        "another body or for another resource is refused (422); while the first is still being processed, 409.",
    ),
]


def required_key(key: str | None) -> str:
    if key is None:
        raise UserError(
            "Idempotency-Key: this request needs an Idempotency-Key header (a new UUID per request)", "missing_key"
        )
    return key


class ExactRequest(Request):
    """A request whose JSON numbers with a fraction are read as Decimals from their text, never through a float:
    an amount sent as a number keeps its digits (schemas/money.py)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal)
        return self._json


class ExactRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            return await handler(ExactRequest(request.scope, request.receive))

        return exact


def projects(request: Request) -> Projects:
    found: Projects = request.app.state.projects
    return found


BEARER = HTTPBearer(auto_error=False, description="A token from `alliance token issue` or your identity provider")


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Identity:
    edge = projects(request).edge
    assert edge is not None
    return edge.identify(credentials.credentials if credentials else None)


Caller = Annotated[Identity, Depends(caller)]
Service = Annotated[Projects, Depends(projects)]


ProjectPath = Annotated[
    str, Path(pattern=PROJECT_ID_PATTERN, description="Project id: 3-63 lower-case letters, digits and hyphens")
]
PageSize = Annotated[int, Query(ge=1, le=1000, description="Rows per page")]
PageToken = Annotated[
    str | None, Query(max_length=2000, description="The `next_page_token` of the previous page (none: first page)")
]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=40,
        description='The status sequence the decision was based on, as GET /projects/{id} gave it in ETag ("12"); '
        "a project that has since changed what the decision is about refuses it (412)",
    ),
]
Prefer = Annotated[
    str | None,
    Header(max_length=200, description="`wait=N` (RFC 7240): wait at most N seconds (1-600) for the outcome"),
]


def etag(sequence: int) -> str:
    return f'"{sequence}"'


def based_on(if_match: str | None, decision: Decision) -> Decision:
    """The decision with `based_on_sequence` from If-Match ('"12"'; '*' or none: whatever the project is now)."""
    if if_match is None or if_match.strip() == "*":
        return decision
    text = if_match.strip()
    if not (text.startswith('"') and text.endswith('"') and text[1:-1].isdigit()):
        raise UserError('If-Match: give the ETag of GET /projects/{id}, e.g. "12"', "invalid")
    sequence = int(text[1:-1])
    if decision.based_on_sequence is not None and decision.based_on_sequence != sequence:
        raise UserError(
            f"based_on_sequence: {decision.based_on_sequence} disagrees with If-Match {text}; send one of them"
        )
    return decision.model_copy(update={"based_on_sequence": sequence})


def preferred_wait(prefer: str | None) -> float | None:
    """The `wait` preference of a Prefer header (RFC 7240), in seconds; None when it states none."""
    for part in (prefer or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError as err:
                raise UserError("Prefer: wait=N takes a number of seconds, e.g. wait=10") from err
            if not 1 <= seconds <= 600:
                raise UserError("Prefer: wait=N takes 1 to 600 seconds")
            return seconds
    return None


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    settings = settings or get_settings()
    edge = Edge(settings)  # a keys file with no usable key stops the API here, before it serves

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if client is None:
            app.state.projects = Projects(await connect_temporal(settings, metrics=True), settings, edge)
        yield

    app = FastAPI(
        title="Alliance Workflows API",
        version="1",
        description="Projects of the Belt and Road Digital Economy Alliance: proposals, financing decisions, "
        "conditions precedent, milestones. Authenticate with a bearer token (`alliance token issue`).",
        lifespan=lifespan,
    )
    app.router.route_class = ExactRoute
    if client is not None:
        app.state.projects = Projects(client, settings, edge)
    tracing.instrument_api(app, settings)

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Any:
        started = asyncio.get_running_loop().time()
        response = await call_next(request)
        # The route's template (/projects/{project_id}), not the path: one series per route, not per project.
        route = getattr(request.scope.get("route"), "path", "unmatched")
        API_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        API_SECONDS.labels(request.method, route).observe(asyncio.get_running_loop().time() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(await asyncio.to_thread(metrics.exposition), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health", include_in_schema=False)
    async def health(request: Request) -> JSONResponse:
        """Ready when the Temporal frontend answers (what every request needs)."""
        projects: Projects = request.app.state.projects
        try:
            serving = await asyncio.wait_for(projects.client.service_client.check_health(), 5)
        except Exception as err:
            return JSONResponse({"status": "unavailable", "temporal": str(err) or type(err).__name__}, status_code=503)
        if not serving:
            return JSONResponse({"status": "unavailable", "temporal": "not serving"}, status_code=503)
        return JSONResponse({"status": "ok", "temporal": "serving"})

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        """A proposal is a few kilobytes: a body over MAX_PROPOSAL_BYTES is refused before it is parsed."""
        if request.method in ("POST", "PUT", "PATCH"):
            declared = request.headers.get("content-length")
            size = int(declared) if declared and declared.isdigit() else len(await request.body())
            if size > MAX_PROPOSAL_BYTES:
                return problem(
                    413,
                    "too_large",
                    f"the request body is {size:,} bytes; the API takes at most {MAX_PROPOSAL_BYTES:,}",
                )
        return await call_next(request)

    @app.exception_handler(UserError)
    async def user_error(_: Request, err: UserError) -> JSONResponse:
        field = "Idempotency-Key" if err.kind in ("missing_key", "key_reused", "in_progress") else None
        return problem(STATUS_OF.get(err.kind, 400), err.kind, str(err), field=field)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        # A bug, not the caller's fault: logged with its traceback here, one JSON problem for the caller.
        log.exception("api_request_failed", method=request.method, path=request.url.path)
        return problem(500, "internal", "the API failed on this request; its log has the details")

    @app.exception_handler(CredentialError)
    async def credential_error(_: Request, err: CredentialError) -> JSONResponse:
        return problem(401, "unauthenticated", str(err), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        # The framework's own answers (no such route 404, a method the route does not take 405, a body it cannot
        # read 400) as problems too, with the code their status names.
        code = {404: "unknown", 405: "method_not_allowed"}.get(err.status_code, "invalid")
        return problem(err.status_code, code, str(err.detail), headers=dict(err.headers) if err.headers else None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        if errors and errors[0].get("type") == "json_invalid":
            # pydantic's location of a JSON syntax error is the character's position, not a field.
            where = [p for p in errors[0].get("loc", ()) if isinstance(p, int)]
            at = f" at character {where[0]}" if where else ""
            return problem(422, "invalid", f"the request body is not valid JSON{at}: {errors[0].get('msg')}")
        loc = (
            [str(p) for p in errors[0].get("loc", ()) if p not in ("body", "query", "path", "header")] if errors else []
        )
        return problem(422, "invalid", describe_errors(errors) or "invalid request", field=".".join(loc) or None)

    @app.post("/projects", status_code=201, response_model=Started, responses=ERRORS, tags=["projects"])
    async def submit_proposal(
        proposal: Proposal, identity: Caller, service: Service, key: IdempotencyKey = None
    ) -> Started:
        """Starts a project. The same request again (same key, same proposal) answers 201 with `replayed: true`
        and changes nothing."""
        return await service.propose(proposal, actor=identity, idempotency_key=required_key(key))

    @app.get("/projects", response_model=ProjectPage, responses=ERRORS, tags=["projects"])
    async def list_projects(
        identity: Caller,
        service: Service,
        stage: Stage | None = None,
        country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")] = None,
        sector: Sector | None = None,
        pending: Institution | None = None,
        page_size: PageSize = PAGE_SIZE,
        page_token: PageToken = None,
    ) -> ProjectPage:
        """Projects from Temporal visibility, newest first, a page at a time: `total` over all pages,
        `next_page_token` for the next one (null on the last)."""
        return await service.page(
            identity,
            stage=stage.value if stage else None,
            country=country,
            sector=sector.value if sector else None,
            pending=pending.value if pending else None,
            page_size=page_size,
            page_token=page_token,
        )

    @app.get("/projects/{project_id}", response_model=ProjectStatus, responses=ERRORS, tags=["projects"])
    async def project_status(
        project_id: ProjectPath, identity: Caller, service: Service, response: Response
    ) -> ProjectStatus:
        """Where the project stands. `ETag` is its status sequence: send it back as `If-Match` with a decision
        based on what you read."""
        status = await service.status(project_id, identity)
        response.headers["ETag"] = etag(status.sequence)
        return status

    @app.get("/projects/{project_id}/progress", response_model=Progress, responses=ERRORS, tags=["projects"])
    async def project_progress(
        project_id: ProjectPath,
        identity: Caller,
        service: Service,
        min_sequence: Annotated[int | None, Query(ge=0, description="Answer once the sequence reaches this")] = None,
        stage: Annotated[list[Stage] | None, Query(description="Answer once the project is in one of these")] = None,
        timeout_seconds: Annotated[float, Query(gt=0, le=60)] = 30,
    ) -> Progress:
        """A long poll without polling: answers as soon as the project reaches `min_sequence` or one of the
        `stage`s (or ends), else after `timeout_seconds` with `reached: false`. Follow a project with it instead of
        reading its status again and again."""
        wait = AwaitProgress(min_sequence=min_sequence, stages=stage or [], timeout_seconds=timeout_seconds)
        return await service.await_progress(project_id, wait, identity)

    @app.get("/institutions/{institution}/inbox", response_model=InboxPage, responses=ERRORS, tags=["institutions"])
    async def inbox(
        institution: Institution,
        identity: Caller,
        service: Service,
        page_size: PageSize = PAGE_SIZE,
        page_token: PageToken = None,
    ) -> InboxPage:
        """The reviews open at the institution, nearest deadline first across all pages. Projects whose status
        could not be read now are named in `unanswered`."""
        return await service.inbox(institution, identity, page_size=page_size, page_token=page_token)

    def decision_route(path: str, model: type[Decision], summary: str) -> None:
        async def decide(
            project_id: ProjectPath,
            decision: Decision,
            identity: Caller,
            service: Service,
            key: IdempotencyKey = None,
            if_match: IfMatch = None,
            prefer: Prefer = None,
        ) -> Receipt:
            if decision.decision_id != required_key(key):
                raise UserError("decision_id: must equal the Idempotency-Key header", "invalid")
            return await service.decide(project_id, based_on(if_match, decision), identity, wait=preferred_wait(prefer))

        # One handler shape for every decision; FastAPI reads the body model from the annotation.
        decide.__annotations__ = {**decide.__annotations__, "decision": model}
        decide.__name__ = f"post_{model.__name__.lower()}"
        app.post(
            f"/projects/{{project_id}}/{path}",
            response_model=Receipt,
            responses=ERRORS,
            summary=summary,
            description="The receipt gives the stage and status sequence the decision left the project in; follow "
            "its effects with GET /projects/{project_id}/progress. "
            "The same decision again (same Idempotency-Key, same body) returns the same receipt.",
            tags=["decisions"],
        )(decide)

    for kind in catalogue.CATALOGUE:
        decision_route(kind.route, kind.model, kind.summary)
    return app


def problem(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = Problem(
        type=PROBLEM_TYPE + code,
        title=code.replace("_", " ").capitalize(),
        status=status,
        detail=message,
        code=code,
        message=message,
        field=field,
    ).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=body, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def openapi_document() -> str:
    return json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OPENAPI_FILE.write_text(openapi_document())
    sys.stdout.write(f"wrote {OPENAPI_FILE}\n")
