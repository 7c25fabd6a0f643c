"""Committed histories of every path replay against the current workflow code without non-determinism."""

import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from alliance.worker import WORKFLOWS

ROOT = Path(__file__).parents[1] / "histories"
HISTORIES = sorted(ROOT.rglob("*.json"))


RELEASES = ["before-access-control", "before-reviews-open-together", "before-milestone-reminders", "current"]


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
    assert any(name.endswith("-review-sinosure") for name in names)


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
