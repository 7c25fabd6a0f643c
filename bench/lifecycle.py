"""Lifecycle throughput next to a bare workflow of the same shape, and decision → event latency, in one run.

    .venv/bin/python -m bench.lifecycle [--projects 50 200] [--at-once 50]

Needs the local servers (`deploy/local/services.sh start`). For each N:
- product: N projects (the Malaysian smart homes pilot: CDB loan, conditions, seven milestones, no warranty wait)
  driven to completion by `alliance.demo.Driver` against an in-process worker: projects/s and state transitions
  (status events) per second; the latency from an accepted decision to its status event being readable by a Kafka
  consumer (p50 / p95 / p99);
- baseline: N bare workflows with the shape of one product project's history (the same numbers of activities,
  updates, child workflows and timers, doing nothing), driven the same way (the driver polls a query until the next
  update is due, then sends it), on the same server and task-queue setup.
The ratio product / baseline is the product's own cost (validation, pydantic models, Kafka publishing, search
attributes) over what the engine gives a workflow of that shape on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from alliance import logs
from alliance.connections import kafka_options
from alliance.demo import Driver
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import project_worker
from bench.bare import BareChild, BareProject, Shape, noop
from schemas.decisions import Decision, Receipt
from schemas.events import StatusEvent
from schemas.identity import Identity
from tests.faults.driving import drive_to_completion
from tests.support import finished
from workflows.project import workflow_id


class TimedProjects(Projects):
    """Records when each decision was accepted, keyed by (project, event sequence)."""

    accepted: dict[tuple[str, int], float]

    async def decide(self, project_id: str, decision: Decision, actor: Identity | None = None) -> Receipt:
        receipt = await super().decide(project_id, decision, actor)
        self.accepted[(project_id, receipt.event_sequence)] = time.perf_counter()
        return receipt


async def drive_bare(client: Client, task_queue: str, wf_id: str, shape: Shape) -> None:
    handle = await client.start_workflow(BareProject.run, shape, id=wf_id, task_queue=task_queue)
    for n in range(shape.updates):
        while await handle.query(BareProject.next_due) != n:
            await asyncio.sleep(0.2)  # the product driver's polling interval
        await handle.execute_update(BareProject.step, n)
    await handle.result()


async def shape_of(client: Client, project_id: str) -> Shape:
    counts = {
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: 0,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 0,
    }
    counts |= {EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: 0, EventType.EVENT_TYPE_TIMER_STARTED: 0}
    history = await client.get_workflow_handle(workflow_id(project_id)).fetch_history()
    for event in history.events:
        if event.event_type in counts:
            counts[event.event_type] += 1
    return Shape(
        activities=counts[EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED],
        updates=counts[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED],
        children=counts[EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED],
        timers=counts[EventType.EVENT_TYPE_TIMER_STARTED],
    )


async def tail_events(settings: Settings, seen: dict[tuple[str, int], float], stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.status_topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event = StatusEvent.model_validate_json(record.value)
                    seen.setdefault((event.subject, event.data.sequence), now)
    finally:
        await consumer.stop()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def gated(gate: asyncio.Semaphore, work: object) -> None:
    async with gate:
        await work  # type: ignore[misc]


async def run_size(client: Client, base: Settings, n: int, at_once: int) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={
            "task_queue": f"bench-{run}",
            "status_topic": f"bench.status.{run}",
            "instruction_topic": f"bench.instructions.{run}",
        }
    )
    projects = TimedProjects(client, settings, Edge(settings))
    projects.accepted = {}
    seen: dict[tuple[str, int], float] = {}
    ids = [f"bench-{run}-{i:04d}" for i in range(n)]
    async with project_worker(client, settings):
        stop = asyncio.Event()
        tail = asyncio.create_task(tail_events(settings, seen, stop))
        gate = asyncio.Semaphore(at_once)
        started = time.perf_counter()
        await asyncio.gather(*(gated(gate, drive_to_completion(projects, pid, Driver)) for pid in ids))
        statuses = [await finished(projects, pid) for pid in ids]
        product_s = time.perf_counter() - started
        await asyncio.sleep(1)
        stop.set()
        await tail
    transitions = sum(len(s.events) for s in statuses)
    lags = [(seen[k] - t) * 1000 for k, t in projects.accepted.items() if k in seen]

    shape = await shape_of(client, ids[0])
    bare_queue = f"bench-bare-{run}"
    async with Worker(client, task_queue=bare_queue, workflows=[BareProject, BareChild], activities=[noop]):
        gate = asyncio.Semaphore(at_once)
        started = time.perf_counter()
        await asyncio.gather(
            *(gated(gate, drive_bare(client, bare_queue, f"bench-bare-{run}-{i:04d}", shape)) for i in range(n))
        )
        bare_s = time.perf_counter() - started
    return {
        "n": n,
        "product_s": product_s,
        "bare_s": bare_s,
        "transitions": transitions,
        "lag_p50": statistics.median(lags),
        "lag_p95": pct(lags, 0.95),
        "lag_p99": pct(lags, 0.99),
        "lags": len(lags),
        **shape.model_dump(),
    }


async def main(sizes: list[int], at_once: int, temporal: str, bootstrap: str) -> None:
    base = Settings(temporal_address=temporal, kafka_bootstrap_servers=bootstrap, log_level="WARNING")
    logs.configure(base)
    client = await Client.connect(temporal, data_converter=pydantic_data_converter)
    print(f"machine: {os.cpu_count()} cores; {at_once} projects driven at once; Temporal {temporal}, Kafka {bootstrap}")
    header = (
        f"{'N':>5} | {'product proj/s':>14} | {'transitions/s':>13} | {'bare wf/s':>9} | {'ratio':>5} | "
        f"{'decision→event p50 / p95 / p99 ms':>34}"
    )
    print(header)
    print("-" * len(header))
    for n in sizes:
        r = await run_size(client, base, n, at_once)
        product, bare = r["n"] / r["product_s"], r["n"] / r["bare_s"]
        lag = f"{r['lag_p50']:.0f} / {r['lag_p95']:.0f} / {r['lag_p99']:.0f} (n={r['lags']})"
        print(
            f"{n:>5} | {product:>14.2f} | {r['transitions'] / r['product_s']:>13.1f} | {bare:>9.2f} | "
            f"{product / bare:>5.2f} | {lag:>34}",
            flush=True,
        )
    print(
        f"bare shape (from one product history): {r['activities']} activities, {r['updates']} updates, "
        f"{r['children']} child workflows, {r['timers']} timers"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--at-once", type=int, default=50)
    parser.add_argument("--temporal", default="127.0.0.1:7233")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    args = parser.parse_args()
    asyncio.run(main(args.projects, args.at_once, args.temporal, args.bootstrap))
    sys.stdout.flush()
    os._exit(0)  # temporalio/sdk-python issue 300: abort at interpreter exit
