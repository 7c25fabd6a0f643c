"""A lean driver for workflow tests: sends each decision as the person who would make it and returns its receipt;
waits for the project itself with the `await_progress` Update, never by polling the status query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from temporalio.client import Client, WorkflowUpdateHandle, WorkflowUpdateStage

from alliance.demo import Driver
from alliance.projects import Projects
from schemas.decisions import (
    AcceptanceCertificate,
    Approve,
    AwaitProgress,
    Cancel,
    CompleteMilestone,
    Decision,
    Institution,
    Progress,
    Receipt,
    SatisfyCondition,
)
from schemas.proposal import Proposal
from schemas.status import ProjectStatus, Stage
from schemas.timetable import Timetable
from workflows.catalogue import AWAIT_PROGRESS
from workflows.project import workflow_id


@dataclass
class ProjectDriver:
    """One project driven decision by decision (warranty of 0 months, so final acceptance follows at once)."""

    projects: Projects
    proposal: Proposal
    step: int = 0

    @property
    def pid(self) -> str:
        return self.proposal.project_id

    async def start(self) -> None:
        await Driver(self.projects, self.proposal).start(Timetable(warranty_months=0))

    async def decide(self, kind: type[Decision], **fields: object) -> Receipt:
        self.step += 1
        decision = kind.model_validate({"decision_id": f"race-{self.pid}-{self.step}", **fields})
        return await self.projects.decide(self.pid, decision, Driver.actor_for(decision))

    async def progress(self, *stages: Stage) -> Progress:
        """Waits for one of `stages` (none: until the project has nothing left to do but wait for people)."""
        wait = AwaitProgress(stages=list(stages), min_sequence=None if stages else 0, timeout_seconds=60)
        progress = await self.projects.await_progress(self.pid, wait)
        assert progress.reached, progress
        return progress

    async def approve(self, institution: Institution) -> Receipt:
        requested = {
            Institution.cdb: self.proposal.financing.cdb_loan,
            Institution.exim: self.proposal.financing.exim_loan and self.proposal.financing.exim_loan.amount,
            Institution.sinosure: self.proposal.financing.sinosure_cover,
        }[institution]
        return await self.decide(Approve, institution=institution, officer="Officer", amount=requested)

    async def satisfy(self, condition_id: str) -> Receipt:
        return await self.decide(SatisfyCondition, condition_id=condition_id, evidence=f"DOC-{condition_id}", by="PM")

    async def complete(self, milestone_id: str) -> Receipt:
        certificate = AcceptanceCertificate(
            reference=f"AC-{milestone_id}", issued_by="Borrower", issued_on=date.today()
        )
        return await self.decide(CompleteMilestone, milestone_id=milestone_id, certificate=certificate, by="PM")

    async def cancel(self) -> Receipt:
        return await self.decide(Cancel, reason="The borrower withdrew the project", by="Operations")

    async def status(self) -> ProjectStatus:
        return await self.projects.status(self.pid)

    async def into_delivery(self) -> None:
        """Starts the project and takes it into delivery: all three institutions approve, every condition precedent
        set when the package closed is satisfied."""
        await self.start()
        await self.progress(Stage.financing)
        for institution in (Institution.sinosure, Institution.exim, Institution.cdb):
            await self.approve(institution)
        await self.progress(Stage.effectiveness)  # the conditions are set once the package has closed
        for condition in (await self.status()).conditions:
            await self.satisfy(condition.condition_id)
        await self.progress(Stage.delivery)


async def leave_waits_open(client: Client, project_id: str, ids: list[str]) -> list[WorkflowUpdateHandle[Progress]]:
    """`await_progress` waits for a sequence never reached, left open as a caller that vanished leaves them (a killed
    CLI, a crashed edge): accepted by the workflow, never released by an edge. Returns their handles."""
    handle = client.get_workflow_handle(workflow_id(project_id))
    return [
        await handle.start_update(
            AWAIT_PROGRESS,
            AwaitProgress(min_sequence=999),
            id=wait_id,
            result_type=Progress,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        for wait_id in ids
    ]
