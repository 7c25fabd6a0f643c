"""Waiting for people against a durable timer: the shape of every step that has a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow


async def wait_until(condition: Callable[[], bool], deadline: datetime) -> bool:
    """Waits until `condition` holds or `deadline` passes (a durable timer); returns whether it holds."""
    remaining = deadline - workflow.now()
    if remaining.total_seconds() > 0 and not condition():
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(condition, timeout=remaining)
    return condition()


async def wait_until_direct(condition: Callable[[], bool], deadline: datetime) -> bool:
    """`wait_until`, with the timer cancelled in the very step that sees `condition` hold.

    `wait_until` waits through `asyncio.wait_for`, which resumes its caller two loop steps after the condition holds.
    Another coroutine woken in the same workflow task (the outbox publisher, by an activity result) then issues its
    commands in between, or not, depending on how the SDK groups an Update and an activity result into activations:
    a worker replaying the history after a crash groups them otherwise than the worker that wrote it, and the
    commands come out in another order (a nondeterminism error; seen in the worker-kill test). Here the caller
    resumes on a plain condition, like every other wait in the project, so its commands come first either way.
    """
    remaining = (deadline - workflow.now()).total_seconds()
    if remaining <= 0 or condition():
        return condition()
    rang = False

    def ring() -> None:
        nonlocal rang
        rang = True

    timer = asyncio.get_running_loop().call_later(remaining, ring)
    await workflow.wait_condition(lambda: rang or condition())
    if not rang:
        timer.cancel()
    return condition()
