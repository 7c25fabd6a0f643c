"""A status query that runs ahead of the workflow task, on the product's own workflow and worker set-up, on purpose.

The race (temporalio 1.35.0's SDK core; docs/upstream-report.md): a query sent while no workflow task is pending goes
to a worker directly, with the history as of when the worker polls it. When an activity result (and the workflow task
it schedules) came in meanwhile, the core runs workflow code on those events to answer the query, and a worker that
caches workflows keeps that run. The real task then brings a decision (an Update) with the same activity result; the
cached run applies the decision in an activation of its own, after the commands it already made, so its acceptance is
recorded after them, while a replay applies both in one activation, Update first. A later task delivered with the full
history (after a server restart, a sticky queue reset, a redeploy) then fails, or accepts the Update again: the project
is stranded.

Each run here does exactly that, with `project_worker` as `alliance worker` runs it (its workflow cache on, and the
eviction of every run that answered such a query, alliance/query_isolation.py):
1. a worker takes the project's first task; the screening activity is held (the test completes it itself later, by
   its task token, as asynchronous completion: the product's activity code still computes the result) and the
   worker stops, as in a redeploy;
2. a status query is sent (no task is pending: it waits for a worker);
3. the screening result is delivered, so a task is scheduled, and a decision (a cancellation) is sent, which waits for
   that task;
4. a new worker starts: it polls the query first, with the screening result in its history, then the task with the
   decision; the first publish it runs is held;
5. the sticky queue is reset and the publish released, so the next task carries the whole history.
A run hit the race when the query answered a stage no workflow task had reached (the screening result applied).
A run stranded the project when its history has a failed workflow task, an Update accepted twice, does not replay
with `temporalio.worker.Replayer`, or the project did not end cancelled.

Figures on this machine. A worker with a cache of 1000 and no eviction (`isolate_queries=False`): the race hit in
every run, the project stranded in 2 of 2, 5 of 10, 3 of 10 and 1 of 6 runs (failed tasks
"BadUpdateWorkflowExecutionMessage ... Acceptance message while in state Completed", then "Nondeterminism error:
Update machine does not handle this event"; or a history that does not replay). A worker without a cache: race hit 10
of 10 twice, none stranded. The product's worker (cache and eviction): see docs/performance.md for the series.
ALLIANCE_QUERY_RUNAHEAD_RUNS sets the number of runs (4 in the suite); ALLIANCE_QUERY_RUNAHEAD_CACHE the worker's
cache (the setting's default otherwise) and ALLIANCE_QUERY_RUNAHEAD_ISOLATE=0 leaves the eviction out, to show what it
prevents.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio import client as temporal_client
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Replayer,
)

from activities.messages import PUBLISH_STATUS_EVENTS, SCREEN_PROPOSAL
from alliance.demo import OPERATOR
from alliance.projects import Projects
from alliance.query_isolation import EvictAfterLegacyQuery
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import WORKFLOWS, project_worker
from schemas.decisions import Cancel
from schemas.status import ProjectStatus, Stage
from tests.support import example
from workflows.project import workflow_id

RUNS = int(os.environ.get("ALLIANCE_QUERY_RUNAHEAD_RUNS", "4"))
CACHE = int(os.environ["ALLIANCE_QUERY_RUNAHEAD_CACHE"]) if "ALLIANCE_QUERY_RUNAHEAD_CACHE" in os.environ else None
ISOLATE = os.environ.get("ALLIANCE_QUERY_RUNAHEAD_ISOLATE", "1") != "0"
pytestmark = pytest.mark.timeout(60 + 45 * RUNS)


@dataclass
class Holds:
    """Which activities the test holds. `deferred`: the activity runs, but its result is kept for the test to deliver
    by task token (so no worker needs to be running then). `gates`: the activity waits for the event first."""

    deferred: set[str] = field(default_factory=set)
    results: list[tuple[bytes, Any]] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)


class Holding(temporal_client.Interceptor, Interceptor):
    """A client interceptor that workers made from that client pick up: it holds activities as `holds` says, around
    the product's own activity code."""

    def __init__(self, holds: Holds) -> None:
        self.holds = holds

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _HoldingActivity(next, self.holds)


class _HoldingActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, holds: Holds) -> None:
        super().__init__(next)
        self.holds = holds

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        if (gate := self.holds.gates.get(name)) is not None:
            await gate.wait()
        result = await self.next.execute_activity(input)
        if name in self.holds.deferred:
            self.holds.deferred.discard(name)
            self.holds.results.append((activity.info().task_token, result))
            activity.raise_complete_async()
        return result


def count(history: WorkflowHistory, kind: EventType.ValueType) -> int:
    return sum(1 for e in history.events if e.event_type == kind)


async def until(handle: WorkflowHandle[Any, Any], done: Callable[[WorkflowHistory], bool]) -> WorkflowHistory:
    while not done(history := await handle.fetch_history()):
        await asyncio.sleep(0.05)
    return history


def quiet(history: WorkflowHistory) -> bool:
    """No workflow task scheduled or running."""
    scheduled = count(history, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED)
    return scheduled > 0 and scheduled == count(history, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)


@dataclass
class Outcome:
    raced: bool
    strands: list[str]
    evictions: int


async def reset_sticky(client: Client, wf_id: str) -> None:
    await client.workflow_service.reset_sticky_task_queue(
        ResetStickyTaskQueueRequest(namespace=client.namespace, execution=WorkflowExecution(workflow_id=wf_id))
    )


async def one_run(client: Client, settings: Settings, holds: Holds, n: int) -> Outcome:
    projects = Projects(client, settings, Edge(settings))
    pid = f"runahead-{n}-{uuid.uuid4().hex[:6]}"
    handle = client.get_workflow_handle(workflow_id(pid), result_type=ProjectStatus)
    holds.deferred = {SCREEN_PROPOSAL}
    holds.results.clear()
    holds.gates.clear()

    # 1. The first worker takes the start and publishes `proposed`; screening runs and its result is held; the
    # worker goes.
    async with project_worker(client, settings, max_cached_workflows=CACHE, isolate_queries=ISOLATE):
        await projects.propose(example("my-smart-homes-pilot", pid))
        await until(
            handle,
            lambda h: quiet(h) and bool(holds.results) and count(h, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 1,
        )
    await reset_sticky(client, handle.id)

    # 2. A status query while no task is pending: no worker polls, so it waits.
    query = asyncio.create_task(projects.status(pid))
    await asyncio.sleep(0.3)

    # 3. The screening result comes in (a task is scheduled), then a decision that waits for that task.
    token, result = holds.results.pop()
    await client.get_async_activity_handle(task_token=token).complete(result)
    await until(handle, lambda h: count(h, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) >= 2)
    cancel = Cancel(decision_id=f"cancel-{pid}", reason="query run-ahead reproduction", by=OPERATOR.person)
    decision = asyncio.create_task(projects.decide(pid, cancel, OPERATOR))
    await asyncio.sleep(0.5)

    # 4. A new worker: the query first, then the task with the decision; its next publish is held.
    publishing = holds.gates[PUBLISH_STATUS_EVENTS] = asyncio.Event()
    strands: list[str] = []
    async with project_worker(client, settings, max_cached_workflows=CACHE, isolate_queries=ISOLATE) as worker:
        seen: ProjectStatus = await query
        raced = seen.stage is not Stage.screening
        try:
            receipt = await asyncio.wait_for(decision, 30)
            if receipt.stage not in (None, Stage.cancelled):
                strands.append(f"the receipt promised {receipt.stage.value}")
        except Exception as err:  # any failure of the decision is a strand
            strands.append(f"decision failed: {err!r}")

        # 5. The next task carries the whole history.
        await reset_sticky(client, handle.id)
        publishing.set()
        try:
            final = await asyncio.wait_for(handle.result(), 20)
            if final.stage is not Stage.cancelled:
                strands.append(f"ended {final.stage.value}")
        except TimeoutError:
            strands.append("did not end within 20 s")
        except Exception as err:  # a failed workflow is a strand
            strands.append(f"workflow failed: {err!r}")
        history = await handle.fetch_history()
        runner = worker.config()["workflow_runner"]
        evictions = runner.evictions if isinstance(runner, EvictAfterLegacyQuery) else 0

    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failure = event.workflow_task_failed_event_attributes.failure.message
            strands.append(f"workflow task failed: {failure[:160]}")
    accepted = Counter(
        e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )
    strands += [f"update {u} accepted {k} times" for u, k in accepted.items() if k > 1]
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if replayed.replay_failure is not None:
        strands.append(f"replay failed: {str(replayed.replay_failure)[:160]}")
    return Outcome(raced=raced, strands=strands, evictions=evictions)


async def test_a_query_that_runs_ahead_of_the_workflow_task_strands_no_project(
    temporal_env: WorkflowEnvironment, settings: Settings
) -> None:
    holds = Holds()
    config = temporal_env.client.config()
    config["interceptors"] = [Holding(holds)]
    client = Client(**config)
    outcomes = [await one_run(client, settings, holds, n) for n in range(RUNS)]

    raced = sum(o.raced for o in outcomes)
    stranded = [(n, o.strands) for n, o in enumerate(outcomes) if o.strands]
    evicted = sum(o.evictions > 0 for o in outcomes)
    print(
        f"\nquery run-ahead: {RUNS} runs (cache {CACHE if CACHE is not None else settings.workflow_cache}, eviction "
        f"{'on' if ISOLATE else 'off'}), race hit in {raced}, a run evicted after the query in {evicted}, "
        f"project stranded in {len(stranded)}"
    )
    for n, strands in stranded:
        print(f"  run {n}: " + " | ".join(strands))
    # The reproduction must reach the race, or it proves nothing.
    assert raced > 0, "no query ran ahead of its workflow task: the reproduction no longer sets the race up"
    assert not stranded, f"{len(stranded)} of {RUNS} projects stranded: {stranded}"
    if ISOLATE:
        # The worker that answered the query must have evicted the run it answered from, in every run.
        assert evicted == RUNS, f"the run was evicted after the query in {evicted} of {RUNS} runs"
