"""`alliance dev`'s helpers (the API, the stream worker) are started again whenever they exit, each exit said with
why, and a child that keeps exiting at once waits longer each time (alliance/cli/supervisor.py). Real child
processes, a clock the test moves."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from alliance.cli.supervisor import LONGEST, PARENT_ENV, Supervisor, exit_with_parent
from streams.recovery import EXIT_STATUS

pytestmark = pytest.mark.timeout(60)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def exits(status: int) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.exit({status})"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settle(supervisor: Supervisor) -> None:
    """Waits (real time) until every child that exits by itself (all but SLEEPER) has exited."""
    deadline = time.monotonic() + 10
    for child in supervisor.children:
        while child.process is not None and child.process.poll() is None and child.argv != SLEEPER:
            assert time.monotonic() < deadline, child.name
            time.sleep(0.02)


def test_a_child_that_exits_is_said_with_why_and_started_again_with_longer_waits_while_it_keeps_failing() -> None:
    clock = Clock()
    supervisor = Supervisor.of([("API", exits(3)), ("stream worker", SLEEPER)], clock=clock)
    supervisor.start()
    try:
        first = supervisor.children[0].process
        settle(supervisor)
        assert supervisor.check() == ["The API exited (exit status 3); starting it again in 1 s."]
        assert supervisor.check() == []  # not due yet
        clock.now += 1
        assert supervisor.check() == ["The API started again."]
        assert supervisor.children[0].process is not first
        waits = []
        for _ in range(7):  # it keeps exiting at once: 2, 4, 8, 16, 30, 30, 30 s
            settle(supervisor)
            said = supervisor.check()
            waits.append(said[0].rsplit(" in ", 1)[1])
            clock.now += LONGEST
            assert supervisor.check() == ["The API started again."]
        assert waits == ["2 s.", "4 s.", "8 s.", "16 s.", "30 s.", "30 s.", "30 s."]
        settle(supervisor)
        clock.now += 60  # ran long enough before this exit: the next wait is 1 s again
        assert supervisor.check() == ["The API exited (exit status 3); starting it again in 1 s."]
        assert supervisor.children[1].process is not None and supervisor.children[1].process.poll() is None
    finally:
        supervisor.stop(timeout=5)


def test_a_killed_child_and_a_stalled_recovery_are_said_as_such_and_stop_ends_every_child() -> None:
    clock = Clock()
    supervisor = Supervisor.of([("stream worker", SLEEPER), ("API", exits(EXIT_STATUS))], clock=clock)
    supervisor.start()
    try:
        sleeper = supervisor.children[0].process
        assert sleeper is not None
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
        settle(supervisor)
        said = supervisor.check()
        assert said == [
            "The stream worker exited (killed by SIGKILL); starting it again in 1 s.",
            f"The API exited (exit status {EXIT_STATUS}: its table recovery stalled, see its log); starting it "
            "again in 1 s.",
        ]
        clock.now += 1
        assert supervisor.check() == ["The stream worker started again.", "The API started again."]
        restarted = supervisor.children[0].process
        assert restarted is not None and restarted.poll() is None
    finally:
        supervisor.stop(timeout=5)
    assert all(c.process is not None and c.process.poll() is not None for c in supervisor.children)


# The helper processes outlived an `alliance dev` killed with SIGKILL (found by a fresh-clone try): they went on
# holding their ports, and the next `alliance dev` said it was ready while its own helpers kept failing to start.
CHILD_WATCHING = (
    "import time; from alliance.cli.supervisor import exit_with_parent; "
    "assert exit_with_parent(0.1) is not None; time.sleep(60)"
)
SUPERVISOR = f"""
import sys, time
from alliance.cli.supervisor import Supervisor
supervisor = Supervisor.of([("child", [sys.executable, "-c", {CHILD_WATCHING!r}])])
supervisor.start()
print(supervisor.children[0].process.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_children_end_with_their_supervisor_however_it_ends(kill: signal.Signals) -> None:
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, text=True)
    try:
        assert supervisor.stdout is not None
        child = int(supervisor.stdout.readline())
        time.sleep(0.5)
        assert alive(child), "the child runs while its supervisor does"
        supervisor.send_signal(kill)
        supervisor.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child), f"the child outlived its supervisor ended by {kill.name}"
    finally:
        supervisor.kill()
        supervisor.wait()


def test_outside_a_supervisor_nothing_is_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARENT_ENV, raising=False)
    assert exit_with_parent() is None


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped by its new parent, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
