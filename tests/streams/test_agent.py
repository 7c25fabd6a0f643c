"""The stream worker's agent in faust's test context: no broker, derived topics replaced by recorders."""

from __future__ import annotations

import uuid
from unittest.mock import AsyncMock, patch

from alliance.settings import Settings
from streams.app import create_app
from streams.projection import ProjectView, fold
from tests.streams.events import project_stream


async def test_the_agent_folds_events_feeds_them_once_and_dead_letters_the_unusable(tmp_path: object) -> None:
    settings = Settings(_env_file=None, streams_app_id=f"unit-{uuid.uuid4().hex[:8]}", topic_partitions=1)  # type: ignore[call-arg]
    built = create_app(settings)
    built.app.finalize()
    built.app.flow_control.resume()
    stream = project_stream("ke-agent")
    feed, dead = AsyncMock(), AsyncMock()
    with (
        patch.object(built.feed, "send", feed),
        patch.object(built.dead_letters, "send", dead),
        patch.object(built.alerts, "send", AsyncMock()),
    ):
        async with built.fold_events.test_context() as agent:
            for event in [*stream[:3], stream[1], *stream[3:]]:
                await agent.put(key=event.subject.encode(), value=event.model_dump_json().encode())
            await agent.put(key=b"ke-agent", value=b"{not json")
    expected: ProjectView | None = None
    for event in stream:
        expected = fold(expected, event).view
    assert ProjectView.model_validate(built.views["ke-agent"]) == expected
    assert feed.await_count == len(stream)  # the repeated event was not fed again
    assert dead.await_count == 1
    assert b"not JSON" in dead.await_args.kwargs["value"]
