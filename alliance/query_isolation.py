"""A workflow run that answered a query outside a workflow task leaves the worker's cache.

Why (temporalio 1.35.0's SDK core; docs/upstream-report.md): a query sent while no workflow task is pending goes to a
worker on its own, a "legacy" query, with the history as of when the worker polls it. When an activity result and the
workflow task it schedules came in meanwhile, the core applies them and runs workflow code on them to answer the
query, ahead of the workflow task that will really process them. A run kept in the cache in that state records the
next task's Update after the commands of that run-ahead, which a replay of the history orders the other way, and it
keeps a stale started-event id: the project's history stops replaying and a later task fails for good.

The remedy at the worker: after every activation that answered a legacy query, the worker asks the core to evict the
run. The core still sends the query's answer (it does so for a legacy query with an eviction pending), then removes
the run; a workflow task that came meanwhile waits in the core's buffer and is applied to a run rebuilt from the full
history (a sticky-cache miss makes the core fetch it). Queries that come with a workflow task answer from the state
that task leaves and are left alone, as are all other activations, so decisions keep the cache.

The eviction is asked for from inside `activate`, before the SDK hands the activation's completion back: the core reads
both from one queue, so the eviction is pending when the query's answer is sent, and no task can reach the run
between the two. The SDK has no public call for it; `EvictAfterLegacyQuery.bind` reaches the worker's core handle
(`Worker._bridge_worker`, temporalio 1.35.0) and fails loudly if that handle is gone. `tests/faults/
test_query_runahead.py` sets the race up on purpose against the product's worker with a cache; without this runner it
strands projects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import Worker, WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner

log = structlog.get_logger(__name__)

# The query id sdk-core gives a query the server sent outside a workflow task (`LEGACY_QUERY_ID` in sdk-core's
# worker/workflow module).
LEGACY_QUERY_ID = "legacy_query"


def answers_legacy_query(activation: WorkflowActivation) -> bool:
    """Whether the activation carries a query that came outside a workflow task."""
    return any(
        job.HasField("query_workflow") and job.query_workflow.query_id == LEGACY_QUERY_ID for job in activation.jobs
    )


class EvictAfterLegacyQuery(WorkflowRunner):
    """Wraps the worker's workflow runner (the sandbox) and evicts every run that answered a legacy query.

    `bind(worker)` must be called once the worker is built and before it runs; until then an activation that answers a
    legacy query raises `RuntimeError` (the SDK fails that query), so the guard can never be silently off.
    """

    def __init__(self, inner: WorkflowRunner) -> None:
        self.inner = inner
        self._evict: Callable[[str], None] | None = None
        self.evictions = 0

    def bind(self, worker: Worker) -> None:
        """Connects the runner to the worker's SDK core handle; raises `RuntimeError` if the SDK has no such handle."""
        core = getattr(worker, "_bridge_worker", None)
        request = getattr(core, "request_workflow_eviction", None)
        if not callable(request):
            raise RuntimeError(
                "this temporalio release has no Worker._bridge_worker.request_workflow_eviction: the worker cannot "
                "evict runs that answered a legacy query (alliance/query_isolation.py); keep the workflow cache off"
            )
        self._evict = request

    def evict(self, run_id: str) -> None:
        if self._evict is None:
            raise RuntimeError("EvictAfterLegacyQuery.bind was not called: the worker cannot evict runs")
        self._evict(run_id)
        self.evictions += 1

    def prepare_workflow(self, defn: Any) -> None:
        self.inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _Instance(self.inner.create_instance(det), self)

    def set_worker_level_failure_exception_types(self, types: Sequence[type[BaseException]]) -> None:
        self.inner.set_worker_level_failure_exception_types(types)


class _Instance(WorkflowInstance):
    def __init__(self, inner: WorkflowInstance, runner: EvictAfterLegacyQuery) -> None:
        self.inner = inner
        self.runner = runner

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        completion = self.inner.activate(act)
        if answers_legacy_query(act):
            self.runner.evict(act.run_id)
            info = self.inner.get_info()
            log.debug("run_evicted_after_legacy_query", run_id=act.run_id, workflow_id=info.workflow_id)
        return completion

    def get_serialization_context(self, command_info: Any) -> Any:
        return self.inner.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self.inner.get_external_store_context(command_info)

    def get_info(self) -> Any:
        return self.inner.get_info()

    def get_thread_id(self) -> int | None:
        return self.inner.get_thread_id()
