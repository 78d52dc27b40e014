"""Long polling that never loses an update: the offset moves past a batch only after every update in
it was handed to Temporal. (aiogram's own start_polling moves on even when a handler fails.)"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.types import Update

from bot.dispatcher import ALLOWED_UPDATES

log = logging.getLogger(__name__)


async def _hand_over_batch(dp: Dispatcher, bot: Bot, updates: list[Update], stop: asyncio.Event) -> bool:
    """Feed every update; retry the failed ones with backoff until all are in or we are stopping."""
    todo = updates
    delay = 0.2
    while todo and not stop.is_set():
        results = await asyncio.gather(*(dp.feed_update(bot, u) for u in todo), return_exceptions=True)
        failed = [u for u, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
        for u, r in zip(todo, results, strict=True):
            if isinstance(r, BaseException):
                log.warning("update %s not handed over yet (%s); retrying in %.1fs", u.update_id, r, delay)
        todo = failed
        if todo:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, 30.0)
    return not todo


async def poll_updates(dp: Dispatcher, bot: Bot, stop: asyncio.Event, *, timeout: int = 25) -> None:
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
        if not await _hand_over_batch(dp, bot, updates, stop):
            return  # stopping with updates not handed over: the offset stays, Telegram keeps them
        offset = updates[-1].update_id + 1
