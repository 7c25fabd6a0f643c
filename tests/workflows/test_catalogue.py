"""The decision catalogue (workflows/catalogue.py) is the one table the API, the CLI and the workflow's validators
read: every entry names an Update the project workflow really defines, with that Update's input model, and every
decision Update the workflow defines is in it."""

from __future__ import annotations

import typing

from temporalio.workflow import _Definition

from schemas.decisions import Decision
from workflows import catalogue
from workflows.project import ProjectWorkflow


def decision_updates() -> dict[str, type[Decision]]:
    definition = _Definition.must_from_class(ProjectWorkflow)
    found: dict[str, type[Decision]] = {}
    for name, update in definition.updates.items():
        if name is None:
            continue
        hints = typing.get_type_hints(update.fn)
        model = next((h for k, h in hints.items() if k != "return"), None)
        if isinstance(model, type) and issubclass(model, Decision):
            found[name] = model
    return found


def test_every_catalogue_entry_is_an_update_of_the_project_workflow_with_its_model() -> None:
    updates = decision_updates()
    for kind in catalogue.CATALOGUE:
        assert updates.get(kind.update) is kind.model, kind


def test_every_decision_update_of_the_project_workflow_is_in_the_catalogue() -> None:
    assert set(decision_updates()) == set(catalogue.BY_UPDATE)


def test_the_progress_update_the_edges_call_exists() -> None:
    assert catalogue.AWAIT_PROGRESS in _Definition.must_from_class(ProjectWorkflow).updates
