"""The bare workflow of `bench.lifecycle`: the shape of a project's history (activities, updates, child workflows,
timers) doing nothing. Its own module with few imports, so the workflow sandbox has little to re-import."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow


class Shape(BaseModel):
    activities: int
    updates: int
    children: int
    timers: int


@activity.defn(name="bench_noop")
async def noop() -> None:
    return None


@workflow.defn(name="BenchBareChild")
class BareChild:
    @workflow.run
    async def run(self) -> None:
        await asyncio.sleep(0.001)


@workflow.defn(name="BenchBareProject")
class BareProject:
    def __init__(self) -> None:
        self.due = 0
        self.accepted = 0

    @workflow.run
    async def run(self, shape: Shape) -> int:
        me = workflow.info().workflow_id
        children = [
            await workflow.start_child_workflow(BareChild.run, id=f"{me}-child-{n}") for n in range(shape.children)
        ]
        for child in children:
            await child
        per_update, extra = divmod(shape.activities, max(shape.updates, 1))
        timers_per_update, extra_timers = divmod(shape.timers, max(shape.updates, 1))
        for step in range(shape.updates):
            self.due = step
            await workflow.wait_condition(lambda step=step: self.accepted > step)  # type: ignore[misc]
            # The product publishes and instructs alongside the workflow's own progress: the activities of a step run
            # together.
            await asyncio.gather(
                *(
                    workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
                    for _ in range(per_update)
                )
            )
            for _ in range(timers_per_update):
                await asyncio.sleep(0.001)
        for _ in range(extra):
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
        for _ in range(extra_timers):
            await asyncio.sleep(0.001)
        return self.accepted

    @workflow.query
    def next_due(self) -> int:
        return self.due if self.accepted == self.due else -1

    @workflow.update
    async def await_due(self, n: int) -> int:
        """Returns once step `n` is due: the bare counterpart of the product's `await_progress`."""
        await workflow.wait_condition(lambda: self.due >= n and self.accepted == self.due)
        return self.due

    @workflow.update
    async def step(self, n: int) -> int:
        self.accepted += 1
        return self.accepted

    @step.validator
    def _validate_step(self, n: int) -> None:
        if n != self.due or self.accepted != n:
            raise ValueError(f"step {n} is not due (due: {self.due})")
