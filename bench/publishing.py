"""Event publishing: the publishing activity next to a plain aiokafka producer sending the same bytes, same run.

    .venv/bin/python -m bench.publishing [--projects 400] [--bootstrap 127.0.0.1:19092]

Needs a broker (`deploy/local/services.sh start kafka`). Both sides send the same status events (each project's
lifecycle up to its first disbursement, the stream the tests use) to fresh topics, one batch per project at a time
and all projects at once, with the worker's producer settings (idempotent, acks=all, linger 5 ms):
- product: `activities.publishing.Publisher.publish_status_events`, the activity the workflows call (serialises each
  event, sends with its CloudEvents header, waits for every acknowledgement, logs);
- baseline: a plain `AIOKafkaProducer` sending the already-serialised bytes, awaiting the acknowledgements the same way.
The decision → readable latency is in `bench.lifecycle` (it needs the workflows).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
import uuid

import structlog

from activities.messages import PublishEvents
from activities.publishing import Publisher
from alliance.connections import ensure_topics, status_producer
from alliance.settings import Settings
from bench.events import project_stream
from schemas.events import StatusEvent


async def product(settings: Settings, streams: list[list[StatusEvent]]) -> float:
    publisher = Publisher(lambda: status_producer(settings), settings.status_topic, settings.instruction_topic)
    try:
        await publisher.publish_status_events(PublishEvents(events=streams[0][:1]))  # connect before timing
        started = time.perf_counter()
        await asyncio.gather(*(publisher.publish_status_events(PublishEvents(events=s)) for s in streams))
        return time.perf_counter() - started
    finally:
        await publisher.stop()


async def baseline(settings: Settings, streams: list[list[tuple[bytes, bytes]]]) -> float:
    producer = status_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.status_topic, key=streams[0][0][0], value=streams[0][0][1])

        async def one(records: list[tuple[bytes, bytes]]) -> None:
            pending = [await producer.send(settings.status_topic, key=k, value=v) for k, v in records]
            for delivery in pending:
                await delivery

        started = time.perf_counter()
        await asyncio.gather(*(one(r) for r in streams))
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def main(projects: int, bootstrap: str, rounds: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    streams = [project_stream(f"bench-pub-{n:04d}") for n in range(projects)]
    raw = [[(e.subject.encode(), e.model_dump_json().encode()) for e in s] for s in streams]
    events = sum(len(s) for s in streams)
    size = sum(len(v) for r in raw for _, v in r) / events
    print(
        f"machine: {os.cpu_count()} cores; {projects} projects, {events} events of {size:.0f} bytes; broker {bootstrap}"
    )
    print(f"{'round':>5} | {'publishing activity ev/s':>24} | {'plain producer ev/s':>19} | {'ratio':>5}")
    for n in range(rounds):
        run = uuid.uuid4().hex[:8]
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            status_topic=f"bench.publish.{run}",
            instruction_topic=f"bench.publish-instructions.{run}",
        )
        await ensure_topics(settings)
        plain = settings.model_copy(update={"status_topic": f"bench.publish-plain.{run}"})
        await ensure_topics(plain)
        ours = events / await product(settings, streams)
        theirs = events / await baseline(plain, raw)
        print(f"{n + 1:>5} | {ours:>24,.0f} | {theirs:>19,.0f} | {ours / theirs:>5.2f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    args = parser.parse_args()
    asyncio.run(main(args.projects, args.bootstrap, args.rounds))
