"""The `dead_letters` table: updates set aside after failing again and again (bot/dead_letters.py
decides when), and the operator's side of it (`autodispatch deadletter list | show | retry`).

source 'polling' / 'webhook': the raw Telegram update, fed again by the running edge after a retry;
'inbox': the stored inbox row, put back into telegram_inbox by a retry. The system context throughout:
a raw update's tenant is not known yet.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import asyncpg

from autodispatch.db import SYSTEM_TENANT, system_tx

log = logging.getLogger(__name__)

Source = Literal["polling", "webhook", "inbox"]
DEFAULT_MAX_ATTEMPTS = 10


async def _audit(conn: asyncpg.Connection, tenant_id: str, action: str, dead_id: int, **details: Any) -> None:
    await conn.execute(
        """INSERT INTO audit_log (tenant_id, workflow_id, step, action, outcome, details)
           VALUES ($1, 'dead-letter', 'dead-letter-' || gen_random_uuid()::text, $2, $3, $4)""",
        tenant_id, action, "error" if action == "update_dead_lettered" else "ok",
        {"dead_letter_id": dead_id, **details},
    )  # fmt: skip


_BURY = """INSERT INTO dead_letters (tenant_id, source, bot_id, update_id, payload, attempts, last_error)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (tenant_id, source, bot_id, update_id) DO UPDATE
              SET status = 'dead', payload = EXCLUDED.payload, last_error = EXCLUDED.last_error,
                  attempts = dead_letters.attempts + EXCLUDED.attempts, updated_at = now()
           RETURNING id"""


class DeadLetters:
    """The `dead_letters` table; `max_attempts`: how many failures of its own set an update aside."""

    def __init__(self, pool: asyncpg.Pool, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.pool = pool
        self.max_attempts = max_attempts

    async def bury_update(
        self, source: Source, bot_id: int, update: dict[str, Any], attempts: int, error: str
    ) -> int:
        """A raw update (polling, webhook) set aside; raises if it could not be stored (keep retrying)."""
        update_id = int(update.get("update_id") or 0)
        async with system_tx(self.pool) as conn:
            dead_id = int(
                await conn.fetchval(_BURY, SYSTEM_TENANT, source, bot_id, update_id, update, attempts, error)
            )
            await _audit(conn, SYSTEM_TENANT, "update_dead_lettered", dead_id, source=source, bot_id=bot_id,
                         update_id=update_id, attempts=attempts, error=error)  # fmt: skip
        log.error("update %s of bot %s set aside as dead letter %s after %s attempts: %s",
                  update_id, bot_id, dead_id, attempts, error)  # fmt: skip
        return dead_id

    async def bury_inbox_row(self, key: tuple[str, int, int], attempts: int, error: str) -> int | None:
        """An inbox row the relay can never hand over: moved here in one transaction (None: gone)."""
        tenant_id, bot_id, update_id = key
        async with system_tx(self.pool) as conn:
            row = await conn.fetchrow(
                """DELETE FROM telegram_inbox WHERE tenant_id = $1 AND bot_id = $2 AND update_id = $3
                   RETURNING workflow, task_queue, received, created_at""",
                tenant_id, bot_id, update_id,
            )  # fmt: skip
            if row is None:
                return None
            payload = {
                "workflow": row["workflow"], "task_queue": row["task_queue"], "received": row["received"],
                "created_at": row["created_at"].isoformat(),
            }  # fmt: skip
            dead_id = int(
                await conn.fetchval(_BURY, tenant_id, "inbox", bot_id, update_id, payload, attempts, error)
            )
            await _audit(conn, tenant_id, "update_dead_lettered", dead_id, source="inbox", bot_id=bot_id,
                         update_id=update_id, attempts=attempts, error=error)  # fmt: skip
        log.error("inbox row %s/%s/%s set aside as dead letter %s: %s", *key, dead_id, error)
        return dead_id

    async def to_redeliver(self, bot_id: int, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """Raw updates an operator asked to retry, for the running edge to feed again."""
        async with system_tx(self.pool) as conn:
            rows = await conn.fetch(
                """SELECT id, payload FROM dead_letters WHERE tenant_id = $1 AND status = 'retry'
                     AND bot_id = $2 AND source IN ('polling', 'webhook') ORDER BY id LIMIT $3""",
                SYSTEM_TENANT, bot_id, limit,
            )  # fmt: skip
        return [(int(r["id"]), r["payload"]) for r in rows]

    async def redelivered(self, dead_id: int) -> None:
        async with system_tx(self.pool) as conn:
            await conn.execute(
                "UPDATE dead_letters SET status = 'retried', updated_at = now() WHERE tenant_id = $1 AND id = $2",
                SYSTEM_TENANT, dead_id,
            )  # fmt: skip
            await _audit(conn, SYSTEM_TENANT, "dead_letter_redelivered", dead_id)

    async def back_to_dead(self, dead_id: int, error: str) -> None:
        async with system_tx(self.pool) as conn:
            await conn.execute(
                """UPDATE dead_letters SET status = 'dead', attempts = attempts + 1, last_error = $3,
                          updated_at = now() WHERE tenant_id = $1 AND id = $2""",
                SYSTEM_TENANT, dead_id, error,
            )  # fmt: skip
            await _audit(conn, SYSTEM_TENANT, "update_dead_lettered", dead_id, error=error, retried=True)


# -- the operator's side -----------------------------------------------------------------------
class DeadLetterError(Exception):
    """An operator's request that cannot be done (unknown id, already retried): one line."""


async def list_dead_letters(
    pool: asyncpg.Pool, *, status: str | None = "dead", limit: int = 100
) -> list[dict[str, Any]]:
    async with system_tx(pool) as conn:
        rows = await conn.fetch(
            """SELECT id, tenant_id, source, bot_id, update_id, attempts, last_error, status, created_at,
                      updated_at FROM dead_letters WHERE ($1::text IS NULL OR status = $1)
               ORDER BY id DESC LIMIT $2""",
            status, limit,
        )  # fmt: skip
    return [dict(r) for r in rows]


async def get_dead_letter(pool: asyncpg.Pool, dead_id: int) -> dict[str, Any]:
    async with system_tx(pool) as conn:
        row = await conn.fetchrow("SELECT * FROM dead_letters WHERE id = $1", dead_id)
    if row is None:
        raise DeadLetterError(f"no dead letter {dead_id}")
    return dict(row)


async def retry_dead_letter(pool: asyncpg.Pool, dead_id: int, *, actor: str) -> str:
    """An inbox row goes back into telegram_inbox (the relay's sweep hands it over); a raw update is
    marked for the running edge to feed again. Returns what was done."""
    async with system_tx(pool) as conn:
        row = await conn.fetchrow("SELECT * FROM dead_letters WHERE id = $1 FOR UPDATE", dead_id)
        if row is None:
            raise DeadLetterError(f"no dead letter {dead_id}")
        if row["status"] != "dead":
            raise DeadLetterError(f"dead letter {dead_id} was retried already (status {row['status']})")
        if row["source"] == "inbox":
            p = row["payload"]
            await conn.execute(
                """INSERT INTO telegram_inbox (tenant_id, bot_id, update_id, workflow, task_queue, received)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                row["tenant_id"], row["bot_id"], row["update_id"], p["workflow"], p.get("task_queue"), p["received"],
            )  # fmt: skip
            status, done = "retried", "put back into the inbox; the relay hands it over"
        else:
            status, done = "retry", "marked for the running bot to feed again"
        await conn.execute(
            "UPDATE dead_letters SET status = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
            row["tenant_id"], dead_id, status,
        )  # fmt: skip
        await _audit(
            conn, row["tenant_id"], "dead_letter_retried", dead_id, actor=actor, source=row["source"]
        )
    return done
