"""Strangers at the edge: what a chat nobody whitelisted may cost us.

Every update of an unknown chat used to be stored, start a workflow, write audit rows and get a reply,
without limit. Here, before anything is stored, cheapest check first:

1. groups and channels are refused, unless the chat is whitelisted in a tenant that enabled groups;
2. a token bucket per unknown chat, then one for all unknown chats together (memory only);
3. an unknown chat is let through (and so answered) at most once per `answer_every`; a /start always
   passes and keeps the onboarding dialogue it opens reachable (`stranger_chats`, one upsert);
4. whatever is refused is counted, and written as one audit row per chat per window with the count.

A whitelisted driver's update never meets a bucket: it is stored as before, however many strangers
write at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from autodispatch import metrics
from autodispatch.db import SYSTEM_TENANT, system_tx
from autodispatch.settings import Settings
from schemas.telegram import TelegramUpdateReceived

log = logging.getLogger(__name__)

# How long a /start keeps the chat's later messages reachable: the onboarding dialogue's own limit.
DIALOGUE_SECONDS = 7 * 24 * 3600.0
# Memory bounds: beyond this many chats the least recently seen are forgotten (a fresh bucket is full,
# so forgetting one is generous to that chat, never to the flood: the global bucket still holds).
MAX_TRACKED_CHATS = 100_000
# Rows per flush of the denial tally; the chats beyond it are summed into one overflow row.
MAX_DENIAL_ROWS = 1_000


@dataclass(frozen=True)
class StrangerPolicy:
    chat_burst: int = 10
    chat_refill_seconds: float = 6.0
    global_burst: int = 50
    global_per_second: float = 10.0
    answer_every_seconds: float = 3 * 3600.0
    denial_window_seconds: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> StrangerPolicy:
        return cls(
            chat_burst=settings.stranger_chat_burst,
            chat_refill_seconds=settings.stranger_chat_refill_seconds,
            global_burst=settings.stranger_global_burst,
            global_per_second=settings.stranger_global_per_second,
            answer_every_seconds=settings.stranger_answer_every_hours * 3600.0,
            denial_window_seconds=settings.denial_window_seconds,
        )


@dataclass
class TokenBucket:
    capacity: float
    per_second: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:  # a new bucket starts full
            self.tokens, self.stamp = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _Denied:
    tenant_id: str
    chat_id: int | None
    window_start: float
    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)


class DenialTally:
    """Refusals counted in memory per key (a chat, an API caller) and written as one audit row per key
    per window, with the count and the reasons: a flood of a million messages is a handful of rows."""

    def __init__(self, pool: asyncpg.Pool, window_seconds: float, *, workflow_id: str = "edge") -> None:
        self.pool = pool
        self.window = window_seconds
        self.workflow_id = workflow_id
        self._open: dict[str, _Denied] = {}
        self._task: asyncio.Task[None] | None = None
        self.rows_written = 0

    def count(
        self, key: str, reason: str, *, tenant_id: str = SYSTEM_TENANT, chat_id: int | None = None,
        **details: Any,
    ) -> bool:  # fmt: skip
        """Count one refusal; True if it is the first of its key's window (a caller that writes the
        first one's own row at once, as the API does, then leaves the rest to the aggregate)."""
        entry = self._open.get(key)
        first = entry is None
        if entry is None:
            entry = self._open[key] = _Denied(tenant_id, chat_id, time.time(), details=details)
        entry.count += 1
        entry.reasons[reason] += 1
        return first

    @property
    def pending(self) -> int:
        return sum(e.count for e in self._open.values())

    async def flush(self, *, everything: bool = False) -> int:
        """Write the windows that have closed (all of them with `everything`); returns rows written."""
        now = time.time()
        done = {k: e for k, e in self._open.items() if everything or now - e.window_start >= self.window}
        if not done:
            return 0
        for key in done:
            del self._open[key]
        items = sorted(done.items(), key=lambda kv: -kv[1].count)
        rows, rest = items[:MAX_DENIAL_ROWS], items[MAX_DENIAL_ROWS:]
        records = [self._row(key, e) for key, e in rows]
        if rest:
            records.append(
                (SYSTEM_TENANT, self.workflow_id, f"denied-overflow:{now:.3f}", "denials_aggregated", None,
                 "denied", {"keys": len(rest), "count": sum(e.count for _, e in rest),
                            "window_seconds": self.window})
            )  # fmt: skip
        try:
            async with system_tx(self.pool) as conn:
                await conn.executemany(
                    """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, outcome, details)
                       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
                    records,
                )
        except (OSError, asyncpg.PostgresError) as exc:
            # The counts are lost, not the service: nothing else waits on these rows.
            log.warning("could not write %s aggregated denial rows: %s", len(records), exc)
            return 0
        self.rows_written += len(records)
        return len(records)

    def _row(self, key: str, e: _Denied) -> tuple[Any, ...]:
        start = datetime.fromtimestamp(e.window_start, UTC)
        return (
            e.tenant_id, self.workflow_id, f"denied:{key}:{e.window_start:.3f}", "denials_aggregated",
            e.chat_id, "denied",
            {"key": key, "count": e.count, "reasons": dict(e.reasons), "since": start.isoformat(),
             "window_seconds": self.window, **e.details},
        )  # fmt: skip

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"denials-{self.workflow_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        await self.flush(everything=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(min(self.window, 30.0))
            await self.flush()


def _is_start(received: TelegramUpdateReceived) -> bool:
    return received.kind == "command" and received.text.strip().split(maxsplit=1)[0].split("@")[0] == "/start"


class StrangerGate:
    """Decides, before an update is stored, whether it may cost a workflow (see the module's doc)."""

    def __init__(self, pool: asyncpg.Pool, policy: StrangerPolicy, tally: DenialTally) -> None:
        self.pool = pool
        self.policy = policy
        self.tally = tally
        self._global = TokenBucket(policy.global_burst, policy.global_per_second)
        self._chats: OrderedDict[int, TokenBucket] = OrderedDict()
        # Chats answered lately: refused from memory, without a database round trip.
        self._quiet_until: OrderedDict[int, float] = OrderedDict()
        self.admitted = 0

    async def admit(
        self, received: TelegramUpdateReceived, *, tenant_id: str | None, allow_groups: bool = False
    ) -> bool:
        chat_id = received.chat_id
        private = received.chat_type in (None, "private")
        if tenant_id is not None:  # whitelisted: never bucketed, never lost
            if private or allow_groups:
                return True
            self._deny(chat_id, "group_not_enabled", tenant_id=tenant_id, chat_type=received.chat_type)
            return False
        if not private:
            self._deny(chat_id, "not_private", chat_type=received.chat_type)
            return False
        now = time.monotonic()
        start = _is_start(received)
        if not start and self._quiet_until.get(chat_id, 0.0) > now:
            self._deny(chat_id, "answered_recently")
            return False
        if not self._bucket(chat_id).take(now):
            self._deny(chat_id, "chat_rate")
            return False
        if not self._global.take(now):
            self._deny(chat_id, "global_rate")
            return False
        admitted, in_dialogue, quiet_for = await self._claim(received, start)
        if not admitted:
            self._remember_quiet(chat_id, now + quiet_for)
            self._deny(chat_id, "answered_recently")
            return False
        if in_dialogue:
            self._quiet_until.pop(chat_id, None)
        else:
            self._remember_quiet(chat_id, now + self.policy.answer_every_seconds)
        self.admitted += 1
        return True

    async def _claim(self, received: TelegramUpdateReceived, start: bool) -> tuple[bool, bool, float]:
        """One upsert: may this chat be answered now? (admitted, in an onboarding dialogue, seconds
        until it may be answered again)."""
        async with system_tx(self.pool) as conn:
            row = await conn.fetchrow(
                """INSERT INTO stranger_chats AS s (bot_id, chat_id, answered_at, dialogue_until)
                   VALUES ($1, $2, now(), CASE WHEN $3 THEN now() + make_interval(secs => $5) END)
                   ON CONFLICT (tenant_id, bot_id, chat_id) DO UPDATE SET
                       dialogue_until = CASE WHEN $3 THEN EXCLUDED.dialogue_until ELSE s.dialogue_until END,
                       answered_at = CASE WHEN $3 OR s.dialogue_until > now()
                                               OR s.answered_at <= now() - make_interval(secs => $4)
                                          THEN now() ELSE s.answered_at END
                   RETURNING answered_at = now() AS admitted,
                             coalesce(dialogue_until > now(), false) AS in_dialogue,
                             greatest(0, extract(epoch FROM answered_at + make_interval(secs => $4) - now()))
                                 AS quiet_for""",
                received.bot_id, received.chat_id, start, self.policy.answer_every_seconds, DIALOGUE_SECONDS,
            )  # fmt: skip
        assert row is not None
        return bool(row["admitted"]), bool(row["in_dialogue"]), float(row["quiet_for"])

    def _bucket(self, chat_id: int) -> TokenBucket:
        bucket = self._chats.get(chat_id)
        if bucket is None:
            p = self.policy
            bucket = self._chats[chat_id] = TokenBucket(p.chat_burst, 1.0 / p.chat_refill_seconds)
            if len(self._chats) > MAX_TRACKED_CHATS:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat_id)
        return bucket

    def _remember_quiet(self, chat_id: int, until: float) -> None:
        self._quiet_until[chat_id] = until
        self._quiet_until.move_to_end(chat_id)
        if len(self._quiet_until) > MAX_TRACKED_CHATS:
            self._quiet_until.popitem(last=False)

    def _deny(self, chat_id: int, reason: str, *, tenant_id: str = SYSTEM_TENANT, **details: Any) -> None:
        metrics.stranger_denied(reason)
        self.tally.count(f"chat:{chat_id}", reason, tenant_id=tenant_id, chat_id=chat_id, **details)
