"""Everything the workflows send to Kafka: status events and payment instructions.

One long-lived idempotent producer per worker (acks=all) is injected; activities never open their own.
A failed send raises, Temporal retries the activity until the broker is back, and because the event ids and
instruction ids were fixed by the workflow, a record sent twice is a recognisable duplicate downstream.
"""

from __future__ import annotations

import structlog
from aiokafka import AIOKafkaProducer
from temporalio import activity

from activities.messages import PUBLISH_STATUS_EVENTS, SEND_INSTRUCTION, PublishEvents, SendInstruction

log = structlog.get_logger(__name__)

CLOUDEVENTS_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"


class Publisher:
    def __init__(self, producer: AIOKafkaProducer, status_topic: str, instruction_topic: str) -> None:
        self._producer = producer
        self._status_topic = status_topic
        self._instruction_topic = instruction_topic

    @activity.defn(name=PUBLISH_STATUS_EVENTS)
    async def publish_status_events(self, request: PublishEvents) -> int:
        """Sends the events in order and returns once the broker has acknowledged all of them."""
        pending = []
        for event in request.events:
            pending.append(
                await self._producer.send(
                    self._status_topic,
                    key=event.subject.encode(),
                    value=event.model_dump_json().encode(),
                    headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE)],
                )
            )
        for delivery in pending:
            await delivery
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
        await self._producer.send_and_wait(
            self._instruction_topic,
            key=instruction.project_id.encode(),
            value=instruction.model_dump_json().encode(),
            headers=[("idempotency-key", instruction.instruction_id.encode())],
        )
        log.info(
            "instruction_sent",
            topic=self._instruction_topic,
            instruction_id=instruction.instruction_id,
            amount=str(instruction.amount),
        )
        return instruction.instruction_id
