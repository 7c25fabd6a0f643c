"""Everything the workflows send to Kafka: status events and payment instructions.

One long-lived idempotent producer per worker (acks=all), made by an injected factory; activities never open their
own. A failed send raises, Temporal retries the activity until the broker is back, and because the event ids and
instruction ids were fixed by the workflow, a record sent twice is a recognisable duplicate downstream.

A producer that failed a send is replaced by a fresh one before the retry. After the broker has been down, aiokafka's
idempotent producer can be left with sequence numbers the broker no longer accepts (`OutOfOrderSequenceNumber` on
every later send: found by the broker-outage fault test); a new producer gets a new producer id and starts over.
Order per project holds: a workflow has one publishing activity at a time, and a retried batch is sent whole again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from opentelemetry import propagate, trace
from prometheus_client import Counter, Histogram
from temporalio import activity

from activities.messages import PUBLISH_STATUS_EVENTS, SEND_INSTRUCTION, PublishEvents, SendInstruction

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

    async def _sending(self, send: Callable[[AIOKafkaProducer], Any]) -> Any:
        name = activity.info().activity_type
        if activity.info().attempt > 1:
            PUBLISH_RETRIES.labels(name).inc()
        producer = await self._current()
        try:
            with PUBLISH_SECONDS.labels(name).time():
                return await send(producer)
        except Exception as err:
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

        async def send(producer: AIOKafkaProducer) -> None:
            pending = []
            headers = [("content-type", CLOUDEVENTS_CONTENT_TYPE), *trace_headers()]
            for event in request.events:
                pending.append(
                    await producer.send(
                        self._status_topic,
                        key=event.subject.encode(),
                        value=event.model_dump_json().encode(),
                        headers=headers,
                    )
                )
            for delivery in pending:
                await delivery

        with producer_span(self._status_topic, len(request.events), request.events[0].subject):
            await self._sending(send)
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
        with producer_span(self._instruction_topic, 1, instruction.project_id):
            headers = [("idempotency-key", instruction.instruction_id.encode()), *trace_headers()]
            await self._sending(
                lambda producer: producer.send_and_wait(
                    self._instruction_topic,
                    key=instruction.project_id.encode(),
                    value=instruction.model_dump_json().encode(),
                    headers=headers,
                )
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
