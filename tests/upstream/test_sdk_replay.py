"""A known bug of the Temporal SDK (sdk-core, temporalio 1.35.0), found by the worker-kill fault test: kept here as
histories that should replay and do not; the test says so the day an SDK release fixes it.

Both histories end the same way. A worker is SIGKILLed while a workflow task is on its sticky queue; the task times
out; meanwhile a decision (an Update) arrives. The next worker, with nothing cached, runs the retried task: it applies
the event that woke the workflow (an activity or child workflow result) first and the Update second, so history
records the commands of the first (an activity scheduled; a search attribute upsert and a timer) before
`WorkflowExecutionUpdateAccepted`. Replaying that task, the SDK delivers the Update first, and the commands come out in
the other order: "Nondeterminism error: Update machine does not handle this event". Every later workflow task fails
the same way, so the project is stuck until an operator resets it (`temporal workflow reset`, see the README).

The third history shows the same without any task timing out: the Update simply arrived in the same task as two
activity results, the worker applied the results first, and the next worker to replay (after a kill) failed.

Nothing in workflow code can order commands across the two activations the SDK builds for that one task. When this
test fails because the histories replay, the SDK has been fixed: drop the test and the README note.
"""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from alliance.worker import WORKFLOWS

HERE = Path(__file__).parent
CASES = {
    "update-after-timed-out-task-activity": "project-my-kill-99b15e-021",
    "update-after-timed-out-task-child": "project-my-kill-90093f-028",
    # No workflow task timed out here: the Update came in the same task as two activity results (CI, worker kills).
    "update-with-activity-results-no-kill": "project-my-kill-2eced3-032",
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_an_update_taken_after_another_wake_up_still_fails_replay_on_the_known_sdk_bug(name: str) -> None:
    history = WorkflowHistory.from_json(CASES[name], (HERE / f"{name}.json").read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None, "the SDK replays this now: drop this test and the README's SDK note"
    assert "Update machine does not handle this event" in str(result.replay_failure)


def test_the_kill_test_recognises_the_bugs_precondition_in_these_histories_and_in_no_ordinary_one() -> None:
    from tests.faults.test_worker_kills import updates_accepted_after_other_commands

    for name, workflow in CASES.items():
        history = WorkflowHistory.from_json(workflow, (HERE / f"{name}.json").read_text())
        assert updates_accepted_after_other_commands(history), name
    ordinary = sorted((HERE.parent / "histories").glob("*/*.json"))
    assert ordinary
    for path in ordinary:
        assert not updates_accepted_after_other_commands(WorkflowHistory.from_json(path.stem, path.read_text())), path


def test_the_restart_test_recognises_an_update_accepted_twice_and_no_ordinary_history() -> None:
    """The second bug the fault tests found (tests/faults/test_temporal_restart.py): after a server restart, a decision
    re-sent with its decision id was delivered and accepted again although its Update had completed; the server
    failed every later task. This is that project's history, up to the reset that recovered it."""
    from tests.faults.test_temporal_restart import stuck_on_a_re_accepted_update

    history = WorkflowHistory.from_json(
        "project-my-restart-c98913-05", (HERE / "update-accepted-twice-after-restart.json").read_text()
    )
    assert stuck_on_a_re_accepted_update(history)
    for path in sorted((HERE.parent / "histories").glob("*/*.json")):
        assert not stuck_on_a_re_accepted_update(WorkflowHistory.from_json(path.stem, path.read_text())), path
