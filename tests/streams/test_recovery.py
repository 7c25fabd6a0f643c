"""The recovery watch's decision (streams/recovery.py), on a clock the test moves."""

from __future__ import annotations

import pytest

from streams.recovery import RecoveryWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watch(patience: float = 30.0) -> tuple[RecoveryWatch, Clock]:
    clock = Clock()
    return RecoveryWatch(patience, clock), clock


def test_a_recovery_that_reads_is_never_stalled_however_long_it_takes() -> None:
    w, clock = watch()
    for remaining in range(1000, 0, -1):
        assert not w.stalled(True, remaining)
        clock.now += 5


def test_a_recovery_that_reads_nothing_is_stalled_after_the_patience_and_not_before() -> None:
    w, clock = watch(patience=30)
    assert not w.stalled(True, 5)
    clock.now += 29.9
    assert not w.stalled(True, 5)
    clock.now += 0.1
    assert w.stalled(True, 5)
    clock.now += 5
    assert w.stalled(True, 5)


def test_one_record_read_gives_the_whole_patience_again() -> None:
    w, clock = watch(patience=30)
    w.stalled(True, 5)
    clock.now += 25
    assert not w.stalled(True, 4)
    clock.now += 25
    assert not w.stalled(True, 4)
    clock.now += 5
    assert w.stalled(True, 4)


def test_a_count_that_grows_is_a_new_recovery_not_a_stall() -> None:
    """A rebalance in between starts a recovery with more to read: its own patience."""
    w, clock = watch(patience=30)
    w.stalled(True, 5)
    clock.now += 29
    assert not w.stalled(True, 9)
    clock.now += 29
    assert not w.stalled(True, 9)


def test_a_recovery_that_ends_starts_the_next_one_afresh() -> None:
    w, clock = watch(patience=10)
    w.stalled(True, 3)
    clock.now += 9
    assert not w.stalled(False, 0)
    assert not w.stalled(True, 3)
    clock.now += 9
    assert not w.stalled(True, 3)
    clock.now += 1
    assert w.stalled(True, 3)


def test_no_recovery_running_or_nothing_left_is_never_a_stall() -> None:
    w, clock = watch(patience=1)
    for in_recovery, remaining in [(False, 7)] * 5 + [(True, 0)] * 5:
        assert not w.stalled(in_recovery, remaining)
        clock.now += 5


@pytest.mark.parametrize("patience", [0, -1])
def test_the_patience_is_positive(patience: float) -> None:
    with pytest.raises(ValueError, match="patience must be positive"):
        RecoveryWatch(patience)
