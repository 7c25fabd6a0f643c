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

from activities.publishing import Publisher
from activities.screening import Screening
from alliance import metrics
from alliance.connections import connect_temporal, ensure_topics, status_producer
from alliance.settings import Settings
from workflows.project import ProjectWorkflow
from workflows.review import ReviewWorkflow

log = structlog.get_logger(__name__)

WORKFLOWS = [ProjectWorkflow, ReviewWorkflow]
ROOT = Path(__file__).resolve().parents[1]

# No workflow cache (max_cached_workflows=0): every workflow task replays the project's history from the start, so
# a query that ran workflow code ahead of the history (temporalio 1.35.0's core, "query run-ahead") leaves nothing
# behind for the next task to trip on. With the SDK's cache of 1000, the race stranded 2 to 5 projects in 10
# (tests/faults/test_query_runahead.py; 0 without a cache). A worker without a cache still hands the result of a
# workflow task that made no commands to the next task together with an Update, where a replay hands it over alone;
# the workflow gives every task that takes a publishing result a command (the `published_sequence` memo, patch
# `published-sequence-in-memo`) so that cannot happen to it. The cost, replaying each task: docs/performance.md.
WORKFLOW_CACHE = 0
# Workflow tasks one worker takes at a time. Without a cache each one replays its history (about 1 ms of CPU per
# event) on one Python thread, so a worker that took the SDK's default of 100 would hold tasks it cannot start for
# longer than the 10 s workflow task timeout: they time out and come back, and a decision sent meanwhile is refused
# ("Workflow Task in failed state"), seen under load in bench.lifecycle. Tasks a worker has not taken wait on the
# task queue, where no timeout runs, for any worker to take.
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
    client: Client, settings: Settings, max_cached_workflows: int = WORKFLOW_CACHE
) -> AsyncIterator[Worker]:
    """A started worker with its Kafka producer; both stop when the block ends. Every process that runs project
    workflows (`alliance worker`, `alliance dev`, Compose, Kubernetes, the tests) comes through here and keeps no
    workflow cache (see WORKFLOW_CACHE); `max_cached_workflows` other than 0 is for benchmarks and reproductions
    that compare against a cache."""
    await ensure_topics(settings)
    publisher = Publisher(lambda: status_producer(settings), settings.status_topic, settings.instruction_topic)
    try:
        screening = Screening(settings.eligibility_rules())
        versioning = deployment(settings)
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=[screening.screen_proposal, publisher.publish_status_events, publisher.send_instruction],
            deployment_config=versioning,
            max_cached_workflows=max_cached_workflows,
            max_concurrent_workflow_tasks=WORKFLOW_TASK_SLOTS,
            max_concurrent_workflow_task_polls=min(WORKFLOW_TASK_SLOTS, 5),
        )
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
