"""Worker Versioning: a worker process declares its build id (package version and git revision), and every workflow
task it completes carries that version in the project's history, so operators see which code decided what."""

from __future__ import annotations

import asyncio
import re

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import ROOT, build_id
from tests.faults.driving import Halfway, drive_to_completion
from tests.support import WorkerProcesses, finished
from workflows.project import workflow_id

pytestmark = pytest.mark.timeout(240)


async def test_every_workflow_task_records_the_build_id_of_the_worker_that_completed_it(
    temporal_env: WorkflowEnvironment, settings: Settings, workers: WorkerProcesses
) -> None:
    workers.env["ALLIANCE_BUILD_ID"] = "0.1.0+gtest-first"
    first = await workers.start()
    projects = Projects(temporal_env.client, settings, Edge(settings))
    run = settings.task_queue.rsplit("-", 1)[-1][:6]
    project_id = f"my-versions-{run}"
    # The driver waits in the middle of delivery while the first worker is replaced (polling for the stage could
    # miss delivery altogether on a fast machine).
    halfway = Halfway(1)
    driving = asyncio.create_task(drive_to_completion(projects, project_id, halfway=halfway))
    await asyncio.wait_for(halfway.all_arrived.wait(), 120)
    await workers.kill(first)
    workers.env["ALLIANCE_BUILD_ID"] = "0.1.0+gtest-second"
    await workers.start()
    halfway.go()
    await asyncio.wait_for(driving, 180)
    await asyncio.wait_for(finished(projects, project_id), 60)

    history = await temporal_env.client.get_workflow_handle(workflow_id(project_id)).fetch_history()
    completed = [
        e.workflow_task_completed_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    assert {a.worker_deployment_name for a in completed} == {settings.deployment_name}
    stamps = [a.worker_version.build_id for a in completed]
    assert set(stamps) == {"0.1.0+gtest-first", "0.1.0+gtest-second"}
    assert stamps[0] == "0.1.0+gtest-first" and stamps[-1] == "0.1.0+gtest-second"
    assert stamps.index("0.1.0+gtest-second") > max(i for i, s in enumerate(stamps) if s.endswith("first"))


def test_the_build_id_is_the_package_version_with_the_revision_unless_set(settings: Settings) -> None:
    derived = build_id(settings.model_copy(update={"build_id": None}))
    if (ROOT / ".git").exists():  # a checkout: the revision too
        assert re.fullmatch(r"0\.1\.0\+g[0-9a-f]{7,}(\.dirty)?", derived), derived
    else:
        assert derived == "0.1.0"
    assert build_id(settings.model_copy(update={"build_id": "2027.1"})) == "2027.1"
