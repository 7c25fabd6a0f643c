"""The repair check (streams/repair.py): which events are sent again when the views table stays behind the topic."""

from __future__ import annotations

import random

from schemas.events import StatusEvent
from streams.projection import ProjectView, fold
from streams.repair import SourceFold
from tests.streams.events import project_stream


def table_of(events: list[StatusEvent]) -> dict[str, ProjectView]:
    views: dict[str, ProjectView] = {}
    for event in events:
        views[event.subject] = fold(views.get(event.subject), event).view
    return views


def test_a_project_behind_the_topic_for_two_checks_gets_the_events_it_misses_in_order() -> None:
    streams = {n: project_stream(f"ke-repair-{n}") for n in range(3)}
    source = SourceFold(patience=30)
    everything = [e for s in streams.values() for e in s]
    for event in random.Random(3).sample(everything, len(everything)) + everything[:5]:  # any order, duplicates
        source.add(event.model_dump_json().encode())
    source.add(b"{not json")  # dead-lettered by the agent; nothing to repair
    # The table: project 0 complete, project 1 three events behind, project 2 never seen.
    table = table_of(streams[0] + streams[1][:-3])

    assert source.missing(table, now=0) == []  # behind may be ordinary lag
    assert source.missing(table, now=29) == []
    resent = source.missing(table, now=30)
    assert [(e.subject, e.data.sequence) for e in resent] == [
        (e.subject, e.data.sequence) for e in streams[1][-3:] + streams[2]
    ]
    # Folding what was resent brings the table level with the topic: nothing more to send.
    for event in resent:
        table[event.subject] = fold(table.get(event.subject), event).view
    assert table == source.views
    assert source.missing(table, now=100) == []


def test_a_project_that_moved_between_checks_is_ordinary_lag_not_a_loss() -> None:
    stream = project_stream("ke-lagging")
    source = SourceFold(patience=30)
    for event in stream:
        source.add(event.model_dump_json().encode())
    assert source.missing(table_of(stream[:2]), now=0) == []
    assert source.missing(table_of(stream[:4]), now=40) == []  # it moved: still processing
    assert source.missing(table_of(stream[:4]), now=69) == []
    expected = [e.data.sequence for e in stream[4:]]
    assert [e.data.sequence for e in source.missing(table_of(stream[:4]), now=70)] == expected
    # Still stuck: sent again only after another patience period.
    assert source.missing(table_of(stream[:4]), now=80) == []
    assert [e.data.sequence for e in source.missing(table_of(stream[:4]), now=100)] == expected
