"""Poison inputs: an update that fails the same way every time is set aside, not retried forever.

The edge retries a failed hand-over (polling keeps its offset, the webhook answers 503, the inbox relay
backs off) because most failures pass: Postgres or Temporal restarting, the network. Those are
*transient* and never count. Any other failure of the same update counts; after `max_attempts` the
update goes to `dead_letters` (autodispatch/dead_letters.py) with an audit row, and the offset, the
webhook and the relay move on. `autodispatch deadletter list | show ID | retry ID` is the operator's side;
a retried raw update is fed again here, by the running edge.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import asyncpg
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.types import Update
from temporalio.service import RPCError, RPCStatusCode

from autodispatch.dead_letters import DEFAULT_MAX_ATTEMPTS, DeadLetters

__all__ = ["DEFAULT_MAX_ATTEMPTS", "DeadLetters", "FailureCounts", "describe", "is_transient", "redeliver_loop",
           "redeliver_once"]  # fmt: skip

log = logging.getLogger(__name__)

_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncio.CancelledError,
    asyncpg.InterfaceError, asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError, asyncpg.TransactionRollbackError,
    TelegramNetworkError, TelegramServerError, TelegramRetryAfter,
)  # fmt: skip
_TRANSIENT_RPC = {
    RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED, RPCStatusCode.CANCELLED, RPCStatusCode.INTERNAL, RPCStatusCode.UNKNOWN,
}  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """A failure that says nothing about the update (a service away or busy): retry without counting."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(current, RPCError):
            return current.status in _TRANSIENT_RPC
        if isinstance(current, _TRANSIENT):
            return True
        current, seen = current.__cause__ or current.__context__, seen + 1
    return False


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class FailureCounts:
    """Non-transient failures per update, bounded (a webhook sees the same update again on redelivery)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._counts: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._limit = limit

    def add(self, key: tuple[int, int]) -> int:
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        while len(self._counts) > self._limit:
            self._counts.popitem(last=False)
        return count

    def forget(self, key: tuple[int, int]) -> None:
        self._counts.pop(key, None)


async def redeliver_once(dead: DeadLetters, dp: Dispatcher, bot: Bot) -> int:
    """Feed the updates an operator marked for retry; a failure puts the row back to dead with the new
    error (a transient one leaves it marked for the next round)."""
    done = 0
    for dead_id, payload in await dead.to_redeliver(bot.id):
        try:
            update = Update.model_validate(payload, context={"bot": bot})
            await dp.feed_update(bot, update)
        except Exception as exc:
            if not is_transient(exc):
                await dead.back_to_dead(dead_id, describe(exc))
            continue
        await dead.redelivered(dead_id)
        done += 1
    return done


async def redeliver_loop(dead: DeadLetters, dp: Dispatcher, bot: Bot, every: float = 5.0) -> None:
    while True:
        try:
            await redeliver_once(dead, dp, bot)
        except Exception as exc:  # the database away: the rows stay marked
            log.warning("dead letter redelivery failed (%s); next in %.0fs", exc, every)
        await asyncio.sleep(every)
