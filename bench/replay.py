"""What one workflow task costs a worker without a workflow cache: a full replay of the project's history, and
where that CPU goes (the product's own code, pydantic, the Temporal SDK), in one run, without servers.

    .venv/bin/python -m bench.replay [--history tests/histories/current/project-....json ...] [--rounds 10]

Every task of a worker without a cache (alliance/worker.py) replays the whole history in a fresh workflow instance.
For each committed history (default: the longest three in tests/histories/current), `temporalio.worker.Replayer`
replays it `--rounds` times in three ways, and this process's CPU time (every thread: the SDK core's Rust threads
too) is divided by the rounds and by the history's events:
- sandboxed: the worker's way (the SDK's default `SandboxedWorkflowRunner`, activations on a thread pool);
- unsandboxed: `UnsandboxedWorkflowRunner`, the baseline without the sandbox's per-activation isolation;
- unsandboxed inline: the same with the Replayer's `debug_mode` (activations on the event loop's thread, no hop
  to the pool): the cost of the pool hop is the difference.
Then one more inline round set under `cProfile` splits the time spent in Python functions by where they are
defined: the product (`workflows/`, `schemas/`, `activities/`), pydantic, the Temporal SDK and protobuf, the rest
(asyncio, stdlib). cProfile slows Python calls, so the split is a proportion, not a duration. No number here is
asserted; the table is the record (docs/performance.md, "Workflow cache").
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from alliance.worker import WORKFLOWS

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = ROOT / "tests" / "histories" / "current"
PRODUCT = tuple(str(ROOT / part) for part in ("workflows", "schemas", "activities"))


def load(path: Path) -> WorkflowHistory:
    """A committed history; its workflow id is the file's name (tests/histories/record.py writes them so)."""
    return WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))


def replayer(sandboxed: bool, inline: bool) -> Replayer:
    runner = SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner()
    return Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=runner, debug_mode=inline
    )


async def cpu_ms_per_replay(history: WorkflowHistory, replay: Replayer, rounds: int) -> float:
    await replay.replay_workflow(history)  # first use: imports, the sandbox's module cache
    start = time.process_time()
    for _ in range(rounds):
        await replay.replay_workflow(history)
    return (time.process_time() - start) / rounds * 1000


def where(stats: pstats.Stats) -> dict[str, float]:
    """Own time of profiled functions by where they are defined, as shares of the total (sum 1)."""
    shares = dict.fromkeys(("product", "pydantic", "temporalio + protobuf", "rest"), 0.0)
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if filename.startswith(PRODUCT):
            shares["product"] += own
        elif "pydantic" in filename:
            shares["pydantic"] += own
        elif "temporalio" in filename or "protobuf" in filename or filename == "~":
            shares["temporalio + protobuf"] += own  # "~": built-ins, most of them the SDK core's bridge calls
        else:
            shares["rest"] += own
    total = sum(shares.values()) or 1.0
    return {k: v / total for k, v in shares.items()}


async def profile(history: WorkflowHistory, rounds: int) -> dict[str, float]:
    replay = replayer(sandboxed=False, inline=True)
    await replay.replay_workflow(history)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        await replay.replay_workflow(history)
    profiler.disable()
    return where(pstats.Stats(profiler))


async def main(paths: list[Path], rounds: int) -> None:
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {rounds} replays per cell, CPU time")
    header = (
        f"{'history':<58} | {'events':>6} | {'sandboxed ms':>12} | {'unsandboxed ms':>14} | {'inline ms':>9} | "
        f"{'ms/event (sandboxed)':>20} | {'product':>7} | {'pydantic':>8} | {'SDK':>5} | {'rest':>5}"
    )
    print(header)
    print("-" * len(header))
    for path in paths:
        history = load(path)
        sandboxed = await cpu_ms_per_replay(history, replayer(sandboxed=True, inline=False), rounds)
        unsandboxed = await cpu_ms_per_replay(history, replayer(sandboxed=False, inline=False), rounds)
        inline = await cpu_ms_per_replay(history, replayer(sandboxed=False, inline=True), rounds)
        split = await profile(history, rounds)
        events = len(history.events)
        print(
            f"{path.stem[:58]:<58} | {events:>6} | {sandboxed:>12.1f} | {unsandboxed:>14.1f} | {inline:>9.1f} | "
            f"{sandboxed / events:>20.3f} | {split['product']:>7.0%} | {split['pydantic']:>8.0%} | "
            f"{split['temporalio + protobuf']:>5.0%} | {split['rest']:>5.0%}",
            flush=True,
        )


def longest(count: int) -> list[Path]:
    files = [p for p in HISTORIES.glob("project-*.json") if "-review-" not in p.name]
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)[:count]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=Path, nargs="+", help="committed histories (default: the longest three)")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.history or longest(3), args.rounds))
    sys.stdout.flush()
    os._exit(0)  # temporalio/sdk-python issue 300: abort at interpreter exit
