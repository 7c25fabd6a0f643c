"""What every fault test checks of the histories it leaves: no workflow task failed in any workflow of its task queue
(projects and their review children; a reset shows as a failed task too), and every history replays."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from alliance.worker import WORKFLOWS


@dataclass
class HistoryCheck:
    workflows: int = 0
    events: int = 0
    failed_tasks: list[str] = field(default_factory=list)
    replay_failures: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.workflows} workflow histories ({self.events} events): {len(self.failed_tasks)} failed workflow "
            f"tasks, {len(self.replay_failures)} that do not replay"
        )


async def check_histories(client: Client, task_queue: str) -> HistoryCheck:
    """Reads and replays every workflow history on `task_queue`; lists failed workflow tasks and replay failures,
    each with its workflow id and message."""
    check = HistoryCheck()
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    async for execution in client.list_workflows(f'TaskQueue = "{task_queue}"'):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        check.workflows += 1
        check.events += len(history.events)
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                failure = event.workflow_task_failed_event_attributes
                check.failed_tasks.append(f"{execution.id} event {event.event_id}: {failure.failure.message[:200]}")
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if replayed.replay_failure is not None:
            check.replay_failures.append(f"{execution.id}: {str(replayed.replay_failure)[:200]}")
    return check
