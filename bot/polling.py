"""Long polling that never loses an update: the offset moves past a batch only after every update in
it was handed to Temporal, or set aside as a dead letter after failing `max_attempts` times for
reasons of its own (bot/dead_letters.py). (aiogram's own start_polling moves on even when a handler
fails.)"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.types import Update

from bot.dead_letters import DeadLetters, FailureCounts, describe, is_transient
from bot.dispatcher import ALLOWED_UPDATES
from schemas.telegram import id_out_of_range

log = logging.getLogger(__name__)


async def _set_aside(dead: DeadLetters, bot: Bot, update: Update, attempts: int, error: str) -> bool:
    try:
        await dead.bury_update(
            "polling", bot.id, update.model_dump(mode="json", exclude_none=True), attempts, error
        )
    except Exception as exc:  # not stored: it stays in the batch, the offset stays
        log.warning("update %s could not be set aside (%s); retrying it", update.update_id, exc)
        return False
    return True


async def _hand_over_batch(
    dp: Dispatcher, bot: Bot, updates: list[Update], stop: asyncio.Event, dead: DeadLetters | None = None
) -> bool:
    """Feed every update; retry the failed ones with backoff until all are in (or set aside) or we are
    stopping."""
    todo = updates
    if dead is not None:
        todo = []
        for u in updates:
            problem = id_out_of_range(u.model_dump(mode="json", exclude_none=True))
            if problem is None or not await _set_aside(dead, bot, u, 0, f"not a Telegram update: {problem}"):
                todo.append(u)
    failures = FailureCounts()
    delay = 0.2
    while todo and not stop.is_set():
        results = await asyncio.gather(*(dp.feed_update(bot, u) for u in todo), return_exceptions=True)
        failed: list[Update] = []
        for u, r in zip(todo, results, strict=True):
            if not isinstance(r, BaseException):
                continue
            if dead is not None and not is_transient(r):
                attempts = failures.add((bot.id, u.update_id))
                if attempts >= dead.max_attempts and await _set_aside(dead, bot, u, attempts, describe(r)):
                    continue
            log.warning("update %s not handed over yet (%s); retrying in %.1fs", u.update_id, r, delay)
            failed.append(u)
        todo = failed
        if todo:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, 30.0)
    return not todo


async def poll_updates(
    dp: Dispatcher, bot: Bot, stop: asyncio.Event, *, timeout: int = 25, dead: DeadLetters | None = None
) -> None:
    # Never drop_pending_updates: those are orders.
    await bot.delete_webhook(drop_pending_updates=False)
    offset: int | None = None
    backoff = 0.5
    while not stop.is_set():
        try:
            updates = await bot.get_updates(offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES)
            backoff = 0.5
        except TelegramRetryAfter as exc:
            await asyncio.sleep(exc.retry_after)
            continue
        except (TelegramNetworkError, TelegramServerError) as exc:
            log.warning("getUpdates failed (%s); retrying in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        if not updates:
            continue
        if not await _hand_over_batch(dp, bot, updates, stop, dead):
            return  # stopping with updates not handed over: the offset stays, Telegram keeps them
        offset = updates[-1].update_id + 1
