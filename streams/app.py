"""The stream worker (faust-streaming, `alliance streams`): reads the project status topic and derives views.

- `project-views` table (changelogged in Kafka): each project's view, folded by `streams.projection` — duplicates
  ignored, gaps held and reported; `status-progress` table: per status partition, the offset of the last record
  handled (`streams.checkpoint`: records faust acknowledges without delivering are read again, by offset);
- derived topics: a deduplicated, ordered feed; compacted portfolio snapshots keyed `<dimension>:<value>`; alerts;
  a dead-letter topic for records the contract does not allow, each with a reason naming the field and the rule
  (`streams.envelope`);
- HTTP (faust's web server): `/portfolio/`, `/portfolio/{dimension}/`, `/projects/{id}/`, `/reviews/`, `/alerts/`,
  `/partitions/` (what this worker folds), `/metrics`.

Several workers share the status topic (one consumer group): each folds the partitions assigned to it, and when one
stops the others take its partitions over, recovering its table partitions from the changelog. What a worker serves
over HTTP comes from `streams.mirror`, which reads the whole changelog, so every worker answers for the whole
portfolio; snapshots and deadline alerts are published by the group's leader only.

Records are taken in batches (`take_events`: up to BATCH_MAX, or what arrived within BATCH_SECONDS): each batch is
folded in memory, in offset order per partition (so per project), then its table writes and derived records are
handed to the producer at once; its checkpoints follow once those (and every earlier batch's) are delivered, and only
then are its offsets acknowledged (`streams.delivery`: several batches' checkpoints in one write, so the folding loop
never waits for the broker).

Processing guarantee: at least once, with idempotent table updates. A record delivered again after a crash or a
rebalance is at or below its partition's checkpoint (or, at worst, a duplicate to the project view), so the tables
equal a fresh computation from the whole topic. Derived records may repeat after a crash; each carries the event id
(feed), the alert id (alerts) or the source topic/partition/offset (dead letters), so repeats are recognisable.
No exception in a timer or a web view stops the worker: it is logged and the next tick or request tries again. faust's
exactly_once mode was tried on Kafka 4.4: it does not put sends to topics the app does not consume (our derived
topics) into its transactions, and it hung on SIGTERM while stopping its transaction manager.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import faust
import structlog
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.tables.manager import TableManager
from faust.web import Request, Response, View
from mode.utils import logging as mode_logging
from prometheus_client import Counter, Gauge
from pydantic import TypeAdapter

from alliance import metrics
from alliance.connections import kafka_options, progress_changelog_topic
from alliance.settings import Settings
from schemas.decisions import Institution
from schemas.derived import Alert, AlertKind, Dimension, PortfolioSnapshot
from streams.alerts import gap_alert, review_and_stall_alerts
from streams.checkpoint import STALL_CHECKS, BatchFold, BatchOutput, Record, Stalls, StatusRanges, check_record
from streams.delivery import Checkpoints
from streams.mirror import WRITER_HEADER, ViewMirror, ViewsUnavailable
from streams.portfolio import LivePortfolio, Portfolio
from streams.projection import Gap, ProjectView
from streams.recovery import EXIT_STATUS, WATCH_SECONDS, RecoveryWatch
from streams.transport import StreamsApp

log = structlog.get_logger(__name__)
REPAIRS = Counter(
    "alliance_stream_repairs",
    "Status records acknowledged by the consumer group without being handled, read again from the topic and "
    "handled (streams/checkpoint.py)",
)
INSTANT = TypeAdapter(datetime)
BATCH_MAX = 2000
BATCH_SECONDS = 0.005
TICK_SLICE = 100  # views the leader's tick takes into the portfolio between two turns of the folding loop
REVIEWS_OPEN = Gauge("alliance_reviews_open", "Financing reviews open now", ["institution"])
REVIEWS_OVERDUE = Gauge("alliance_reviews_overdue", "Open financing reviews past their deadline", ["institution"])


def count_reviews(views: list[ProjectView], now: datetime) -> None:
    """Sets the review gauges from the views (every institution, zero included, so a series never goes stale)."""
    for institution in Institution:
        deadlines = [v.open_reviews[institution] for v in views if institution in v.open_reviews]
        REVIEWS_OPEN.labels(institution.value).set(len(deadlines))
        REVIEWS_OVERDUE.labels(institution.value).set(sum(1 for d in deadlines if d < now))


@dataclass(frozen=True)
class StreamApp:
    """The faust app and the parts tests reach for."""

    app: faust.App
    fold_events: Any
    views: Any
    feed: Any
    alerts: Any
    dead_letters: Any
    mirror: ViewMirror


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    options = kafka_options(settings)
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=options.get("ssl_context"),
        )
    if "ssl_context" in options:
        return faust.SSLCredentials(options["ssl_context"])
    return None


def open_alerts(views: list[ProjectView], settings: Settings, now: datetime) -> list[Alert]:
    """The alerts that hold now: reviews near or past their deadline, stalled projects, gaps still open."""
    alerts = review_and_stall_alerts(
        views, now, timedelta(days=settings.streams_warn_days), timedelta(days=settings.streams_stalled_days)
    )
    for view in views:
        if view.held:
            gap = Gap(project_id=view.project_id, expected=view.last_sequence + 1, received=min(view.held))
            alerts.append(gap_alert(gap, now))
    return alerts


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _json(model: Any) -> bytes:
    return bytes(model.model_dump_json().encode())


def survives(event: str) -> Callable[[Callable[[], Awaitable[None]]], Callable[[], Awaitable[None]]]:
    """A timer body whose exception is logged, not raised: faust stops the whole worker on a timer's exception,
    and the next tick may well succeed (a broker back, a view rebuilt)."""

    def wrap(tick: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        @functools.wraps(tick)
        async def guarded() -> None:
            try:
                await tick()
            except ViewsUnavailable as err:
                log.warning(event, error=str(err))
            except Exception:
                log.exception(event)

        return guarded

    return wrap


class Guarded(View):
    """A web view whose unexpected exception is a 500 answer with the reason, logged; never the worker's end."""

    async def dispatch(self, request: Any) -> Any:
        try:
            return await super().dispatch(request)
        except ViewsUnavailable as err:
            return self.json({"code": "unavailable", "message": str(err)}, status=503)
        except Exception as err:
            log.exception("stream_web_request_failed", path=str(getattr(request, "path", "")))
            return self.json({"code": "internal", "message": f"{type(err).__name__}: {err}"}, status=500)


def create_app(settings: Settings) -> StreamApp:
    partitions = settings.topic_partitions
    app = StreamsApp(
        settings.streams_app_id,
        fetch_wait_ms=settings.streams_fetch_wait_ms,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        broker_credentials=broker_credentials(settings),
        broker_session_timeout=settings.streams_session_timeout_seconds,
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,
        topic_disable_leader=False,  # leader election: snapshots and deadline alerts come from one worker
        web_host=settings.streams_web_host,
        web_bind=settings.streams_web_host,  # faust binds every interface unless told (web_host is only advertised)
        web_port=settings.streams_web_port,
        datadir=str(settings.streams_data_dir),
        autodiscover=False,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    # The agent reads the status topic and the checks topic (co-partitioned: a partition's checks reach the worker
    # that owns that status partition); see streams/checkpoint.py.
    checks_topic = settings.streams_repair_topic
    source = app.topic(settings.status_topic, checks_topic, partitions=partitions, **raw)
    # Created by alliance.connections.ensure_topics(streams=True) before the worker starts.
    derived = {"partitions": partitions, **raw}
    feed = app.topic(settings.feed_topic, **derived)
    snapshots = app.topic(settings.snapshot_topic, **derived)
    alerts = app.topic(settings.alert_topic, **derived)
    dead_letters = app.topic(settings.dead_letter_topic, **derived)
    checks = app.topic(checks_topic, **derived)
    # faust writes the changelogs as JSON (its table default), the encoding `streams.mirror` reads back.
    views = app.Table("project-views", partitions=partitions, default=None)
    progress = app.Table("status-progress", partitions=partitions, default=None)
    for table, expected in ((views, settings.views_changelog_topic), (progress, progress_changelog_topic(settings))):
        if table.changelog_topic.get_topic_name() != expected:
            raise RuntimeError(f"faust names a changelog {table.changelog_topic.get_topic_name()}, not {expected}")
    ranges = StatusRanges(kafka_options(settings), settings.status_topic)
    stalls = Stalls(grace=STALL_CHECKS * settings.streams_snapshot_seconds)
    admin: list[AIOKafkaAdminClient] = []
    raised: set[str] = set()
    published: dict[str, bytes] = {}

    def stored_view(project: str) -> ProjectView | None:
        """The view in the table: the object this worker folded last (changed in place by the next fold), or, after
        faust recovered the partition from the changelog, its JSON form read into a new object."""
        stored = views.data.get(project)
        if stored is None or isinstance(stored, ProjectView):
            return stored
        return ProjectView.model_validate(stored)

    def own_view(project: str) -> ProjectView | None:
        """The view object this worker's table holds (the mirror takes it for records this process wrote)."""
        stored = views.data.get(project)
        return stored if isinstance(stored, ProjectView) else None

    mirror = ViewMirror(kafka_options(settings), settings.views_changelog_topic, partitions, own=own_view)

    def stored_progress(partition: int) -> int | None:
        done = progress.data.get(str(partition))
        return int(done) if done is not None else None

    views_changelog = views.changelog_topic.get_topic_name()
    progress_changelog = progress.changelog_topic.get_topic_name()

    writer = [(WRITER_HEADER, mirror.writer)]

    async def send(
        topic: str, key: Any, value: Any, partition: int | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> Awaitable[Any]:
        """One record to the producer's accumulator (not awaited for delivery: the batch gathers them). Table
        changelog records are JSON key and value, as faust writes and recovers them."""
        return await app.producer.send(topic, key, value, partition, None, headers)

    async def write(out: BatchOutput) -> list[Awaitable[Any]]:
        """Applies a batch to the tables in memory and hands its effect records (table changelog, feed, alerts, dead
        letters) to the producer; returns their delivery futures. The checkpoints follow in `write_checkpoints`."""
        sent = []
        for project, (partition, view) in out.views.items():
            views.data[project] = view
            sent.append(await send(views_changelog, _dumps(project), _json(view), partition, writer))
        for event in out.feed:  # the value as published when this batch read it (not written again)
            value = out.published.get(event.id) or _json(event)
            sent.append(await send(feed.get_topic_name(), event.subject.encode(), value))
        for alert in out.alerts:
            sent.append(await send(alerts.get_topic_name(), alert.alert_id.encode(), _json(alert)))
        for letter in out.dead_letters:
            key = letter.key.encode() if letter.key is not None else None
            sent.append(await send(dead_letters.get_topic_name(), key, _json(letter)))
        for partition, offset in out.progress.items():
            progress.data[str(partition)] = offset
        if out.read_again:
            REPAIRS.inc(out.read_again)
        return sent

    async def write_checkpoints(done: dict[int, int]) -> None:
        """Checkpoint records (partition → offset of the last record handled), returning once delivered."""
        sent = [await send(progress_changelog, _dumps(str(p)), _dumps(offset), p) for p, offset in done.items()]
        await asyncio.gather(*sent)

    @app.agent(source)
    async def fold_events(stream: faust.StreamT[bytes]) -> None:
        """Batches folded one after another, never waiting for Kafka: a batch's effect records are handed to the
        producer, and its checkpoints written and its offsets acknowledged in the background once they (and every
        earlier batch's) are delivered (`streams.delivery`; each message holds one more reference until then). A
        delivery that fails stops the agent (and the worker), whose offsets are then not committed past it."""
        checkpoints = Checkpoints(write_checkpoints)
        try:
            async for batch in stream.take_events(BATCH_MAX, within=BATCH_SECONDS):  # type: ignore[attr-defined]
                work = BatchFold(stored_view, stored_progress, ranges.beginning, ranges.read, stalls)
                for event in batch:
                    message = event.message
                    message.incref()
                    record = Record(message.topic, message.partition, message.offset, message.key, message.value)
                    if message.topic == checks_topic:
                        await work.check(record)
                    else:
                        await work.status(record)
                sent = await write(work.out)
                await checkpoints.add(sent, work.out.progress, [event.ack for event in batch])
        finally:
            await checkpoints.close()

    async def all_views() -> list[ProjectView]:
        return list((await mirror.catch_up()).values())

    rules = settings.eligibility_rules()
    live = LivePortfolio(rules.usd_per_unit, rules.rate_date)

    async def portfolio() -> Portfolio:
        """The portfolio once the mirror caught up: only the views it replaced since the last call are counted
        again (`streams.portfolio.LivePortfolio`)."""
        views_now = await mirror.catch_up()
        changed = list(mirror.changed)
        mirror.changed.clear()
        for n, project in enumerate(changed, 1):
            live.update(views_now[project])
            if n % TICK_SLICE == 0:
                await asyncio.sleep(0)  # about 30 µs a view: the folding loop goes on between slices
        return live.portfolio()

    async def send_checks() -> None:
        """Per partition of the status topic, the group's committed offset and the end offset, one check record to
        the partition's owner (streams/checkpoint.py)."""
        if not admin:
            client = AIOKafkaAdminClient(**kafka_options(settings), client_id=f"{settings.streams_app_id}-checks")
            await client.start()
            admin.append(client)
        tps = [TopicPartition(settings.status_topic, p) for p in range(partitions)]
        listed = await admin[0].list_consumer_group_offsets(settings.streams_app_id, partitions=tps)
        committed = {tp.partition: max(at.offset, 0) for tp, at in listed.items() if tp.topic == settings.status_topic}
        ends = await ranges.ends(list(range(partitions)))
        for partition in range(partitions):
            at, end = committed.get(partition, 0), ends.get(partition, 0)
            if at > 0 or end > 0:
                await checks.send(
                    key=str(partition).encode(), value=check_record(partition, at, end), partition=partition
                )

    @app.timer(interval=settings.streams_snapshot_seconds, on_leader=True)  # type: ignore[untyped-decorator]
    @survives("stream_leader_tick_failed")
    async def publish_snapshots() -> None:
        """On the group's leader only: offset checks, deadline and stall alerts not yet raised, and the snapshots
        that changed."""
        await send_checks()
        views_now = await all_views()
        for alert in open_alerts(views_now, settings, datetime.now(UTC)):
            if alert.kind is not AlertKind.sequence_gap and alert.alert_id not in raised:
                raised.add(alert.alert_id)
                await alerts.send(key=alert.alert_id.encode(), value=alert.model_dump_json().encode())
        await asyncio.sleep(0)  # the alerts run through every view: the folding loop goes on before the portfolio
        current = await portfolio()
        for dimension, values in current.by.items():
            for value, totals in values.items():
                key = f"{dimension}:{value}"
                snapshot = PortfolioSnapshot(
                    dimension=dimension, value=value, rate_date=current.rate_date, **totals.model_dump()
                )
                body = snapshot.model_dump_json().encode()
                if published.get(key) != body:
                    await snapshots.send(key=key.encode(), value=body)
                    published[key] = body

    watch = RecoveryWatch(settings.streams_recovery_patience_seconds)
    watching: list[asyncio.Task[None]] = []

    async def watch_recovery() -> None:
        """Every WATCH_SECONDS, faust's recovery state to the watch; a stalled recovery ends the process with
        EXIT_STATUS, its threads and tasks (what `kill -USR1` also writes) in the log (streams/recovery.py). Runs from
        the first assignment on, so the recovery at start is watched too."""
        recovery = cast(TableManager, app.tables).recovery
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                remaining = recovery.active_remaining_total()
                if not watch.stalled(recovery.in_recovery, remaining):
                    continue
                mode_logging.cry(file=sys.stderr)
                log.critical(
                    "stream_recovery_stalled_exit",
                    remaining=remaining,
                    patience_seconds=watch.patience,
                    exit_status=EXIT_STATUS,
                )
            except Exception:
                log.exception("stream_recovery_watch_failed")
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_STATUS)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def start_watch(app: faust.App, *args: Any, **kwargs: Any) -> None:
        if not watching:
            watching.append(asyncio.ensure_future(watch_recovery()))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_mirror(app: faust.App, **kwargs: Any) -> None:
        for task in watching:
            task.cancel()
        await mirror.stop()
        await ranges.stop()
        for client in admin:
            await client.close()

    def unavailable(view: View, err: ViewsUnavailable) -> Response:
        return view.json({"code": "unavailable", "message": str(err)}, status=503)

    @app.page("/portfolio/")
    class PortfolioView(Guarded):
        async def get(self, request: Request) -> Response:
            try:
                return self.json((await portfolio()).model_dump(mode="json"))
            except ViewsUnavailable as err:
                return unavailable(self, err)

    @app.page("/portfolio/{dimension}/")
    class DimensionView(Guarded):
        async def get(self, request: Request, dimension: str) -> Response:
            if dimension not in set(Dimension):
                return self.json({"code": "unknown", "message": f"no dimension '{dimension}'"}, status=404)
            try:
                current = (await portfolio()).model_dump(mode="json")
            except ViewsUnavailable as err:
                return unavailable(self, err)
            return self.json({"rate_date": current["rate_date"], dimension: current["by"][dimension]})

    @app.page("/projects/{project_id}/")
    class ProjectPage(Guarded):
        async def get(self, request: Request, project_id: str) -> Response:
            try:
                found = (await mirror.catch_up()).get(project_id)
            except ViewsUnavailable as err:
                return unavailable(self, err)
            if found is None:
                return self.json({"code": "unknown", "message": f"no events of project {project_id}"}, status=404)
            return self.json(found.model_dump(mode="json"))

    @app.page("/reviews/")
    class ReviewsView(Guarded):
        async def get(self, request: Request) -> Response:
            try:
                views_now = await all_views()
            except ViewsUnavailable as err:
                return unavailable(self, err)
            reviews = sorted(
                (deadline, v.project_id, institution.value)
                for v in views_now
                for institution, deadline in v.open_reviews.items()
            )  # by the instant, whatever its UTC offset; written as the views write it (`Z` for UTC)
            return self.json(
                [
                    {"project_id": project, "institution": kind, "deadline": INSTANT.dump_python(at, mode="json")}
                    for at, project, kind in reviews
                ]
            )

    @app.page("/partitions/")
    class PartitionsView(Guarded):
        """Which partitions of the status topic this worker folds now (operators, and the failover test)."""

        async def get(self, request: Request) -> Response:
            assigned = app.consumer.assignment() if app.consumer else set()
            mine = sorted(tp.partition for tp in assigned if tp.topic == settings.status_topic)
            return self.json({"topic": settings.status_topic, "partitions": mine})

    @app.page("/metrics")
    class MetricsView(Guarded):
        async def get(self, request: Request) -> Response:
            try:
                count_reviews(await all_views(), datetime.now(UTC))
            except ViewsUnavailable as err:
                return unavailable(self, err)
            # aiohttp takes the charset apart from the type: "text/plain; version=0.0.4; charset=utf-8" is refused.
            body = await asyncio.to_thread(metrics.exposition)
            return self.bytes(body, content_type="text/plain; version=0.0.4")

    @app.page("/alerts/")
    class AlertsView(Guarded):
        async def get(self, request: Request) -> Response:
            try:
                views_now = await all_views()
            except ViewsUnavailable as err:
                return unavailable(self, err)
            return self.json([a.model_dump(mode="json") for a in open_alerts(views_now, settings, datetime.now(UTC))])

    return StreamApp(app, fold_events, views, feed, alerts, dead_letters, mirror)
