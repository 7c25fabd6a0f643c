"""Checkpoints after effects (streams/delivery.py), with futures standing in for the producer's deliveries: a
checkpoint never goes out before the effects it covers, several batches share one write, records are acknowledged
only after their checkpoint, a failed delivery stops everything after it, and a slow broker bounds what waits."""

from __future__ import annotations

import asyncio
import random

import pytest

from streams.delivery import Checkpoints


class Broker:
    """Effect deliveries the test completes by hand; checkpoint writes recorded, each delivered when released."""

    def __init__(self) -> None:
        self.writes: list[dict[int, int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.acked: list[str] = []

    def effect(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    async def write(self, progress: dict[int, int]) -> None:
        self.writes.append(dict(progress))
        await self.hold.wait()

    def ack(self, name: str) -> object:
        return lambda: self.acked.append(name)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_checkpoint_waits_for_the_effects_of_its_batch_and_of_every_earlier_one() -> None:
    broker = Broker()
    checkpoints = Checkpoints(broker.write)
    first, second = broker.effect(), broker.effect()
    await checkpoints.add([first], {0: 10}, [broker.ack("a")])
    await checkpoints.add([second], {0: 11, 1: 5}, [broker.ack("b")])
    second.set_result(None)  # the later batch's effects are delivered first
    await settle()
    assert broker.writes == [] and broker.acked == []  # nothing covers batch "b" while "a" is undelivered
    first.set_result(None)
    await checkpoints.drain()
    assert broker.acked == ["a", "b"]
    assert broker.writes[-1] == {0: 11, 1: 5}
    assert all(w[0] <= broker.writes[-1][0] for w in broker.writes)  # a partition's checkpoints never go back
    await checkpoints.close()


async def test_batches_arriving_while_a_checkpoint_is_written_share_the_next_write() -> None:
    broker = Broker()
    checkpoints = Checkpoints(broker.write)
    broker.hold.clear()  # the broker is slow to acknowledge the first checkpoint
    await checkpoints.add([], {0: 1}, [broker.ack("1")])
    await settle()
    assert broker.writes == [{0: 1}]
    for n in range(2, 52):
        done = broker.effect()
        done.set_result(None)
        await checkpoints.add([done], {0: n, 1: n * 10}, [broker.ack(str(n))])
    await settle()
    assert broker.acked == []  # the first checkpoint is not delivered: nothing acknowledged
    broker.hold.set()
    await checkpoints.drain()
    assert broker.writes == [{0: 1}, {0: 51, 1: 510}]  # 50 batches, one write
    assert broker.acked == [str(n) for n in range(1, 52)]
    await checkpoints.close()


async def test_a_failed_delivery_stops_the_folding_loop_and_nothing_after_it_is_checkpointed() -> None:
    broker = Broker()
    checkpoints = Checkpoints(broker.write)
    failed, later = broker.effect(), broker.effect()
    await checkpoints.add([failed], {0: 1}, [broker.ack("a")])
    await checkpoints.add([later], {0: 2}, [broker.ack("b")])
    later.set_result(None)
    failed.set_exception(RuntimeError("MessageSizeTooLargeError"))
    await settle()
    with pytest.raises(RuntimeError, match="MessageSizeTooLarge"):
        await checkpoints.add([], {0: 3}, [broker.ack("c")])
    assert broker.writes == [] and broker.acked == []
    await checkpoints.close()


async def test_the_folding_loop_waits_when_too_many_records_wait_for_their_checkpoint() -> None:
    broker = Broker()
    checkpoints = Checkpoints(broker.write, limit=10)
    stuck = broker.effect()
    await checkpoints.add([stuck], {0: 4}, [broker.ack(str(n)) for n in range(5)])
    await checkpoints.add([], {0: 9}, [broker.ack(str(n)) for n in range(5, 10)])
    third = asyncio.create_task(checkpoints.add([], {0: 10}, [broker.ack("10")]))
    await asyncio.sleep(0.05)
    assert not third.done()  # 10 records wait: the loop is held
    stuck.set_result(None)
    await asyncio.wait_for(third, 5)
    await checkpoints.drain()
    assert broker.acked == [str(n) for n in range(11)]
    await checkpoints.close()


async def random_run(seed: int) -> tuple[list[int], list[int], int]:
    """60 batches, each with 0 to 2 effects, delivered in a random order while the loop goes on; returns the
    checkpoint writes made while an effect they cover was undelivered, every write's offset, and the acks."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    effects_of: list[list[asyncio.Future[None]]] = []
    written: list[int] = []
    ahead: list[int] = []
    acked = 0

    async def write(progress: dict[int, int]) -> None:
        covered = progress[0]
        if not all(f.done() for batch in effects_of[: covered + 1] for f in batch):
            ahead.append(covered)
        written.append(covered)
        await asyncio.sleep(rng.random() / 1000)

    def deliver_some() -> None:
        pending = [f for batch in effects_of for f in batch if not f.done()]
        for future in rng.sample(pending, k=min(len(pending), rng.randint(0, 3))):
            future.set_result(None)

    def ack() -> None:
        nonlocal acked
        acked += 1

    checkpoints = Checkpoints(write, limit=25)
    for batch in range(60):
        effects_of.append([loop.create_future() for _ in range(rng.randint(0, 2))])
        adding = asyncio.create_task(checkpoints.add(effects_of[-1], {0: batch}, [ack] * 3))
        while not adding.done():
            deliver_some()
            await asyncio.sleep(0)
        deliver_some()
    for future in (f for batch in effects_of for f in batch):
        if not future.done():
            future.set_result(None)
    await checkpoints.drain()
    await checkpoints.close()
    return ahead, written, acked


async def test_random_delivery_orders_never_checkpoint_ahead_of_an_undelivered_effect() -> None:
    """30 seeds: every checkpoint write finds the effects of every batch it covers delivered, offsets only go
    forward, and every record is acknowledged once."""
    for seed in range(30):
        ahead, written, acked = await random_run(seed)
        assert ahead == [], seed
        assert written == sorted(written) and written[-1] == 59, seed
        assert acked == 180, seed
