"""The test fixtures' own promises: what a test leaves running on the shared time-skipping server ends
with it, so it cannot stall the next test's clock."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.conftest import StartedWorkflows, end_started_workflows


@workflow.defn(name="TestLeftBehind")
class LeftBehind:
    """What an unfinished test leaves: a workflow waiting a day on a timer."""

    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(timedelta(days=1))


async def test_teardown_terminates_what_the_test_left_running(
    time_skipping_server: tuple[WorkflowEnvironment, StartedWorkflows], task_queue: str
) -> None:
    env, started = time_skipping_server
    # Unsandboxed: the sandbox would re-import this test module and its fixtures for the tiny workflow.
    async with Worker(
        env.client, task_queue=task_queue, workflows=[LeftBehind], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        handle = await env.client.start_workflow(
            LeftBehind.run, id=f"left-{uuid.uuid4()}", task_queue=task_queue
        )
        assert handle.id in [h.id for h in started.handles]  # every start is remembered
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert await end_started_workflows(started) == [handle.id]
        assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
        assert started.handles == []
