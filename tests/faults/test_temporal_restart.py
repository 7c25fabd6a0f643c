"""Fault injection: the Temporal dev server is stopped while 20 projects run and started again on its SQLite file.
The worker (a separate process) and the people driving the projects wait for it; every project resumes where it was
and completes by itself, with its events on Kafka exactly once after removing duplicates, in order; no workflow task
failed in any history and every history replays. No reset, no exception: the Update accepted twice that this test
used to repair by hand (tests/upstream) cannot happen on a worker that keeps no workflow cache (alliance/worker.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from schemas.status import Stage
from tests.faults.driving import HALFWAY_MILESTONE, Halfway, drive_to_completion
from tests.faults.histories import check_histories
from tests.support import (
    Services,
    WorkerProcesses,
    assert_kafka_matches_history,
    events_by_project,
    example,
    finished,
    free_port,
)

pytestmark = pytest.mark.timeout(900)
PROJECTS = 20
SERVICES = Path(__file__).resolve().parents[2] / "deploy" / "local" / "services.sh"


async def test_a_temporal_server_restarted_on_its_database_resumes_every_project(
    settings: Settings, tmp_path: Path
) -> None:
    # A port found free can be taken (by a client connection's ephemeral port) before the server binds it: the dev
    # server then exits ("bind: address already in use"), and a new port is tried.
    for attempt in range(3):
        port = free_port()
        temporal = Services(
            SERVICES,
            {
                **os.environ,
                "ALLIANCE_STATE_DIR": str(tmp_path / f"state-{attempt}"),
                "ALLIANCE_TEMPORAL_PORT": str(port),
                "ALLIANCE_TEMPORAL_HEADLESS": "1",
            },
        )
        try:
            await temporal.run("start", "temporal")
            break
        except subprocess.CalledProcessError:
            if "address already in use" not in (tmp_path / f"state-{attempt}" / "temporal.log").read_text():
                raise
    else:
        raise AssertionError("three free ports were taken before the Temporal dev server could bind them")
    own = settings.model_copy(update={"temporal_address": f"127.0.0.1:{port}"})
    workers = WorkerProcesses(own, tmp_path)
    drivers: dict[str, asyncio.Task[None]] = {}
    try:
        client = await Client.connect(own.temporal_address, data_converter=pydantic_data_converter)
        projects = Projects(client, own, Edge(own))
        await workers.start()
        run = settings.task_queue.rsplit("-", 1)[-1][:6]
        ids = [f"my-restart-{run}-{n:02d}" for n in range(PROJECTS)]
        halfway = Halfway(PROJECTS)
        drivers = {pid: asyncio.create_task(drive_to_completion(projects, pid, halfway=halfway)) for pid in ids}
        await asyncio.wait_for(halfway.all_arrived.wait(), 300)
        before = {pid: (await projects.status(pid)).stage for pid in ids}
        assert all(stage is Stage.delivery for stage in before.values()), before
        halfway.go()  # decisions in flight when the server goes
        await temporal.run("stop", "temporal")
        await asyncio.sleep(5)
        await temporal.run("start", "temporal")
        stages = dict(Counter(stage.value for stage in before.values()))
        print(
            f"injected: Temporal stopped for 5 s and restarted on its SQLite file; projects in {stages}, each with "
            f"{len(example('my-smart-homes-pilot').milestones) - HALFWAY_MILESTONE} milestones to report"
        )

        await asyncio.wait_for(asyncio.gather(*drivers.values()), 420)
        statuses = {pid: await asyncio.wait_for(finished(projects, pid), 120) for pid in ids}
        published = await events_by_project(own)
        events = 0
        for status in statuses.values():
            assert status.stage is Stage.completed, (status.project_id, status.details)
            events += len(await assert_kafka_matches_history(own, status, published[status.project_id]))
        histories = await check_histories(client, own.task_queue)
        print(f"histories: {histories}")
        assert histories.workflows >= PROJECTS, histories
        assert not histories.failed_tasks, histories.failed_tasks
        assert not histories.replay_failures, histories.replay_failures
        print(f"checked: all {PROJECTS} projects resumed and completed, none reset; {events} events on Kafka in order")
    finally:
        for task in drivers.values():
            task.cancel()
        await workers.stop_all()
        await temporal.run("stop", "temporal")
