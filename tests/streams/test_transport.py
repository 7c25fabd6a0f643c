"""The stream worker's Kafka consumer waits at most ALLIANCE_STREAMS_FETCH_WAIT_MS for a fetch (streams/transport.py),
not faust's hard-coded 1,500 ms, which showed as publish → view lag outliers of up to 1.5 s."""

from __future__ import annotations

import pydantic
import pytest

from alliance.settings import Settings
from streams.app import create_app
from streams.transport import StreamsApp

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("wait_ms", [10, 250])
async def test_the_running_consumers_fetcher_waits_what_the_settings_say(settings: Settings, wait_ms: int) -> None:
    stream = create_app(settings.model_copy(update={"streams_fetch_wait_ms": wait_ms}))
    thread = stream.app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(stream.app.transport)
    await consumer.start()  # builds aiokafka's Fetcher, which sends the fetch requests
    try:
        assert consumer._fetcher._fetch_max_wait_ms == wait_ms
    finally:
        await consumer.stop()


def test_a_fetch_wait_outside_its_bounds_is_refused_in_the_settings_words(settings: Settings) -> None:
    for wait in (0, 1501):
        with pytest.raises(pydantic.ValidationError, match="streams_fetch_wait_ms"):
            Settings.model_validate({**settings.model_dump(), "streams_fetch_wait_ms": wait})
    with pytest.raises(ValueError, match="a fetch wait of 0 ms: it must be at least 1 ms"):
        StreamsApp("never-started", fetch_wait_ms=0)
