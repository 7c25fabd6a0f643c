"""The stream worker (faust-streaming, `alliance streams`): reads the project status topic and derives views.

- `project-views` table (changelogged in Kafka): each project's view, folded by `streams.projection` — duplicates
  ignored, gaps held and reported;
- derived topics: a deduplicated, ordered feed; compacted portfolio snapshots keyed `<dimension>:<value>`; alerts;
  a dead-letter topic for records that do not parse, have an unknown type or a newer schema version;
- HTTP (faust's web server): `/portfolio/`, `/portfolio/{dimension}/`, `/projects/{id}/`, `/reviews/`, `/alerts/`,
  `/partitions/` (what this worker folds), `/metrics`.

Several workers share the status topic (one consumer group): each folds the partitions assigned to it, and when one
stops the others take its partitions over, recovering its table partitions from the changelog. What a worker serves
over HTTP comes from `streams.mirror`, which reads the whole changelog, so every worker answers for the whole
portfolio; snapshots and deadline alerts are published by the group's leader only.

Processing guarantee: at least once, with idempotent table updates. A record processed again after a crash or a
rebalance is a duplicate to the project view (its sequence is already applied), so the tables equal a fresh
computation from the whole topic. Derived records may repeat after a crash; each carries the event id (feed), the
alert id (alerts) or the source topic/partition/offset (dead letters), so repeats are recognisable. faust's
exactly_once mode was tried on Kafka 4.4: it does not put sends to topics the app does not consume (our derived
topics) into its transactions, and it hung on SIGTERM while stopping its transaction manager.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import structlog
from faust.web import Request, Response, View
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from alliance import metrics
from alliance.connections import kafka_options
from alliance.settings import Settings
from schemas.decisions import Institution
from schemas.derived import Alert, AlertKind, DeadLetter, Dimension, PortfolioSnapshot
from schemas.events import SCHEMA_VERSION, TYPE_PREFIX, StatusEvent
from streams.alerts import gap_alert, review_and_stall_alerts
from streams.mirror import ViewMirror, ViewsUnavailable
from streams.portfolio import Portfolio, compute
from streams.projection import Gap, ProjectView, fold
from streams.repair import SourceReader

log = structlog.get_logger(__name__)
REPAIRS = Counter(
    "alliance_stream_repairs", "Status events the views table missed and the leader sent again (streams/repair.py)"
)
REVIEWS_OPEN = Gauge("alliance_reviews_open", "Financing reviews open now", ["institution"])
REVIEWS_OVERDUE = Gauge("alliance_reviews_overdue", "Open financing reviews past their deadline", ["institution"])


def count_reviews(views: list[ProjectView], now: datetime) -> None:
    """Sets the review gauges from the views (every institution, zero included, so a series never goes stale)."""
    for institution in Institution:
        deadlines = [v.open_reviews[institution] for v in views if institution in v.open_reviews]
        REVIEWS_OPEN.labels(institution.value).set(len(deadlines))
        REVIEWS_OVERDUE.labels(institution.value).set(sum(1 for d in deadlines if d < now))


def why_unusable(value: bytes | None) -> str | None:
    """Why a record cannot be folded, in words for the dead-letter topic; None when it can."""
    if not value:
        return "empty record"
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"not JSON: {err}"
    if not isinstance(raw, dict):
        return "not a CloudEvents envelope (JSON object expected)"
    kind = str(raw.get("type", ""))
    if not kind.startswith(TYPE_PREFIX):
        return f"unknown event type '{kind}'"
    schema = str(raw.get("dataschema", ""))
    version = schema.rsplit(":", 1)[-1]
    if version.isdigit() and int(version) > SCHEMA_VERSION:
        return f"schema version {version} is newer than this worker's {SCHEMA_VERSION}"
    return None


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


def create_app(settings: Settings) -> StreamApp:
    partitions = settings.topic_partitions
    app = faust.App(
        settings.streams_app_id,
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
        web_port=settings.streams_web_port,
        datadir=str(settings.streams_data_dir),
        autodiscover=False,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    # The agent folds the status topic and the repair topic (co-partitioned: a project's records of both land on the
    # worker that owns its partition); see streams/repair.py.
    source = app.topic(settings.status_topic, settings.streams_repair_topic, partitions=partitions, **raw)
    # Created by alliance.connections.ensure_topics(streams=True) before the worker starts.
    derived = {"partitions": partitions, **raw}
    feed = app.topic(settings.feed_topic, **derived)
    snapshots = app.topic(settings.snapshot_topic, **derived)
    alerts = app.topic(settings.alert_topic, **derived)
    dead_letters = app.topic(settings.dead_letter_topic, **derived)
    repairs = app.topic(settings.streams_repair_topic, **derived)
    # faust writes the changelog as JSON (its table default), the encoding `streams.mirror` reads back.
    views = app.Table("project-views", partitions=partitions, default=None)
    if views.changelog_topic.get_topic_name() != settings.views_changelog_topic:
        raise RuntimeError(f"faust names the views changelog {views.changelog_topic.get_topic_name()}")
    mirror = ViewMirror(kafka_options(settings), settings.views_changelog_topic, partitions)
    patience = settings.streams_session_timeout_seconds + 2 * settings.streams_snapshot_seconds
    source_reader = SourceReader(kafka_options(settings), settings.status_topic, partitions, patience)
    raised: set[str] = set()
    published: dict[str, bytes] = {}

    @app.agent(source)
    async def fold_events(stream: faust.StreamT[bytes]) -> None:
        async for record in stream.events():
            message = record.message
            reason = why_unusable(record.value)
            event: StatusEvent | None = None
            if reason is None:
                try:
                    event = StatusEvent.model_validate_json(record.value)
                except ValidationError as err:
                    reason = f"does not match the contract: {err.errors()[0]['msg']}"
            if event is not None and record.key != event.subject.encode():
                reason, event = f"record key {record.key!r} is not the event's project {event.subject}", None
            if event is None:
                letter = DeadLetter(
                    reason=reason or "unusable",
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=record.key.decode("utf-8", "replace") if record.key else None,
                    value=record.value.decode("utf-8", "replace") if record.value else None,
                )
                await dead_letters.send(key=record.key, value=letter.model_dump_json().encode())
                continue
            stored = views.get(event.subject)
            folded = fold(ProjectView.model_validate(stored) if stored else None, event)
            if folded.duplicate:
                continue
            views[event.subject] = folded.view.model_dump(mode="json")
            for applied in folded.applied:
                await feed.send(key=applied.subject.encode(), value=applied.model_dump_json().encode())
            if folded.gap is not None:
                alert = gap_alert(folded.gap, datetime.now(UTC))
                await alerts.send(key=alert.alert_id.encode(), value=alert.model_dump_json().encode())

    async def all_views() -> list[ProjectView]:
        return list((await mirror.catch_up()).values())

    async def portfolio() -> Portfolio:
        rules = settings.eligibility_rules()
        return compute(await all_views(), rules.usd_per_unit, rules.rate_date)

    @app.timer(interval=settings.streams_snapshot_seconds, on_leader=True)  # type: ignore[untyped-decorator]
    async def publish_snapshots() -> None:
        """On the group's leader only: events the table missed sent again (streams/repair.py), deadline and stall
        alerts not yet raised, and the snapshots that changed."""
        views_now = await all_views()
        source = await source_reader.catch_up()
        missed = source.missing({v.project_id: v for v in views_now}, asyncio.get_running_loop().time())
        for event in missed:
            await repairs.send(key=event.subject.encode(), value=event.model_dump_json().encode())
        if missed:
            REPAIRS.inc(len(missed))
            log.warning(
                "stream_events_repaired",
                events=len(missed),
                projects=sorted({e.subject for e in missed}),
                why="the views table stayed behind the status topic (records lost by faust in a rebalance)",
            )
        for alert in open_alerts(views_now, settings, datetime.now(UTC)):
            if alert.kind is not AlertKind.sequence_gap and alert.alert_id not in raised:
                raised.add(alert.alert_id)
                await alerts.send(key=alert.alert_id.encode(), value=alert.model_dump_json().encode())
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

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_mirror(app: faust.App, **kwargs: Any) -> None:
        await mirror.stop()
        await source_reader.stop()

    def unavailable(view: View, err: ViewsUnavailable) -> Response:
        return view.json({"code": "unavailable", "message": str(err)}, status=503)

    @app.page("/portfolio/")
    class PortfolioView(View):
        async def get(self, request: Request) -> Response:
            try:
                return self.json((await portfolio()).model_dump(mode="json"))
            except ViewsUnavailable as err:
                return unavailable(self, err)

    @app.page("/portfolio/{dimension}/")
    class DimensionView(View):
        async def get(self, request: Request, dimension: str) -> Response:
            if dimension not in set(Dimension):
                return self.json({"code": "unknown", "message": f"no dimension '{dimension}'"}, status=404)
            try:
                current = (await portfolio()).model_dump(mode="json")
            except ViewsUnavailable as err:
                return unavailable(self, err)
            return self.json({"rate_date": current["rate_date"], dimension: current["by"][dimension]})

    @app.page("/projects/{project_id}/")
    class ProjectPage(View):
        async def get(self, request: Request, project_id: str) -> Response:
            try:
                found = (await mirror.catch_up()).get(project_id)
            except ViewsUnavailable as err:
                return unavailable(self, err)
            if found is None:
                return self.json({"code": "unknown", "message": f"no events of project {project_id}"}, status=404)
            return self.json(found.model_dump(mode="json"))

    @app.page("/reviews/")
    class ReviewsView(View):
        async def get(self, request: Request) -> Response:
            try:
                views_now = await all_views()
            except ViewsUnavailable as err:
                return unavailable(self, err)
            reviews = [
                {"project_id": v.project_id, "institution": institution.value, "deadline": deadline.isoformat()}
                for v in views_now
                for institution, deadline in v.open_reviews.items()
            ]
            return self.json(sorted(reviews, key=lambda r: (r["deadline"], r["project_id"], r["institution"])))

    @app.page("/partitions/")
    class PartitionsView(View):
        """Which partitions of the status topic this worker folds now (operators, and the failover test)."""

        async def get(self, request: Request) -> Response:
            assigned = app.consumer.assignment() if app.consumer else set()
            mine = sorted(tp.partition for tp in assigned if tp.topic == settings.status_topic)
            return self.json({"topic": settings.status_topic, "partitions": mine})

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            try:
                count_reviews(await all_views(), datetime.now(UTC))
            except ViewsUnavailable as err:
                return unavailable(self, err)
            # aiohttp takes the charset apart from the type: "text/plain; version=0.0.4; charset=utf-8" is refused.
            body = await asyncio.to_thread(metrics.exposition)
            return self.bytes(body, content_type="text/plain; version=0.0.4")

    @app.page("/alerts/")
    class AlertsView(View):
        async def get(self, request: Request) -> Response:
            try:
                views_now = await all_views()
            except ViewsUnavailable as err:
                return unavailable(self, err)
            return self.json([a.model_dump(mode="json") for a in open_alerts(views_now, settings, datetime.now(UTC))])

    return StreamApp(app, fold_events, views, feed, alerts, dead_letters, mirror)
