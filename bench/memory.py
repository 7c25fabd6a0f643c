"""Worker memory with 1, 100 and 1000 projects open (each waiting on its reviews), and how it grows, for the
worker as `alliance worker` runs it, with each workflow cache size given (`ALLIANCE_WORKFLOW_CACHE`; the setting's
default if none), in one run.

    .venv/bin/python -m bench.memory [--open 1 100 1000] [--cache 100 0 1000]

Needs the local servers (`deploy/local/services.sh start`). Runs `alliance worker` as its own process on a fresh task
queue, reads its resident memory (VmRSS) once idle (the baseline: the same worker with nothing to do), then after
each step proposes projects until the given number is open, waits until every one is in financing (three reviews
open, timers set), lets the worker settle and reads it again. A worker with a cache keeps every open workflow it
ran (up to `max_cached_workflows`); without one, it keeps none between tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from bench.proposals import example

ALLIANCE = str(Path(sys.executable).parent / "alliance")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def wait_in_financing(client: Client, task_queue: str, count: int) -> None:
    """Until `count` projects of the queue are in financing, read from visibility (no query to the busy worker)."""
    query = f"WorkflowType='AllianceProject' AND TaskQueue='{task_queue}' AND ProjectStage='financing'"
    while (await client.count_workflows(query)).count < count:
        await asyncio.sleep(1)


async def one_worker(steps: list[int], temporal: str, bootstrap: str, cache: int) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        temporal_address=temporal,
        kafka_bootstrap_servers=bootstrap,
        task_queue=f"bench-memory-{run}",
        status_topic=f"bench.memory.{run}",
        instruction_topic=f"bench.memory-instructions.{run}",
    )
    env = {
        **os.environ,
        "ALLIANCE_TEMPORAL_ADDRESS": temporal,
        "ALLIANCE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ALLIANCE_TASK_QUEUE": settings.task_queue,
        "ALLIANCE_STATUS_TOPIC": settings.status_topic,
        "ALLIANCE_INSTRUCTION_TOPIC": settings.instruction_topic,
        "ALLIANCE_LOG_LEVEL": "WARNING",
        "ALLIANCE_WORKFLOW_CACHE": str(cache),
    }
    worker = subprocess.Popen([ALLIANCE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = await Client.connect(temporal, data_converter=pydantic_data_converter)
        projects = Projects(client, settings, Edge(settings))
        await asyncio.sleep(8)
        idle = rss_mib(worker.pid)
        print(f"machine: {os.cpu_count()} cores; worker pid {worker.pid}, workflow cache {cache}; Temporal {temporal}")
        print(f"{'projects open':>13} | {'worker RSS MiB':>14} | {'over idle MiB':>13} | {'KiB per project':>15}")
        print(f"{0:>13} | {idle:>14.1f} | {0:>13.1f} | {'':>15}", flush=True)
        opened: list[str] = []
        for target in steps:
            new = [f"bench-mem-{run}-{n:04d}" for n in range(len(opened), target)]
            gate = asyncio.Semaphore(20)

            async def propose(project_id: str, gate: asyncio.Semaphore = gate) -> None:
                async with gate:
                    await projects.propose(example("zm-lusaka-smart-city-2", project_id))

            await asyncio.gather(*(propose(pid) for pid in new))
            opened += new
            await wait_in_financing(client, settings.task_queue, target)
            await asyncio.sleep(5)
            rss = rss_mib(worker.pid)
            print(
                f"{target:>13} | {rss:>14.1f} | {rss - idle:>13.1f} | {(rss - idle) * 1024 / target:>15.1f}",
                flush=True,
            )
    finally:
        worker.kill()
        worker.wait()


async def main(steps: list[int], temporal: str, bootstrap: str, caches: list[int]) -> None:
    for cache in caches:
        await one_worker(steps, temporal, bootstrap, cache)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--cache", type=int, nargs="+", default=None, help="workflow cache sizes to compare")
    parser.add_argument("--temporal", default="127.0.0.1:7233")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    args = parser.parse_args()
    asyncio.run(main(args.open, args.temporal, args.bootstrap, args.cache or [Settings().workflow_cache]))
    sys.stdout.flush()
    os._exit(0)  # temporalio/sdk-python issue 300: abort at interpreter exit
