"""Waiting for people against a durable timer: the shape of every step that has a deadline."""

from __future__ import annotations

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
