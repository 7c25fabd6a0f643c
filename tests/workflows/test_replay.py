"""Committed histories of every path replay against the current workflow code without non-determinism, and
produce the very events (ids and sequence numbers) their first run published."""

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    Interceptor,
    Replayer,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle

from activities.messages import PUBLISH_STATUS_EVENTS
from alliance.worker import WORKFLOWS
from workflows import project as project_code

ROOT = Path(__file__).parents[1] / "histories"
HISTORIES = sorted(ROOT.rglob("*.json"))


RELEASES = [
    "before-access-control",
    "before-reviews-open-together",
    "before-milestone-reminders",
    "before-instructions-after-events",
    "before-certified-milestones-paid",
    "before-published-sequence-memo",
    "before-review-clocks-in-project",
    "current",
]


@pytest.mark.parametrize("release", RELEASES)
def test_there_is_a_history_for_every_path_and_review(release: str) -> None:
    names = {p.stem for p in (ROOT / release).glob("*.json")}
    for project in (
        "zm-lusaka-smart-city-2",  # delivery
        "ke-national-data-centre-2",  # warranty
        "ng-public-security-network",  # financing, information requested
        "th-smart-taxation",  # rejected at screening
        "et-cloud-finance",  # financing declined
        "tn-smart-education",  # cancelled during delivery
        "my-smart-homes-pilot",  # completed
    ):
        assert f"project-{project}" in names
    # Until `review-clocks-in-project`, each review's clock was a child workflow, with a history of its own.
    assert any(name.endswith("-review-sinosure") for name in names) == (RELEASES.index(release) < len(RELEASES) - 1)


def test_there_are_histories_of_a_project_that_continued_as_new() -> None:
    runs = sorted(
        (ROOT / "current").glob("project-ke-late-delivery-run-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1])
    )
    # The first run, at least one run that both starts continued and ends continued as new, and the last.
    assert len(runs) >= 3
    texts = [path.read_text() for path in runs]
    assert '"continuedExecutionRunId"' not in texts[0]
    assert all('"continuedExecutionRunId"' in text for text in texts[1:])
    assert all("workflowExecutionContinuedAsNewEventAttributes" in text for text in texts[:-1])
    assert "workflowExecutionCompletedEventAttributes" in texts[-1]


def patches_recorded(history: dict[str, Any]) -> set[str]:
    """The patch ids a history's markers record (`workflow.patched` writes one marker per id, in a JSON payload)."""
    ids = set()
    for event in history["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and "patch-data" in marker.get("details", {}):
            data = base64.b64decode(marker["details"]["patch-data"]["payloads"][0]["data"])
            ids.add(json.loads(data)["id"])
    return ids


def test_every_patch_has_a_committed_history_that_takes_its_new_path() -> None:
    source = (Path(__file__).parents[2] / "workflows" / "project.py").read_text()
    used = set(re.findall(r"workflow\.patched\((\w+)\)", source))
    assert used == {name for name, value in vars(project_code).items() if value in project_code.PATCHES}
    assert 'workflow.patched("' not in source, "patch ids are the named constants in project_code.PATCHES"
    # A patch's new path can be superseded by a later patch (`reviews-open-before-their-clocks` by
    # `review-clocks-in-project`): its history is then in the folder from before the later one.
    recorded = set().union(*(patches_recorded(json.loads(p.read_text())) for p in HISTORIES))
    assert set(project_code.PATCHES) <= recorded, set(project_code.PATCHES) - recorded
    newest = set().union(*(patches_recorded(json.loads(p.read_text())) for p in (ROOT / "current").glob("*.json")))
    assert project_code.PATCHES[-1] in newest


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_committed_history_replays_without_non_determinism(path: Path) -> None:
    # The file is named after the workflow id (child ids derive from it), plus `-run-<n>` for one run of several.
    history = WorkflowHistory.from_json(re.sub(r"-run-\d+$", "", path.stem), path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_replay_logs_nothing_a_second_time(caplog: pytest.LogCaptureFixture) -> None:
    path = ROOT / "current" / "project-my-smart-homes-pilot.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    with caplog.at_level("DEBUG", logger="temporalio.workflow"):
        await replayer.replay_workflow(history)
    assert [r.getMessage() for r in caplog.records if r.name == "temporalio.workflow"] == []


# (event id, sequence) of every status event a replay asks to publish, in order.
replayed: list[tuple[str, int]] = []


class _PublishedEvents(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
        if input.activity == PUBLISH_STATUS_EVENTS:
            replayed.extend((e.id, e.data.sequence) for e in input.args[0].events)
        return super().start_activity(input)


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_PublishedEvents(outbound))


class CapturePublishedEvents(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _Inbound


def published_in(history: WorkflowHistory) -> list[tuple[str, int]]:
    """(event id, sequence) of every status event the first run scheduled for publishing, read from the history."""
    found: list[tuple[str, int]] = []
    for event in history.events:
        attributes = event.activity_task_scheduled_event_attributes
        if attributes.activity_type.name == PUBLISH_STATUS_EVENTS:
            batch = json.loads(attributes.input.payloads[0].data)
            found.extend((e["id"], e["data"]["sequence"]) for e in batch["events"])
    return found


CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}
PROJECT_HISTORIES = [p for p in HISTORIES if "-review-" not in p.stem]


@pytest.mark.parametrize("path", PROJECT_HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in PROJECT_HISTORIES])
async def test_replay_publishes_the_same_event_ids_and_sequences_as_the_first_run(path: Path) -> None:
    history = WorkflowHistory.from_json(re.sub(r"-run-\d+$", "", path.stem), path.read_text())
    replayed.clear()
    replayer = Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter, interceptors=[CapturePublishedEvents()]
    )
    await replayer.replay_workflow(history)
    first_run = published_in(history)
    assert first_run, "the history publishes events"
    # A running project's history can end with a workflow task not yet completed: replaying it may publish more.
    assert replayed[: len(first_run)] == first_run
    if history.events[-1].event_type in CLOSED:
        assert len(replayed) == len(first_run)
