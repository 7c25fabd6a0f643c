"""Test support: the checked-in example proposals, optionally changed, and waiting for a project to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from alliance.demo import EXAMPLES
from alliance.projects import Projects
from schemas.proposal import Proposal
from schemas.status import ProjectStatus
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
