"""The admin path's hook into the morning agenda: after a driver is added, enabled, disabled or approved
from the CLI, ask the running stack to sync that driver's Schedule now. The CLI may run with Temporal
down; then the worker's reconciler does it when it runs (at start and every few minutes)."""

from __future__ import annotations

import asyncio
import logging

from temporalio.common import WorkflowIDConflictPolicy

from autodispatch.settings import Settings
from autodispatch.temporal import connect
from schemas.agenda import SyncAgendaInput

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0


async def request_agenda_sync(settings: Settings, tenant_id: str, chat_id: int) -> bool:
    """Start AgendaSyncWorkflow for the driver; False (and nothing else) if Temporal is not reachable."""
    from workflows.agenda import AgendaSyncWorkflow

    try:
        client = await asyncio.wait_for(connect(settings), timeout=CONNECT_TIMEOUT)
        await client.start_workflow(
            AgendaSyncWorkflow.run,
            SyncAgendaInput(tenant_id=tenant_id, chat_id=chat_id),
            id=f"agenda-sync-{tenant_id}-{chat_id}",
            task_queue=settings.temporal_task_queue,
            # A sync reads the row when it runs: a newer request replaces an older one still waiting.
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        )
    except (TimeoutError, RuntimeError, OSError) as exc:
        log.info("agenda schedule of %s/%s left to the reconciler: %s", tenant_id, chat_id, exc)
        return False
    return True
