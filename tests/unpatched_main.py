"""A MainWorkflow changed without workflow.patched(): it now waits a second before the whitelist lookup
(say, to debounce a burst of messages). Used by the negative replay test, which must report it as
non-deterministic against histories recorded before the change."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.store import StoreActivities
    from schemas.driver import LookupDriverInput
    from schemas.flow import MainResult
    from schemas.telegram import TelegramUpdateReceived


@workflow.defn(name="MainWorkflow")
class MainWorkflowWithoutPatch:
    @workflow.run
    async def run(self, update: TelegramUpdateReceived) -> MainResult:
        await workflow.sleep(timedelta(seconds=1))
        await workflow.execute_local_activity_method(
            StoreActivities.lookup_driver,
            LookupDriverInput(chat_id=update.chat_id),
            start_to_close_timeout=timedelta(seconds=5),
        )
        return MainResult(outcome="not_an_order")
