"""faust's Kafka transport with the consumer's fetch wait chosen by the product, not hard-coded.

faust-streaming 0.15.3 creates its worker consumer with `fetch_max_wait_ms=1500` and no setting to change it
(`faust/transport/drivers/aiokafka.py`, `AIOKafkaConsumerThread._create_worker_consumer`). With aiokafka that wait
is a stall, not only an idle poll: aiokafka keeps one fetch in flight per broker, and asks in it only for the
partitions with no records buffered. A fetch sent while every busy status partition still had records buffered
(the agent was folding, or the leader's tick was running) asks only for quiet partitions (the checks topic, the
table changelogs), and the broker holds it for the whole wait; no status record is fetched meanwhile. The publish →
view lag then has outliers of up to the wait (docs/streams.md, "The lag outliers").

`StreamsApp` is `faust.App` with this transport; `ALLIANCE_STREAMS_FETCH_WAIT_MS` (default 100 ms) is the wait. A
shorter wait costs one more (empty) fetch per wait per broker when partitions are idle; the Java consumer's default
is 500 ms, librdkafka's 500 ms.
"""

from __future__ import annotations

from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.transports import TransportT


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher in `start()`; `tests/streams/test_transport.py` checks the running
        # fetcher's wait, so a faust or aiokafka release that moves it fails a test rather than the lag.
        consumer._fetch_max_wait_ms = cast(StreamsApp, self.app).fetch_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport whose worker consumer takes `fetch_max_wait_ms` from `StreamsApp.fetch_wait_ms`."""

    Consumer = _Consumer


class StreamsApp(faust.App):
    """`faust.App` whose Kafka consumer waits at most `fetch_wait_ms` milliseconds for a fetch (broker URLs `kafka://`
    and `aiokafka://` only). Raises ValueError for a wait below 1 ms."""

    def __init__(self, *args: Any, fetch_wait_ms: int, **kwargs: Any) -> None:
        if fetch_wait_ms < 1:
            raise ValueError(f"a fetch wait of {fetch_wait_ms} ms: it must be at least 1 ms")
        self.fetch_wait_ms = fetch_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        scheme = self.conf.broker_consumer[0].scheme
        if scheme not in ("kafka", "aiokafka"):
            return super()._new_transport()
        return Transport(self.conf.broker_consumer, self)
