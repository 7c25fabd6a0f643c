"""Repair: the status topic checked against the views table, and events the table missed sent to be folded again.

Why it exists. faust-streaming 0.15.3 can lose input records in a rebalance: a record fetched under the previous
consumer generation (or while flow control is suspended) is skipped by the stream and *acknowledged*, so its offset
is committed and it is never read again (faust's `Stream.__aiter__`; the upstream reports are faust-streaming#596
and #629). Our failover test caught it: after one of two workers was killed, the survivor owned every partition and
reported ready, yet some projects stayed behind their last event for good.

How it works. The group's leader reads the status topic itself, with a plain consumer outside the group (so no
rebalance touches it), folds every project freshly (the same pure `fold` the agent uses), and compares each project
with the view in the table's changelog. A project whose changelog view stays at the same sequence behind the topic
for longer than `patience` (the group's session timeout plus two checks: a dead worker's partitions wait that long
for a new owner, which is lag, not loss) gets the events it is missing sent to the repair topic, keyed by project
like the status topic; if it is still stuck after another `patience` (a repair record lost the same way), they are
sent again. The agent reads both topics, co-partitioned, so the owner of the project's partition folds them; what
it had already applied is a duplicate and changes nothing. Downstream systems never see the repair topic.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas.events import StatusEvent
from streams.mirror import TopicReader
from streams.projection import ProjectView, fold


class SourceFold:
    """Every project of the status topic, folded from the topic itself; the events kept to resend."""

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self.views: dict[str, ProjectView] = {}
        self.events: dict[str, dict[int, StatusEvent]] = {}
        self._behind: dict[str, tuple[int, float]] = {}  # project -> (sequence the table is stuck at, since when)

    def add(self, value: bytes | None) -> None:
        if not value:
            return
        try:
            event = StatusEvent.model_validate_json(value)
        except ValidationError:
            return  # the agent dead-letters it; nothing to repair
        self.events.setdefault(event.subject, {})[event.data.sequence] = event
        self.views[event.subject] = fold(self.views.get(event.subject), event).view

    def missing(self, table: dict[str, ProjectView], now: float) -> list[StatusEvent]:
        """The events to fold again: those of projects whose table view has stayed at one sequence behind the topic
        for `patience` seconds, in sequence order per project."""
        behind_now: dict[str, tuple[int, float]] = {}
        resend: list[StatusEvent] = []
        for project, fresh in self.views.items():
            folded = table.get(project)
            at = folded.last_sequence if folded else 0
            if at >= fresh.last_sequence:
                continue
            stuck_at, since = self._behind.get(project, (at, now))
            if stuck_at != at:  # it moved: processing, not lost
                since = now
            if now - since >= self.patience:
                resend += [e for seq, e in sorted(self.events[project].items()) if seq > at]
                since = now
            behind_now[project] = (at, since)
        self._behind = behind_now
        return resend


class SourceReader:
    """Reads the status topic into a SourceFold, up to the end offsets of each call (no consumer group)."""

    def __init__(self, options: dict[str, Any], topic: str, partitions: int, patience: float) -> None:
        self.fold = SourceFold(patience)
        self.reader = TopicReader(options, topic, partitions, lambda record: self.fold.add(record.value))

    async def catch_up(self) -> SourceFold:
        await self.reader.catch_up()
        return self.fold

    async def stop(self) -> None:
        await self.reader.stop()
