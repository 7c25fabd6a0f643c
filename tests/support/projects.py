"""Following projects in tests: a project's final status, the edge's clock on a time-skipping server, a late
delivery driven across months, the histories of a chain of runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from alliance.demo import CONTRACTOR, Driver
from alliance.projects import Projects
from schemas.decisions import AcceptanceCertificate, CompleteMilestone, Institution, Receipt
from schemas.proposal import Proposal
from schemas.status import ProjectStatus
from schemas.timetable import Timetable
from workflows.project import ProjectWorkflow, workflow_id


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
