"""Drivers for the fault tests: the people of a project, patient the way people are when the system is recovering."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from alliance.demo import Driver
from alliance.projects import Projects, UserError
from schemas.decisions import Decision, Institution, Progress, Receipt
from schemas.status import ProjectStatus, Stage
from schemas.timetable import Timetable
from tests.support import example

PATIENCE = 660.0
"""Seconds a driver waits for one step. Each kill can hold a project for a workflow task timeout (10 s) plus an
activity timeout (30 s); a task that timed out under killed workers three times and more gets a start-to-close
timeout growing towards the server's ceiling of 10 minutes (temporalio/temporal#2765): that ceiling, plus a minute."""


class PatientDriver(Driver):
    """Sends a refused decision again (same decision id) after a second. A killed worker may have answered a status
    query from state it had computed but not yet recorded in history; the next worker replays history and, for a
    moment, is one step behind what the driver saw, so it refuses the decision as early. The refusal itself is right
    (and changes nothing); a person would try again. The same when Temporal cannot be reached for a while."""

    refusals: list[str] = []
    unavailable: list[str] = []

    async def wait(self, done: Callable[[ProjectStatus], bool], seconds: float = PATIENCE) -> ProjectStatus:
        return await super().wait(done, seconds)

    async def reach(self, *stages: Stage, seconds: float = PATIENCE) -> Progress:
        """As the demo's, waiting out a killed worker or a restarting server (each wait bounded, then again)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            try:
                return await super().reach(*stages, seconds=min(60, max(1, deadline - loop.time())))
            except UserError as err:
                if loop.time() > deadline or (err.kind != "unavailable" and "demo:" not in str(err)):
                    raise
                self.unavailable.append(f"{self.pid}: {err}")
                await asyncio.sleep(1)

    async def send(self, decision_type: type[Decision], **fields: object) -> Receipt:
        self.step += 1
        decision = decision_type.model_validate({"decision_id": f"demo-{self.pid}-{self.step}", **fields})
        for attempt in range(ATTEMPTS):
            try:
                receipt = await self.projects.decide(self.pid, decision, self.actor_for(decision))
                self._saw(receipt.stage, receipt.sequence)
                return receipt
            except UserError as err:
                if err.kind not in ("refused", "unavailable") or attempt == ATTEMPTS - 1:
                    raise
                (self.refusals if err.kind == "refused" else self.unavailable).append(f"{self.pid}: {err}")
                await asyncio.sleep(1)
        raise AssertionError("unreachable: the last attempt returns or raises")


ATTEMPTS = 60


class Halfway:
    """A meeting point in the middle of delivery, so that a fault test injects its fault while every project still
    has work left, however fast the machine. Each driver reports there and waits until the test says go; the test
    waits until all have arrived, says go, and injects the fault straight away, with decisions in flight."""

    def __init__(self, drivers: int) -> None:
        self._expected = drivers
        self._arrived = 0
        self.all_arrived = asyncio.Event()
        self._go = asyncio.Event()

    async def arrive(self) -> None:
        self._arrived += 1
        if self._arrived == self._expected:
            self.all_arrived.set()
        await self._go.wait()

    def go(self) -> None:
        self._go.set()


async def drive_to_completion(
    projects: Projects, project_id: str, driver: type[Driver] = PatientDriver, halfway: Halfway | None = None
) -> None:
    """The Malaysian smart homes pilot (CDB only, seven milestones), with no warranty wait, to completion; with a
    `halfway` meeting point after the third milestone."""
    proposal = example("my-smart-homes-pilot", project_id)
    d = driver(projects, proposal)
    await d.start(Timetable(warranty_months=0))
    await d.approve(Institution.cdb, "Liu Yang, CDB Asia division")
    await d.satisfy_all()
    for n, milestone in enumerate(proposal.milestones):
        if halfway is not None and n == HALFWAY_MILESTONE:
            await halfway.arrive()
        await d.complete(milestone.id)


HALFWAY_MILESTONE = 3
