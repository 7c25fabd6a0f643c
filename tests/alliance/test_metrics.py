"""Metrics an operator scrapes: a worker process's /metrics counts what it published and carries the Temporal SDK's
own metrics; the API's /metrics counts its requests."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from alliance.api import create_app
from alliance.demo import OPERATOR
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from tests.deploy.test_observability import SDK_METRICS
from tests.faults.driving import drive_to_completion
from tests.support import WorkerProcesses, finished

pytestmark = pytest.mark.timeout(240)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(100):
            try:
                response = await http.get(url)
                if response.status_code == 200:
                    return response.text
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"nothing served at {url}")


async def test_a_workers_metrics_count_what_it_published_and_include_the_sdks(
    temporal_env: WorkflowEnvironment, settings: Settings, workers: WorkerProcesses
) -> None:
    projects = Projects(temporal_env.client, settings, Edge(settings))
    process = await workers.start()
    url = f"http://127.0.0.1:{workers.metrics_ports[process.pid]}/metrics"
    await scrape(url)  # serving before any work
    run = settings.task_queue.rsplit("-", 1)[-1][:6]
    project_id = f"my-metrics-{run}"
    await drive_to_completion(projects, project_id)
    status = await asyncio.wait_for(finished(projects, project_id), 120)

    seen = samples(await scrape(url))
    published = seen[("alliance_events_published_total", (("topic", settings.status_topic),))]
    assert published == len(status.events)
    # A calm run sends each instruction once, so the amounts instructed are the tranche, exactly.
    (tranche,) = status.tranches
    instructed = sum(
        value
        for (name, labels), value in seen.items()
        if name == "alliance_instructed_amount_total" and ("institution", tranche.institution.value) in labels
    )
    assert Decimal(str(instructed)) == tranche.approved.amount
    assert any(name.startswith("alliance_publish_seconds") for name, _ in seen)
    # The SDK's own (sdk-core) metrics, from the same endpoint.
    assert any(name.startswith("temporal_workflow_completed") for name, _ in seen), sorted({n for n, _ in seen})
    assert any(name.startswith("temporal_activity_execution_latency") for name, _ in seen)
    # The SDK metrics the alert rules and the dashboard use are really served (failure counters appear only once
    # something fails, so not in this calm run).
    served = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name, _ in seen}
    assert SDK_METRICS - {"temporal_workflow_task_execution_failed"} <= served, SDK_METRICS - served


async def test_a_workers_log_lines_say_which_project_workflow_and_run(
    temporal_env: WorkflowEnvironment, settings: Settings, workers: WorkerProcesses
) -> None:
    projects = Projects(temporal_env.client, settings, Edge(settings))
    await workers.start()
    project_id = f"my-logs-{settings.task_queue[-6:]}"
    await drive_to_completion(projects, project_id)
    status = await asyncio.wait_for(finished(projects, project_id), 120)
    await asyncio.sleep(0.5)  # the last lines reach the file
    lines = [json.loads(line) for line in (workers.logs / "worker-0.log").read_text().splitlines() if line[:1] == "{"]
    workflow_lines = [line for line in lines if line.get("logger") == "temporalio.workflow"]
    activity_lines = [line for line in lines if line.get("logger") == "activities.publishing"]
    assert workflow_lines and activity_lines
    for line in workflow_lines + activity_lines:
        assert line["project_id"] == project_id, line
        assert line["workflow_id"] == f"project-{project_id}" and line["run_id"], line
        assert "{'attempt'" not in line["event"], line  # the ids are fields, not appended to the message
    stages = [line["stage"] for line in workflow_lines if line["event"].startswith("project entered")]
    assert stages[-1] == status.stage.value == "completed"
    assert len(stages) == len(set(stages)), "a workflow line was repeated (replay)"


async def test_the_apis_metrics_count_its_requests(settings: Settings, temporal_env: WorkflowEnvironment) -> None:
    app = create_app(settings, client=temporal_env.client)
    token = Edge(settings).issue(OPERATOR)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        before = samples((await http.get("/metrics")).text)
        for _ in range(3):
            await http.get("/projects/no-such-project", headers={"Authorization": f"Bearer {token}"})
        after = samples((await http.get("/metrics")).text)
    key = (
        "alliance_api_requests_total",
        (("method", "GET"), ("route", "/projects/{project_id}"), ("status", "404")),
    )
    assert after[key] - before.get(key, 0) == 3
