"""A lean driver for the benchmarks: plays one project's people and acts on what the project answers (receipts, and
the `await_progress` Update for the steps where the project moves by itself), never polling status queries.

It sends no query at all: the conditions precedent of a CDB-only project without attached conditions are the
standard ones (workflows.effectiveness). A decision refused because the project has not got there yet is sent
again once the project moved on (counted).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from alliance.demo import CONTRACTOR, officer_of
from alliance.projects import Projects, UserError
from schemas.decisions import (
    AcceptanceCertificate,
    Approve,
    AwaitProgress,
    CompleteMilestone,
    Decision,
    Institution,
    Progress,
    Receipt,
    SatisfyCondition,
    Terms,
)
from schemas.identity import Identity
from schemas.proposal import Proposal
from schemas.status import Stage
from schemas.timetable import Timetable
from workflows.effectiveness import STANDARD_CONDITIONS
from workflows.project import workflow_id

OFFICER = "Liu Yang, CDB Asia division"


@dataclass
class Timings:
    """What the drivers saw: each decision's round trip (s), also by kind of decision, and when it was sent
    (perf_counter), by (project, event sequence of the event it produced)."""

    round_trips: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)  # round trips (s) by decision model
    sent: dict[tuple[str, int], float] = field(default_factory=dict)
    waits: int = 0
    retries: int = 0


class LeanDriver:
    def __init__(self, projects: Projects, proposal: Proposal, timings: Timings, think: float = 0.0) -> None:
        self.projects = projects
        # Seconds a person takes between a receipt and their next decision: `think` on average, drawn uniformly
        # between half and one and a half times it (seeded by the project), so that projects started together do
        # not decide in step.
        self.think = think
        self.rng = random.Random(proposal.project_id)
        self.proposal = proposal
        self.pid = proposal.project_id
        self.timings = timings
        self.step = 0
        self.sequence = 0

    async def progress(self, stages: list[Stage] | None = None, min_sequence: int | None = None) -> Progress:
        """Waits (bounded, in the workflow) until the project reaches one of `stages` or `min_sequence`."""
        handle = self.projects.client.get_workflow_handle(workflow_id(self.pid))
        self.timings.waits += 1
        progress: Progress = await handle.execute_update(
            "await_progress",
            AwaitProgress(stages=stages or [], min_sequence=min_sequence, timeout_seconds=60),
            result_type=Progress,
        )
        self.sequence = max(self.sequence, progress.sequence)
        return progress

    async def send(self, decision: Decision, actor: Identity) -> Receipt:
        if self.think:
            await asyncio.sleep(self.think * self.rng.uniform(0.5, 1.5))
        for _ in range(20):
            started = time.perf_counter()
            try:
                receipt = await self.projects.decide(self.pid, decision, actor)
            except UserError as err:
                if err.kind != "refused":
                    raise
                self.timings.retries += 1
                await self.progress(min_sequence=self.sequence + 1)
                continue
            done = time.perf_counter()
            self.timings.round_trips.append(done - started)
            self.timings.by_kind.setdefault(type(decision).__name__, []).append(done - started)
            self.timings.sent[(self.pid, receipt.event_sequence)] = started
            self.sequence = max(self.sequence, receipt.sequence or receipt.event_sequence)
            return receipt
        raise UserError(f"bench: {self.pid} kept refusing {type(decision).__name__}", "refused")

    def decision_id(self) -> str:
        self.step += 1
        return f"bench-{self.pid}-{self.step}"

    async def run(self) -> None:
        """The smart homes pilot (CDB only, seven milestones, no warranty wait) from proposal to completion."""
        await self.projects.propose(self.proposal, Timetable(warranty_months=0), actor=CONTRACTOR)
        await self.progress(stages=[Stage.financing])
        requested = self.proposal.financing.cdb_loan
        assert requested is not None, "the benchmark's proposal has a CDB loan"
        terms = Terms(interest_rate_pct=Decimal("4.2"), tenor_years=15, grace_period_years=5, fee_pct=Decimal("1"))
        approve = Approve(
            decision_id=self.decision_id(), institution=Institution.cdb, officer=OFFICER, amount=requested, terms=terms
        )
        receipt = await self.send(approve, officer_of(Institution.cdb, OFFICER.split(",")[0]))
        if receipt.stage is not Stage.effectiveness:
            await self.progress(stages=[Stage.effectiveness])
        for condition_id, _ in STANDARD_CONDITIONS:
            if condition_id == "sinosure-policy-issued":  # only where Sinosure approved cover
                continue
            satisfy = SatisfyCondition(
                decision_id=self.decision_id(),
                condition_id=condition_id,
                evidence=f"DOC-{self.pid}-{condition_id}",
                by="Li Wei, Inspur project office",
            )
            receipt = await self.send(satisfy, CONTRACTOR)
        if receipt.stage is not Stage.delivery:
            await self.progress(stages=[Stage.delivery])
        for milestone in self.proposal.milestones:
            report = CompleteMilestone(
                decision_id=self.decision_id(),
                milestone_id=milestone.id,
                certificate=AcceptanceCertificate(
                    reference=f"AC-{self.pid}-{milestone.id}", issued_by=self.proposal.borrower, issued_on=date.today()
                ),
                by="Zhang Min, Inspur project manager",
            )
            receipt = await self.send(report, CONTRACTOR)
        if receipt.stage is not Stage.completed:
            # The workflow's end is its result (an Update still waiting when the run closes is aborted).
            await self.projects.client.get_workflow_handle(workflow_id(self.pid)).result()
