"""`alliance worker` with another workflow cache size, for benchmarks that compare against the former cache:
`python -m bench.worker_process CACHE` (settings from the environment, as `alliance worker`; runs until killed)."""

from __future__ import annotations

import asyncio
import sys

from alliance import logs
from alliance.connections import connect_temporal
from alliance.settings import Settings
from alliance.worker import project_worker


async def main(cache: int) -> None:
    settings = Settings()
    logs.configure(settings)
    client = await connect_temporal(settings)
    async with project_worker(client, settings, max_cached_workflows=cache):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
