"""Each status record folded once, checked by offset: why the stream worker is exact after a rebalance or a kill
without re-reading the whole topic.

faust-streaming 0.15.3 can skip a record after a rebalance and still acknowledge it: a record fetched under the
previous consumer generation (or while flow control is suspended) is dropped by `Stream.__aiter__` and its offset
committed (upstream: faust-streaming#596, #629); no setting turns that off. So the worker does not trust delivery:
per partition of the status topic it keeps, in a changelogged table (`status-progress`), the offset of the last
record it handled (folded, found a duplicate, or dead-lettered), written after that record's effects. Then:

- a record whose offset is not the next one after the checkpoint shows a hole: the records in between are read
  from the topic (a plain consumer, no group, just that range) and handled first, in offset order;
- a hole at the end of a partition (no later record shows it) is found by the group's leader: every check interval
  it sends, per partition, the group's committed offset to the worker owning that partition (the checks topic is
  co-partitioned with the status topic); committed offsets beyond the checkpoint are records acknowledged without
  being handled, and are read and handled the same way;
- a record that stays in the topic undelivered is found the same way: each check also carries the partition's end
  offset; when the checkpoint has not moved for STALL_CHECKS check intervals (the worker's own clock) while the
  topic held more (whatever held the records: an agent restarted mid-batch, a fetch that never resumed, records
  dropped without being acknowledged), the records that were there then are read by offset, at most STALL_READ_MAX
  at a time. A stream that is behind but moving is left alone (each record read once);
- a record at or below the checkpoint was handled already (delivered again after a crash): skipped.

Every record goes through the same checks (`streams.envelope`), so a record rightly dead-lettered stays dead, and
nothing is ever sent again. What is read again is bounded by the hole, not by the topic, and nobody keeps events.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel, ValidationError

from schemas.derived import Alert, DeadLetter
from schemas.events import StatusEvent
from streams.alerts import gap_alert
from streams.envelope import Refused, read_record
from streams.projection import ProjectView, fold_into

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Record:
    """What the fold needs of one Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


STALL_CHECKS = 2
"""Check intervals a partition's checkpoint may stand still while its topic holds more, before the records are read
by offset (they are then read at the first check after that: 2 to 3 intervals)."""
STALL_READ_MAX = 10_000
"""Records read by offset for a stall at one check: a worker far behind catches up in bounded batches."""


class Check(BaseModel):
    """A check record: one status-topic partition as the leader saw it. `committed`: the consumer group's committed
    offset; `end`: the partition's end offset (absent from checks written before it was added)."""

    partition: int
    committed: int
    end: int | None = None


class Stalls:
    """Per partition, how long the worker's checkpoint has stood still while records waited in the topic.

    A stream that is behind but moving advances its checkpoint between checks and is never read by offset (each
    record read once); a partition whose checkpoint has not moved for `grace` seconds of this worker's own clock
    while the topic held more is stalled. Timed here, not counted in checks: a new owner gets the checks sent while
    the partition had none in one batch, and those say nothing about its own stream. Kept in memory by the worker
    owning the partition (a new owner starts afresh)."""

    def __init__(self, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self._clock = clock
        self._waiting: dict[int, tuple[int, int, float]] = {}  # partition -> (next expected, end offset, since)

    def due(self, partition: int, next_expected: int, end: int) -> int | None:
        """The offset (exclusive) to read up to now, or None: `next_expected` is the first offset not handled yet,
        `end` the partition's end offset at this check."""
        if end <= next_expected:
            self._waiting.pop(partition, None)
            return None
        now = self._clock()
        waiting = self._waiting.get(partition)
        if waiting is None or waiting[0] != next_expected:
            self._waiting[partition] = (next_expected, end, now)
            return None
        if now - waiting[2] >= self.grace:
            del self._waiting[partition]
            return waiting[1]
        return None


RangeReader = Callable[[int, int, int], Awaitable[list[Record]]]
"""(partition, first offset, end offset exclusive) → the status topic's records in that range, in offset order."""


@dataclass
class BatchOutput:
    """What one batch changes: written in this order (effects, then checkpoints), before its offsets are committed."""

    views: dict[str, tuple[int, ProjectView]] = field(default_factory=dict)  # project → (partition, view)
    feed: list[StatusEvent] = field(default_factory=list)
    published: dict[str, bytes] = field(default_factory=dict)  # event id → its record's value as published
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    progress: dict[int, int] = field(default_factory=dict)  # partition → offset of the last record handled
    read_again: int = 0  # records read from the topic to fill holes


class BatchFold:
    """Folds one batch of records (status records and checks) on top of the worker's table and checkpoints."""

    def __init__(
        self,
        stored_view: Callable[[str], ProjectView | None],  # a new object on each call (the fold changes it)
        stored_progress: Callable[[int], int | None],
        beginning: Callable[[int], Awaitable[int]],
        read_range: RangeReader,
        stalls: Stalls | None = None,
    ) -> None:
        self._stored_view = stored_view
        self._stored_progress = stored_progress
        self._beginning = beginning
        self._read_range = read_range
        self._stalls = stalls  # None: no stall detection (end offsets in checks are ignored)
        self.out = BatchOutput()

    def _done(self, partition: int) -> int | None:
        if partition in self.out.progress:
            return self.out.progress[partition]
        return self._stored_progress(partition)

    async def _next_expected(self, partition: int) -> int:
        done = self._done(partition)
        return done + 1 if done is not None else await self._beginning(partition)

    async def _fill(
        self,
        partition: int,
        end: int,
        why: str = "acknowledged by the consumer group without being handled (faust-streaming#596)",
    ) -> None:
        """Handles the records of `partition` from the checkpoint up to `end` (exclusive) read from the topic."""
        start = await self._next_expected(partition)
        if end <= start:
            return
        found = await self._read_range(partition, start, end)
        self.out.read_again += len(found)
        log.warning("stream_records_read_again", partition=partition, first=start, end=end, records=len(found), why=why)
        for record in found:
            self._handle(record)
        self.out.progress[partition] = end - 1

    async def status(self, record: Record) -> None:
        """One record of the status topic, as delivered by the stream."""
        done = self._done(record.partition)
        if done is not None and record.offset <= done:
            return  # handled already: delivered again after a crash or a rebalance
        await self._fill(record.partition, record.offset)
        self._handle(record)

    async def check(self, record: Record) -> None:
        """A check record from the leader: reads what the group committed past this worker's checkpoint."""
        try:
            check = Check.model_validate_json(record.value or b"")
        except ValidationError:
            log.error("stream_check_unreadable", value=record.value)
            return
        await self._fill(check.partition, check.committed)
        if check.end is not None and self._stalls is not None:
            start = await self._next_expected(check.partition)
            due = self._stalls.due(check.partition, start, check.end)
            if due is not None:
                why = f"in the topic for {self._stalls.grace:.0f} s and never delivered"
                await self._fill(check.partition, min(due, start + STALL_READ_MAX), why)

    def _handle(self, record: Record) -> None:
        self.out.progress[record.partition] = record.offset
        read = read_record(record.key, record.value)
        if isinstance(read, Refused):
            self._dead_letter(record, read.reason)
            return
        if record.value is not None:
            self.out.published.setdefault(read.id, record.value)
        try:
            self._fold(record.partition, read)
        except Exception as err:  # a bug must not stop the worker on one record: the record is set aside, said why
            log.exception("stream_fold_failed", topic=record.topic, partition=record.partition, offset=record.offset)
            self._dead_letter(record, f"fold: {type(err).__name__}: {err} [fold_failed]")

    def _fold(self, partition: int, event: StatusEvent) -> None:
        held = self.out.views.get(event.subject)
        if held is not None:
            view = held[1]
        else:
            stored = self._stored_view(event.subject)  # a fresh object, read from the table: changed in place
            view = stored if stored else ProjectView(project_id=event.subject, run=None)
        run = view.run
        folded = fold_into(view, event)
        if folded.duplicate and held is None and view.run == run:
            return  # nothing changed
        self.out.views[event.subject] = (partition, view)
        self.out.feed += folded.applied
        if folded.gap is not None:
            self.out.alerts.append(gap_alert(folded.gap, datetime.now(UTC)))

    def _dead_letter(self, record: Record, reason: str) -> None:
        self.out.dead_letters.append(
            DeadLetter(
                reason=reason,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key.decode("utf-8", "replace") if record.key else None,
                value=record.value.decode("utf-8", "replace") if record.value else None,
            )
        )


class StatusRanges:
    """Reads ranges of the status topic with one plain consumer (no group: nothing shared, nothing rebalanced)."""

    def __init__(self, options: dict[str, Any], topic: str, timeout: float = 30.0) -> None:
        self.options = options
        self.topic = topic
        self.timeout = timeout
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self.options,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id=f"{self.topic}-ranges",
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def beginning(self, partition: int) -> int:
        """The partition's first offset still held (0 unless retention removed records)."""
        async with self._lock:
            tp = TopicPartition(self.topic, partition)
            return int((await (await self._started()).beginning_offsets([tp]))[tp])

    async def ends(self, partitions: list[int]) -> dict[int, int]:
        """Each partition's end offset (the offset the next record will get)."""
        async with self._lock, asyncio.timeout(self.timeout):
            tps = [TopicPartition(self.topic, p) for p in partitions]
            return {tp.partition: int(end) for tp, end in (await (await self._started()).end_offsets(tps)).items()}

    async def read(self, partition: int, start: int, end: int) -> list[Record]:
        async with self._lock, asyncio.timeout(self.timeout):
            consumer = await self._started()
            tp = TopicPartition(self.topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            found: list[Record] = []
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=min(end - start, 10_000))
                for r in batch.get(tp, []):
                    if r.offset < end:
                        found.append(Record(r.topic, r.partition, r.offset, r.key, r.value))
            return found


def check_record(partition: int, committed: int, end: int | None = None) -> bytes:
    """A check record's value (JSON, the `Check` fields)."""
    return json.dumps({"partition": partition, "committed": committed, "end": end}).encode()
