"""Every project's view, read from the whole `project-views` changelog: what lets any stream worker serve the whole
portfolio when several share the status topic.

Each worker folds only the partitions assigned to it, so its own table holds part of the portfolio. The table's
changelog, though, is a compacted Kafka topic holding every project's latest view, whichever worker wrote it. The
mirror reads all of its partitions (no consumer group, so nothing is shared or rebalanced) and, before it answers,
catches up to the end offsets of that moment: a portfolio served after a failover includes everything the surviving
worker has folded, and two workers asked at once give the same totals.

Records this process wrote itself are not parsed again: the worker marks its changelog records with a `writer` header
(WRITER_HEADER, a random id per process) and hands the mirror its table (`own`); a record carrying this process's id
takes the view from the table, which holds that view or a later one this worker folded since. Records of other
workers, or of this worker's earlier processes, are parsed. So a single worker reads its own writes back as bytes
only, and folds each event once.

A view only replaces a view of the same project that is not further along (its `incarnation`, then `last_sequence`,
then the number of held events). A worker that lost its partitions but had not yet noticed (a zombie, possible
with at-least-once) can still write an older view to the changelog after the new owner wrote a newer one; the
mirror does not go back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from streams.projection import ProjectView


class TopicUnreadable(Exception):
    """A topic could not be read up to its end offsets (broker unreachable or too slow)."""


class ViewsUnavailable(TopicUnreadable):
    """The views changelog could not be read up to its end offsets."""


WRITER_HEADER = "writer"
"""Header of the views changelog records a stream worker writes: the writing process's id (`ViewMirror.writer`)."""


def progress(view: ProjectView) -> tuple[int, int, int]:
    return view.incarnation, view.last_sequence, len(view.held)


class TopicReader:
    """Every record of a topic, all its partitions, with no consumer group (nothing shared, nothing rebalanced):
    each `catch_up` reads on from where the last one stopped up to the end offsets of that moment, handing each
    record to `apply`."""

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        partitions: int,
        apply: Callable[[ConsumerRecord[bytes, bytes]], None],
        timeout: float = 15.0,
    ) -> None:
        self.options = options
        self.topic = topic
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.apply = apply
        self.timeout = timeout
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _start(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **self.options, group_id=None, enable_auto_commit=False, client_id=f"{self.topic}-reader"
        )
        try:
            await consumer.start()
            consumer.assign(self.partitions)
            await consumer.seek_to_beginning(*self.partitions)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        return consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def catch_up(self) -> None:
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    consumer = self._consumer or await self._start()
                    end = await consumer.end_offsets(self.partitions)
                    while [tp for tp in self.partitions if await consumer.position(tp) < end[tp]]:
                        batches = await consumer.getmany(*self.partitions, timeout_ms=200)
                        for records in batches.values():
                            for record in records:
                                self.apply(record)
                            await asyncio.sleep(0)  # the worker's folding loop goes on between partitions
            except TimeoutError as err:
                raise TopicUnreadable(f"{self.topic} could not be read to its end in {self.timeout:.0f} s") from err
            except KafkaError as err:
                await self.stop()
                raise TopicUnreadable(f"{self.topic} cannot be read: {err}") from err


class ViewMirror:
    """`own`: project id → the view this process's table holds now (None if it holds none as an object); the
    records whose `writer` header is `writer` are taken from it instead of parsed. `parsed`: records parsed (the
    tests read it)."""

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        partitions: int,
        timeout: float = 15.0,
        own: Callable[[str], ProjectView | None] | None = None,
    ) -> None:
        self.views: dict[str, ProjectView] = {}
        self.changed: set[str] = set()  # projects whose view was replaced since the caller last emptied it
        self.unreadable = 0
        self.parsed = 0
        self.writer = uuid.uuid4().hex.encode()
        self._own = own
        self.reader = TopicReader(options, topic, partitions, self._apply, timeout)

    async def stop(self) -> None:
        await self.reader.stop()

    async def catch_up(self) -> dict[str, ProjectView]:
        """Reads the changelog up to the end offsets it has now; returns every project's view."""
        try:
            await self.reader.catch_up()
        except TopicUnreadable as err:
            raise ViewsUnavailable(f"the project views changelog {err}") from err
        return self.views

    def _written_here(self, record: ConsumerRecord[bytes, bytes]) -> ProjectView | None:
        if self._own is None or (WRITER_HEADER, self.writer) not in (record.headers or ()):
            return None
        try:
            project = json.loads(record.key or b"")
        except ValueError:
            return None
        return self._own(project) if isinstance(project, str) else None

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None or record.value is None:
            return
        view = self._written_here(record)
        if view is None:
            try:
                view = ProjectView.model_validate_json(record.value)
            except (ValueError, ValidationError):
                self.unreadable += 1
                return
            self.parsed += 1
        held = self.views.get(view.project_id)
        if held is None or progress(view) >= progress(held):
            self.views[view.project_id] = view
            self.changed.add(view.project_id)
