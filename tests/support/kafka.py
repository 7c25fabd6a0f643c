"""What reached Kafka, compared with what the projects say they published."""

from __future__ import annotations

from alliance.event_feed import project_events, records
from alliance.settings import Settings
from schemas.events import StatusEvent
from schemas.status import ProjectStatus


async def assert_kafka_matches_history(
    settings: Settings, status: ProjectStatus, published: list[StatusEvent] | None = None
) -> list[StatusEvent]:
    """The project's events on Kafka (or `published`, read earlier), duplicates (same id) removed, are its status
    history: same ids and types, in order, sequence 1..n without gaps. Returns them."""
    first_seen: dict[str, StatusEvent] = {}
    if published is None:
        published = await project_events(settings, status.project_id)
    for event in published:
        first_seen.setdefault(event.id, event)
    events = list(first_seen.values())
    assert all(ref.published for ref in status.events)
    assert [e.id for e in events] == [ref.event_id for ref in status.events], (
        [e.data.sequence for e in events],
        len(status.events),
    )
    assert [e.type for e in events] == [ref.type for ref in status.events]
    assert [e.data.sequence for e in events] == list(range(1, len(status.events) + 1))
    assert all(e.subject == status.project_id and e.source.endswith(status.project_id) for e in events)
    return events


async def events_by_project(settings: Settings) -> dict[str, list[StatusEvent]]:
    """Every status event on the topic, duplicates included, per project in partition order (one read)."""
    by_project: dict[str, list[StatusEvent]] = {}
    async for key, value in records(settings, settings.status_topic):
        by_project.setdefault((key or b"").decode(), []).append(StatusEvent.model_validate_json(value))
    return by_project
