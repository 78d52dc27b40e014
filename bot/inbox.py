"""The edge's durable inbox and its relay to Temporal.

A webhook (or a polling batch) is acknowledged once its update is committed in PostgreSQL, a few
milliseconds, instead of once Temporal has started its workflow. The relay then hands the stored
updates to Temporal, one tenant's turn after another's: a quiet fleet's order goes ahead of the
2,000 queued behind a flooding fleet, where Telegram's own queue (one FIFO per bot) would have made it
wait for all of them. Exactly once still holds end to end: the hand-over is idempotent (the workflow id
is the update's, REJECT_DUPLICATE), so a row handed over twice — a crash before its delete, two edge
processes sweeping the same row — starts one workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from pydantic import ValidationError

from autodispatch.db import system_tx, tenant_tx
from bot.dead_letters import DEFAULT_MAX_ATTEMPTS, DeadLetters, describe, is_transient
from schemas.telegram import TelegramUpdateReceived

log = logging.getLogger(__name__)

InboxKey = tuple[str, int, int]  # (tenant_id, bot_id, update_id)


@dataclass
class InboxItem:
    """One stored update and the flow that will take it."""

    tenant_id: str
    received: TelegramUpdateReceived
    workflow: str = "MainWorkflow"
    task_queue: str | None = None
    attempts: int = 0
    # Failures of this process's hand-overs that were not a service away (bot/dead_letters.py).
    failures: int = 0
    # The whitelist's view at arrival, for the workflow's memo (not stored: a swept row goes without).
    driver_name: str | None = None
    calendar_id: str | None = None
    # The webhook request's trace context, so the flow's spans join its trace (in-process hand-overs).
    trace_context: object | None = None

    @property
    def key(self) -> InboxKey:
        return (self.tenant_id, self.received.bot_id, self.received.update_id)


class Inbox:
    """The `telegram_inbox` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(self, item: InboxItem) -> bool:
        """Commit the update; False if it was already stored (Telegram delivered it again)."""
        async with tenant_tx(self.pool, item.tenant_id) as conn:
            stored = await conn.fetchval(
                """INSERT INTO telegram_inbox (tenant_id, bot_id, update_id, workflow, task_queue, received)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true""",
                item.tenant_id, item.received.bot_id, item.received.update_id, item.workflow,
                item.task_queue, item.received.model_dump(mode="json"),
            )  # fmt: skip
        return bool(stored)

    async def remove(self, keys: list[InboxKey]) -> None:
        if not keys:
            return
        tenants, bots, updates = (list(column) for column in zip(*keys, strict=True))
        async with system_tx(self.pool) as conn:
            await conn.execute(
                """DELETE FROM telegram_inbox i USING unnest($1::text[], $2::bigint[], $3::bigint[])
                       AS k(tenant_id, bot_id, update_id)
                   WHERE i.tenant_id = k.tenant_id AND i.bot_id = k.bot_id AND i.update_id = k.update_id""",
                tenants, bots, updates,
            )  # fmt: skip

    async def postpone(self, key: InboxKey, error: str, delay: float) -> None:
        async with system_tx(self.pool) as conn:
            await conn.execute(
                """UPDATE telegram_inbox SET attempts = attempts + 1, last_error = $4,
                          next_attempt_at = now() + make_interval(secs => $5)
                   WHERE tenant_id = $1 AND bot_id = $2 AND update_id = $3""",
                *key, error[:500], delay,
            )  # fmt: skip

    async def due(self, bot_ids: list[int], *, older_than: float, limit: int = 1000) -> list[InboxItem]:
        """These bots' stored updates nobody is handing over: left by a crash, or by another process."""
        async with system_tx(self.pool) as conn:
            rows = await conn.fetch(
                """SELECT tenant_id, bot_id, update_id, workflow, task_queue, received, attempts FROM telegram_inbox
                   WHERE bot_id = ANY($1::bigint[]) AND next_attempt_at <= now()
                     AND created_at <= now() - make_interval(secs => $2)
                   ORDER BY created_at LIMIT $3""",
                bot_ids, older_than, limit,
            )  # fmt: skip
        items = []
        for r in rows:
            try:
                received = TelegramUpdateReceived.model_validate(r["received"])
            except ValidationError as exc:
                # Never readable by this code: set aside, or the sweep would fail on it every round.
                key = (r["tenant_id"], r["bot_id"], r["update_id"])
                await DeadLetters(self.pool).bury_inbox_row(key, r["attempts"], describe(exc))
                continue
            items.append(
                InboxItem(
                    tenant_id=r["tenant_id"],
                    received=received,
                    workflow=r["workflow"],
                    task_queue=r["task_queue"],
                    attempts=r["attempts"],
                )  # fmt: skip
            )
        return items

    async def count(self) -> int:
        async with system_tx(self.pool) as conn:
            return int(await conn.fetchval("SELECT count(*) FROM telegram_inbox"))


HandOver = Callable[[InboxItem], Awaitable[object]]
Settle = Callable[[InboxItem], Awaitable[object]]


@dataclass
class TenantTurns:
    """Queued updates per tenant, served in turn: one of each tenant's, then the next of each."""

    queues: dict[str, deque[InboxItem]] = field(default_factory=dict)
    turns: deque[str] = field(default_factory=deque)

    def push(self, item: InboxItem) -> None:
        queue = self.queues.get(item.tenant_id)
        if queue is None:
            queue = self.queues[item.tenant_id] = deque()
            self.turns.append(item.tenant_id)
        queue.append(item)

    def pop(self) -> InboxItem | None:
        if not self.turns:
            return None
        tenant = self.turns.popleft()
        queue = self.queues[tenant]
        item = queue.popleft()
        if queue:
            self.turns.append(tenant)
        else:
            del self.queues[tenant]
        return item

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())


class InboxRelay:
    """Hands stored updates to Temporal: `concurrency` flows at a time, tenants in turn, deletes in batches.

    Updates this process stored are pushed to it directly; a sweep every `sweep_every` seconds (and
    one at start) picks up what a crash or another process left behind for the bots it serves. A hand-over Temporal refuses
    is retried with backoff, its attempts counted in the row.
    """

    def __init__(
        self,
        inbox: Inbox,
        hand_over: HandOver,
        bot_ids: list[int],
        *,
        settle: Settle | None = None,
        settle_cap: float = 10.0,
        concurrency: int = 16,
        sweep_every: float = 5.0,
        retry_max: float = 30.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.inbox = inbox
        self.hand_over = hand_over
        self.bot_ids = bot_ids
        self.settle = settle
        self.settle_cap = settle_cap
        self.concurrency = concurrency
        self.sweep_every = sweep_every
        self.retry_max = retry_max
        self.dead = DeadLetters(inbox.pool, max_attempts)
        self._turns = TenantTurns()
        self._known: set[InboxKey] = set()  # queued, in flight, waiting for a retry or for its delete
        self._handed: list[InboxKey] = []
        self._work = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.TimerHandle] = set()
        self.handed_over = 0

    def push(self, item: InboxItem) -> None:
        if item.key in self._known:
            return
        self._known.add(item.key)
        self._turns.push(item)
        self._work.set()

    @property
    def backlog(self) -> int:
        return len(self._turns)

    async def start(self) -> None:
        await self._sweep(older_than=0.0)
        self._tasks = [
            asyncio.create_task(self._serve(), name=f"inbox-relay-{i}") for i in range(self.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="inbox-relay-flush"))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="inbox-relay-sweep"))

    async def stop(self) -> None:
        for handle in self._retries:
            handle.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._flush()

    async def _serve(self) -> None:
        while True:
            item = self._turns.pop()
            if item is None:
                self._work.clear()
                await self._work.wait()
                continue
            try:
                await self.hand_over(item)
            except Exception as exc:  # Temporal unreachable or refusing: keep the row, try again later
                await self._retry_later(item, exc)
                continue
            self.handed_over += 1
            self._handed.append(item.key)
            if len(self._handed) >= 64:
                self._flush_now.set()
            if self.settle is not None:
                # Admission: this slot waits until its flow is done (or `settle_cap`), so at most
                # `concurrency` flows run at once and the next slot goes to the next tenant in turn.
                # Handing a flood over at once would queue it inside Temporal, where the workflow tasks
                # after the first (the worker's sticky queue) wait first come, first served.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.settle(item), timeout=self.settle_cap)

    async def _retry_later(self, item: InboxItem, exc: Exception) -> None:
        item.attempts += 1
        if not is_transient(exc):
            item.failures += 1
            if item.failures >= self.dead.max_attempts:
                try:
                    await self.dead.bury_inbox_row(item.key, item.attempts, describe(exc))
                except Exception as bury_exc:  # not set aside: it stays in the inbox and is retried
                    log.warning("inbox row %s could not be set aside (%s)", item.key, bury_exc)
                else:
                    self._known.discard(item.key)
                    return
        delay = min(0.2 * 2 ** min(item.attempts, 10), self.retry_max)
        log.warning(
            "update %s not handed over (attempt %s: %s); again in %.1fs",
            item.received.update_id, item.attempts, exc, delay,
        )  # fmt: skip
        with contextlib.suppress(Exception):  # the row keeps its update either way
            await self.inbox.postpone(item.key, f"{type(exc).__name__}: {exc}", delay)

        def again() -> None:
            self._retries.discard(handle)
            self._known.discard(item.key)
            self.push(item)

        handle = asyncio.get_running_loop().call_later(delay, again)
        self._retries.add(handle)

    async def _flush(self) -> None:
        keys, self._handed = self._handed, []
        try:
            await self.inbox.remove(keys)
        except Exception:
            # Still handed over: a later sweep hands them over again, which starts nothing new.
            log.warning("could not delete %s handed-over inbox rows; a sweep will retire them", len(keys))
        self._known.difference_update(keys)

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), timeout=0.05)
            self._flush_now.clear()
            if self._handed:
                await self._flush()

    async def _sweep(self, *, older_than: float) -> None:
        for item in await self.inbox.due(self.bot_ids, older_than=older_than):
            self.push(item)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            started = time.monotonic()
            try:
                # Rows younger than a sweep may be another live process's: leave them to it.
                await self._sweep(older_than=self.sweep_every)
            except Exception as exc:
                log.warning("inbox sweep failed (%s); next in %.0fs", exc, self.sweep_every)
            log.debug("inbox sweep took %.3fs", time.monotonic() - started)
