"""The stream worker (`alliance streams`) on the real broker: killed in the middle of a burst and restarted, its
tables equal a fresh computation from the whole topic, its feed has every event in order (repeats after the kill
carry the same id), and records it cannot use go to the dead-letter topic without stopping it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from alliance.connections import ensure_topics, kafka_options
from alliance.event_feed import records
from alliance.settings import Settings
from schemas.decisions import Institution
from schemas.derived import DeadLetter, PortfolioSnapshot
from schemas.events import StatusEvent
from streams.app import open_alerts
from streams.portfolio import compute
from streams.projection import ProjectView, fold
from streams.recovery import EXIT_STATUS
from tests.streams.events import project_stream

pytestmark = pytest.mark.timeout(300)
ALLIANCE = str(Path(sys.executable).parent / "alliance")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StreamWorker:
    """`alliance streams` as a subprocess, its output in `logs/streams-<n>.log`. Supervised as in Compose or
    Kubernetes: a worker that exits with EXIT_STATUS (a stalled recovery, streams/recovery.py) is started again, and
    counted in `restarts`; `supervised=False` leaves it stopped."""

    def __init__(self, settings: Settings, logs: Path, supervised: bool = True) -> None:
        self.settings = settings
        self.logs = logs
        self.supervised = supervised
        self.process: asyncio.subprocess.Process | None = None
        self.supervisor: asyncio.Task[None] | None = None
        self.started = 0
        self.restarts = 0
        self.env = {
            **os.environ,
            "ALLIANCE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "ALLIANCE_STATUS_TOPIC": settings.status_topic,
            "ALLIANCE_FEED_TOPIC": settings.feed_topic,
            "ALLIANCE_SNAPSHOT_TOPIC": settings.snapshot_topic,
            "ALLIANCE_ALERT_TOPIC": settings.alert_topic,
            "ALLIANCE_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
            "ALLIANCE_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "ALLIANCE_STREAMS_APP_ID": settings.streams_app_id,
            "ALLIANCE_STREAMS_WEB_PORT": str(settings.streams_web_port),
            "ALLIANCE_STREAMS_DATA_DIR": str(settings.streams_data_dir),
            "ALLIANCE_STREAMS_SNAPSHOT_SECONDS": "2",
            "ALLIANCE_STREAMS_SESSION_TIMEOUT_SECONDS": "10",
            "ALLIANCE_STREAMS_WARN_DAYS": str(settings.streams_warn_days),
            "ALLIANCE_STREAMS_RECOVERY_PATIENCE_SECONDS": str(settings.streams_recovery_patience_seconds),
        }

    async def start(self) -> None:
        with open(self.logs / f"streams-{self.started}.log", "wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                ALLIANCE, "streams", env=self.env, stdout=log, stderr=log
            )
        self.started += 1
        if self.supervised:
            self.supervisor = asyncio.create_task(self._restart_on_exit_status(self.process))

    async def _restart_on_exit_status(self, process: asyncio.subprocess.Process) -> None:
        if await process.wait() == EXIT_STATUS:
            self.restarts += 1
            print(f"supervisor: the stream worker exited with {EXIT_STATUS}, started again ({self.restarts})")
            await self.start()

    async def kill(self) -> None:
        if self.supervisor is not None:
            self.supervisor.cancel()
            self.supervisor = None
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Its /metrics, by series: (name, sorted labels) -> value."""
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(f"http://127.0.0.1:{self.settings.streams_web_port}/metrics")).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    async def repairs(self) -> float:
        return sum(v for (name, _), v in (await self.metrics()).items() if name == "alliance_stream_repairs_total")

    async def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.settings.streams_web_port}{path}"
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(url)
        return response.json() if response.status_code == 200 else None


@pytest.fixture
async def stream_worker(settings: Settings, tmp_path: Path) -> Any:
    configured = settings.model_copy(
        update={
            "streams_web_port": free_port(),
            "streams_warn_days": 120,  # the test events' review deadlines are in early 2027
            "streams_data_dir": tmp_path / "streams-data",
            "streams_recovery_patience_seconds": 20.0,
        }
    )
    await ensure_topics(configured, streams=True)
    worker = StreamWorker(configured, tmp_path)
    try:
        yield worker
    finally:
        await worker.kill()


async def test_a_recovery_that_reads_nothing_ends_the_worker_for_its_supervisor_to_start_again(
    settings: Settings, tmp_path: Path
) -> None:
    """A views changelog whose last offset is a transaction marker (what a transactional producer leaves, such as a
    faust exactly_once deployment): faust's recovery waits for a record at that offset, which never comes. After the
    patience (streams/recovery.py) the worker exits with EXIT_STATUS, its threads and tasks in its log."""
    configured = settings.model_copy(
        update={
            "streams_web_port": free_port(),
            "streams_data_dir": tmp_path / "streams-data",
            "streams_recovery_patience_seconds": 2.0,
        }
    )
    await ensure_topics(configured, streams=True)
    view = fresh(project_stream("ke-marker-0", "KE"))["ke-marker-0"]
    producer = AIOKafkaProducer(
        **kafka_options(configured), transactional_id=f"{configured.streams_app_id}-tx", enable_idempotence=True
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(
                configured.views_changelog_topic,
                json.dumps("ke-marker-0").encode(),
                view.model_dump_json().encode(),
                partition=0,
            )
    finally:
        await producer.stop()
    worker = StreamWorker(configured, tmp_path, supervised=False)
    await worker.start()
    assert worker.process is not None
    try:
        status = await asyncio.wait_for(worker.process.wait(), 120)
    finally:
        await worker.kill()
    log = (tmp_path / "streams-0.log").read_text(errors="replace")
    assert status == EXIT_STATUS, log[-3000:]
    assert "stream_recovery_stalled_exit" in log
    assert "THREAD" in log  # mode's dump of threads and tasks


def fresh(events: list[StatusEvent]) -> dict[str, ProjectView]:
    views: dict[str, ProjectView] = {}
    for event in events:
        views[event.subject] = fold(views.get(event.subject), event).view
    return views


async def publish(settings: Settings, batch: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in batch:
            await producer.send(settings.status_topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def test_a_killed_stream_worker_restarts_to_the_tables_of_a_fresh_computation(
    stream_worker: StreamWorker,
) -> None:
    settings = stream_worker.settings
    streams = [project_stream(f"ke-burst-{n}", ("KE", "ZM", "NG")[n % 3], approve_cdb=n % 2 == 0) for n in range(40)]
    events = [e for s in streams for e in s]
    rng = random.Random(7)
    # What the broker may hold: retried publishes (duplicates) and, across projects, any interleaving.
    burst = events + rng.sample(events, 60)
    rng.shuffle(burst)
    records_in_order = sorted(burst, key=lambda e: e.data.sequence)  # per project, in publish order
    newer_schema = events[0].dataschema[:-1] + "2"
    bad = [
        (b"ke-burst-0", b"{not json"),
        (b"ke-burst-0", json.dumps({"type": "com.example.other", "data": {}}).encode()),
        (b"ke-burst-1", events[0].model_copy(update={"dataschema": newer_schema}).model_dump_json().encode()),
        (b"someone-else", events[0].model_dump_json().encode()),
    ]
    first_half = [(e.subject.encode(), e.model_dump_json().encode()) for e in records_in_order[: len(burst) // 2]]
    second_half = [(e.subject.encode(), e.model_dump_json().encode()) for e in records_in_order[len(burst) // 2 :]]
    await publish(settings, first_half + bad)

    await stream_worker.start()
    await asyncio.sleep(6)
    await stream_worker.kill()
    print(f"injected: SIGKILL to the stream worker after {len(first_half)} of {len(burst)} records were published")
    await publish(settings, second_half)
    await stream_worker.start()

    rules = settings.eligibility_rules()
    expected_views = fresh(events)
    expected = compute(expected_views.values(), rules.usd_per_unit, rules.rate_date).model_dump(mode="json")
    seen = None
    for _ in range(120):
        seen = await _try(stream_worker.get("/portfolio/"))
        if seen == expected:
            break
        await asyncio.sleep(1)
    assert seen == expected
    for project_id in ("ke-burst-0", "ke-burst-7", "ke-burst-39"):
        view = ProjectView.model_validate(await stream_worker.get(f"/projects/{project_id}/"))
        assert view == expected_views[project_id]
    reviews = await stream_worker.get("/reviews/")
    assert {(r["project_id"], r["institution"], r["deadline"]) for r in reviews} == {
        (v.project_id, i, d)
        for v in expected_views.values()
        for i, d in v.model_dump(mode="json")["open_reviews"].items()
    }  # deadlines written as the project views write them
    assert reviews
    alerts = {a["alert_id"] for a in await stream_worker.get("/alerts/")}
    assert alerts
    assert alerts == {a.alert_id for a in open_alerts(list(expected_views.values()), settings, datetime.now(UTC))}
    # Operators' gauges, on the same worker's /metrics: open and overdue reviews per institution.
    now = datetime.now(UTC)
    gauges = {
        (name, dict(labels)["institution"]): value
        for (name, labels), value in (await stream_worker.metrics()).items()
        if name in ("alliance_reviews_open", "alliance_reviews_overdue")
    }
    for institution in Institution:
        deadlines = [v.open_reviews[institution] for v in expected_views.values() if institution in v.open_reviews]
        assert gauges[("alliance_reviews_open", institution.value)] == len(deadlines)
        assert gauges[("alliance_reviews_overdue", institution.value)] == sum(1 for d in deadlines if d < now)
    assert any(gauges[("alliance_reviews_open", i.value)] for i in Institution)

    # The feed is at least once (see README): after removing repeated ids, every project's events once, in order.
    feed: dict[str, list[int]] = defaultdict(list)
    seen_ids: set[str] = set()
    repeats = 0
    async for key, value in records(settings, settings.feed_topic):
        event = StatusEvent.model_validate_json(value)
        if event.id in seen_ids:
            repeats += 1
            continue
        seen_ids.add(event.id)
        feed[key.decode()].append(event.data.sequence)
    assert dict(feed) == {s[0].subject: list(range(1, len(s) + 1)) for s in streams}

    # Dead letters name their source record, so one repeated after the kill is recognisable too.
    by_source = {
        (d["partition"], d["offset"]): d
        for d in [
            DeadLetter.model_validate_json(value).model_dump()
            async for _, value in records(settings, settings.dead_letter_topic)
        ]
    }
    dead = list(by_source.values())
    reasons = sorted(d["reason"].split(":")[0] for d in dead)
    assert len(dead) == 4, dead
    assert sorted(d["reason"].split(":")[0] for d in dead) == ["dataschema", "key", "type", "value"], reasons
    assert any(d["reason"].startswith("value: not JSON") for d in dead)
    assert any(d["reason"].startswith("type: 'com.example.other' is not") for d in dead)
    assert any(d["reason"].startswith("dataschema: version 2 is newer") for d in dead)
    assert any(d["reason"].startswith("key: the record key 'someone-else'") for d in dead)
    print(f"checked: {len(burst)} records + 4 unusable; feed {len(seen_ids)} events, {repeats} repeats after the kill")


async def eventually(worker: StreamWorker, path: str, expected: Any, seconds: int = 120) -> Any:
    seen = None
    for _ in range(seconds):
        seen = await _try(worker.get(path))
        if seen == expected:
            break
        await asyncio.sleep(1)
    return seen


async def _try(call: Any) -> Any:
    try:
        return await call
    except (httpx.HTTPError, ValueError):
        return None


@contextlib.asynccontextmanager
async def status_group(
    settings: Settings,
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition], dict[TopicPartition, int]]]:
    """A consumer in the stream workers' group, assigned every status partition (never subscribed, so no rebalance),
    with the partitions and their end offsets: to read or move the group's committed offsets."""
    group = AIOKafkaConsumer(**kafka_options(settings), group_id=settings.streams_app_id, enable_auto_commit=False)
    await group.start()
    try:
        tps = [TopicPartition(settings.status_topic, p) for p in range(settings.topic_partitions)]
        group.assign(tps)
        yield group, tps, await group.end_offsets(tps)
    finally:
        await group.stop()


async def settled_split(first: StreamWorker, second: StreamWorker, partitions: int) -> tuple[set[int], set[int]]:
    """The status partitions each of two workers folds, once the group has split the topic between them."""
    rounds: list[tuple[set[int], set[int]]] = []
    for _ in range(120):
        answers = [await _try(w.get("/partitions/")) for w in (first, second)]
        if all(answers):
            now = (set(answers[0]["partitions"]), set(answers[1]["partitions"]))
            rounds.append(now)
            whole = now[0] | now[1] == set(range(partitions)) and not now[0] & now[1]
            if whole and now[0] and now[1] and rounds[-2:] == [now, now]:
                return now
        await asyncio.sleep(1)
    raise AssertionError(f"the group never split the topic between the two workers: {rounds[-5:]}")


async def why_not_served(
    settings: Settings, streams: list[list[StatusEvent]], asked: StreamWorker, workers: tuple[StreamWorker, ...]
) -> str:
    """A portfolio that is not the fresh computation, explained: which projects the asked worker serves behind their
    last event, whether the views changelog itself is behind (the folding stalled) or holds them (what serves them
    is behind), where the group's offsets stand, and each worker's rebalances."""
    logged: dict[str, ProjectView] = {}
    async for key, value in records(settings, settings.views_changelog_topic):
        if key is not None and value:
            view = ProjectView.model_validate(json.loads(value))
            if view.project_id not in logged or view.last_sequence >= logged[view.project_id].last_sequence:
                logged[view.project_id] = view
    lines = []
    for events in streams:
        project = events[0].subject
        served = await _try(asked.get(f"/projects/{project}/"))
        in_log = logged.get(project)
        served_at = served["last_sequence"] if served else None
        if served_at != len(events):
            lines.append(
                f"{project} (partition {partition_of(project, settings.topic_partitions)}): served at {served_at}, "
                f"changelog at {in_log.last_sequence if in_log else None}, last event {len(events)}"
            )
    async with status_group(settings) as (group, tps, ends):
        committed = {tp.partition: await group.committed(tp) for tp in tps}
    lines.append(f"status topic end offsets {[ends[tp] for tp in tps]}, group committed {committed}")
    for worker in workers:
        lines.append(f"worker on port {worker.settings.streams_web_port}: {await _try(worker.get('/partitions/'))}")
    for worker in workers:  # a live worker writes its threads' stacks and its asyncio tasks to its log (mode's SIGUSR1)
        if worker.process is not None and worker.process.returncode is None:
            worker.process.send_signal(signal.SIGUSR1)
    await asyncio.sleep(2)
    for log in sorted({log for worker in workers for log in worker.logs.glob("streams-*.log")}):  # logs may share a dir
        text = log.read_text(errors="replace").splitlines()
        marks = [line for line in text if any(m in line for m in ("generation id", "ERROR", "WARNING", "Error"))]
        lines.append(f"  {log.name}: " + "\n    ".join(marks[-15:]))
    return "the portfolio served is not the fresh computation:\n" + "\n".join(lines)


def partition_of(project: str, partitions: int) -> int:
    from aiokafka.partitioner import murmur2

    return int(murmur2(project.encode()) & 0x7FFFFFFF) % partitions


FAILOVER_RUNS = int(os.environ.get("ALLIANCE_FAILOVER_RUNS", "1"))


@pytest.mark.parametrize("attempt", range(FAILOVER_RUNS))
async def test_two_stream_workers_share_the_topic_and_one_takes_over_with_the_totals_right(
    stream_worker: StreamWorker, tmp_path: Path, attempt: int
) -> None:
    """ALLIANCE_FAILOVER_RUNS=20 repeats it, each run on fresh topics, the kill swept across the second burst
    (0 to 0.8 s after it starts)."""
    settings = stream_worker.settings
    second = StreamWorker(
        settings.model_copy(update={"streams_web_port": free_port(), "streams_data_dir": tmp_path / "second"}),
        tmp_path,
    )
    second.started = 10  # its own log files
    streams = [project_stream(f"ke-pair-{n}", ("KE", "ZM", "NG")[n % 3], approve_cdb=n % 2 == 0) for n in range(30)]
    half = len(streams) // 2
    rules = settings.eligibility_rules()

    def portfolio(of: list[list[StatusEvent]]) -> Any:
        views = fresh([e for s in of for e in s])
        return compute(views.values(), rules.usd_per_unit, rules.rate_date).model_dump(mode="json")

    try:
        await stream_worker.start()
        await second.start()
        # The takeover is only tested if both folded part of the topic: wait for the group to split it. Each worker is
        # asked in turn, so one answer may predate a rebalance the other has seen: the split counts once two rounds of
        # answers agree, are disjoint and cover the topic.
        _, second_owns = await settled_split(stream_worker, second, settings.topic_partitions)
        await publish(settings, [(e.subject.encode(), e.model_dump_json().encode()) for s in streams[:half] for e in s])
        expected = portfolio(streams[:half])
        # Each folds only its own partitions, and each serves the whole portfolio.
        for worker in (stream_worker, second):
            if await eventually(worker, "/portfolio/", expected) != expected:
                pytest.fail(await why_not_served(settings, streams[:half], worker, (stream_worker, second)))
        for project in ("ke-pair-0", "ke-pair-1", "ke-pair-2"):
            assert await stream_worker.get(f"/projects/{project}/") == await second.get(f"/projects/{project}/")

        burst = asyncio.create_task(
            publish(settings, [(e.subject.encode(), e.model_dump_json().encode()) for s in streams[half:] for e in s])
        )
        await asyncio.sleep(0.2 * (attempt % 5))
        await second.kill()
        await burst
        print(
            f"injected: SIGKILL to the second of two stream workers {0.2 * (attempt % 5):.1f} s into the second burst"
        )
        everything = portfolio(streams)
        owns = {"topic": settings.status_topic, "partitions": list(range(settings.topic_partitions))}
        assert await eventually(stream_worker, "/partitions/", owns) == owns  # the survivor took all over
        served = await eventually(stream_worker, "/portfolio/", everything)
        if served != everything:
            pytest.fail(await why_not_served(settings, streams, stream_worker, (stream_worker, second)))
        # What the killed worker left folded may be all there is to serve: the survivor must also fold, on every
        # partition, what comes after the takeover (its table recovery done).
        after = [project_stream(f"ke-after-{n}", ("KE", "ZM", "NG")[n % 3]) for n in range(12)]
        await publish(settings, [(e.subject.encode(), e.model_dump_json().encode()) for s in after for e in s])
        streams += after
        everything = portfolio(streams)
        served = await eventually(stream_worker, "/portfolio/", everything)
        if served != everything:
            pytest.fail(await why_not_served(settings, streams, stream_worker, (stream_worker, second)))

        # The snapshots topic (compacted; published by the group's leader, now the survivor) ends on the same totals.
        wanted = {
            f"{dimension}:{value}": PortfolioSnapshot(
                dimension=dimension, value=value, rate_date=everything["rate_date"], **totals
            )
            for dimension, values in everything["by"].items()
            for value, totals in values.items()
        }
        latest: dict[str, PortfolioSnapshot] = {}
        for _ in range(30):
            async for key, value in records(settings, settings.snapshot_topic):
                latest[(key or b"").decode()] = PortfolioSnapshot.model_validate_json(value)
            if latest == wanted:
                break
            await asyncio.sleep(1)
        assert latest == wanted
        repaired = await stream_worker.repairs()
        print(
            f"checked: {len(streams)} projects; the survivor took over partitions {sorted(second_owns)} and its totals "
            f"equal a fresh computation; records read again by offset: {repaired:.0f}; restarts after a stalled "
            f"recovery: {stream_worker.restarts}"
        )
    finally:
        await second.kill()


async def test_records_the_group_committed_past_without_folding_are_read_again(stream_worker: StreamWorker) -> None:
    """faust's loss, made on purpose: the group's offsets are committed past records no worker folded (what faust
    does when it skips and acknowledges a record in a rebalance). The leader's check sends the committed offsets to
    the partitions' owner, which reads the records between its checkpoint and them; the portfolio ends equal to a
    fresh computation."""
    settings = stream_worker.settings
    streams = [project_stream(f"tz-lost-{n}", ("TZ", "ET")[n % 2]) for n in range(8)]
    await publish(settings, [(e.subject.encode(), e.model_dump_json().encode()) for s in streams for e in s])
    async with status_group(settings) as (group, _, ends):
        await group.commit({tp: offset for tp, offset in ends.items() if offset})
    print(
        f"injected: the group's offsets committed at the end of the status topic, {sum(ends.values())} records unread"
    )

    await stream_worker.start()
    rules = settings.eligibility_rules()
    views = fresh([e for s in streams for e in s])
    expected = compute(views.values(), rules.usd_per_unit, rules.rate_date).model_dump(mode="json")
    assert await eventually(stream_worker, "/portfolio/", expected, seconds=90) == expected
    repaired = await stream_worker.repairs()
    assert repaired >= sum(len(s) for s in streams)
    print(f"checked: {repaired:.0f} records read again by offset; the portfolio equals a fresh computation")


def listening_on(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at `port` (from /proc/net/tcp: state 0A is LISTEN)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if fields[3] == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


async def test_a_stream_worker_asked_to_stop_stops_cleanly(stream_worker: StreamWorker) -> None:
    """Ctrl-C or SIGTERM (what `alliance dev` and Kubernetes send): exit status 0 and no traceback. Its HTTP server
    listens on the configured host only (127.0.0.1 by default; faust binds every interface unless told)."""
    await stream_worker.start()
    for _ in range(60):
        if await _try(stream_worker.get("/partitions/")) is not None:
            break
        await asyncio.sleep(1)
    assert listening_on(stream_worker.settings.streams_web_port) == {"127.0.0.1"}
    assert stream_worker.process is not None
    stream_worker.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(stream_worker.process.wait(), 60)
    log = (stream_worker.logs / "streams-0.log").read_text()
    assert code == 0, log[-2000:]
    assert "Traceback" not in log, log[-2000:]


async def test_no_record_stops_the_worker_across_restarts(stream_worker: StreamWorker) -> None:
    """The poison records of issue 13 (a naive `time`, a naive `deadline`) are dead letters with their reason; the
    events CloudEvents allows (extension attributes, a media type with parameters) are folded and kept. Restarted
    again and again with them in the topic, the worker keeps running past several leader ticks (snapshots,
    alerts, checks) and keeps answering."""
    settings = stream_worker.settings
    good = project_stream("ke-poison-good", "KE", approve_cdb=False)
    naive = project_stream("ke-poison-naive", "ZM", approve_cdb=False)
    valid = [json.loads(e.model_dump_json()) for e in good]
    valid[0] |= {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "partitionkey": "x"}
    valid[1]["datacontenttype"] = "application/json; charset=utf-8"
    poison = [json.loads(e.model_dump_json()) for e in naive]
    poison[0]["time"] = "2026-11-02T10:00:00"
    poison[2]["data"]["deadline"] = "2027-02-03T00:00:00"
    batch = [(b"ke-poison-good", json.dumps(v).encode()) for v in valid]
    batch += [(b"ke-poison-naive", json.dumps(v).encode()) for v in poison]
    await publish(settings, batch)
    rules = settings.eligibility_rules()
    expected = compute(fresh(good).values(), rules.usd_per_unit, rules.rate_date).model_dump(mode="json")
    for restart in range(4):
        await stream_worker.start()
        assert await eventually(stream_worker, "/portfolio/", expected) == expected
        await asyncio.sleep(3 * 2 + 1)  # three leader ticks (ALLIANCE_STREAMS_SNAPSHOT_SECONDS=2) past ready
        assert stream_worker.process is not None and stream_worker.process.returncode is None, f"died ({restart})"
        assert await stream_worker.get("/alerts/") is not None
        assert await stream_worker.get("/projects/ke-poison-good/") is not None
        await stream_worker.kill()
    letters = {
        (d.partition, d.offset): d
        async for _, value in records(settings, settings.dead_letter_topic)
        for d in [DeadLetter.model_validate_json(value)]
    }
    reasons = sorted(d.reason for d in letters.values())
    assert len(reasons) == 2 and reasons[0].startswith("data.deadline: ") and reasons[1].startswith("time: "), reasons
    assert all("[timezone_aware]" in r for r in reasons)
    fed = [json.loads(value) async for _, value in records(settings, settings.feed_topic)]
    assert fed[0]["traceparent"].startswith("00-0af7") and fed[0]["partitionkey"] == "x"
    log = "".join(p.read_text() for p in stream_worker.logs.glob("streams-*.log"))
    assert "Traceback" not in log, log[-3000:]
    print(f"checked: 4 starts with 2 poison records in the topic; dead letters: {reasons}")
