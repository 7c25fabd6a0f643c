"""Lifecycle throughput next to a bare workflow of the same shape driven the same way, with decision round trips
and decision → event latency, in one run.

    .venv/bin/python -m bench.lifecycle --temporal 127.0.0.1:7233 --bootstrap 127.0.0.1:19092 [--projects 50 200]

Needs the local servers (`deploy/local/services.sh start`). For each N:
- product: N projects (the Malaysian smart homes pilot: CDB loan, conditions, seven milestones, no warranty wait),
  `--at-once` at a time, against an in-process worker as `alliance worker` runs it, each driven by
  `bench.driver.LeanDriver`: it acts on receipts and waits with the `await_progress` Update where the project moves
  by itself, never polling queries. Projects/s, decisions/s, the decision round trip (Update sent → receipt) and
  the latency from sending a decision to its status event being readable by a Kafka consumer (p50 / p99);
- baseline: N bare workflows with the shape of one product project's history (the same numbers of activities,
  updates, child workflows and timers, doing nothing), driven the same way (an Update that waits until the next
  step is due, then the step's Update), on the same server, with the same worker cache.
The ratio product / baseline is the product's own cost (validation, pydantic models, Kafka publishing, search
attributes) over what the engine gives a workflow of that shape on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
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
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import WORKFLOW_TASK_SLOTS, project_worker
from bench.bare import BareChild, BareProject, Shape, noop
from bench.driver import LeanDriver, Timings
from bench.proposals import smart_homes
from schemas.events import StatusEvent
from workflows.project import workflow_id


async def drive_bare(
    client: Client, task_queue: str, wf_id: str, shape: Shape, trips: list[float], think: float = 0.0
) -> None:
    handle = await client.start_workflow(BareProject.run, shape, id=wf_id, task_queue=task_queue)
    rng = random.Random(wf_id)  # as bench.driver.LeanDriver's people
    for n in range(shape.updates):
        await handle.execute_update(BareProject.await_due, n)
        if think:
            await asyncio.sleep(think * rng.uniform(0.5, 1.5))
        started = time.perf_counter()
        await handle.execute_update(BareProject.step, n)
        trips.append(time.perf_counter() - started)
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


async def run_size(client: Client, base: Settings, n: int, at_once: int, cache: int, think: float) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={
            "task_queue": f"bench-{run}",
            "status_topic": f"bench.status.{run}",
            "instruction_topic": f"bench.instructions.{run}",
        }
    )
    projects = Projects(client, settings, Edge(settings))
    timings = Timings()
    seen: dict[tuple[str, int], float] = {}
    ids = [f"bench-{run}-{i:04d}" for i in range(n)]
    async with project_worker(client, settings, max_cached_workflows=cache):
        stop = asyncio.Event()
        tail = asyncio.create_task(tail_events(settings, seen, stop))
        gate = asyncio.Semaphore(at_once)
        started = time.perf_counter()
        await asyncio.gather(
            *(gated(gate, LeanDriver(projects, smart_homes(pid), timings, think).run()) for pid in ids)
        )
        product_s = time.perf_counter() - started
        await asyncio.sleep(1)
        stop.set()
        await tail
    lags = [(seen[k] - t) * 1000 for k, t in timings.sent.items() if k in seen]
    trips = [t * 1000 for t in timings.round_trips]
    print(
        f"      product, cache {cache}: {n} projects in {product_s:.0f} s, {len(trips)} decisions, round trip "
        f"p50 {statistics.median(trips):.0f} / p99 {pct(trips, 0.99):.0f} ms, decision→event "
        f"p50 {statistics.median(lags):.0f} / p99 {pct(lags, 0.99):.0f} ms (the bare baseline runs next)",
        flush=True,
    )
    for kind, seconds in sorted(timings.by_kind.items()):
        ms = [t * 1000 for t in seconds]
        print(
            f"        {kind}: {len(ms)} decisions, round trip p50 {statistics.median(ms):.0f} / p99 "
            f"{pct(ms, 0.99):.0f} / max {max(ms):.0f} ms",
            flush=True,
        )

    shape = await shape_of(client, ids[0])
    bare_queue = f"bench-bare-{run}"
    bare_trips: list[float] = []
    bare_worker = Worker(
        client,
        task_queue=bare_queue,
        workflows=[BareProject, BareChild],
        activities=[noop],
        max_cached_workflows=cache,
        max_concurrent_workflow_tasks=WORKFLOW_TASK_SLOTS,  # as the product's worker
        max_concurrent_workflow_task_polls=min(WORKFLOW_TASK_SLOTS, 5),
    )
    async with bare_worker:
        gate = asyncio.Semaphore(at_once)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                gated(gate, drive_bare(client, bare_queue, f"bench-bare-{run}-{i:04d}", shape, bare_trips, think))
                for i in range(n)
            )
        )
        bare_s = time.perf_counter() - started
    bare_ms = [t * 1000 for t in bare_trips]
    return {
        "n": n,
        "product_s": product_s,
        "bare_s": bare_s,
        "decisions": len(trips),
        "bare_decisions": len(bare_ms),
        "trip_p50": statistics.median(trips),
        "trip_p99": pct(trips, 0.99),
        "bare_p50": statistics.median(bare_ms),
        "bare_p99": pct(bare_ms, 0.99),
        "lag_p50": statistics.median(lags) if lags else float("nan"),
        "lag_p99": pct(lags, 0.99) if lags else float("nan"),
        "lags": len(lags),
        "waits": timings.waits,
        "retries": timings.retries,
        **shape.model_dump(),
    }


async def main(
    sizes: list[int], at_once: int, caches: list[int], thinks: list[float], temporal: str, bootstrap: str
) -> None:
    base = Settings(temporal_address=temporal, kafka_bootstrap_servers=bootstrap, log_level="WARNING")
    logs.configure(base)
    client = await Client.connect(temporal, data_converter=pydantic_data_converter)
    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {at_once} projects driven at once; "
        f"Temporal {temporal}, Kafka {bootstrap}"
    )
    header = (
        f"{'N':>5} | {'cache':>5} | {'think s':>7} | {'proj/s':>6} | {'decisions/s':>11} | {'bare wf/s':>9} | "
        f"{'bare upd/s':>10} | "
        f"{'ratio':>5} | {'round trip p50/p99 ms':>21} | {'bare p50/p99 ms':>15} | {'decision→event p50/p99 ms':>25}"
    )
    print(header)
    print("-" * len(header))
    r: dict[str, float] = {}
    for n in sizes:
        for cache, think in [(c, t) for t in thinks for c in caches]:
            r = await run_size(client, base, n, at_once, cache, think)
            product, bare = r["n"] / r["product_s"], r["n"] / r["bare_s"]
            print(
                f"{n:>5} | {cache:>5} | {think:>7.1f} | {product:>6.2f} | {r['decisions'] / r['product_s']:>11.1f} | "
                f"{bare:>9.2f} | "
                f"{r['bare_decisions'] / r['bare_s']:>10.1f} | {product / bare:>5.2f} | "
                f"{r['trip_p50']:>9.0f} / {r['trip_p99']:>9.0f} | {r['bare_p50']:>6.0f} / {r['bare_p99']:>6.0f} | "
                f"{r['lag_p50']:>11.0f} / {r['lag_p99']:>11.0f}",
                flush=True,
            )
            print(
                f"      (decisions {r['decisions']:.0f}, refused as early then sent again {r['retries']:.0f}, "
                f"await_progress calls {r['waits']:.0f}, events timed {r['lags']:.0f})",
                flush=True,
            )
    print(
        f"bare shape (from one product history): {r['activities']:.0f} activities, {r['updates']:.0f} updates, "
        f"{r['children']:.0f} child workflows, {r['timers']:.0f} timers"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--at-once", type=int, default=50)
    parser.add_argument(
        "--cache", type=int, nargs="+", default=None, help="worker cache sizes to compare (default: the setting)"
    )
    parser.add_argument(
        "--think",
        type=float,
        nargs="+",
        default=[0.0],
        help="seconds each person takes on average between a receipt and the next decision (uniform, 0.5-1.5 times "
        "it; 0: as fast as answered)",
    )
    parser.add_argument("--temporal", default="127.0.0.1:7233")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    args = parser.parse_args()
    asyncio.run(
        main(
            args.projects,
            args.at_once,
            args.cache or [Settings().workflow_cache],
            args.think,
            args.temporal,
            args.bootstrap,
        )
    )
    sys.stdout.flush()
    os._exit(0)  # temporalio/sdk-python issue 300: abort at interpreter exit
