"""The stream worker (faust-streaming, `alliance streams`): reads the project status topic and derives views.

- `project-views` table (changelogged in Kafka): each project's view, folded by `streams.projection` — duplicates
  ignored, gaps held and reported;
- derived topics: a deduplicated, ordered feed; compacted portfolio snapshots keyed `<dimension>:<value>`; alerts;
  a dead-letter topic for records that do not parse, have an unknown type or a newer schema version;
- HTTP (faust's web server): `/portfolio/`, `/portfolio/{dimension}/`, `/projects/{id}/`, `/alerts/`.

Processing guarantee: at least once, with idempotent table updates. A record processed again after a crash or a
rebalance is a duplicate to the project view (its sequence is already applied), so the tables equal a fresh
computation from the whole topic. Derived records may repeat after a crash; each carries the event id (feed), the
alert id (alerts) or the source topic/partition/offset (dead letters), so repeats are recognisable. faust's
exactly_once mode was tried on Kafka 4.4: it does not put sends to topics the app does not consume (our derived
topics) into its transactions, and it hung on SIGTERM while stopping its transaction manager.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import ValidationError

from alliance.settings import Settings
from schemas.events import SCHEMA_VERSION, TYPE_PREFIX, StatusEvent
from streams.alerts import Alert, gap_alert, review_and_stall_alerts
from streams.portfolio import Dimension, compute
from streams.projection import ProjectView, fold


def dead_letter(reason: str, key: bytes | None, value: bytes | None, topic: str, partition: int, offset: int) -> bytes:
    return json.dumps(
        {
            "reason": reason,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": key.decode("utf-8", "replace") if key else None,
            "value": value.decode("utf-8", "replace") if value else None,
        }
    ).encode()


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


def create_app(settings: Settings) -> StreamApp:
    partitions = settings.topic_partitions
    app = faust.App(
        settings.streams_app_id,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,
        topic_disable_leader=True,
        web_host=settings.streams_web_host,
        web_port=settings.streams_web_port,
        datadir=str(settings.streams_data_dir),
        autodiscover=False,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(settings.status_topic, partitions=partitions, **raw)
    # Created by alliance.connections.ensure_topics(streams=True) before the worker starts.
    derived = {"partitions": partitions, **raw}
    feed = app.topic(settings.feed_topic, **derived)
    snapshots = app.topic(settings.snapshot_topic, **derived)
    alerts = app.topic(settings.alert_topic, **derived)
    dead_letters = app.topic(settings.dead_letter_topic, **derived)
    views = app.Table("project-views", partitions=partitions, default=None)
    raised: dict[str, Alert] = {}

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
                await dead_letters.send(
                    key=record.key,
                    value=dead_letter(
                        reason or "unusable", record.key, record.value, message.topic, message.partition, message.offset
                    ),
                )
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
                raised[alert.alert_id] = alert
                await alerts.send(key=alert.alert_id.encode(), value=alert.model_dump_json().encode())

    def current_views() -> list[ProjectView]:
        return [ProjectView.model_validate(v) for v in views.values() if v]

    def portfolio() -> dict[str, Any]:
        rules = settings.eligibility_rules()
        return compute(current_views(), rules.usd_per_unit, rules.rate_date).model_dump(mode="json")

    @app.timer(interval=settings.streams_snapshot_seconds)  # type: ignore[untyped-decorator]
    async def publish_snapshots() -> None:
        now = datetime.now(UTC)
        for alert in review_and_stall_alerts(
            current_views(),
            now,
            timedelta(days=settings.streams_warn_days),
            timedelta(days=settings.streams_stalled_days),
        ):
            if alert.alert_id not in raised:
                raised[alert.alert_id] = alert
                await alerts.send(key=alert.alert_id.encode(), value=alert.model_dump_json().encode())
        current = portfolio()
        for dimension, values in current["by"].items():
            for value, totals in values.items():
                body = {"dimension": dimension, "value": value, "rate_date": current["rate_date"], **totals}
                await snapshots.send(key=f"{dimension}:{value}".encode(), value=json.dumps(body).encode())

    @app.page("/portfolio/")
    class PortfolioView(View):
        async def get(self, request: Request) -> Response:
            return self.json(portfolio())

    @app.page("/portfolio/{dimension}/")
    class DimensionView(View):
        async def get(self, request: Request, dimension: str) -> Response:
            if dimension not in set(Dimension):
                return self.json({"code": "unknown", "message": f"no dimension '{dimension}'"}, status=404)
            current = portfolio()
            return self.json({"rate_date": current["rate_date"], dimension: current["by"][dimension]})

    @app.page("/projects/{project_id}/")
    class ProjectPage(View):
        async def get(self, request: Request, project_id: str) -> Response:
            stored = views.get(project_id)
            if not stored:
                return self.json({"code": "unknown", "message": f"no events of project {project_id}"}, status=404)
            return self.json(stored)

    @app.page("/alerts/")
    class AlertsView(View):
        async def get(self, request: Request) -> Response:
            return self.json([a.model_dump(mode="json") for a in raised.values()])

    return StreamApp(app, fold_events, views, feed, alerts, dead_letters)
