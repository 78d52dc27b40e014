"""DriverApprovedWorkflow: an admin approved a driver (CLI or API), so the driver hears it in Telegram.

The approval wrote a pending notice (a token) in the same transaction; this workflow, named by the
token, sends the one message through the bot's outbound queue and clears the notice. Started by the
worker's agenda sync right after the approval, or by the reconciler if Temporal was unreachable then.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.access import AccessNoticeActivities
    from autodispatch import texts
    from schemas.access import AccessNoticeInput, AccessNoticeResult, ClearAccessNoticeInput
    from schemas.audit import AuditEntry
    from schemas.telegram import SendReplyInput
    from workflows import policies, steps


@workflow.defn(name="DriverApprovedWorkflow")
class DriverApprovedWorkflow:
    @workflow.run
    async def run(self, req: AccessNoticeInput) -> AccessNoticeResult:
        lookup = await steps.lookup_driver(req.chat_id)
        driver = lookup.driver
        if driver is None or driver.tenant_id != req.tenant_id or driver.status != "active":
            # Disabled, removed or moved again before the message went out: nothing to announce.
            result = AccessNoticeResult(outcome="skipped", reason="driver_not_active")
        else:
            lang = driver.settings.language or "ru"
            try:
                sent = await steps.send_reply(
                    SendReplyInput(
                        tenant_id=req.tenant_id,
                        workflow_id=workflow.info().workflow_id,
                        step="access_opened",
                        chat_id=req.chat_id,
                        text=texts.t(lang, "access_opened", tenant=req.tenant_name or req.tenant_id),
                    ),
                    req.reply_task_queue,
                )
                result = AccessNoticeResult(outcome="notified", message_id=sent.message_id)
            except FailureError as err:
                # Blocked the bot, or Telegram refused for a day: audited, and not retried for ever.
                kind, _ = steps.error_type(err)
                result = AccessNoticeResult(outcome="failed", reason=kind or "error")
        await workflow.execute_local_activity_method(
            AccessNoticeActivities.clear_access_notice,
            ClearAccessNoticeInput(tenant_id=req.tenant_id, chat_id=req.chat_id, token=req.token),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )
        if driver is not None and driver.tenant_id == req.tenant_id:
            await steps.write_audit(
                [
                    AuditEntry(
                        tenant_id=req.tenant_id,
                        workflow_id=workflow.info().workflow_id,
                        step="access_notice",
                        action="driver_access_notice",
                        chat_id=req.chat_id,
                        outcome="ok" if result.outcome == "notified" else result.outcome,
                        details=result.model_dump(exclude_none=True),
                    )
                ]
            )
        return result
