"""Stream worker throughput and lag, next to a plain aiokafka consumer reading the same topic in the same run.

    .venv/bin/python -m bench.streams [--projects 400] [--bootstrap 127.0.0.1:19092]

Needs a broker (`deploy/local/services.sh start kafka`). Publishes a burst of status events (each project's
lifecycle up to its first disbursement, the same stream the tests use) to a fresh topic, then measures:
- baseline: a plain aiokafka consumer reading every record of the topic (bytes only), and the same consumer also
  parsing and folding each event in-process (the stream worker's own work without faust and Kafka writes);
- the stream worker (`alliance streams` as a process): events per second from its first to its last feed record;
- lag from publish to table update (the feed record is written right after the table): p50 / p99, measured on a
  paced second burst while the worker is running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from alliance.connections import ensure_topics
from alliance.settings import Settings
from bench.events import project_stream
from schemas import events as ev
from streams.projection import ProjectView, fold

ALLIANCE = str(Path(sys.executable).parent / "alliance")


async def publish(settings: Settings, events: list[ev.StatusEvent], pace: float = 0.0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await producer.send(
                settings.status_topic, key=event.subject.encode(), value=event.model_dump_json().encode()
            )
            if pace:
                await asyncio.sleep(pace)
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str, count: int, fold_events: bool) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        views: dict[str, ProjectView] = {}
        seen = 0
        started = time.perf_counter()
        while seen < count:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                for record in batch:
                    seen += 1
                    if fold_events:
                        event = ev.StatusEvent.model_validate_json(record.value)
                        views[event.subject] = fold(views.get(event.subject), event).view
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def feed_times(settings: Settings, count: int) -> dict[str, float]:
    """Event id → Kafka timestamp (ms) of its feed record, once `count` feed records were read."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.feed_topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        times: dict[str, float] = {}
        deadline = time.monotonic() + 600
        while len(times) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                for record in batch:
                    times.setdefault(ev.StatusEvent.model_validate_json(record.value).id, record.timestamp)
        return times
    finally:
        await consumer.stop()


async def source_times(settings: Settings) -> dict[str, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.status_topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        times: dict[str, float] = {}
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                for record in batch:
                    times[ev.StatusEvent.model_validate_json(record.value).id] = record.timestamp
        return times
    finally:
        await consumer.stop()


async def main(projects: int, bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        status_topic=f"bench.status.{run}",
        feed_topic=f"bench.feed.{run}",
        snapshot_topic=f"bench.snapshots.{run}",
        alert_topic=f"bench.alerts.{run}",
        dead_letter_topic=f"bench.dead.{run}",
        streams_app_id=f"bench-{run}",
        streams_web_port=6099,
        streams_data_dir=Path(f"/tmp/bench-streams-{run}"),
    )
    await ensure_topics(settings, streams=True)
    countries = ("KE", "ZM", "NG", "TH")
    burst = [e for n in range(projects) for e in project_stream(f"bench-{n}", countries[n % 4])]
    paced = [e for n in range(projects, projects + 100) for e in project_stream(f"bench-{n}", countries[n % 4])]
    await publish(settings, burst)
    print(f"published {len(burst)} events of {projects} projects to {settings.status_topic}")

    plain = await read_all(settings, settings.status_topic, len(burst), fold_events=False)
    folding = await read_all(settings, settings.status_topic, len(burst), fold_events=True)

    env = {**os.environ, **{f"ALLIANCE_{k.upper()}": str(v) for k, v in settings.model_dump().items() if "topic" in k}}
    env |= {
        "ALLIANCE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ALLIANCE_STREAMS_APP_ID": settings.streams_app_id,
        "ALLIANCE_STREAMS_WEB_PORT": str(settings.streams_web_port),
        "ALLIANCE_STREAMS_DATA_DIR": str(settings.streams_data_dir),
        "ALLIANCE_LOG_LEVEL": "WARNING",
    }
    with open(f"/tmp/bench-streams-{run}.log", "wb") as log:
        worker = await asyncio.create_subprocess_exec(ALLIANCE, "streams", env=env, stdout=log, stderr=log)
    try:
        times = await feed_times(settings, len(burst))
        stamps = sorted(times.values())
        worker_rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000) if len(stamps) > 1 else 0.0
        await publish(settings, paced, pace=0.002)
        all_feed = await feed_times(settings, len(burst) + len(paced))
        published = await source_times(settings)
        lags = sorted(all_feed[e.id] - published[e.id] for e in paced if e.id in all_feed)
        async with httpx.AsyncClient() as http:
            portfolio = (await http.get(f"http://127.0.0.1:{settings.streams_web_port}/portfolio/country/")).json()
    finally:
        worker.terminate()
        await worker.wait()

    counted = sum(sum(t["projects_by_stage"].values()) for t in portfolio["country"].values())
    print()
    print(f"{'reader':<48}{'events/s':>12}{'vs plain':>10}")
    print(f"{'plain aiokafka consumer (bytes)':<48}{plain:>12,.0f}{1.0:>10.2f}")
    print(f"{'aiokafka consumer + parse + fold (in process)':<48}{folding:>12,.0f}{folding / plain:>10.2f}")
    print(f"{'stream worker (faust: table + feed writes)':<48}{worker_rate:>12,.0f}{worker_rate / plain:>10.2f}")
    print()
    if lags:
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        p50 = statistics.median(lags)
        print(f"publish → table update lag over {len(lags)} paced events: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    print(f"portfolio counted {counted} projects (expected {projects + 100})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=400)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    args = parser.parse_args()
    asyncio.run(main(args.projects, args.bootstrap))
    sys.stdout.flush()
    os._exit(0)
