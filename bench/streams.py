"""Stream worker throughput and lag, next to a plain aiokafka consumer reading the same topic in the same run.

    .venv/bin/python -m bench.streams [--projects 400] [--rate 500] [--tick 2] [--bootstrap 127.0.0.1:19092]
    .venv/bin/python -m bench.streams --memory [--projects 200]

Needs a broker (`deploy/local/services.sh start kafka`). Publishes a burst of status events (each project's
lifecycle up to its first disbursement, the same stream the tests use) to a fresh topic, then measures:
- baseline: a plain aiokafka consumer reading every record of the topic (bytes only), and the same consumer also
  parsing and folding each event in-process (the stream worker's own work without faust and Kafka writes);
- the engine's floor: a faust agent batching the same topic the same way and only acknowledging each record
  (`bench.faust_floor`): what faust costs before any work of ours;
- the stream worker (`alliance streams` as a process, started after the burst: a rebuild from the topic): events
  per second from its first to its last feed record, and the rebuild time from its start to its last feed record;
- lag from publish to table update (the feed record is written with the table, in the same batch): p50 / p99,
  measured on a second burst paced at `--rate` events per second while the worker is running.
With `--memory`: the worker (the group's leader) on topics with 1x, 10x and 100x the events of the same projects
(longer histories: review reminders), its resident memory once caught up and after three leader ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


async def publish(settings: Settings, events: list[ev.StatusEvent], rate: float = 0.0) -> None:
    """Sends the events; with `rate`, event i at i / rate seconds after the first (not before)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=0 if rate else 5,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        for n, event in enumerate(events):
            if rate and (wait := started + n / rate - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            await producer.send(
                settings.status_topic, key=event.subject.encode(), value=event.model_dump_json().encode()
            )
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


def bench_settings(bootstrap: str) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        status_topic=f"bench.status.{run}",
        feed_topic=f"bench.feed.{run}",
        snapshot_topic=f"bench.snapshots.{run}",
        alert_topic=f"bench.alerts.{run}",
        dead_letter_topic=f"bench.dead.{run}",
        instruction_topic=f"bench.instructions.{run}",
        streams_app_id=f"bench-{run}",
        streams_web_port=6099,
        streams_data_dir=Path(f"/tmp/bench-streams-{run}"),
    )


async def start_worker(settings: Settings, tick: float = 2.0) -> asyncio.subprocess.Process:
    """`alliance streams` on the bench's topics; `tick`: the leader's check and snapshot interval, seconds."""
    env = {**os.environ, **{f"ALLIANCE_{k.upper()}": str(v) for k, v in settings.model_dump().items() if "topic" in k}}
    env |= {
        "ALLIANCE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ALLIANCE_STREAMS_APP_ID": settings.streams_app_id,
        "ALLIANCE_STREAMS_WEB_PORT": str(settings.streams_web_port),
        "ALLIANCE_STREAMS_DATA_DIR": str(settings.streams_data_dir),
        "ALLIANCE_STREAMS_SNAPSHOT_SECONDS": str(tick),
        "ALLIANCE_LOG_LEVEL": "WARNING",
    }
    with open(f"/tmp/{settings.streams_app_id}.log", "wb") as log:
        return await asyncio.create_subprocess_exec(ALLIANCE, "streams", env=env, stdout=log, stderr=log)


async def faust_floor(settings: Settings, count: int) -> float:
    """Records per second through a faust agent that only acknowledges them (`bench.faust_floor`), same topic."""
    out = Path(f"/tmp/floor-{settings.streams_app_id}.json")
    out.unlink(missing_ok=True)
    args = [settings.kafka_bootstrap_servers, settings.status_topic, str(settings.topic_partitions), str(count)]
    with open(f"/tmp/floor-{settings.streams_app_id}.log", "wb") as log:
        floor = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.faust_floor", *args, str(out), stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 300
        while not out.exists() and time.monotonic() < deadline and floor.returncode is None:
            await asyncio.sleep(0.2)
        if not out.exists():
            raise RuntimeError(f"the faust floor agent did not take {count} records (log /tmp/floor-*.log)")
        seen = json.loads(out.read_text())
        return float(seen["count"]) / max(seen["last"] - seen["first"], 1e-6)
    finally:
        floor.terminate()
        await floor.wait()


def memory_kib(pid: int) -> tuple[int, int]:
    """(resident now, peak resident) of a process, KiB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def memory(projects: int, bootstrap: str) -> None:
    print(f"{'events':>10}{'per project':>13}{'catch-up s':>12}{'RSS MiB':>10}{'peak MiB':>10}")
    for scale in (1, 10, 100):
        settings = bench_settings(bootstrap)
        await ensure_topics(settings, streams=True)
        per_project = 7 * scale
        events = [
            e
            for n in range(projects)
            for e in project_stream(f"mem-{n}", ("KE", "ZM", "NG", "TH")[n % 4], reminders=per_project - 7)
        ]
        await publish(settings, events)
        started = time.time()
        worker = await start_worker(settings)
        try:
            times = await feed_times(settings, len(events))
            took = max(times.values()) / 1000 - started
            await asyncio.sleep(3 * 2 + 1)  # three leader ticks: checks, alerts, snapshots
            rss, peak = memory_kib(worker.pid)
        finally:
            worker.terminate()
            await worker.wait()
        print(f"{len(events):>10,}{per_project:>13}{took:>12.1f}{rss / 1024:>10.0f}{peak / 1024:>10.0f}")


async def main(projects: int, bootstrap: str, rate: float, tick: float) -> None:
    settings = bench_settings(bootstrap)
    await ensure_topics(settings, streams=True)
    countries = ("KE", "ZM", "NG", "TH")
    burst = [e for n in range(projects) for e in project_stream(f"bench-{n}", countries[n % 4])]
    paced_projects = max(1, int(rate * 5 / 7))  # about five seconds of events at `rate`
    paced = [
        e for n in range(projects, projects + paced_projects) for e in project_stream(f"bench-{n}", countries[n % 4])
    ]
    paced.sort(key=lambda e: e.data.sequence)  # projects interleaved, as workflows publish
    await publish(settings, burst)
    print(f"published {len(burst)} events of {projects} projects to {settings.status_topic}")

    plain = await read_all(settings, settings.status_topic, len(burst), fold_events=False)
    folding = await read_all(settings, settings.status_topic, len(burst), fold_events=True)
    floor = await faust_floor(settings, len(burst))

    started = time.time()
    worker = await start_worker(settings, tick)
    try:
        times = await feed_times(settings, len(burst))
        stamps = sorted(times.values())
        worker_rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000) if len(stamps) > 1 else 0.0
        rebuild = stamps[-1] / 1000 - started
        print(f"plain {plain:,.0f}/s, parse + fold {folding:,.0f}/s, stream worker {worker_rate:,.0f}/s", flush=True)
        print(f"rebuild: {len(burst):,} events fed after {rebuild:.1f} s", flush=True)
        await publish(settings, paced, rate=rate)
        all_feed = await feed_times(settings, len(burst) + len(paced))
        published = await source_times(settings)
        lags = sorted(all_feed[e.id] - published[e.id] for e in paced if e.id in all_feed)
        async with httpx.AsyncClient(timeout=120) as http:
            portfolio = (await http.get(f"http://127.0.0.1:{settings.streams_web_port}/portfolio/country/")).json()
    finally:
        worker.terminate()
        await worker.wait()

    counted = sum(sum(t["projects_by_stage"].values()) for t in portfolio["country"].values())
    print()
    print(f"{'reader':<48}{'events/s':>12}{'vs plain':>10}{'vs fold':>10}")
    print(f"{'plain aiokafka consumer (bytes)':<48}{plain:>12,.0f}{1.0:>10.2f}{plain / folding:>10.2f}")
    print(f"{'aiokafka consumer + parse + fold (in process)':<48}{folding:>12,.0f}{folding / plain:>10.2f}{1.0:>10.2f}")
    print(
        f"{'faust agent, records only acknowledged (floor)':<48}{floor:>12,.0f}"
        f"{floor / plain:>10.2f}{floor / folding:>10.2f}"
    )
    print(
        f"{'stream worker (faust: batches, table + feed)':<48}{worker_rate:>12,.0f}"
        f"{worker_rate / plain:>10.2f}{worker_rate / folding:>10.2f}"
    )
    print()
    print(f"rebuild: a new worker started on {len(burst):,} events fed the last one after {rebuild:.1f} s")
    if lags:
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        p50 = statistics.median(lags)
        print(
            f"publish → table update lag over {len(lags)} events at {rate:.0f}/s (leader tick {tick:g} s): "
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {lags[-1]:.0f} ms"
        )
        first = min(published[e.id] for e in paced)
        slow = sorted(
            {
                round((published[e.id] - first) / 1000, 1)
                for e in paced
                if all_feed.get(e.id, 0) - published[e.id] >= p99
            }
        )
        print(f"events at or above p99 were published at {', '.join(f'{s:.1f}' for s in slow)} s into the paced burst")
    print(f"portfolio counted {counted} projects (expected {projects + paced_projects})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=400)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second of the paced burst (lag)")
    parser.add_argument("--memory", action="store_true", help="leader memory with 1x, 10x, 100x the events")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--tick", type=float, default=2.0, help="the leader's check and snapshot interval, seconds")
    args = parser.parse_args()
    if args.memory:
        asyncio.run(memory(args.projects, args.bootstrap))
    else:
        asyncio.run(main(args.projects, args.bootstrap, args.rate, args.tick))
    sys.stdout.flush()
    os._exit(0)
