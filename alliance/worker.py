"""The worker: runs the project and review workflows and their activities on one task queue."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path

import structlog
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.publishing import Publisher
from activities.screening import Screening
from alliance import metrics
from alliance.connections import connect_temporal, ensure_topics, status_producer
from alliance.query_isolation import EvictAfterLegacyQuery
from alliance.settings import Settings
from workflows.project import ProjectWorkflow
from workflows.review import ReviewWorkflow

log = structlog.get_logger(__name__)

WORKFLOWS = [ProjectWorkflow, ReviewWorkflow]
ROOT = Path(__file__).resolve().parents[1]

# The workflow cache (`Settings.workflow_cache`, 100 runs by default) is safe because a run that answered a query
# outside a workflow task leaves it (alliance/query_isolation.py): temporalio 1.35.0's core runs workflow code ahead
# of the history to answer such a query, and a cached run in that state strands its project at a later task (2 to 5
# projects in 10 in tests/faults/test_query_runahead.py with the cache and without the eviction; none with it). A run
# rebuilt from the history replays it, as every task did when the workers kept no cache; the workflow gives every task
# that takes a publishing result a command (the `published_sequence` memo, patch `published-sequence-in-memo`), so a
# replay groups an Update with the tasks before it as the writing worker did. Figures: docs/performance.md.
# Workflow tasks one worker takes at a time. A task that finds its run cached costs a few ms of CPU; one that rebuilds
# it (after an eviction, a restart, a full cache) replays the history, about 1 ms of CPU per event, on one Python
# thread. A worker that took the SDK's default of 100 after a restart would hold tasks it cannot start for longer than
# the 10 s workflow task timeout: they time out and come back, and a decision sent meanwhile is refused ("Workflow
# Task in failed state"), seen under load in bench.lifecycle without a cache. Tasks a worker has not taken wait on the
# task queue, where no timeout runs, for any worker to take. With the cache, 10 slots instead of 2 gave no more
# throughput at 50 projects at once (bench.lifecycle, 2026-12-01: the dev server is the bound).
WORKFLOW_TASK_SLOTS = 2


def build_id(settings: Settings) -> str:
    """The worker's build id: the setting if given, else the package version plus the git revision when the code
    runs from a checkout (`0.1.0+g1a2b3c4`, `.dirty` with uncommitted changes), else the package version alone (an
    installed image: set ALLIANCE_BUILD_ID at build time to keep the revision)."""
    if settings.build_id:
        return settings.build_id
    release = version("alliance-workflows")
    if not (ROOT / ".git").exists():
        return release
    try:
        revision = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=7", "--match=NONE"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return release
    return f"{release}+g{revision}".replace("-dirty", ".dirty")


def deployment(settings: Settings) -> WorkerDeploymentConfig:
    """Worker Versioning: the worker declares its deployment version (shown per workflow task in history and in the
    Web UI). With ALLIANCE_WORKER_VERSIONING, tasks are routed by version; project workflows run for years, so they
    auto-upgrade to the current version and every change to workflow code stays replay-safe (see the README)."""
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=settings.deployment_name, build_id=build_id(settings)),
        use_worker_versioning=settings.worker_versioning,
        default_versioning_behavior=(
            VersioningBehavior.AUTO_UPGRADE if settings.worker_versioning else VersioningBehavior.UNSPECIFIED
        ),
    )


@asynccontextmanager
async def project_worker(
    client: Client,
    settings: Settings,
    max_cached_workflows: int | None = None,
    *,
    isolate_queries: bool = True,
) -> AsyncIterator[Worker]:
    """A started worker with its Kafka producer; both stop when the block ends. Every process that runs project
    workflows (`alliance worker`, `alliance dev`, Compose, Kubernetes, the tests) comes through here. It keeps
    `max_cached_workflows` runs between tasks (`settings.workflow_cache` unless given) and evicts every run that
    answered a query outside a workflow task (alliance/query_isolation.py). `isolate_queries=False` leaves that
    eviction out: only for the reproduction that shows what it prevents."""
    await ensure_topics(settings)
    publisher = Publisher(lambda: status_producer(settings), settings.status_topic, settings.instruction_topic)
    try:
        screening = Screening(settings.eligibility_rules())
        versioning = deployment(settings)
        runner = EvictAfterLegacyQuery(SandboxedWorkflowRunner())
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=[screening.screen_proposal, publisher.publish_status_events, publisher.send_instruction],
            deployment_config=versioning,
            max_cached_workflows=settings.workflow_cache if max_cached_workflows is None else max_cached_workflows,
            max_concurrent_workflow_tasks=WORKFLOW_TASK_SLOTS,
            max_concurrent_workflow_task_polls=min(WORKFLOW_TASK_SLOTS, 5),
            workflow_runner=runner if isolate_queries else SandboxedWorkflowRunner(),
        )
        runner.bind(worker)
        async with worker:
            log.info(
                "worker_started",
                task_queue=settings.task_queue,
                namespace=settings.temporal_namespace,
                build_id=versioning.version.build_id,
                versioning=settings.worker_versioning,
            )
            yield worker
    finally:
        await publisher.stop()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    client = await connect_temporal(settings, metrics=True)
    server = metrics.serve(settings.metrics_host, settings.metrics_port) if settings.metrics_port else None
    if server is not None:
        log.info("metrics_served", url=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics")
    try:
        async with project_worker(client, settings):
            await (stop or asyncio.Event()).wait()
    finally:
        if server is not None:
            server.shutdown()
