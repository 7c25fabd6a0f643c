"""The child processes `alliance dev` runs beside its worker (the API, the stream worker), started again whenever
they exit, as Compose (`restart: unless-stopped`) and Kubernetes do for the same processes.

Each exit is said on one line, with why: an exit status, the signal that killed it, or the stream worker's own
status for a stalled table recovery (`streams.recovery.EXIT_STATUS`). A child that exits within QUICK seconds of its
start waits twice as long as last time before the next start (1 s, 2 s, 4 s, ... at most LONGEST), so a child that
cannot start (a port taken, a bad setting) is retried without flooding the terminal.

Children end with their supervisor, however it ends (Ctrl-C, SIGTERM, or SIGKILL, when `stop` never runs): each is
started with PARENT_ENV naming the supervisor's process id, and `exit_with_parent` (which `alliance api` and
`alliance streams` call) stops the child as soon as its parent process is another one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from streams.recovery import EXIT_STATUS

QUICK = 10.0
"""Seconds: a child that exits sooner than this after its start is started again after a longer wait."""
LONGEST = 30.0
"""Seconds: the longest wait before a start."""


PARENT_ENV = "ALLIANCE_SUPERVISOR_PID"
"""Environment variable: the process id of the supervisor that started this process."""
PARENT_CHECK = 1.0
"""Seconds between a child's checks that its supervisor is still its parent."""


def exit_with_parent(check_every: float = PARENT_CHECK) -> threading.Thread | None:
    """In a child started by a Supervisor: a daemon thread that sends this process SIGTERM (its own graceful stop) once
    its parent is no longer the supervisor named in PARENT_ENV (the supervisor died; the child was re-parented).
    Returns the thread, or None outside a supervisor (nothing to watch)."""
    named = os.environ.get(PARENT_ENV, "")
    if not named.isdigit():
        return None
    supervisor = int(named)

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(check_every)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def why(status: int) -> str:
    """Why a child exited, in words: `status` as `subprocess.Popen.returncode` gives it (negative: a signal)."""
    if status == EXIT_STATUS:
        return f"exit status {status}: its table recovery stalled, see its log"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_exits: int = 0  # exits in a row, each within QUICK seconds of its start
    due: float | None = None  # when to start it again (None: running, or never started)


@dataclass
class Supervisor:
    """`children`: (name, argv) of each child, started by `start` and kept running by `check` (call it every second
    or so); `stop` ends them all."""

    children: list[Child] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def of(cls, commands: list[tuple[str, list[str]]], clock: Callable[[], float] = time.monotonic) -> Supervisor:
        return cls([Child(name, argv) for name, argv in commands], clock)

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.argv, env={**os.environ, PARENT_ENV: str(os.getpid())})
        child.started = self.clock()
        child.due = None

    def start(self) -> None:
        for child in self.children:
            self._start(child)

    def check(self) -> list[str]:
        """Starts again what is due; returns one line per child found exited or started again."""
        said = []
        now = self.clock()
        for child in self.children:
            if child.due is not None:
                if now >= child.due:
                    self._start(child)
                    said.append(f"The {child.name} started again.")
                continue
            status = child.process.poll() if child.process is not None else None
            if status is None:
                continue
            child.quick_exits = child.quick_exits + 1 if now - child.started < QUICK else 1
            wait = min(2.0 ** (child.quick_exits - 1), LONGEST)
            child.due = now + wait
            said.append(f"The {child.name} exited ({why(status)}); starting it again in {wait:.0f} s.")
        return said

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to every child, then SIGKILL to those still running after `timeout` seconds."""
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
