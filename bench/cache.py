"""What the workflow cache saves, and what a status read costs the product's worker, in one run: decision round trip
and worker CPU per decision, for projects of a typical history length and near the continue-as-new threshold, on
- the product's worker (`Settings.workflow_cache` runs cached, a run evicted after a query outside a task:
  alliance/query_isolation.py), decisions only;
- the same worker with a status read (a query while no task is pending) before each request/answer pair, so the first
  decision of each pair finds its run evicted and replays the history (the cost of a read);
- a worker without a cache (the workers until 2026-12-01), where every task replays the history.

    .venv/bin/python -m bench.cache --temporal 127.0.0.1:7233 --bootstrap 127.0.0.1:19092 [--events 220 9500]

Needs the local servers (`deploy/local/services.sh start`). For each history length L: projects (the Malaysian smart
homes pilot, CDB loan) are brought into financing and grown to about L events with information requests and
answers (each pair adds about 25 events; in financing a project does not continue as new) by a worker with a cache.
Then, for each worker setting, a worker with that setting alone takes the task queue, one request/answer pair warms
it, and `--pairs` more are sent one decision at a time: the round trip is `Projects.decide` from the edge (attest,
Update, receipt back); the CPU is this process's user+system time over those decisions (worker and its SDK core
threads, plus the edge's own small share, the same in both settings) divided by the decisions. No number here is
asserted; the table is the record (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
import uuid

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from alliance import logs
from alliance.demo import CONTRACTOR, officer_of
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import project_worker
from bench.proposals import smart_homes
from schemas.decisions import Institution, ProvideInformation, RequestInformation
from schemas.status import Stage
from workflows.project import workflow_id

OFFICER = officer_of(Institution.cdb, "Liu Yang")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def history_length(client: Client, project_id: str) -> int:
    description = await client.get_workflow_handle(workflow_id(project_id)).describe()
    return int(description.raw_description.workflow_execution_info.history_length)


async def one_pair(projects: Projects, project_id: str, n: int, read_first: bool = False) -> list[float]:
    """An information request and its answer, after a status read if `read_first`; returns the two decisions' round
    trips in seconds (the read is not timed)."""
    if read_first:
        await projects.status(project_id)
    times = []
    for decision, actor in (
        (
            RequestInformation(
                decision_id=f"{project_id}-q{n}", institution=Institution.cdb, officer="Liu Yang", questions="Why?"
            ),
            OFFICER,
        ),
        (
            ProvideInformation(
                decision_id=f"{project_id}-a{n}", institution=Institution.cdb, responder="Zhang Min", answer="Because."
            ),
            CONTRACTOR,
        ),
    ):
        started = time.perf_counter()
        await projects.decide(project_id, decision, actor)
        times.append(time.perf_counter() - started)
    return times


async def grow(projects: Projects, project_id: str, events: int) -> int:
    """Proposes the project, waits for its CDB review and adds request/answer pairs until its history has about
    `events` events; returns the pairs sent."""
    await projects.propose(smart_homes(project_id))
    while (status := await projects.status(project_id)).stage is not Stage.financing or not status.reviews:
        await asyncio.sleep(0.2)
    n = 0
    while await history_length(projects.client, project_id) < events:
        await one_pair(projects, project_id, n)
        n += 1
    return n


async def measure(
    client: Client, settings: Settings, size: int, cache: int, read_first: bool, projects_n: int, pairs: int
) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    s = settings.model_copy(
        update={
            "task_queue": f"bench-cache-{run}",
            "status_topic": f"bench.cache.{run}",
            "instruction_topic": f"bench.cache-instructions.{run}",
        }
    )
    projects = Projects(client, s, Edge(s))
    ids = [f"bench-cache-{run}-{i}" for i in range(projects_n)]
    async with project_worker(client, s, max_cached_workflows=1000):
        sent = await asyncio.gather(*(grow(projects, pid, size - 25 * (pairs + 1)) for pid in ids))
    before = [await history_length(client, pid) for pid in ids]
    trips: list[float] = []
    cpu = 0.0
    async with project_worker(client, s, max_cached_workflows=cache):
        for pid, n in zip(ids, sent, strict=True):
            await one_pair(projects, pid, n)  # warm-up: a cached worker reads the history once
            started = cpu_seconds()
            for k in range(pairs):
                trips += await one_pair(projects, pid, n + 1 + k, read_first)
            cpu += cpu_seconds() - started
    after = [await history_length(client, pid) for pid in ids]
    trips_ms = sorted(t * 1000 for t in trips)
    return {
        "from": statistics.mean(before),
        "to": statistics.mean(after),
        "p50": statistics.median(trips_ms),
        "p99": trips_ms[min(len(trips_ms) - 1, int(0.99 * len(trips_ms)))],
        "cpu_ms": cpu * 1000 / len(trips),
        "n": len(trips),
    }


async def main(sizes: list[int], projects_n: int, pairs: int, temporal: str, bootstrap: str) -> None:
    settings = Settings(temporal_address=temporal, kafka_bootstrap_servers=bootstrap, log_level="WARNING")
    logs.configure(settings)
    client = await Client.connect(temporal, data_converter=pydantic_data_converter)
    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; Temporal {temporal}, Kafka {bootstrap}; "
        f"{projects_n} projects per row (1 above 1,000 events), {pairs} request/answer pairs each, "
        "one decision at a time"
    )
    header = (
        f"{'history events':>15} | {'worker':>44} | {'round trip p50 ms':>17} | {'p99 ms':>7} | "
        f"{'CPU ms/decision':>15} | {'decisions':>9}"
    )
    print(header)
    print("-" * len(header))
    for size in sizes:
        cached = settings.workflow_cache
        for label, cache, read_first in (
            (f"product: cache {cached}, decisions only", cached, False),
            (f"product: cache {cached}, a read before each pair", cached, True),
            ("no cache (until 2026-12-01)", 0, False),
        ):
            # A long history takes minutes to build: one project per row there.
            r = await measure(client, settings, size, cache, read_first, projects_n if size <= 1000 else 1, pairs)
            print(
                f"{r['from']:>6.0f} → {r['to']:>6.0f} | {label:>44} | {r['p50']:>17.1f} | {r['p99']:>7.1f} | "
                f"{r['cpu_ms']:>15.1f} | {r['n']:>9.0f}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[220, 9500])
    parser.add_argument("--projects", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--temporal", default="127.0.0.1:7233")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.projects, args.pairs, args.temporal, args.bootstrap))
    sys.stdout.flush()
    os._exit(0)  # temporalio/sdk-python issue 300: abort at interpreter exit
