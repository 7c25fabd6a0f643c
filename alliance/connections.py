"""Connections to the two servers: the Temporal client (pydantic data converter) and Kafka clients."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from alliance import tracing
from alliance.metrics import temporal_runtime
from alliance.settings import Settings


async def connect_temporal(settings: Settings, metrics: bool = False) -> Client:
    """A client of the configured cluster; with `metrics`, on the runtime whose SDK metrics /metrics serves."""
    tls: TLSConfig | bool = False
    if settings.temporal_tls_cert or settings.temporal_tls_ca:
        tls = TLSConfig(
            server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
            client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
            client_private_key=settings.temporal_tls_key.read_bytes() if settings.temporal_tls_key else None,
        )
    elif settings.temporal_tls or settings.temporal_api_key:
        tls = True
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls,
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        runtime=temporal_runtime() if metrics else None,
        interceptors=tracing.temporal_interceptors(settings),
    )


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every aiokafka client (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return options


def status_producer(settings: Settings) -> AIOKafkaProducer:
    """The worker's one producer: idempotent, acks from all in-sync replicas, per-partition order kept."""
    return AIOKafkaProducer(
        **kafka_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=15_000,
        client_id="alliance-worker",
    )


class TopicMismatch(Exception):
    """Existing topics disagree with each other or with the settings in a way the stream worker cannot run on."""


UNKNOWN_TOPIC = 3  # Kafka's UNKNOWN_TOPIC_OR_PARTITION
DAY_MS = 24 * 3600 * 1000
FOREVER = "-1"
RETENTION_MS = {
    # The status topic is the downstream systems' record of every project: kept for good, so a consumer that starts
    # late (a new stream worker, a new bank system) rebuilds from event #1 of every project.
    "status": FOREVER,
    # Payment instructions: the banks' record, kept like the status events.
    "instructions": FOREVER,
    # Derived topics can be recomputed from the status topic: a week of history for their readers.
    "derived": str(7 * DAY_MS),
    # Offset checks are read within seconds (streams/checkpoint.py).
    "checks": str(DAY_MS),
}


def progress_changelog_topic(settings: Settings) -> str:
    """The changelog faust keeps for the stream worker's `status-progress` table (named by faust's rule)."""
    return f"{settings.streams_app_id}-status-progress-changelog"


def topic_configs(settings: Settings, streams: bool = False) -> dict[str, dict[str, str]]:
    """Every topic the product needs with the configs it is created with: `cleanup.policy` and, for topics with
    `delete`, a deliberate `retention.ms` (-1: kept for good) rather than the broker's default."""
    status = {"cleanup.policy": "delete", "retention.ms": RETENTION_MS["status"]}
    configs = {
        settings.status_topic: status,
        settings.instruction_topic: {"cleanup.policy": "delete", "retention.ms": RETENTION_MS["instructions"]},
    }
    if streams:
        derived = {"cleanup.policy": "delete", "retention.ms": RETENTION_MS["derived"]}
        configs |= {
            settings.feed_topic: derived,
            settings.snapshot_topic: {"cleanup.policy": "compact"},
            settings.alert_topic: derived,
            settings.dead_letter_topic: derived,
            settings.views_changelog_topic: {"cleanup.policy": "compact"},
            progress_changelog_topic(settings): {"cleanup.policy": "compact"},
            settings.streams_repair_topic: {"cleanup.policy": "delete", "retention.ms": RETENTION_MS["checks"]},
            settings.streams_leader_topic: {"cleanup.policy": "delete", "retention.ms": RETENTION_MS["checks"]},
        }
    return configs


def topic_plan(settings: Settings, streams: bool = False) -> dict[str, tuple[int, str]]:
    """Every topic the product needs, with its partition count and cleanup policy (what `ensure_topics` creates,
    and what a cluster's topic declarations must say: deploy/kubernetes/platform/strimzi-kafka.yaml is checked
    against it, with `topic_configs`). With `streams`, the stream worker's too: all with the status topic's
    partition count, since the tables and the checks topic are partitioned like their source (faust co-partitions
    them) and a derived topic keyed by project keeps one project's records on one partition; faust's leader
    election topic has one."""
    partitions = settings.topic_partitions
    return {
        topic: (1 if topic == settings.streams_leader_topic else partitions, config["cleanup.policy"])
        for topic, config in topic_configs(settings, streams).items()
    }


class RetentionMismatch(TopicMismatch):
    """An existing topic keeps records for another time than the product sets."""


async def ensure_topics(settings: Settings, streams: bool = False) -> None:
    """Creates the topics of `topic_plan` with explicit partition counts and `topic_configs`; existing ones are
    checked, not changed. With `streams` (the stream worker, which rebuilds from the status topic): a different
    partition count is refused, and so is a status topic that does not keep its records for good (a stream worker
    started later could not rebuild the views), with the command that fixes it."""
    plan = topic_plan(settings, streams)
    configs = topic_configs(settings, streams)
    admin = AIOKafkaAdminClient(**kafka_options(settings), client_id="alliance-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if streams:
            checked = [t for t, (count, _) in plan.items() if t in existing and count == settings.topic_partitions]
            await _check_partitions(admin, settings, checked)
        missing = [
            NewTopic(
                name=topic,
                num_partitions=count,
                replication_factor=settings.topic_replication_factor,
                topic_configs={"min.insync.replicas": "1", **configs[topic]},
            )
            for topic, (count, _) in plan.items()
            if topic not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        if streams:  # checked after creation too: a topic another process created meanwhile has its creator's configs
            await _check_retention(admin, settings.status_topic, configs[settings.status_topic]["retention.ms"])
    finally:
        await admin.close()


TOPIC_KNOWN_WITHIN = 30.0
"""Seconds a topic created a moment ago may stay unknown to the broker answering (metadata not propagated yet: 5 s
was too short on a loaded two-core machine)."""


async def topic_config(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    """A topic's effective configs, by name (broker defaults included). A topic created a moment ago may not be
    known to the broker answering yet: asked again every 0.2 s for up to TOPIC_KNOWN_WITHIN seconds.

    Raises TopicMismatch if the broker refuses, or still does not know the topic after that."""
    deadline = asyncio.get_running_loop().time() + TOPIC_KNOWN_WITHIN
    while True:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        error_code, message, _, _, entries = response.resources[0][:5]
        if error_code == 0:
            return {str(entry[0]): str(entry[1]) for entry in entries}
        if error_code != UNKNOWN_TOPIC:
            raise TopicMismatch(
                f"the configs of topic {topic} cannot be read (error {error_code}: {message or 'unknown'})"
            )
        if asyncio.get_running_loop().time() >= deadline:
            raise TopicMismatch(
                f"the broker still does not know topic {topic} {TOPIC_KNOWN_WITHIN:.0f} s after it was created or "
                "listed (error 3: UNKNOWN_TOPIC_OR_PARTITION)"
            )
        await asyncio.sleep(0.2)


async def _check_retention(admin: AIOKafkaAdminClient, topic: str, wanted: str) -> None:
    found = (await topic_config(admin, topic)).get("retention.ms")
    if found is not None and found != wanted:
        raise RetentionMismatch(
            f"the status topic {topic} keeps records for retention.ms={found}, but the product keeps them for good "
            f"(retention.ms={wanted}): a stream worker started later could not rebuild every project. Fix it with "
            f"`kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config retention.ms={wanted}`"
        )


async def _check_partitions(admin: AIOKafkaAdminClient, settings: Settings, topics: list[str]) -> None:
    if not topics:
        return
    counts = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(topics)}
    wrong = {topic: n for topic, n in counts.items() if n != settings.topic_partitions}
    if wrong:
        listed = ", ".join(f"{topic} has {n}" for topic, n in sorted(wrong.items()))
        raise TopicMismatch(
            f"the stream worker needs every topic it reads or writes with {settings.topic_partitions} partitions "
            f"(ALLIANCE_TOPIC_PARTITIONS), but {listed}; set ALLIANCE_TOPIC_PARTITIONS to the status topic's count"
            " or recreate the derived topics"
        )
