"""Everything the workflows send to Kafka: status events and payment instructions.

One long-lived idempotent producer per worker (acks=all), made by an injected factory; activities never open their
own. A failed send raises, Temporal retries the activity until the broker is back, and because the event ids and
instruction ids were fixed by the workflow, a record sent twice is a recognisable duplicate downstream.

A producer that failed a send is replaced by a fresh one before the retry. After the broker has been down, aiokafka's
idempotent producer can be left with sequence numbers the broker no longer accepts (`OutOfOrderSequenceNumber` on
every later send: found by the broker-outage fault test); a new producer gets a new producer id and starts over.
Order per project holds: a workflow has one publishing activity at a time, and a retried batch is sent whole again.

An error no retry can help (a record larger than Kafka accepts, a topic the worker may not write to or that cannot
exist) is raised as a non-retryable `ApplicationError` of type `KafkaRecordTooLarge` or `KafkaTopicRefused`
(activities/messages.py), naming the record, its size and the topic, so the workflow decides what happens instead
of the activity retrying forever; the producer is kept (it is not what failed). Every other error is taken as
transient (broker away, leader moving, timeouts): the producer is replaced and Temporal retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from opentelemetry import propagate, trace
from prometheus_client import Counter, Histogram
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.messages import (
    PUBLISH_STATUS_EVENTS,
    RECORD_TOO_LARGE,
    SEND_INSTRUCTION,
    TOPIC_REFUSED,
    PublishEvents,
    SendInstruction,
)

log = structlog.get_logger(__name__)
tracer = trace.get_tracer(__name__)

CLOUDEVENTS_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"

EVENTS_PUBLISHED = Counter("alliance_events_published", "Status events acknowledged by Kafka", ["topic"])
PUBLISH_RETRIES = Counter(
    "alliance_publish_retries", "Publishing activity attempts after the first (Kafka slow or away)", ["activity"]
)
PUBLISH_SECONDS = Histogram(
    "alliance_publish_seconds", "Time from sending to Kafka's acknowledgement, per activity attempt", ["activity"]
)
PUBLISH_REFUSED = Counter(
    "alliance_publish_refused",
    "Publishing attempts failed for good (record too large, topic refused): the workflow was told, no retry",
    ["activity", "reason"],
)
# action: disburse and release_retention pay money out; release_commitment frees an approved amount not drawn.
INSTRUCTIONS = Counter(
    "alliance_instructions",
    "Instructions sent to the institutions (a retried send counts again; instruction ids tell repeats apart)",
    ["action", "institution", "currency"],
)
INSTRUCTED_AMOUNT = Counter(
    "alliance_instructed_amount", "Amounts of the instructions sent", ["action", "institution", "currency"]
)


def producer_span(topic: str, records: int, project_id: str) -> AbstractContextManager[trace.Span]:
    """A PRODUCER span per batch (OpenTelemetry messaging conventions); a no-op unless tracing is on."""
    return tracer.start_as_current_span(
        f"{topic} publish",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.batch.message_count": records,
            "messaging.kafka.message.key": project_id,
        },
    )


def trace_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka record headers (W3C `traceparent`), so consumers can continue it."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(name, value.encode()) for name, value in carrier.items()]


TOO_LARGE: tuple[type[Exception], ...] = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)
REFUSED_TOPIC: tuple[type[Exception], ...] = (
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    InvalidTopicError,
)


def permanent(err: Exception, record: str, size: int, topic: str) -> ApplicationError | None:
    """The non-retryable error to raise for a Kafka error no retry can help, or None for a transient one.
    `record` names what was sent ("status event 7 of project ke-x"), `size` is its value in bytes."""
    if isinstance(err, TOO_LARGE):
        kind = RECORD_TOO_LARGE
        message = (
            f"{record} is {size:,} bytes, more than Kafka accepts on topic {topic} "
            f"(the producer's max_request_size or the topic's max.message.bytes): {type(err).__name__}"
        )
    elif isinstance(err, REFUSED_TOPIC):
        kind = TOPIC_REFUSED
        message = f"Kafka refused {record} on topic {topic}: {type(err).__name__} {err}".rstrip()
    else:
        return None
    return ApplicationError(message, type=kind, non_retryable=True)


class Publisher:
    def __init__(
        self, make_producer: Callable[[], AIOKafkaProducer], status_topic: str, instruction_topic: str
    ) -> None:
        self._make_producer = make_producer
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._status_topic = status_topic
        self._instruction_topic = instruction_topic
        self.replaced = 0

    async def _current(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = self._make_producer()
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _discard(self, producer: AIOKafkaProducer, err: BaseException) -> None:
        """Drops a producer that failed a send, unless another activity already did."""
        async with self._lock:
            already_replaced = self._producer is not producer
            if already_replaced:
                return
            self._producer = None
            self.replaced += 1
        log.warning("kafka_producer_replaced", error=repr(err))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 10)

    async def _sending(self, send: Callable[[AIOKafkaProducer], Any], record: str, size: int, topic: str) -> Any:
        """Runs `send` on the current producer. A permanent error becomes a non-retryable ApplicationError; any
        other error replaces the producer and is raised for Temporal to retry."""
        name = activity.info().activity_type
        if activity.info().attempt > 1:
            PUBLISH_RETRIES.labels(name).inc()
        producer = await self._current()
        try:
            with PUBLISH_SECONDS.labels(name).time():
                return await send(producer)
        except Exception as err:
            if (refused := permanent(err, record, size, topic)) is not None:
                PUBLISH_REFUSED.labels(name, refused.type).inc()
                log.error("publish_refused", activity=name, reason=refused.type, error=refused.message)
                raise refused from err
            await self._discard(producer, err)
            raise

    async def stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    @activity.defn(name=PUBLISH_STATUS_EVENTS)
    async def publish_status_events(self, request: PublishEvents) -> int:
        """Sends the events in order and returns once the broker has acknowledged all of them."""

        values = [event.model_dump_json().encode() for event in request.events]
        largest = max(range(len(values)), key=lambda i: len(values[i]))
        first = request.events[0]
        record = (
            f"status event {request.events[largest].data.sequence} of project {first.subject} "
            f"(the largest of {len(values)} in the batch)"
            if len(values) > 1
            else f"status event {first.data.sequence} of project {first.subject}"
        )

        async def send(producer: AIOKafkaProducer) -> None:
            pending: list[asyncio.Future[Any]] = []
            headers = [("content-type", CLOUDEVENTS_CONTENT_TYPE), *trace_headers()]
            try:
                for event, value in zip(request.events, values, strict=True):
                    pending.append(
                        await producer.send(
                            self._status_topic, key=event.subject.encode(), value=value, headers=headers
                        )
                    )
            finally:
                # Every delivery is awaited, also after a failed send, so no failure goes unread.
                outcomes = await asyncio.gather(*pending, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

        with producer_span(self._status_topic, len(request.events), first.subject):
            await self._sending(send, record, len(values[largest]), self._status_topic)
        EVENTS_PUBLISHED.labels(self._status_topic).inc(len(request.events))
        log.info(
            "status_events_published",
            topic=self._status_topic,
            project_id=request.events[0].subject,
            sequences=[e.data.sequence for e in request.events],
        )
        return len(request.events)

    @activity.defn(name=SEND_INSTRUCTION)
    async def send_instruction(self, request: SendInstruction) -> str:
        """Sends a payment instruction to the institution's inbox topic; returns its idempotency key."""
        instruction = request.instruction
        value = instruction.model_dump_json().encode()
        with producer_span(self._instruction_topic, 1, instruction.project_id):
            headers = [("idempotency-key", instruction.instruction_id.encode()), *trace_headers()]
            await self._sending(
                lambda producer: producer.send_and_wait(
                    self._instruction_topic, key=instruction.project_id.encode(), value=value, headers=headers
                ),
                f"instruction {instruction.instruction_id}",
                len(value),
                self._instruction_topic,
            )
        labels = (instruction.action.value, instruction.institution.value, instruction.amount.currency)
        INSTRUCTIONS.labels(*labels).inc()
        INSTRUCTED_AMOUNT.labels(*labels).inc(float(instruction.amount.amount))
        log.info(
            "instruction_sent",
            topic=self._instruction_topic,
            instruction_id=instruction.instruction_id,
            amount=str(instruction.amount),
        )
        return instruction.instruction_id
