"""Tracing (OpenTelemetry), switched on: one trace from the API request that proposes a project, through Temporal
into the workflow and its activities, to the Kafka publish of the project's first event, whose record carries the
trace in its `traceparent` header. Spans are kept in memory here instead of being exported."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from alliance import tracing
from alliance.api import create_app
from alliance.connections import kafka_options
from alliance.demo import CONTRACTOR
from alliance.settings import Settings
from alliance.tokens import Edge
from alliance.worker import project_worker
from tests.support import raw_example

pytestmark = pytest.mark.timeout(120)


async def test_one_trace_runs_from_the_api_request_to_the_kafka_record(settings: Settings) -> None:
    spans = InMemorySpanExporter()
    traced = settings.model_copy(update={"tracing": "console"})
    tracing.configure(traced, "alliance-test", exporter=spans)
    client = await Client.connect(
        traced.temporal_address,
        data_converter=pydantic_data_converter,
        interceptors=tracing.temporal_interceptors(traced),
    )
    project_id = f"ke-traced-{settings.task_queue[-6:]}"
    body = raw_example("ke-national-data-centre-2") | {"project_id": project_id}
    headers = {"Authorization": f"Bearer {Edge(traced).issue(CONTRACTOR)}", "Idempotency-Key": project_id}
    async with project_worker(client, traced):
        app = create_app(traced, client=client)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            response = await http.post("/projects", json=body, headers=headers)
            assert response.status_code == 201, response.text
            for _ in range(200):  # until the first event is on Kafka
                if any(s.name == f"{traced.status_topic} publish" for s in spans.get_finished_spans()):
                    break
                await asyncio.sleep(0.1)

    finished = spans.get_finished_spans()
    (request,) = [s for s in finished if s.name == "POST /projects" and s.kind.name == "SERVER"]
    trace_id = request.context.trace_id
    in_trace = {s.name for s in finished if s.context.trace_id == trace_id}
    assert "StartWorkflow:AllianceProject" in in_trace, sorted(in_trace)
    assert "RunWorkflow:AllianceProject" in in_trace, sorted(in_trace)
    assert "RunActivity:screen_proposal" in in_trace, sorted(in_trace)
    assert f"{traced.status_topic} publish" in in_trace, sorted(in_trace)
    (publish,) = [s for s in finished if s.name == f"{traced.status_topic} publish" and s.context.trace_id == trace_id][
        :1
    ]
    assert publish.attributes is not None and publish.attributes["messaging.kafka.message.key"] == project_id

    # The record on Kafka carries the trace for downstream consumers.
    consumer = AIOKafkaConsumer(**kafka_options(traced), enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(traced.status_topic, p) for p in range(traced.topic_partitions)]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        parents = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                parents += [
                    dict(r.headers).get("traceparent", b"").decode() for r in batch if r.key == project_id.encode()
                ]
    finally:
        await consumer.stop()
    assert parents and parents[0].split("-")[1] == format(trace_id, "032x"), parents
