"""A watch over faust's table recovery, so that a stalled recovery never leaves a worker idle for good.

After a rebalance, faust (faust-streaming 0.15.3) reads the changelog partitions of the tables a worker now owns, and
the worker folds nothing until that recovery ends. Seen on this project's CI: the survivor of a takeover whose
recovery read no changelog record for minutes (faust logging "No event received for active tp ... since recovery
start" every 5 s, and nothing else), so the partitions it took over were never folded, while its group membership,
and with it those partitions, stayed put. A sibling that can be made at will: a changelog whose last offset is a
transaction marker (left by any transactional producer), which faust's at-least-once recovery waits for forever.

`RecoveryWatch` is the decision, apart from faust so it can be tested by itself: given, every `WATCH_SECONDS`,
whether faust is recovering and how many changelog records it still needs (`Recovery.active_remaining_total()`), it
says the recovery is stalled once that count has not moved for `patience` seconds. The worker then writes its
threads and asyncio tasks to its log and exits with `EXIT_STATUS`, for its supervisor (Compose
`restart: unless-stopped`, the Kubernetes Deployment, `alliance dev`) to start it again: a new process rejoins the
group and recovers from the start of the changelog. At-least-once delivery with idempotent folds makes an exit safe
at any point, as a kill is (tests/streams/test_stream_worker.py). Starting faust's recovery over in the same process
was tried: faust then declares the abandoned recovery complete and crashes applying its buffers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

WATCH_SECONDS = 5.0
"""How often the worker asks faust for its recovery state (seconds)."""
EXIT_STATUS = 75
"""The worker's exit status after a stalled recovery: EX_TEMPFAIL of sysexits.h (start me again)."""


class RecoveryWatch:
    """Per worker: `stalled(in_recovery, remaining)` every `WATCH_SECONDS`; see the module docstring.

    `patience` (seconds) is how long a recovery may go without reading one changelog record. `clock` is monotonic
    seconds (a test passes its own). Raises ValueError for a patience that is not positive."""

    def __init__(self, patience: float, clock: Callable[[], float] = time.monotonic) -> None:
        if patience <= 0:
            raise ValueError(f"patience must be positive seconds, not {patience}")
        self.patience = patience
        self.clock = clock
        self._remaining: int | None = None
        self._since: float | None = None

    def stalled(self, in_recovery: bool, remaining: int) -> bool:
        now = self.clock()
        if not in_recovery or remaining <= 0:
            self._remaining, self._since = None, None
            return False
        if remaining != self._remaining or self._since is None:
            self._remaining, self._since = remaining, now
            return False
        return now - self._since >= self.patience
