"""`alliance demo`: the example proposals driven along every path, so the Web UI has a project in each stage.

Decision ids are fixed per project and step, so running the demo again changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

from alliance.projects import Projects, UserError, load_proposal
from schemas.decisions import (
    AcceptanceCertificate,
    Approve,
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
from schemas.proposal import Proposal
from schemas.status import ProjectStatus, Stage
from schemas.timetable import Timetable

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


CONTRACTOR = Identity(person="Zhang Min", organisation="inspur", role=Role.contractor)
OPERATOR = Identity(person="Amina Njoroge", organisation="alliance-pmo", role=Role.operator)


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

    async def start(self, timetable: Timetable | None = None) -> bool:
        try:
            await self.projects.propose(self.proposal, timetable, actor=CONTRACTOR if self.projects.edge else None)
        except UserError as err:
            if "already exists" in str(err):
                return False
            raise
        return True

    async def wait(self, done: Callable[[ProjectStatus], bool], seconds: float = 60) -> ProjectStatus:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            try:
                status = await self.projects.status(self.pid)
            except UserError as err:
                # A worker restarting (or a query routed to a dead worker's sticky queue) is transient.
                if err.kind != "unavailable" or loop.time() > deadline:
                    raise
                continue
            if done(status):
                return status
            if loop.time() > deadline:
                raise UserError(f"demo: {self.pid} stuck in {status.stage.value}: {status.details}")
            await asyncio.sleep(0.2)

    async def send(self, decision_type: type[Decision], **fields: object) -> None:
        self.step += 1
        decision = decision_type.model_validate({"decision_id": f"demo-{self.pid}-{self.step}", **fields})
        actor = self.actor_for(decision) if self.projects.edge else None
        await self.projects.decide(self.pid, decision, actor)

    @staticmethod
    def actor_for(decision: Decision) -> Identity:
        if isinstance(decision, Approve | Reject | RequestInformation):
            return officer_of(decision.institution, decision.officer.split(",")[0])
        return OPERATOR if isinstance(decision, Cancel) else CONTRACTOR

    async def approve(self, institution: Institution, officer: str, conditions: list[str] | None = None) -> None:
        status = await self.wait(lambda s: any(r.institution is institution for r in s.reviews))
        review = next(r for r in status.reviews if r.institution is institution)
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
            amount=review.requested,
            terms=terms,
            conditions=conditions or [],
        )

    async def satisfy(self, condition_id: str) -> None:
        await self.send(
            SatisfyCondition,
            condition_id=condition_id,
            evidence=f"DOC-{self.pid}-{condition_id}",
            by="Li Wei, Inspur project office",
        )

    async def satisfy_all(self) -> None:
        status = await self.wait(lambda s: s.stage is Stage.effectiveness)
        for condition in status.conditions:
            await self.satisfy(condition.condition_id)

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
        status = await self.wait(lambda s: s.stage in (Stage.delivery, Stage.warranty))
        if milestone_id == status.milestones[-1].milestone_id:
            await self.wait(lambda s: s.warranty_over_at is not None)
        await self.report_milestone(milestone_id)


async def run_demo(projects: Projects) -> list[str]:
    lines = []
    for name, plan in sorted(SCENARIOS.items()):
        driver = Driver(projects, load_proposal(EXAMPLES / f"{name}.json"))
        scenario, timetable = plan
        if not await driver.start(timetable):
            lines.append(f"{name}: already started earlier; left as it is")
            continue
        await scenario(driver)
        status = await projects.status(name)
        lines.append(f"{name}: {status.stage.value} — {status.details}")
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
    await d.wait(lambda s: s.stage is Stage.warranty)


async def _waiting_for_information(d: Driver) -> None:
    await d.approve(Institution.sinosure, "Wang Fang, Sinosure project finance")
    await d.wait(lambda s: s.stage is Stage.financing)
    await d.send(
        RequestInformation,
        institution=Institution.cdb,
        officer="Liu Yang, CDB Africa division",
        questions="Please send the states' co-funding letters and the spectrum licence for the LTE core.",
    )


async def _rejected_at_screening(d: Driver) -> None:
    await d.wait(lambda s: s.stage is Stage.rejected)


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
    await d.wait(lambda s: s.stage is Stage.financing_declined and all(not r.status.is_open for r in s.reviews))


async def _cancelled(d: Driver) -> None:
    await d.approve(Institution.cdb, "Liu Yang, CDB Africa division")
    await d.satisfy_all()
    await d.complete("survey")
    await d.send(Cancel, reason="The borrower re-tendered the education cloud", by="Operations, Alliance PMO")
    await d.wait(lambda s: s.stage is Stage.cancelled and all(t.retained.amount == 0 for t in s.tranches))


async def _completed(d: Driver) -> None:
    await d.approve(Institution.cdb, "Liu Yang, CDB Asia division")
    await d.satisfy_all()
    for milestone in ("survey", "procurement", "installation", "commissioning", "training", "provisional", "final"):
        await d.complete(milestone)
    await d.wait(lambda s: s.stage is Stage.completed)


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
