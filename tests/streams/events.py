"""The status events the stream tests use: the benchmarks' (bench/events.py), so both measure the same stream."""

from bench.events import START, project_stream

__all__ = ["START", "project_stream"]
