"""The worker: runs the project and review workflows and their activities on one task queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.publishing import Publisher
from activities.screening import Screening
from alliance import metrics
from alliance.connections import connect_temporal, ensure_topics, status_producer
from alliance.settings import Settings
from workflows.project import ProjectWorkflow
from workflows.review import ReviewWorkflow

log = structlog.get_logger(__name__)

WORKFLOWS = [ProjectWorkflow, ReviewWorkflow]


@asynccontextmanager
async def project_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """A started worker with its Kafka producer; both stop when the block ends."""
    await ensure_topics(settings)
    publisher = Publisher(lambda: status_producer(settings), settings.status_topic, settings.instruction_topic)
    try:
        screening = Screening(settings.eligibility_rules())
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=[screening.screen_proposal, publisher.publish_status_events, publisher.send_instruction],
        )
        async with worker:
            log.info("worker_started", task_queue=settings.task_queue, namespace=settings.temporal_namespace)
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
