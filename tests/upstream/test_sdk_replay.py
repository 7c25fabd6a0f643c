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

Nothing in workflow code can order commands across the two activations the SDK builds for that one task. The cause
was found later (docs/upstream-report.md): a status query answered while no workflow task was pending runs workflow
code ahead of the task, and a worker with a workflow cache keeps that run. The worker now keeps no workflow cache
(alliance/worker.py), which tests/faults/test_query_runahead.py proves on purpose, so no project is stranded this
way any more; `update-accepted-twice-after-restart.json` is the same cause seen after a server restart.

These histories stay as documentation of the upstream bug. When this test fails because they replay, the SDK has been
fixed: say so in docs/upstream-report.md, and measure again whether a workflow cache is worth having.
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


# A worker without a workflow cache (CI's derandomized command-line fuzz test, before the `published_sequence` memo):
# the task before the cancellation took only a publishing result and made no commands. The worker that took the
# cancellation's task got that result again in the same activation as the Update (Update first), so the main
# coroutine signalled the other reviews before the publisher scheduled its publish; a replay gets the result alone
# first, the publisher waits on its condition, and the two come out the other way round. The workflow no longer
# makes tasks without commands where this matters (tests/faults/test_uncached_grouping.py); the history stays as
# documentation of the core's difference between the two.
UNCACHED = ("update-with-commandless-task-result-uncached", "project-zm-bad-input-876d9f4d")


async def test_a_task_without_commands_is_handed_over_otherwise_by_a_replay() -> None:
    name, workflow_id = UNCACHED
    history = WorkflowHistory.from_json(workflow_id, (HERE / f"{name}.json").read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None, "the SDK replays this now: say so in docs/upstream-report.md"
    assert "Activity machine does not handle this event" in str(result.replay_failure)
    assert "SignalExternalWorkflowExecutionInitiated" in str(result.replay_failure)
