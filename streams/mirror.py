"""Every project's view, read from the whole `project-views` changelog: what lets any stream worker serve the whole
portfolio when several share the status topic.

Each worker folds only the partitions assigned to it, so its own table holds part of the portfolio. The table's
changelog, though, is a compacted Kafka topic holding every project's latest view, whichever worker wrote it. The
mirror reads all of its partitions (no consumer group, so nothing is shared or rebalanced) and, before it answers,
catches up to the end offsets of that moment: a portfolio served after a failover includes everything the surviving
worker has folded, and two workers asked at once give the same totals.

A view only replaces a view of the same project that is not further along (its `incarnation`, then `last_sequence`,
then the number of held events). A worker that lost its partitions but had not yet noticed (a zombie, possible
with at-least-once) can still write an older view to the changelog after the new owner wrote a newer one; the
mirror does not go back.
"""

from __future__ import annotations

import asyncio
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
            except TimeoutError as err:
                raise TopicUnreadable(f"{self.topic} could not be read to its end in {self.timeout:.0f} s") from err
            except KafkaError as err:
                await self.stop()
                raise TopicUnreadable(f"{self.topic} cannot be read: {err}") from err


class ViewMirror:
    def __init__(self, options: dict[str, Any], topic: str, partitions: int, timeout: float = 15.0) -> None:
        self.views: dict[str, ProjectView] = {}
        self.unreadable = 0
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

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None or record.value is None:
            return
        try:
            view = ProjectView.model_validate_json(record.value)
        except (ValueError, ValidationError):
            self.unreadable += 1
            return
        held = self.views.get(view.project_id)
        if held is None or progress(view) >= progress(held):
            self.views[view.project_id] = view
