"""Checkpoints after effects, several batches per write: why a batch of the stream worker never waits for Kafka.

The stream worker folds a batch in memory and hands its records (table changelog, feed, alerts, dead letters) to the
producer at once (`streams.app`). What must then hold, for the tables to equal a fresh computation after a crash
(`streams.checkpoint`):

1. a partition's checkpoint reaches the `status-progress` changelog only after the effects of every record it covers,
   those of earlier batches included, were delivered (acknowledged by the broker);
2. the checkpoints of one partition reach the changelog in the order they were taken (the producer keeps the order
   of sends to one topic partition: aiokafka sends one request per partition at a time);
3. a record's offset is acknowledged to faust (and so may be committed) only after its checkpoint was delivered.

`Checkpoints` keeps the batches in fold order and writes their checkpoints from one background task. Each write
covers every batch whose effects are delivered by then, in order, with each partition's last offset: at most one
checkpoint write is in flight, and batches arriving meanwhile join the next one. The folding loop waits only when
more than `limit` records wait for their checkpoint (memory stays bounded when the broker is slow or away). A
delivery that fails fails the next `add`, which stops the agent; nothing later is checkpointed or acknowledged.

The previous design chained the checkpoint write of every batch after the previous batch's: one broker round trip per
batch, so under a steady trickle the batches stayed small and records queued in faust's buffer (lag in seconds at
500 events/s, `bench.streams`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

WriteCheckpoints = Callable[[dict[int, int]], Awaitable[None]]
"""(partition → offset of the last record handled) → returns once those checkpoint records are delivered."""

LIMIT = 20_000
"""Records whose checkpoint is not yet delivered, at most, before the folding loop waits."""


@dataclass
class _Batch:
    sent: list[asyncio.Future[object]]
    progress: dict[int, int]
    acks: list[Callable[[], object]]

    def delivered(self) -> bool:
        return all(s.done() for s in self.sent)


class Checkpoints:
    """Batches waiting for their effects and then their checkpoint; see the module docstring.

    `add` is called by one task (the agent) in fold order. `sent`: the futures of the batch's effect records as the
    producer returned them; `progress`: partition → offset of the batch's last handled record; `acks`: called, in
    order, once the batch's checkpoint is delivered (faust's `event.ack`)."""

    def __init__(self, write: WriteCheckpoints, limit: int = LIMIT) -> None:
        self._write = write
        self._limit = limit
        self._queue: deque[_Batch] = deque()
        self._waiting = 0  # records in the queue and in the write in flight
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _raise_failure(self) -> None:
        if self._task is not None and self._task.done():
            if self._task.cancelled():
                raise RuntimeError("the checkpoints were closed")
            self._task.result()  # raises what the delivery raised

    async def add(
        self, sent: Iterable[Awaitable[object]], progress: dict[int, int], acks: list[Callable[[], object]]
    ) -> None:
        """Queues a batch; waits while more than `limit` records wait for their checkpoint. Raises the exception of
        a failed delivery (the batch is then not queued)."""
        self._raise_failure()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stream-checkpoints")
        while self._waiting >= self._limit:
            await self._progress()
        self._queue.append(_Batch([asyncio.ensure_future(s) for s in sent], dict(progress), acks))
        self._waiting += len(acks)
        self._wake.set()

    async def drain(self) -> None:
        """Returns once every batch added so far is checkpointed and acknowledged (raises a failed delivery)."""
        while self._queue or self._waiting:
            self._raise_failure()
            if self._task is None:
                return
            await self._progress()
        self._raise_failure()

    async def _progress(self) -> None:
        """Waits for the next checkpoint write to complete, or the background task to end (raises its failure)."""
        assert self._task is not None
        self._room.clear()
        room = asyncio.ensure_future(self._room.wait())
        try:
            await asyncio.wait([room, self._task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
        self._raise_failure()

    async def close(self) -> None:
        """Stops the background task (what is not checkpointed is not acknowledged: read again after a restart)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            first = self._queue.popleft()
            taken = [first]
            await asyncio.gather(*first.sent)
            while self._queue and self._queue[0].delivered():
                taken.append(self._queue.popleft())
            for batch in taken[1:]:
                await asyncio.gather(*batch.sent)  # done: raises a delivery's exception
            progress: dict[int, int] = {}
            for batch in taken:
                progress.update(batch.progress)
            if progress:
                await self._write(progress)
            for batch in taken:
                for ack in batch.acks:
                    ack()
                self._waiting -= len(batch.acks)
            self._room.set()
