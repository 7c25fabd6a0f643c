"""The engine's floor for `bench.streams`: a faust agent on the same topic, batched as the stream worker is
(`take_events`, the same BATCH_MAX and BATCH_SECONDS), that does nothing with a record but acknowledge it.

    .venv/bin/python -m bench.faust_floor <bootstrap> <topic> <partitions> <count> <out file>

It writes `{"first": t, "last": t, "count": n}` (Unix seconds of the first and the count-th record taken) to the out
file and keeps running until terminated. What faust costs per record before any work of ours: fetching in its
consumer thread, handing each record to the stream, buffering, acknowledging, committing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import faust
from faust import Worker

from streams.app import BATCH_MAX, BATCH_SECONDS


def main(bootstrap: str, topic: str, partitions: int, count: int, out: Path) -> None:
    app = faust.App(
        f"floor-{out.stem}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        web_enabled=False,
        datadir=f"/tmp/{out.stem}-data",
        autodiscover=False,
    )
    source = app.topic(topic, partitions=partitions, key_serializer="raw", value_serializer="raw")
    seen = {"count": 0, "first": 0.0, "last": 0.0}

    @app.agent(source)
    async def take(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_SECONDS):  # type: ignore[attr-defined]
            if not seen["count"]:
                seen["first"] = time.time()
            seen["count"] += len(batch)
            if seen["count"] >= count and not seen["last"]:
                seen["last"] = time.time()
                out.write_text(json.dumps(seen))

    Worker(app, loglevel="WARNING").execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
