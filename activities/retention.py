"""Retention: audit rows and sent replies (outbox) older than the configured days are deleted, in
batches, by the RetentionWorkflow its daily Schedule starts. Unsent replies are never deleted; the audit
log, append-only for the app role, is trimmed through `app_purge_audit` (migration 0011_b), which keeps
at least a day whatever it is asked."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from autodispatch.db import system_tx
from autodispatch.settings import Settings
from schemas.retention import RetentionInput, RetentionResult

# One run deletes at most this many batches per table; the rest is the next run's (heartbeats between).
MAX_BATCHES = 200


class RetentionActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    @activity.defn(name="apply_retention")
    async def apply_retention(self, req: RetentionInput) -> RetentionResult:
        s = self.settings
        result = RetentionResult(audit_days=s.audit_retention_days, outbox_days=s.outbox_retention_days)
        if s.audit_retention_days:
            result.audit_deleted, done = await self._batches(
                "SELECT app_purge_audit($1, $2)", s.audit_retention_days, req.batch
            )
            result.done &= done
        if s.outbox_retention_days:
            result.outbox_deleted, done = await self._batches(
                """WITH gone AS (
                       DELETE FROM outbox WHERE ctid = ANY (ARRAY(
                           SELECT ctid FROM outbox WHERE status = 'sent'
                              AND created_at < now() - make_interval(days => $1) LIMIT $2))
                       RETURNING 1)
                   SELECT count(*) FROM gone""",
                s.outbox_retention_days, req.batch,
            )  # fmt: skip
            result.done &= done
        # Strangers answered long ago, out of any dialogue: their rows only said "answered lately".
        async with system_tx(self.pool) as conn:
            status = await conn.execute(
                """DELETE FROM stranger_chats
                    WHERE answered_at < now() - make_interval(secs => $1)
                      AND (dialogue_until IS NULL OR dialogue_until < now())""",
                max(s.stranger_answer_every_hours, 1.0) * 3600.0,
            )
        result.strangers_deleted = int(status.split()[-1])
        return result

    async def _batches(self, sql: str, days: int, batch: int) -> tuple[int, bool]:
        total = 0
        for _ in range(MAX_BATCHES):
            async with system_tx(self.pool) as conn:
                gone = int(await conn.fetchval(sql, days, batch) or 0)
            total += gone
            activity.heartbeat(total)
            if gone < batch:
                return total, True
        return total, False
