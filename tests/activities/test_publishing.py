"""The publisher against the real broker: an error no retry can help fails the activity for good, with its type and
a message naming the record; a transient one is left for Temporal to retry."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAuthorizationFailedError, UnknownTopicOrPartitionError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.messages import RECORD_TOO_LARGE, TOPIC_REFUSED, PublishEvents
from activities.publishing import Publisher, permanent
from alliance.connections import status_producer
from alliance.settings import Settings
from schemas import events as ev
from schemas.status import Stage

pytestmark = pytest.mark.timeout(120)


def cancelled(project_id: str, sequence: int, reason: str) -> ev.StatusEvent:
    data = ev.ProjectCancelled(
        project_id=project_id,
        sequence=sequence,
        stage=Stage.cancelled,
        reason=reason,
        by="Amina Njoroge",
        cancelled_in=Stage.financing,
    )
    return ev.StatusEvent.wrap(str(uuid.uuid4()), datetime.now(UTC), data)


async def make_topic(bootstrap: str, name: str, config: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=config or {})])
    finally:
        await admin.close()


async def publish(publisher: Publisher, *events: ev.StatusEvent, attempt: int = 1) -> int:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type="publish_status_events", attempt=attempt)
    result: int = await env.run(publisher.publish_status_events, PublishEvents(events=list(events)))
    return result


async def test_an_event_larger_than_the_producer_accepts_fails_for_good_and_keeps_the_producer(
    settings: Settings,
) -> None:
    await make_topic(settings.kafka_bootstrap_servers, settings.status_topic)
    publisher = Publisher(lambda: status_producer(settings), settings.status_topic, settings.instruction_topic)
    try:
        assert await publish(publisher, cancelled("ke-size", 1, "first")) == 1
        with pytest.raises(ApplicationError) as refused:
            await publish(publisher, cancelled("ke-size", 2, "x" * 1_200_000))
        print(f"refused: {refused.value.type}: {refused.value.message}")
        assert refused.value.type == RECORD_TOO_LARGE
        assert refused.value.non_retryable
        assert "status event 2 of project ke-size" in refused.value.message
        assert settings.status_topic in refused.value.message
        assert publisher.replaced == 0
        assert await publish(publisher, cancelled("ke-size", 3, "after")) == 1
    finally:
        await publisher.stop()


async def test_an_event_larger_than_the_topic_takes_fails_for_good(settings: Settings) -> None:
    await make_topic(settings.kafka_bootstrap_servers, settings.status_topic, {"max.message.bytes": "2000"})
    publisher = Publisher(lambda: status_producer(settings), settings.status_topic, settings.instruction_topic)
    try:
        with pytest.raises(ApplicationError) as refused:
            await publish(publisher, cancelled("ke-topic", 1, "short"), cancelled("ke-topic", 2, "y" * 5_000))
        print(f"refused: {refused.value.type}: {refused.value.message}")
        assert refused.value.type == RECORD_TOO_LARGE
        assert refused.value.non_retryable
        assert "status event 2 of project ke-topic" in refused.value.message
    finally:
        await publisher.stop()


def test_a_topic_the_worker_may_not_write_to_is_refused_for_good() -> None:
    # The local broker runs no authorizer, so the broker's answer is made here; the mapping is what is tested.
    refused = permanent(TopicAuthorizationFailedError(), "status event 4 of project ke-acl", 812, "alliance.status")
    assert refused is not None
    assert refused.type == TOPIC_REFUSED
    assert refused.non_retryable
    assert "status event 4 of project ke-acl" in refused.message
    assert "alliance.status" in refused.message
    assert permanent(UnknownTopicOrPartitionError(), "status event 4", 812, "alliance.status") is None


async def test_a_broker_that_does_not_answer_is_left_to_retry(settings: Settings) -> None:
    def unreachable() -> AIOKafkaProducer:
        return status_producer(settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:9"}))

    publisher = Publisher(unreachable, settings.status_topic, settings.instruction_topic)
    try:
        with pytest.raises(Exception) as failed:
            await publish(publisher, cancelled("ke-away", 1, "short"), attempt=2)
        print(f"transient: {failed.value!r}")
        assert not isinstance(failed.value, ApplicationError)
    finally:
        await publisher.stop()
