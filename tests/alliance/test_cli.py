"""The staff command line, run as a separate process against the test servers and a worker in this process."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from temporalio.testing import WorkflowEnvironment

from alliance.demo import CONTRACTOR, EXAMPLES, OPERATOR, Driver, officer_of
from alliance.projects import Projects, UserError
from alliance.settings import Settings
from schemas.decisions import AwaitProgress, Cancel, Institution
from schemas.status import ProjectStatus, Stage
from schemas.timetable import Timetable
from tests.support import api_server, cli, example, finished, free_port, one_line_error, raw_example
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(180)
EXIM_OFFICER = officer_of(Institution.exim, "Chen Jie")


async def test_a_project_driven_from_the_command_line(projects: Projects, settings: Settings, tmp_path: Path) -> None:
    data = raw_example("ke-national-data-centre-2")
    data["project_id"] = "ke-cli-path"
    proposal_file = tmp_path / "proposal.json"
    proposal_file.write_text(json.dumps(data))

    started = await cli(settings, "propose", str(proposal_file))
    assert started.code == 0, started.err
    assert "Started project ke-cli-path (workflow project-ke-cli-path)" in started.out

    waited = await cli(settings, "wait", "ke-cli-path", "--stage", "financing")
    assert waited.code == 0 and "ke-cli-path: financing at sequence" in waited.out, waited.err
    shown = ProjectStatus.model_validate_json((await cli(settings, "status", "ke-cli-path", "--json")).out)
    assert shown.stage is Stage.financing
    approve = ("decide", "ke-cli-path", "--institution", "exim", "--officer", "Chen Jie")
    approved = await cli(
        settings, *approve, "--approve", "CNY 1,300,000,000", "--rate", "2", "--decision-id", "d-1", as_=EXIM_OFFICER
    )
    assert approved.code == 0, approved.err
    assert "China Exim approved CNY 1,300,000,000.00" in approved.out
    assert "decision id d-1; now financing at sequence" in approved.out
    again = await cli(
        settings, *approve, "--approve", "CNY 1,300,000,000", "--rate", "2", "--decision-id", "d-1", as_=EXIM_OFFICER
    )
    assert again.out == approved.out

    table = await cli(settings, "status", "ke-cli-path")
    assert "Stage: effectiveness" in table.out and "legal-opinion" in table.out

    assert approved.err == ""  # --officer is the token's person: nothing set aside
    cancelled = await cli(settings, "cancel", "ke-cli-path", "--reason", "test over", "--by", "PMO")
    assert cancelled.code == 0, cancelled.err
    # Another name than the token's is set aside, and the command says so.
    assert cancelled.err == "note: the decision is recorded as made by Zhang Min (the token's person), not PMO\n"
    status = await finished(projects, "ke-cli-path")
    assert status.stage is Stage.cancelled
    # A wait for a stage the project can no longer reach says so, and fails the script that waits.
    never = await cli(settings, "wait", "ke-cli-path", "--stage", "delivery")
    assert never.code == 1 and "ke-cli-path: cancelled at sequence" in never.out, never
    assert one_line_error(never) == "error: project ke-cli-path has ended (cancelled): it will never be in delivery"
    ended = await cli(settings, "wait", "ke-cli-path", "--stage", "cancelled")
    assert ended.code == 0, ended.err

    tail = await cli(settings, "events", "tail", "--project", "ke-cli-path")
    types = [json.loads(line)["type"].rsplit(".", 1)[-1] for line in tail.out.splitlines()]
    assert types[0] == "proposed" and types[-1] == "commitment_released"
    assert len(types) == len(status.events) and tail.err == ""
    # A project with no events (a mistyped id) says so, instead of printing nothing.
    none = await cli(settings, "events", "tail", "--project", "ke-cli-pth")
    assert none.code == 0 and none.out == ""
    assert none.err == f"note: no status events of project ke-cli-pth kept on topic {settings.status_topic}\n"

    late = await cli(settings, "satisfy", "ke-cli-path", "legal-opinion", "--evidence", "LO-1", "--by", "x")
    assert (
        one_line_error(late) == "error: refused: project ke-cli-path has ended (cancelled); it takes no more decisions"
    )


async def test_user_mistakes_print_one_clear_line_and_change_nothing(
    projects: Projects, settings: Settings, tmp_path: Path
) -> None:
    not_json = tmp_path / "broken.json"
    not_json.write_text("{ 'project_id': ")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"title": "Caf\xe9"}'.encode("latin-1"))
    bad_shares = raw_example("zm-lusaka-smart-city-2")
    bad_shares["milestones"][0]["payment_share_pct"] = "11"
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps(bad_shares))
    unknown_country = raw_example("zm-lusaka-smart-city-2") | {"project_id": "fr-not-partner", "country": "FR"}
    country_file = tmp_path / "country.json"
    country_file.write_text(json.dumps(unknown_country))

    cases = {
        ("propose", str(tmp_path / "missing.json")): "cannot read proposal file",
        ("propose", str(not_json)): "is not valid JSON",
        ("propose", str(latin1)): "is not UTF-8 text",
        ("propose", str(bad_file)): "invalid proposal: milestones: payment shares add up to 101%",
        ("propose", str(country_file)): "country: FR is not a partner country of the alliance",
        ("status", "no-such-project"): "unknown project no-such-project",
        ("cancel", "no-such-project", "--reason", "r", "--by", "x"): "unknown project",
        ("decide", "no-such-project", "--institution", "cdb", "--officer", "x", "--reject", "r"): (
            "Zhang Min (contractor) may not reject"
        ),
        ("decide", "p1", "--institution", "cdb", "--officer", "x", "--approve", "USD abc"): "'abc' is not an amount",
        # Python's Decimal reads these; an amount in a loan agreement is never written so (a fresh-clone try).
        ("decide", "p1", "--institution", "cdb", "--officer", "x", "--approve", "USD 1e3"): "'1e3' is not an amount",
        ("decide", "p1", "--institution", "cdb", "--officer", "x", "--approve", "USD 1_000"): "is not an amount",
        ("decide", "p1", "--institution", "cdb", "--officer", "x", "--approve", "USD \uff11\uff12"): "is not an amount",
        ("decide", "p1", "--institution", "cdb", "--officer", "x", "--approve", "JPY 1,2,3,4"): (
            "'1,2,3,4' is not an amount written in digits 0-9, with commas between groups of three digits"
        ),
        ("decide", "p1", "--institution", "cdb", "--officer", "x", "--approve", "ABC 12"): "unknown currency 'ABC'",
        ("decide", "p1", "--institution", "cdb", "--officer", "x"): "say exactly one of --approve",
        (
            "complete-milestone",
            "p1",
            "m",
            "--certificate",
            "c",
            "--issued-by",
            "x",
            "--by",
            "y",
            "--issued-on",
            "31/12",
        ): ("is not a date like"),
    }
    for args, expected in cases.items():
        assert expected in one_line_error(await cli(settings, *args)), args

    unreachable = await cli(settings, "status", "p1", ALLIANCE_TEMPORAL_ADDRESS="127.0.0.1:9")
    assert "cannot reach the Temporal server at 127.0.0.1:9" in one_line_error(unreachable)
    no_kafka = await cli(settings, "events", "tail", ALLIANCE_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert "cannot reach Kafka at 127.0.0.1:9" in one_line_error(no_kafka)

    # Usage errors are the command line's own: its message and usage line, exit 2, no traceback.
    usage = {
        ("decide", "p1", "--institution", "worldbank", "--reject", "r"): "Invalid value for '--institution'",
        ("decide", "p1", "--institution", "cdb", "--unexpected", "3"): "No such option: --unexpected",
        ("no-such-command",): "No such command 'no-such-command'",
        # Filters with a fixed set of values are refused, not answered with an empty list that looks like "none".
        ("list", "--stage", "nonsense"): "Invalid value for '--stage'",
        ("list", "--sector", "farming"): "Invalid value for '--sector'",
    }
    for args, expected in usage.items():
        wrong = await cli(settings, *args)
        assert wrong.code == 2 and "Traceback" not in wrong.err and expected in wrong.err, (args, wrong.err)

    anonymous = await cli(settings, "cancel", "p1", "--reason", "r", "--by", "x", as_=None)
    assert "no credential" in one_line_error(anonymous)
    # The refused proposal started nothing.
    assert "unknown project fr-not-partner" in one_line_error(await cli(settings, "status", "fr-not-partner"))


async def test_a_refused_decision_explains_itself(projects: Projects, settings: Settings, tmp_path: Path) -> None:
    started = await cli(settings, "propose", str(EXAMPLES / "ke-national-data-centre-2.json"))
    assert started.code == 0, started.err
    await projects.await_progress("ke-national-data-centre-2", AwaitProgress(stages=[Stage.financing]))
    over = await cli(
        settings,
        *("decide", "ke-national-data-centre-2", "--institution", "exim", "--officer", "Chen Jie"),
        *("--approve", "CNY 2000000000"),
        as_=EXIM_OFFICER,
    )
    assert one_line_error(over) == (
        "error: refused: China Exim cannot approve CNY 2,000,000,000.00: only CNY 1,300,000,000.00 was requested"
    )
    again = await cli(settings, "propose", str(EXAMPLES / "ke-national-data-centre-2.json"))
    assert again.code == 0, again.err
    assert "was already started by this same proposal" in again.out and "nothing changed" in again.out
    changed = raw_example("ke-national-data-centre-2") | {"title": "Kenya National Data Centre (corrected)"}
    corrected = tmp_path / "corrected.json"
    corrected.write_text(json.dumps(changed))
    assert "different request to POST /projects (ke-national-data-centre-2); nothing was changed" in one_line_error(
        await cli(settings, "propose", str(corrected))
    )
    status = await projects.status("ke-national-data-centre-2")
    assert all(r.status.is_open for r in status.reviews)
    await cli(settings, "cancel", "ke-national-data-centre-2", "--reason", "test over", "--by", "PMO")


PROPOSAL_CHANGES = st.sampled_from(
    [
        ("contract", {"amount": "NaN", "currency": "USD"}),
        ("contract", {"amount": "-1", "currency": "USD"}),
        ("contract", {"amount": "100", "currency": "XXX"}),
        ("country", "ZZ"),
        ("country", 7),
        ("project_id", "Not A Slug!"),
        ("title", ""),
        ("milestones", []),
        ("chinese_content_pct", "150"),
        ("sector", "casino"),
        ("unexpected", True),
    ]
)
BAD_FILES = st.sampled_from(
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"project_id": "\xff\xfe"}',
        b"[" * 100_000 + b"]" * 100_000,
        b" " * 1_000_001,
    ]
)


@examples(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(change=st.one_of(PROPOSAL_CHANGES, BAD_FILES))
async def test_generated_bad_proposal_files_get_one_clear_error_line_and_start_nothing(
    projects: Projects, settings: Settings, tmp_path: Path, change: tuple[str, object] | bytes
) -> None:
    project_id = f"ke-cli-bad-{uuid.uuid4().hex[:8]}"
    if isinstance(change, bytes):
        content = change
    else:
        field, value = change
        data = raw_example("ke-national-data-centre-2") | {"project_id": project_id, field: value}
        content = json.dumps(data).encode()
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_bytes(content)
    run = await cli(settings, "propose", str(path))
    assert one_line_error(run)
    event(one_line_error(run).split(":")[1].strip()[:40])
    with pytest.raises(UserError, match="unknown project"):
        await projects.status(project_id)


async def test_the_command_line_through_the_api_says_what_happened(
    projects: Projects, settings: Settings, tmp_path: Path
) -> None:
    data = raw_example("ke-national-data-centre-2") | {"project_id": "ke-cli-api"}
    proposal = tmp_path / "proposal.json"
    proposal.write_text(json.dumps(data))
    corrected = tmp_path / "corrected.json"
    corrected.write_text(json.dumps(data | {"title": "Kenya National Data Centre (corrected)"}))
    async with api_server(settings, projects.client) as url:
        through = {"ALLIANCE_API_URL": url}
        started = await cli(settings, "propose", str(proposal), **through)
        assert started.code == 0 and "Started project ke-cli-api" in started.out, started.err
        again = await cli(settings, "propose", str(proposal), **through)
        assert again.code == 0 and "already started by this same proposal" in again.out, again.err
        changed = one_line_error(await cli(settings, "propose", str(corrected), **through))
        assert "different request to POST /projects (ke-cli-api); nothing was changed" in changed
        assert (await cli(settings, "wait", "ke-cli-api", "--stage", "financing", **through)).code == 0
        shown = await cli(settings, "status", "ke-cli-api", **through)
        read = ProjectStatus.model_validate_json((await cli(settings, "status", "ke-cli-api", "--json", **through)).out)
        assert f"decide with --based-on {read.sequence}" in shown.out
        ask = (
            "decide",
            "ke-cli-api",
            "--institution",
            "exim",
            "--request-info",
            "Why?",
            "--based-on",
            str(read.sequence),
        )
        asked = await cli(settings, *ask, as_=EXIM_OFFICER, **through)
        assert asked.code == 0 and "; now financing at sequence" in asked.out, asked.err
        late = ("decide", "ke-cli-api", "--institution", "exim", "--approve", "CNY 1300000000")
        stale = await cli(settings, *late, "--based-on", str(read.sequence), as_=EXIM_OFFICER, **through)
        assert "decide again" in one_line_error(stale) and "information_requested" in one_line_error(stale)
        direct = await cli(settings, *late, "--based-on", str(read.sequence), as_=EXIM_OFFICER)
        assert one_line_error(direct) == one_line_error(stale).replace(url, ""), "one message whichever the door"
    status = await projects.status("ke-cli-api")
    assert status.title == data["title"] and all(r.status.value != "approved" for r in status.reviews)
    await projects.decide("ke-cli-api", Cancel(decision_id="end", reason="test over", by="PMO"), OPERATOR)


async def test_lists_say_when_they_are_not_complete(projects: Projects, settings: Settings) -> None:
    for n, review_days in enumerate((20, 5, 10)):
        d = Driver(projects, example("ke-national-data-centre-2", f"ke-cli-list-{n}"))
        await d.start(Timetable(review_days=review_days, reminder_days_before=1))
        await d.reach(Stage.financing)
    for _ in range(100):  # visibility follows the projects, eventually
        if (await projects.page(pending="exim")).total >= 3:
            break
        await asyncio.sleep(0.1)
    total = (await projects.page(pending="exim")).total
    some = await cli(settings, "list", "--pending", "exim", "--limit", "2")
    assert f"first 2 of {total} project(s); --all for the rest" in some.out, some.out
    every = await cli(settings, "list", "--pending", "exim", "--all")
    assert f"{total} project(s)" in every.out and "first" not in every.out
    assert all(f"ke-cli-list-{n}" in every.out for n in range(3))
    inbox = await cli(settings, "inbox", "exim", "--all", as_=EXIM_OFFICER)
    assert inbox.code == 0, inbox.err
    order = re.findall(r"ke-cli-list-\d", inbox.out)
    assert order == ["ke-cli-list-1", "ke-cli-list-2", "ke-cli-list-0"], inbox.out


async def test_configuration_mistakes_are_one_line_naming_the_variable(settings: Settings, tmp_path: Path) -> None:
    shared_secret = tmp_path / "jwks.json"
    shared_secret.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "shared"}]}))
    cases = {
        ("ALLIANCE_METRICS_PORT", "abc"): "ALLIANCE_METRICS_PORT='abc': Input should be a valid integer",
        ("ALLIANCE_API_PORT", "0"): "ALLIANCE_API_PORT='0': Input should be greater than or equal to 1",
        ("ALLIANCE_LOG_FORMAT", "xml"): "ALLIANCE_LOG_FORMAT='xml': Input should be 'auto', 'json' or 'console'",
        ("ALLIANCE_TOKEN_PUBLIC_KEYS_FILE", str(shared_secret)): "has no key that verifies token signatures",
        ("ALLIANCE_TOKEN_PUBLIC_KEYS_FILE", str(tmp_path / "none.pem")): "ALLIANCE_TOKEN_PUBLIC_KEYS_FILE: cannot read",
    }
    for (variable, value), expected in cases.items():
        assert expected in one_line_error(await cli(settings, "api", **{variable: value})), variable
    # Empty means none (no /metrics) for a setting that may be none, the default for the others: no error of its own.
    empty = await cli(settings, "status", "no-such-project", ALLIANCE_METRICS_PORT="", ALLIANCE_API_PORT="")
    assert "unknown project no-such-project" in one_line_error(empty)


async def test_dev_with_a_port_taken_says_so_and_starts_nothing(settings: Settings) -> None:
    # An `alliance dev` left running (or its helpers, orphaned) holds the API's and the stream worker's ports: the
    # next one said "Ready." while its own helpers kept failing to start, the reason only in their JSON logs.
    variables = ("ALLIANCE_API_PORT", "ALLIANCE_STREAMS_WEB_PORT", "ALLIANCE_METRICS_PORT")
    for variable in variables:
        ports = {other: str(free_port()) for other in variables}
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            line = one_line_error(await cli(settings, "dev", "--no-demo", **(ports | {variable: str(port)})))
        assert f"port {port} on 127.0.0.1" in line and "is taken" in line and variable in line, line


async def test_a_decision_no_worker_takes_is_one_line_naming_the_task_queue(
    projects: Projects, settings: Settings, temporal_env: WorkflowEnvironment
) -> None:
    idle = settings.model_copy(update={"task_queue": f"nobody-{uuid.uuid4().hex[:8]}"})
    await Projects(temporal_env.client, idle, projects.edge).propose(
        example("ke-national-data-centre-2", "ke-cli-idle"), actor=CONTRACTOR
    )
    queue = {"ALLIANCE_TASK_QUEUE": idle.task_queue}
    refused = await cli(settings, "cancel", "ke-cli-idle", "--reason", "r", "--by", "PMO", "--wait", "2", **queue)
    assert f"no worker polled task queue {idle.task_queue} within 2 s" in one_line_error(refused)
    unread = await cli(settings, "status", "ke-cli-idle", ALLIANCE_DECISION_WAIT_SECONDS="2", **queue)
    assert f"no worker polled task queue {idle.task_queue} within 2 s" in one_line_error(unread)
    await temporal_env.client.get_workflow_handle(workflow_id("ke-cli-idle")).terminate("test over")
