"""Reading the status topic back: `alliance events tail`, and the tests that compare Kafka with workflow history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from alliance.connections import kafka_options
from alliance.projects import UserError
from alliance.settings import Settings
from schemas.events import StatusEvent


async def records(
    settings: Settings, topic: str, from_beginning: bool = True, follow: bool = False
) -> AsyncIterator[tuple[bytes | None, bytes]]:
    """(key, value) of every record of `topic`, partition by partition in offset order; without `follow`, up to
    the end offsets seen at the start."""
    partitions = await _partitions(settings, topic)
    # read_committed: the stream worker writes its derived topics in transactions; aborted ones are not news.
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        enable_auto_commit=False,
        client_id="alliance-tail",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
        end = await consumer.end_offsets(assigned)
        while True:
            if not follow and all([await consumer.position(tp) >= end[tp] for tp in assigned]):
                return
            batch = await consumer.getmany(timeout_ms=500)
            for tp in sorted(batch, key=lambda t: t.partition):
                for record in batch[tp]:
                    yield record.key, record.value
    except KafkaError as err:
        raise UserError(f"reading {topic} failed: {err}") from err
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(**kafka_options(settings), client_id="alliance-tail", request_timeout_ms=5000)
    try:
        await admin.start()
        described = await admin.describe_topics([topic])
    except KafkaError as err:
        raise UserError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: is the broker running? ({err})"
        ) from err
    finally:
        await admin.close()
    if not described or described[0].get("error_code", 0) != 0 or not described[0].get("partitions"):
        raise UserError(f"topic {topic} does not exist yet: no project has published an event")
    return sorted(p["partition"] for p in described[0]["partitions"])


async def tail(
    settings: Settings,
    show: Callable[[str], None],
    project: str | None = None,
    from_beginning: bool = True,
    follow: bool = False,
    limit: int | None = None,
) -> int:
    shown = 0
    async for key, value in records(settings, settings.status_topic, from_beginning, follow):
        if project is not None and key != project.encode():
            continue
        show(value.decode("utf-8", errors="replace"))
        shown += 1
        if limit is not None and shown >= limit:
            break
    return shown


async def project_events(settings: Settings, project_id: str) -> list[StatusEvent]:
    """One project's status events as published, duplicates included, in partition order."""
    return [
        StatusEvent.model_validate_json(value)
        async for key, value in records(settings, settings.status_topic)
        if key == project_id.encode()
    ]
