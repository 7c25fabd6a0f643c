"""`alliance demo`: the example proposals driven along every path, so the Web UI has a project in each stage.

Decision ids are fixed per project and step, so running the demo again changes nothing.

The driver acts on receipts (each says the stage and status sequence the decision left the project in) and,
where the next step waits for the project itself (screening to finish, a stage to be reached), on the workflow's
`await_progress` Update. It never polls the status: every query makes a worker replay the project.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from alliance.projects import Projects, UserError, load_proposal
from schemas.decisions import (
    AcceptanceCertificate,
    Approve,
    AwaitProgress,
    Cancel,
    CompleteMilestone,
    Decision,
    Institution,
    Progress,
    ProvideInformation,
    Receipt,
    Reject,
    RequestInformation,
    SatisfyCondition,
    Terms,
)
from schemas.identity import Identity, Role
from schemas.proposal import MilestoneKind, Proposal
from schemas.stage import Stage
from schemas.status import ProjectStatus, Review, ReviewStatus
from schemas.timetable import Timetable
from workflows import effectiveness, financing

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


CONTRACTOR = Identity(person="Zhang Min", organisation="inspur", role=Role.contractor)
OPERATOR = Identity(person="Amina Njoroge", organisation="alliance-pmo", role=Role.operator)
# How often `wait` reads the status again (tests that need the full status; the demo itself never polls).
WAIT_STEP_SECONDS = 0.5
NOT_KNOWN = datetime.min.replace(tzinfo=UTC)


def officer_of(institution: Institution, person: str) -> Identity:
    return Identity(person=person, organisation=institution.value, role=Role.officer)


class Driver:
    """Plays the people of one project: officers, contractor staff, operators. Each decision is sent with the
    identity of whoever would make it (officers name themselves in the decision; others are the contractor, or an
    operator for a cancellation)."""

    def __init__(self, projects: Projects, proposal: Proposal) -> None:
        self.projects = projects
        self.proposal = proposal
        self.pid = proposal.project_id
        self.step = 0
        # Where the project stood after the last receipt or progress this driver saw (None: not known yet).
        self.stage: Stage | None = None
        self.sequence = 0
        self.timetable: Timetable | None = None
        # What this driver approved: institution -> the conditions attached (they become conditions precedent).
        self.approved: dict[Institution, list[str]] = {}

    async def start(self, timetable: Timetable | None = None) -> bool:
        try:
            await self.projects.propose(self.proposal, timetable, actor=CONTRACTOR if self.projects.edge else None)
        except UserError as err:
            if "already exists" in str(err):
                return False
            raise
        self.timetable = timetable or self.projects.settings.timetable()
        self.stage = Stage.screening
        return True

    def _saw(self, stage: Stage | None, sequence: int | None) -> None:
        if stage is not None and sequence is not None and sequence >= self.sequence:
            self.stage, self.sequence = stage, sequence

    async def reach(self, *stages: Stage, seconds: float = 60) -> Progress:
        """Waits (await_progress, no polling) until the project is in one of `stages` or has ended; a UserError if
        it is not there within `seconds`. Returns at once, with what the last receipt said, if it is there."""
        if self.stage in stages:
            return Progress(stage=self.stage, sequence=self.sequence, details="", reached=True)
        progress = await self.projects.await_progress(
            self.pid, AwaitProgress(stages=list(stages), timeout_seconds=seconds)
        )
        self._saw(progress.stage, progress.sequence)
        if progress.stage not in stages:
            raise UserError(
                f"demo: {self.pid} is {progress.stage.value}, not {' or '.join(s.value for s in stages)}: "
                f"{progress.details}"
            )
        return progress

    async def where(self) -> Progress:
        """Where the project stands now, once it has finished reacting to what it last saw (no query)."""
        progress = await self.projects.await_progress(
            self.pid, AwaitProgress(min_sequence=self.sequence, timeout_seconds=60)
        )
        self._saw(progress.stage, progress.sequence)
        return progress

    async def wait(self, done: Callable[[ProjectStatus], bool], seconds: float = 60) -> ProjectStatus:
        """Reads the status until `done` says so, every WAIT_STEP_SECONDS: for a test that needs the full status
        (what a person reading it would see). The demo's own steps use receipts and `reach` instead."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            try:
                status = await self.projects.status(self.pid)
            except UserError as err:
                # A worker restarting (or a query routed to a dead worker's sticky queue) is transient.
                if err.kind != "unavailable" or loop.time() > deadline:
                    raise
                await asyncio.sleep(WAIT_STEP_SECONDS)
                continue
            if done(status):
                return status
            if loop.time() > deadline:
                raise UserError(f"demo: {self.pid} stuck in {status.stage.value}: {status.details}")
            await asyncio.sleep(WAIT_STEP_SECONDS)

    async def send(self, decision_type: type[Decision], **fields: object) -> Receipt:
        self.step += 1
        decision = decision_type.model_validate({"decision_id": f"demo-{self.pid}-{self.step}", **fields})
        actor = self.actor_for(decision) if self.projects.edge else None
        receipt = await self.projects.decide(self.pid, decision, actor)
        self._saw(receipt.stage, receipt.sequence)
        return receipt

    @staticmethod
    def actor_for(decision: Decision) -> Identity:
        if isinstance(decision, Approve | Reject | RequestInformation):
            return officer_of(decision.institution, decision.officer.split(",")[0])
        return OPERATOR if isinstance(decision, Cancel) else CONTRACTOR

    async def approve(self, institution: Institution, officer: str, conditions: list[str] | None = None) -> None:
        """Approves the amount the proposal requests of `institution`, once its review is open (financing)."""
        await self.reach(Stage.financing, *FINAL_OR_LATER)
        requested = dict(financing.requests(self.proposal))[institution]
        terms = {
            Institution.cdb: Terms(
                interest_rate_pct=Decimal("4.2"), tenor_years=15, grace_period_years=5, fee_pct=Decimal("1")
            ),
            Institution.exim: Terms(
                interest_rate_pct=Decimal("2"), tenor_years=20, grace_period_years=7, fee_pct=Decimal("0.5")
            ),
            Institution.sinosure: Terms(fee_pct=Decimal("7.2")),
        }[institution]
        await self.send(
            Approve,
            institution=institution,
            officer=officer,
            amount=requested,
            terms=terms,
            conditions=conditions or [],
        )
        self.approved[institution] = list(conditions or [])

    async def satisfy(self, condition_id: str) -> None:
        await self.send(
            SatisfyCondition,
            condition_id=condition_id,
            evidence=f"DOC-{self.pid}-{condition_id}",
            by="Li Wei, Inspur project office",
        )

    async def satisfy_all(self) -> None:
        """Satisfies every condition precedent once the project is in effectiveness."""
        await self.reach(Stage.effectiveness)
        for condition_id in await self._conditions():
            await self.satisfy(condition_id)

    async def _conditions(self) -> list[str]:
        """The conditions precedent, by the workflow's own rule, from what this driver approved; read from the
        status only when others approved some of the reviews."""
        requested = dict(financing.requests(self.proposal))
        if set(self.approved) != set(requested):
            return [c.condition_id for c in (await self.projects.status(self.pid)).conditions]
        reviews = [
            Review(
                institution=i,
                status=ReviewStatus.approved,
                requested=amount,
                opened_at=NOT_KNOWN,
                deadline=NOT_KNOWN,
                conditions=self.approved[i],
            )
            for i, amount in requested.items()
        ]
        # Only the reviews: all the rule reads (a status built without validation, never sent anywhere).
        only_reviews: dict[str, Any] = {"reviews": reviews}
        status = ProjectStatus.model_construct(**only_reviews)
        return [c.condition_id for c in effectiveness.conditions_precedent(status)]

    async def report_milestone(self, milestone_id: str) -> None:
        await self.send(
            CompleteMilestone,
            milestone_id=milestone_id,
            certificate=AcceptanceCertificate(
                reference=f"AC-{self.pid}-{milestone_id}", issued_by=self.proposal.borrower, issued_on=date.today()
            ),
            by="Zhang Min, Inspur project manager",
        )

    async def complete(self, milestone_id: str) -> None:
        """Reports the milestone once the project can take it (for final acceptance: after the warranty)."""
        await self.reach(Stage.delivery, Stage.warranty)
        milestone = next(m for m in self.proposal.milestones if m.id == milestone_id)
        if milestone.kind is MilestoneKind.final_acceptance:
            if self.timetable is None or self.timetable.warranty_months:
                await self.wait(lambda s: s.warranty_over_at is not None)
            else:
                await self.where()  # the provisional acceptance paid and a warranty of 0 months over
        await self.report_milestone(milestone_id)


# Stages a project can be in once it has left financing: an approval sent then is refused by the project itself.
FINAL_OR_LATER = (Stage.effectiveness, Stage.delivery, Stage.warranty, *(s for s in Stage if s.is_final))


async def run_demo(projects: Projects) -> list[str]:
    lines = []
    for name, plan in sorted(SCENARIOS.items()):
        driver = Driver(projects, load_proposal(EXAMPLES / f"{name}.json"))
        scenario, timetable = plan
        if not await driver.start(timetable):
            lines.append(f"{name}: already started earlier; left as it is")
            continue
        await scenario(driver)
        progress = await driver.where()
        lines.append(f"{name}: {progress.stage.value} — {progress.details}")
    return lines


async def _delivering(d: Driver) -> None:
    await d.approve(Institution.sinosure, "Wang Fang, Sinosure project finance")
    await d.approve(Institution.exim, "Chen Jie, China Exim concessional loans", ["Escrow account opened at Zanaco"])
    await d.approve(Institution.cdb, "Liu Yang, CDB Africa division")
    await d.satisfy_all()
    await d.complete("survey")
    await d.complete("procurement")


async def _in_warranty(d: Driver) -> None:
    await d.approve(Institution.exim, "Chen Jie, China Exim concessional loans")
    await d.satisfy_all()
    for milestone in ("survey", "procurement", "installation", "commissioning", "training", "provisional"):
        await d.complete(milestone)
    await d.reach(Stage.warranty)


async def _waiting_for_information(d: Driver) -> None:
    await d.approve(Institution.sinosure, "Wang Fang, Sinosure project finance")
    await d.send(
        RequestInformation,
        institution=Institution.cdb,
        officer="Liu Yang, CDB Africa division",
        questions="Please send the states' co-funding letters and the spectrum licence for the LTE core.",
    )


async def _rejected_at_screening(d: Driver) -> None:
    await d.reach(Stage.rejected)


async def _declined(d: Driver) -> None:
    await d.approve(Institution.cdb, "Liu Yang, CDB Africa division")
    await d.send(
        RequestInformation,
        institution=Institution.sinosure,
        officer="Wang Fang, Sinosure project finance",
        questions="Please send the buyer's audited accounts for the last three years.",
    )
    await d.send(
        ProvideInformation,
        institution=Institution.sinosure,
        responder="Li Wei, Inspur bid manager",
        answer="Audited accounts 2023-2025 attached.",
        documents=["AUD-ET-2023", "AUD-ET-2024", "AUD-ET-2025"],
    )
    await d.send(
        Reject,
        institution=Institution.sinosure,
        officer="Wang Fang, Sinosure project finance",
        reason="Country limit for Ethiopia is fully used for this year",
    )
    await d.reach(Stage.financing_declined)


async def _cancelled(d: Driver) -> None:
    await d.approve(Institution.cdb, "Liu Yang, CDB Africa division")
    await d.satisfy_all()
    await d.complete("survey")
    await d.send(Cancel, reason="The borrower re-tendered the education cloud", by="Operations, Alliance PMO")
    await d.reach(Stage.cancelled)


async def _completed(d: Driver) -> None:
    await d.approve(Institution.cdb, "Liu Yang, CDB Asia division")
    await d.satisfy_all()
    for milestone in ("survey", "procurement", "installation", "commissioning", "training", "provisional", "final"):
        await d.complete(milestone)
    await d.reach(Stage.completed)


SCENARIOS = {
    "zm-lusaka-smart-city-2": (_delivering, None),
    "ke-national-data-centre-2": (_in_warranty, None),
    "ng-public-security-network": (_waiting_for_information, None),
    "th-smart-taxation": (_rejected_at_screening, None),
    "et-cloud-finance": (_declined, None),
    "tn-smart-education": (_cancelled, None),
    # A warranty of 0 months, so that the demo also shows a completed project.
    "my-smart-homes-pilot": (_completed, Timetable(warranty_months=0)),
}
