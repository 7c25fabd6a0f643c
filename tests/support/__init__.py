"""Test support, by concern: `examples` (the example proposals), `projects` (following projects), `servers` (real
servers and processes), `kafka` (what reached the broker), `cli` (the command line as a process). Everything is
re-exported here, so `from tests.support import example` keeps working."""

from tests.support.cli import Run, cli, one_line_error
from tests.support.examples import example, raw_example
from tests.support.kafka import assert_kafka_matches_history, events_by_project
from tests.support.projects import LateDelivery, drive_late_delivery, finished, follow_server_clock, runs_of
from tests.support.servers import ALLIANCE, Services, WorkerProcesses, api_server, free_port, local_temporal

__all__ = [
    "ALLIANCE",
    "LateDelivery",
    "Run",
    "Services",
    "WorkerProcesses",
    "api_server",
    "assert_kafka_matches_history",
    "cli",
    "drive_late_delivery",
    "events_by_project",
    "example",
    "finished",
    "follow_server_clock",
    "free_port",
    "local_temporal",
    "one_line_error",
    "raw_example",
    "runs_of",
]
