"""The pending "your access is open" notices (#6): found in the whitelist, started as workflows, cleared."""

from __future__ import annotations

from temporalio import activity
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.schedules import OWN_BOT, WorkerStarts, reply_queue
from autodispatch.db import system_tx, tenant_tx
from schemas.access import (
    AccessNoticeInput,
    ClearAccessNoticeInput,
    StartAccessNoticesInput,
    access_notice_workflow_id,
)
from workflows.ids import CHAT_ID, TENANT_ID

ACCESS_NOTICE_WORKFLOW = "DriverApprovedWorkflow"


class AccessNoticeActivities(WorkerStarts):
    @activity.defn(name="start_access_notices")
    async def start_access_notices(self, req: StartAccessNoticesInput) -> int:
        """Start the notice workflow of each pending notice; returns how many were started now. Safe to
        repeat: the workflow id is the notice's token, and a finished one is not started again."""
        async with system_tx(self.pool) as conn:
            rows = await conn.fetch(
                f"""SELECT d.tenant_id, d.chat_id, d.access_notice, t.name, t.task_queue, {OWN_BOT}
                     FROM drivers d JOIN tenants t USING (tenant_id)
                    WHERE d.access_notice IS NOT NULL
                      AND ($1::text IS NULL OR d.tenant_id = $1) AND ($2::bigint IS NULL OR d.chat_id = $2)
                    ORDER BY d.updated_at LIMIT $3""",
                req.tenant_id, req.chat_id, req.limit,
            )  # fmt: skip
        started = 0
        for row in rows:
            try:
                await self.client.start_workflow(
                    ACCESS_NOTICE_WORKFLOW,
                    AccessNoticeInput(
                        tenant_id=row["tenant_id"],
                        chat_id=row["chat_id"],
                        token=row["access_notice"],
                        tenant_name=row["name"] or row["tenant_id"],
                        reply_task_queue=reply_queue(row, self.reply_task_queue),
                    ),  # fmt: skip
                    id=access_notice_workflow_id(row["access_notice"]),
                    task_queue=row["task_queue"] or self.default_task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    # One message per approval: a notice whose workflow completed is not sent again (its
                    # outbox row would stop a second send anyway); a failed or terminated one may rerun.
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(TENANT_ID, row["tenant_id"]),
                            SearchAttributePair(CHAT_ID, str(row["chat_id"])),
                        ]
                    ),
                    priority=Priority(fairness_key=row["tenant_id"]),
                )
                started += 1
            except WorkflowAlreadyStartedError:
                activity.logger.info("access notice %s already sent", row["access_notice"])
        return started

    @activity.defn(name="clear_access_notice")
    async def clear_access_notice(self, req: ClearAccessNoticeInput) -> bool:
        """Clear this notice (not a newer approval's). True if it was still pending."""
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            status = await conn.execute(
                """UPDATE drivers SET access_notice = NULL
                    WHERE tenant_id = $1 AND chat_id = $2 AND access_notice = $3""",
                req.tenant_id, req.chat_id, req.token,
            )  # fmt: skip
        return status.endswith(" 1")
