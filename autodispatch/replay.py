"""Replay a workflow history against today's code: the check before deploying a workflow change."""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from autodispatch.admin import AdminError
from autodispatch.settings import Settings, SettingsError
from autodispatch.temporal import connect, data_converter
from workers.worker import WORKFLOWS


def replayer(converter: DataConverter) -> Replayer:
    return Replayer(workflows=list(WORKFLOWS), data_converter=converter)


async def replay_history(history: WorkflowHistory, converter: DataConverter) -> tuple[bool, str]:
    """Encrypted payloads are opened with the configured keys; plain ones (older exports) pass."""
    result = await replayer(converter).replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return True, f"{history.workflow_id}: replays cleanly against the current code"
    return (
        False,
        f"{history.workflow_id}: NON-DETERMINISTIC against the current code: {result.replay_failure}",
    )


async def replay_file(path: str | Path, settings: Settings) -> tuple[bool, str]:
    p = Path(path)
    data = json.loads(p.read_text())
    workflow_id = data.get("workflowId") or data.get("workflow_id") or p.stem
    history = WorkflowHistory.from_json(workflow_id, data.get("history", data))
    return await replay_history(history, data_converter(settings, required=False))


async def replay_workflow_id(settings: Settings, workflow_id: str) -> tuple[bool, str]:
    try:
        client = await connect(settings)
    except RuntimeError as exc:
        raise SettingsError(
            f"configuration error: AUTODISPATCH_TEMPORAL_ADDRESS: cannot reach Temporal at "
            f"{settings.temporal_address or f'127.0.0.1:{settings.temporal_grpc_port}'}: {exc}"
        ) from exc
    try:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        where = settings.temporal_address or "the embedded dev server"
        raise AdminError(f"no workflow {workflow_id!r} in Temporal ({where})") from exc
    return await replay_history(history, client.data_converter)
