"""Retention: once a day its Schedule starts this flow, which deletes audit rows and sent replies older
than AUDIT_RETENTION_DAYS / OUTBOX_RETENTION_DAYS (activities/retention.py)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.retention import RetentionActivities
    from schemas.retention import RetentionInput, RetentionResult

RETENTION_EVERY = timedelta(hours=24)
RETENTION_SCHEDULE_ID = "retention"
RETENTION_TIMEOUT = timedelta(minutes=30)
RETENTION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=5)
)


@workflow.defn(name="RetentionWorkflow")
class RetentionWorkflow:
    @workflow.run
    async def run(self, req: RetentionInput) -> RetentionResult:
        return await workflow.execute_activity_method(
            RetentionActivities.apply_retention,
            req,
            start_to_close_timeout=RETENTION_TIMEOUT,
            heartbeat_timeout=timedelta(minutes=2),
            schedule_to_close_timeout=timedelta(hours=6),
            retry_policy=RETENTION_RETRY,
        )
