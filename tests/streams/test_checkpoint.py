"""Offset checkpoints (streams/checkpoint.py): holes in what the consumer group delivered are read again by offset,
records handled once stay handled, and dead letters are never folded later. The topic here is a list of records;
the same fold on the real broker is tests/streams/test_stream_worker.py."""

from __future__ import annotations

import random

import pytest

from schemas.events import StatusEvent
from streams.checkpoint import STALL_CHECKS, BatchFold, Record, Stalls, check_record
from streams.projection import ProjectView, fold
from tests.streams.events import project_stream

TOPIC = "status"


def topic_of(events: list[StatusEvent], extra: list[tuple[bytes, bytes]] = ()) -> list[Record]:  # type: ignore[assignment]
    """One partition holding the events (key = project), then the extra (key, value) records."""
    bodies = [(e.subject.encode(), e.model_dump_json().encode()) for e in events] + list(extra)
    return [Record(TOPIC, 0, offset, key, value) for offset, (key, value) in enumerate(bodies)]


class Worker:
    """A worker's table and checkpoints between batches, and what it read again."""

    def __init__(self, topic: list[Record]) -> None:
        self.topic = topic
        self.views: dict[str, ProjectView] = {}
        self.progress: dict[int, int] = {}
        self.reads: list[tuple[int, int, int]] = []
        self.dead: list[str] = []
        self.feed: list[str] = []
        self.now = 0.0  # the worker's clock: one check interval per batch
        self.stalls = Stalls(grace=STALL_CHECKS * 1.0, clock=lambda: self.now)

    async def _read(self, partition: int, start: int, end: int) -> list[Record]:
        self.reads.append((partition, start, end))
        return [r for r in self.topic if r.partition == partition and start <= r.offset < end]

    def _view(self, project: str) -> ProjectView | None:
        stored = self.views.get(project)
        return stored.model_copy(deep=True) if stored else None

    async def _beginning(self, partition: int) -> int:
        return 0

    async def batch(
        self,
        delivered: list[Record],
        checks: list[tuple[int, int]] = (),  # type: ignore[assignment]
        ends: dict[int, int] | None = None,
    ) -> None:
        """One batch: the records delivered, then the leader's checks (partition, committed offset), each with the
        partition's end offset from `ends` (checks written before end offsets were added have none)."""
        self.now += 1.0
        work = BatchFold(self._view, self.progress.get, self._beginning, self._read, self.stalls)
        for record in delivered:
            await work.status(record)
        for partition, committed in checks:
            end = ends.get(partition) if ends is not None else None
            await work.check(Record("checks", partition, 0, None, check_record(partition, committed, end)))
        self.views |= {project: view for project, (_, view) in work.out.views.items()}
        self.progress |= work.out.progress
        self.dead += [d.reason for d in work.out.dead_letters]
        self.feed += [e.id for e in work.out.feed]


def fresh(events: list[StatusEvent]) -> dict[str, ProjectView]:
    views: dict[str, ProjectView] = {}
    for event in events:
        views[event.subject] = fold(views.get(event.subject), event).view
    return views


async def test_records_skipped_in_delivery_are_read_again_by_offset_before_the_next_one() -> None:
    events = project_stream("ke-hole-1") + project_stream("ke-hole-2")
    topic = topic_of(events)
    worker = Worker(topic)
    await worker.batch(topic[:3])
    await worker.batch(topic[7:9])  # faust skipped and acknowledged offsets 3..6
    assert worker.reads == [(0, 3, 7)]
    await worker.batch(topic[9:])
    assert worker.views == fresh(events)
    assert worker.feed == [e.id for e in events]  # each event fed once, in order
    assert worker.progress == {0: len(topic) - 1}


async def test_a_hole_at_the_end_of_a_partition_is_found_by_the_leaders_check() -> None:
    events = project_stream("ke-tail")
    topic = topic_of(events)
    worker = Worker(topic)
    await worker.batch(topic[:4])
    await worker.batch([], checks=[(0, 4)])  # committed up to what was handled: nothing to read
    assert worker.reads == []
    await worker.batch([], checks=[(0, len(topic))])  # the group committed past records never delivered
    assert worker.reads == [(0, 4, len(topic))]
    assert worker.views == fresh(events)
    await worker.batch(topic[5:])  # delivered after all (a late fetch): handled already, nothing twice
    assert worker.feed == [e.id for e in events]


async def test_a_fresh_worker_starting_past_the_first_offset_reads_from_the_beginning() -> None:
    events = project_stream("ke-late")
    topic = topic_of(events)
    worker = Worker(topic)
    await worker.batch(topic[3:])
    assert worker.reads == [(0, 0, 3)]
    assert worker.views == fresh(events)


async def test_rightly_dead_lettered_records_stay_dead_and_are_never_read_again() -> None:
    events = project_stream("ke-dead")
    newer = events[0].model_copy(update={"dataschema": events[0].dataschema[:-1] + "2"})
    stranger = project_stream("zz-stranger")[0]
    bad = [
        (b"someone-else", stranger.model_dump_json().encode()),  # key is not its project
        (b"ke-dead", newer.model_dump_json().encode()),  # newer schema version
        (b"ke-dead", b'{"type": "com.example.other", "data": {}}'),  # foreign type
    ]
    topic = topic_of(events, bad)
    worker = Worker(topic)
    for _ in range(3):  # checks every interval, forever: nothing is read or sent again
        await worker.batch(topic if not worker.progress else [], checks=[(0, len(topic))])
    assert worker.reads == []
    assert [reason.split(":")[0] for reason in worker.dead] == ["key", "dataschema", "type"]
    assert set(worker.views) == {"ke-dead"} and worker.views == fresh(events)


async def test_any_delivery_with_holes_and_repeats_ends_on_the_fresh_views() -> None:
    """What faust may deliver after rebalances: repeats after a crash, holes it acknowledged, in offset order."""
    events = [e for n in range(6) for e in project_stream(f"ke-any-{n}", approve_cdb=n % 2 == 0)]
    rng = random.Random(5)
    events = sorted(events, key=lambda e: (rng.random(), e.data.sequence))
    events = sorted(events, key=lambda e: e.data.sequence)  # any interleaving, per project in order
    topic = topic_of(events)
    expected = fresh(events)
    for seed in range(50):
        rng = random.Random(seed)
        worker = Worker(topic)
        offset = 0
        while offset < len(topic):
            offset = max(0, offset - rng.randrange(0, 4))  # delivered again after a crash
            size = rng.randrange(1, 8)
            delivered = [r for r in topic[offset : offset + size] if rng.random() > 0.3]  # some skipped
            await worker.batch(delivered)
            offset += size
        await worker.batch([], checks=[(0, len(topic))])
        assert worker.views == expected, seed
        assert sorted(worker.feed) == sorted(e.id for e in events), seed


async def test_records_never_delivered_nor_acknowledged_are_read_after_two_checks() -> None:
    """The stall the failover test once showed: the group's committed offset stays at what was handled (nothing
    acknowledged past it), the stream delivers nothing more, and the records sit in the topic. Each check carries the
    end offset: when the checkpoint has not moved for two checks while the topic held more, what was there is read by
    offset."""
    events = project_stream("ke-stalled")
    topic = topic_of(events)
    worker = Worker(topic)
    await worker.batch(topic[:4])
    end = {0: len(topic)}
    for _ in range(STALL_CHECKS):
        await worker.batch([], checks=[(0, 4)], ends=end)
        assert worker.reads == []  # not yet: a stream merely behind gets the chance to deliver them
    await worker.batch([], checks=[(0, 4)], ends=end)
    assert worker.reads == [(0, 4, len(topic))]
    assert worker.views == fresh(events)
    await worker.batch(topic[4:])  # delivered after all: handled already, nothing twice
    assert worker.feed == [e.id for e in events]
    await worker.batch([], checks=[(0, len(topic))], ends=end)
    assert worker.reads == [(0, 4, len(topic))]


async def test_a_stream_that_is_behind_but_moving_is_not_read_by_offset() -> None:
    """Each check finds records not handled yet (the whole topic is there from the start, as for a worker rebuilding
    its views), but the checkpoint moves between checks: nothing is read twice, however far behind."""
    events = [e for n in range(4) for e in project_stream(f"ke-moving-{n}")]
    topic = topic_of(events)
    worker = Worker(topic)
    for at in range(0, len(topic), 3):
        await worker.batch(topic[at : at + 3], checks=[(0, at)], ends={0: len(topic)})
        await worker.batch([], checks=[(0, at)], ends={0: len(topic)})  # a check without a delivery between
    await worker.batch([], checks=[(0, len(topic))], ends={0: len(topic)})
    assert worker.reads == []
    assert worker.views == fresh(events)


async def test_a_worker_far_behind_reads_a_stall_in_bounded_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streams.checkpoint.STALL_READ_MAX", 4)
    events = project_stream("ke-far-1") + project_stream("ke-far-2")
    topic = topic_of(events)
    worker = Worker(topic)
    for _ in range(4 * (STALL_CHECKS + 1)):
        await worker.batch([], checks=[(0, 0)], ends={0: len(topic)})
    assert all(end - start <= 4 for _, start, end in worker.reads), worker.reads
    assert worker.progress == {0: len(topic) - 1}
    assert worker.views == fresh(events)


async def test_a_check_written_before_end_offsets_existed_is_read_as_before() -> None:
    events = project_stream("ke-old-check")
    topic = topic_of(events)
    worker = Worker(topic)
    await worker.batch(topic[:2])
    old = Record("checks", 0, 0, None, b'{"partition": 0, "committed": 5}')
    work = BatchFold(worker._view, worker.progress.get, worker._beginning, worker._read)
    await work.check(old)
    assert worker.reads == [(0, 2, 5)]
    assert work.out.progress == {0: 4}


async def test_checks_sent_while_a_partition_had_no_owner_do_not_count_as_a_stall() -> None:
    """A new owner (after a takeover) gets the checks of the seconds the partition had none, in one batch, before the
    stream delivers the partition's records: they are not a stall, the stream delivers the records, read once."""
    events = project_stream("ke-taken-over")
    topic = topic_of(events)
    worker = Worker(topic)
    await worker.batch(topic[:2])
    await worker.batch([], checks=[(0, 2)] * 6, ends={0: len(topic)})
    await worker.batch(topic[2:], checks=[(0, 2)], ends={0: len(topic)})
    assert worker.reads == []
    assert worker.views == fresh(events)
