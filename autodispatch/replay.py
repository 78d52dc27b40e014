"""Replay a workflow history against today's code: the check before deploying a workflow change."""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from autodispatch.admin import AdminError
from autodispatch.settings import Settings
from autodispatch.temporal import connect
from workers.worker import WORKFLOWS


def replayer() -> Replayer:
    return Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)


async def replay_history(history: WorkflowHistory) -> tuple[bool, str]:
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return True, f"{history.workflow_id}: replays cleanly against the current code"
    return (
        False,
        f"{history.workflow_id}: NON-DETERMINISTIC against the current code: {result.replay_failure}",
    )


async def replay_file(path: str | Path) -> tuple[bool, str]:
    p = Path(path)
    data = json.loads(p.read_text())
    workflow_id = data.get("workflowId") or data.get("workflow_id") or p.stem
    history = WorkflowHistory.from_json(workflow_id, data.get("history", data))
    return await replay_history(history)


async def replay_workflow_id(settings: Settings, workflow_id: str) -> tuple[bool, str]:
    client = await connect(settings)
    try:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        where = settings.temporal_address or "the embedded dev server"
        raise AdminError(f"no workflow {workflow_id!r} in Temporal ({where})") from exc
    return await replay_history(history)
