"""The mirror of every project's view, read from the whole changelog on the real broker."""

from __future__ import annotations

import json

import pytest
from aiokafka import AIOKafkaProducer

from alliance.connections import TopicMismatch, ensure_topics, kafka_options
from alliance.settings import Settings
from schemas.events import StatusEvent
from streams.mirror import WRITER_HEADER, ViewMirror, ViewsUnavailable
from streams.projection import ProjectView, fold
from tests.streams.events import project_stream

pytestmark = pytest.mark.timeout(120)


def views_after(project_id: str) -> list[ProjectView]:
    """The view after each event of a project: what the table's owner writes to the changelog, in order."""
    view: ProjectView | None = None
    written = []
    for event in project_stream(project_id, "KE"):
        view = fold(view, event).view
        written.append(view)
    return written


async def test_the_mirror_holds_every_partitions_latest_view_and_never_goes_back(settings: Settings) -> None:
    await ensure_topics(settings, streams=True)
    topic = settings.views_changelog_topic
    kenya, zambia = views_after("ke-mirror"), views_after("zm-mirror")
    producer = AIOKafkaProducer(**kafka_options(settings))
    await producer.start()
    mirror = ViewMirror(kafka_options(settings), topic, settings.topic_partitions)
    try:
        for partition, written in ((0, kenya), (2, zambia)):
            for view in written:
                await producer.send(
                    topic, key=view.project_id.encode(), value=view.model_dump_json().encode(), partition=partition
                )
        await producer.send(topic, key=b"garbage", value=b"{not a view", partition=1)
        await producer.flush()
        assert await mirror.catch_up() == {"ke-mirror": kenya[-1], "zm-mirror": zambia[-1]}
        assert mirror.unreadable == 1

        # A stale owner's late write (an older view, on another partition) does not take the mirror back...
        await producer.send_and_wait(topic, key=b"ke-mirror", value=kenya[1].model_dump_json().encode(), partition=1)
        assert (await mirror.catch_up())["ke-mirror"] == kenya[-1]
        # ...while a view further along replaces it.
        further = kenya[-1].model_copy(update={"title": "after the stale write", "last_sequence": 99})
        await producer.send_and_wait(topic, key=b"ke-mirror", value=further.model_dump_json().encode(), partition=1)
        assert (await mirror.catch_up())["ke-mirror"] == further
    finally:
        await producer.stop()
        await mirror.stop()


async def test_a_mirror_without_a_broker_says_the_views_are_unavailable(settings: Settings) -> None:
    options = {**kafka_options(settings), "bootstrap_servers": "127.0.0.1:9"}
    mirror = ViewMirror(options, settings.views_changelog_topic, 1, timeout=5)
    with pytest.raises(ViewsUnavailable, match=r"changelog .* (cannot|could not) be read"):
        await mirror.catch_up()
    await mirror.stop()


async def test_topics_with_another_partition_count_are_refused_before_the_stream_worker_starts(
    settings: Settings,
) -> None:
    await ensure_topics(settings, streams=True)
    other = settings.model_copy(update={"topic_partitions": settings.topic_partitions + 2})
    with pytest.raises(TopicMismatch, match=rf"{settings.status_topic} has {settings.topic_partitions}"):
        await ensure_topics(other, streams=True)


async def test_the_view_of_a_project_id_proposed_again_replaces_the_old_runs_view(settings: Settings) -> None:
    """A new incarnation starts at #1: the mirror orders views by incarnation first, so it is not taken for a
    view behind the old run's #7."""
    await ensure_topics(settings, streams=True)
    topic = settings.views_changelog_topic
    old = fold_all(project_stream("ke-again", "KE", run="run-1"))
    new = fold_all(project_stream("ke-again", "KE", run="run-1") + project_stream("ke-again", "ZM", run="run-2")[:1])
    assert (old.incarnation, new.incarnation, new.last_sequence) == (0, 1, 1)
    producer = AIOKafkaProducer(**kafka_options(settings))
    await producer.start()
    mirror = ViewMirror(kafka_options(settings), topic, settings.topic_partitions)
    try:
        for view in (old, new, old):  # the old run's view written again late (a zombie) does not come back
            await producer.send_and_wait(topic, key=b"ke-again", value=view.model_dump_json().encode(), partition=0)
        assert (await mirror.catch_up())["ke-again"] == new
    finally:
        await producer.stop()
        await mirror.stop()


def fold_all(events: list[StatusEvent]) -> ProjectView:
    view: ProjectView | None = None
    for event in events:
        view = fold(view, event).view
    assert view is not None
    return view


async def test_records_this_process_wrote_are_taken_from_its_table_and_others_are_parsed(settings: Settings) -> None:
    """The worker marks its changelog records with its `writer` id: the mirror takes those views from the table (no
    second parse of what this process folded), parses everyone else's, and parses its own when the table no longer
    holds the project as an object (a partition recovered from the changelog)."""
    await ensure_topics(settings, streams=True)
    topic = settings.views_changelog_topic
    table: dict[str, ProjectView] = {}
    mirror = ViewMirror(kafka_options(settings), topic, settings.topic_partitions, own=table.get)
    mine, theirs, recovered = views_after("ke-own")[-1], views_after("zm-other")[-1], views_after("ng-recovered")[-1]
    table["ke-own"] = mine
    producer = AIOKafkaProducer(**kafka_options(settings))
    await producer.start()
    try:
        own = [(WRITER_HEADER, mirror.writer)]
        other = [(WRITER_HEADER, b"another-process")]
        for view, headers in ((mine, own), (theirs, other), (recovered, own)):
            key = json.dumps(view.project_id).encode()  # faust's table changelog keys are JSON
            await producer.send_and_wait(topic, key=key, value=view.model_dump_json().encode(), headers=headers)
        found = await mirror.catch_up()
        assert found == {"ke-own": mine, "zm-other": theirs, "ng-recovered": recovered}
        assert found["ke-own"] is mine  # the table's object, not a copy parsed from the record
        assert mirror.parsed == 2  # the other process's record, and ours that the table does not hold
    finally:
        await producer.stop()
        await mirror.stop()
