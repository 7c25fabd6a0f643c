"""Topic retention is the product's deliberate setting (alliance/connections.py): the status topic is created to keep
its records for good, and an existing one that would forget is refused before anything runs on it."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from alliance.connections import (
    RETENTION_MS,
    RetentionMismatch,
    TopicMismatch,
    ensure_topics,
    kafka_options,
    topic_config,
    topic_configs,
)
from alliance.settings import Settings

pytestmark = pytest.mark.timeout(120)


async def test_every_topic_is_created_with_the_products_retention_and_cleanup(settings: Settings) -> None:
    await ensure_topics(settings, streams=True)
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        for topic, wanted in topic_configs(settings, streams=True).items():
            found = await topic_config(admin, topic)
            assert {name: found[name] for name in wanted} == wanted, topic
        assert (await topic_config(admin, settings.status_topic))["retention.ms"] == RETENTION_MS["status"] == "-1"
    finally:
        await admin.close()


async def test_a_status_topic_that_would_forget_is_refused_with_the_fix(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        # What a status topic created by an earlier version (or by hand) has: the broker's default, a week.
        await admin.create_topics(
            [NewTopic(settings.status_topic, settings.topic_partitions, 1, topic_configs={"retention.ms": "604800000"})]
        )
    finally:
        await admin.close()
    with pytest.raises(RetentionMismatch, match=r"retention.ms=604800000.*--add-config retention.ms=-1"):
        await ensure_topics(settings, streams=True)


async def test_a_topic_the_broker_does_not_know_is_waited_for_then_named(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic created a moment ago may be unknown to the broker for a while (5 s was once too short under load):
    it is asked again up to TOPIC_KNOWN_WITHIN, then refused with the topic's name and the reason."""
    monkeypatch.setattr("alliance.connections.TOPIC_KNOWN_WITHIN", 1.0)
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        absent = f"{settings.status_topic}.never-created"
        with pytest.raises(TopicMismatch, match=rf"still does not know topic {absent} 1 s after"):
            await topic_config(admin, absent)
    finally:
        await admin.close()
