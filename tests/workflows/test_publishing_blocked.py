"""A status event the broker refuses for good (a permanent, non-retryable publishing error) is never dropped and
never hides: the project says so in its status, instructions wait behind it, and publishing is tried again later
(here the broker takes it on the next try, as after an operator raised its limit). Time-skipping server, real broker.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.messages import PUBLISH_STATUS_EVENTS, PublishEvents
from activities.publishing import Publisher
from activities.screening import Screening
from alliance.connections import ensure_topics, status_producer
from alliance.projects import Projects
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import WORKFLOWS
from schemas.decisions import Institution
from schemas.status import Stage
from tests.conftest import time_skipping_env
from tests.support import assert_kafka_matches_history, example, finished
from tests.workflows.driving import ProjectDriver
from workflows.project import BLOCKED_PUBLISH_RETRY

pytestmark = pytest.mark.timeout(240)


async def test_a_permanently_refused_event_blocks_publishing_visibly_and_is_published_later(settings: Settings) -> None:
    await ensure_topics(settings)
    publisher = Publisher(lambda: status_producer(settings), settings.status_topic, settings.instruction_topic)
    refusals = 0

    @activity.defn(name=PUBLISH_STATUS_EVENTS)
    async def refuse_the_first_batch_with_a_cancellation(request: PublishEvents) -> int:
        nonlocal refusals
        if any(e.data.kind == "project_cancelled" for e in request.events) and refusals == 0:
            refusals += 1
            raise ApplicationError(
                "the broker refused the record: too large", type="RecordTooLarge", non_retryable=True
            )
        return await publisher.publish_status_events(request)

    env = await time_skipping_env()
    try:
        worker = Worker(
            env.client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=[
                Screening(settings.eligibility_rules()).screen_proposal,
                refuse_the_first_batch_with_a_cancellation,
                publisher.send_instruction,
            ],
        )
        async with worker:
            projects = Projects(env.client, settings, Edge(settings))
            d = ProjectDriver(projects, example("my-smart-homes-pilot", "my-blocked-publish"))
            await d.start()
            await d.progress(Stage.financing)
            await d.approve(Institution.cdb)
            cancelling = asyncio.create_task(d.cancel())
            status = await d.status()
            for _ in range(100):
                if status.publishing_blocked:
                    break
                await asyncio.sleep(0.1)
                status = await d.status()
            assert status.publishing_blocked and "too large" in status.publishing_blocked
            # The commitment's release waits behind the unpublished cancellation: not sent, not booked.
            assert status.events[-1].type.endswith("project_cancelled") and not status.events[-1].published
            await env.sleep(BLOCKED_PUBLISH_RETRY + timedelta(minutes=1))
            receipt = await cancelling
            assert receipt.stage is Stage.cancelled
            final = await finished(projects, d.pid)
            assert final.publishing_blocked is None
            assert refusals == 1
            events = await assert_kafka_matches_history(settings, final)
            assert [e.data.kind for e in events][-2:] == ["project_cancelled", "commitment_released"]
    finally:
        await publisher.stop()
        await env.shutdown()
