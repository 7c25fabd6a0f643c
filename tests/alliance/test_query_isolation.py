"""The runner that evicts a workflow run after it answered a query outside a workflow task (no server: activations are
built by hand; the race itself, on a server, is tests/faults/test_query_runahead.py)."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.bridge.proto.workflow_activation import WorkflowActivation, WorkflowActivationJob
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner

from alliance.query_isolation import LEGACY_QUERY_ID, EvictAfterLegacyQuery, answers_legacy_query


def activation(*jobs: WorkflowActivationJob, run_id: str = "run-1") -> WorkflowActivation:
    return WorkflowActivation(run_id=run_id, jobs=list(jobs))


def query(query_id: str) -> WorkflowActivationJob:
    job = WorkflowActivationJob()
    job.query_workflow.query_id = query_id
    job.query_workflow.query_type = "status"
    return job


def activity_result() -> WorkflowActivationJob:
    job = WorkflowActivationJob()
    job.resolve_activity.seq = 1
    return job


class Inner(WorkflowInstance):
    def __init__(self) -> None:
        self.activations: list[WorkflowActivation] = []

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        self.activations.append(act)
        completion = WorkflowActivationCompletion(run_id=act.run_id)
        completion.successful.SetInParent()
        return completion

    def get_serialization_context(self, command_info: Any) -> Any:
        return None

    def get_external_store_context(self, command_info: Any) -> Any:
        return None

    def get_info(self) -> Any:
        return type("Info", (), {"workflow_id": "project-x"})()


class InnerRunner(WorkflowRunner):
    def __init__(self) -> None:
        self.prepared: list[Any] = []
        self.instance = Inner()

    def prepare_workflow(self, defn: Any) -> None:
        self.prepared.append(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return self.instance


class Core:
    def __init__(self) -> None:
        self.evicted: list[str] = []

    def request_workflow_eviction(self, run_id: str) -> None:
        self.evicted.append(run_id)


class FakeWorker:
    def __init__(self, core: Any) -> None:
        self._bridge_worker = core


def bound() -> tuple[EvictAfterLegacyQuery, Core, Inner]:
    inner = InnerRunner()
    runner = EvictAfterLegacyQuery(inner)
    core = Core()
    runner.bind(FakeWorker(core))  # type: ignore[arg-type]
    return runner, core, inner.instance


def test_a_legacy_query_is_recognised_by_its_query_id_alone() -> None:
    assert answers_legacy_query(activation(query(LEGACY_QUERY_ID)))
    assert answers_legacy_query(activation(activity_result(), query(LEGACY_QUERY_ID)))
    assert not answers_legacy_query(activation(query("7f3c2a")))  # a query that came with a workflow task
    assert not answers_legacy_query(activation(activity_result()))
    assert not answers_legacy_query(activation())


def test_the_run_that_answered_a_legacy_query_is_evicted_after_the_activation_ran() -> None:
    runner, core, inner = bound()
    instance = runner.create_instance(None)  # type: ignore[arg-type]
    act = activation(query(LEGACY_QUERY_ID), run_id="run-7")
    completion = instance.activate(act)
    assert inner.activations == [act]  # the query was answered
    assert completion.HasField("successful")
    assert core.evicted == ["run-7"]
    assert runner.evictions == 1


def test_tasks_and_queries_that_came_with_a_task_keep_their_run() -> None:
    runner, core, _ = bound()
    instance = runner.create_instance(None)  # type: ignore[arg-type]
    instance.activate(activation(activity_result()))
    instance.activate(activation(query("7f3c2a")))
    assert core.evicted == []


def test_an_unbound_runner_refuses_to_answer_a_legacy_query_from_a_cached_run() -> None:
    runner = EvictAfterLegacyQuery(InnerRunner())
    instance = runner.create_instance(None)  # type: ignore[arg-type]
    instance.activate(activation(activity_result()))  # no query: nothing to guard
    with pytest.raises(RuntimeError, match="bind was not called"):
        instance.activate(activation(query(LEGACY_QUERY_ID)))


def test_binding_to_an_sdk_without_the_core_handle_fails_loudly() -> None:
    runner = EvictAfterLegacyQuery(InnerRunner())
    with pytest.raises(RuntimeError, match="keep the workflow cache off"):
        runner.bind(FakeWorker(object()))  # type: ignore[arg-type]


def test_the_runner_delegates_preparation_to_the_sandbox_it_wraps() -> None:
    inner = InnerRunner()
    EvictAfterLegacyQuery(inner).prepare_workflow("definition")
    assert inner.prepared == ["definition"]
