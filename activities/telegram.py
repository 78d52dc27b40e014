"""Telegram I/O through an outbox: each (workflow, step) reply is sent at most once.

The outbox row is locked for the duration of the send, so a retried attempt waits for the first one
and then sees it sent; a worker crash after the send, or an operator's reset/replay, finds the row
marked sent and does not send again. The only window left is a crash between Telegram's answer and
our commit (milliseconds); the Bot API offers no way to ask whether a message went out.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from datetime import timedelta

import asyncpg
from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.methods.base import Response
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autodispatch.db import tenant_tx
from autodispatch.texts import fit_telegram
from schemas.telegram import AnswerCallbackInput, EditCardInput, ReplySent, SendReplyInput

# aiogram validates every answer as Response[<result type>]; pydantic keeps parametrized generics only
# weakly, so without a strong reference the model is rebuilt on many calls (a sixth of the worker's
# CPU in the benchmark profile). Holding them here makes the cache hit.
_RESPONSE_MODELS = (Response[Message], Response[bool])


def telegram_failure(exc: TelegramAPIError) -> ApplicationError | None:
    """What a Telegram error means for a retry: 429 waits exactly Telegram's `retry_after`; a blocked
    bot, a rejected message or a bad token are permanent; network errors and 5xx stay retryable."""
    if isinstance(exc, TelegramRetryAfter):
        return ApplicationError(
            f"Telegram rate limit, retry after {exc.retry_after}s",
            type="TelegramRetryAfter",
            next_retry_delay=timedelta(seconds=exc.retry_after),
        )
    if isinstance(exc, TelegramForbiddenError):
        return ApplicationError(
            f"the driver blocked the bot or left the chat: {exc.message}",
            type="TelegramForbidden",
            non_retryable=True,
        )
    if isinstance(exc, TelegramBadRequest | TelegramNotFound):
        return ApplicationError(
            f"Telegram rejected the request: {exc.message}", type="TelegramBadRequest", non_retryable=True
        )
    if isinstance(exc, TelegramUnauthorizedError):
        return ApplicationError(
            "Telegram does not accept the bot token (AUTODISPATCH_TELEGRAM_BOT_TOKEN)",
            type="TelegramUnauthorized",
            non_retryable=True,
        )
    return None  # TelegramNetworkError, TelegramServerError: re-raised as they are, retried with backoff


def _keyboard(rows: list[list[dict[str, str]]] | None) -> InlineKeyboardMarkup | None:
    if not rows:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(**b) for b in row] for row in rows])


class SendPacer:
    """Telegram's limits as this process sees them: sends for the bot spaced at least 1/`per_second`
    apart (so no one-second window holds more than the budget), and `per_chat_interval` seconds between
    sends to one chat. The outbound task queue's server-side rate limit holds the budget across workers,
    but it is a token bucket that may burst; this pacer smooths the burst. A margin absorbs jitter."""

    MARGIN = 0.05

    def __init__(self, per_second: float = 0.0, per_chat_interval: float = 0.0) -> None:
        self.spacing = 1.0 / per_second * 1.02 if per_second > 0 else 0.0
        self.per_chat_interval = per_chat_interval
        self._slots: list[float] = []  # reserved send times, sorted
        self._chat_next: dict[int, float] = {}
        self._last_send = -1e9  # actual send times, checked by settle()
        self._last_chat_send: dict[int, float] = {}

    def reserve(self, chat_id: int, now: float) -> float:
        """The earliest free moment for this send, reserved. No await inside: atomic on the event loop."""
        at = max(now, self._chat_next.get(chat_id, 0.0))
        if self.spacing > 0:
            self._slots = self._slots[bisect.bisect_left(self._slots, now - self.spacing) :]
            for slot in self._slots:  # first gap of `spacing` on both sides at or after `at`
                if slot <= at - self.spacing:
                    continue
                if slot >= at + self.spacing:
                    break
                at = slot + self.spacing
            bisect.insort(self._slots, at)
        if self.per_chat_interval > 0:
            self._chat_next[chat_id] = at + self.per_chat_interval + self.MARGIN
            if len(self._chat_next) > 10_000:  # forget chats long past their slot
                self._chat_next = {c: t for c, t in self._chat_next.items() if t > now}
        return at

    async def wait(self, chat_id: int) -> None:
        now = time.monotonic()
        at = self.reserve(chat_id, now)
        if at > now:
            await asyncio.sleep(at - now)

    async def settle(self, chat_id: int) -> None:
        """Right before the send: the slot was reserved before the transaction, whose few milliseconds
        of jitter could bring two actual sends closer than allowed; wait out the remainder (ms)."""
        now = time.monotonic()
        gaps = [self.spacing - (now - self._last_send)]
        if self.per_chat_interval > 0:
            gaps.append(
                self.per_chat_interval + self.MARGIN - (now - self._last_chat_send.get(chat_id, -1e9))
            )
        if (delay := max(gaps)) > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        self._last_send = now
        self._last_chat_send[chat_id] = now
        if len(self._last_chat_send) > 10_000:
            self._last_chat_send = {c: t for c, t in self._last_chat_send.items() if t > now - 60}


class TelegramActivities:
    def __init__(self, bot: Bot, pool: asyncpg.Pool, pacer: SendPacer | None = None) -> None:
        self.bot = bot
        self.pool = pool
        self.pacer = pacer

    @activity.defn(name="send_reply")
    async def send_reply(self, req: SendReplyInput) -> ReplySent:
        text = fit_telegram(req.text)
        if self.pacer is not None:
            # Before the transaction: a send waiting for its slot must not hold a pooled connection
            # and the outbox row (in a burst that starved the flows' own database work).
            await self.pacer.wait(req.chat_id)
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            await conn.execute(
                """INSERT INTO outbox (tenant_id, workflow_id, step, chat_id, text) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (tenant_id, workflow_id, step) DO NOTHING""",
                req.tenant_id, req.workflow_id, req.step, req.chat_id, text,
            )  # fmt: skip
            row = await conn.fetchrow(
                """SELECT status, telegram_message_id FROM outbox
                    WHERE tenant_id = $1 AND workflow_id = $2 AND step = $3 FOR UPDATE""",
                req.tenant_id, req.workflow_id, req.step,
            )  # fmt: skip
            assert row is not None
            if row["status"] == "sent":
                return ReplySent(message_id=row["telegram_message_id"], already_sent=True)
            if self.pacer is not None:
                await self.pacer.settle(req.chat_id)
            message_id = await self._send(req, text)
            await conn.execute(
                """UPDATE outbox SET status = 'sent', telegram_message_id = $4, sent_at = now()
                    WHERE tenant_id = $1 AND workflow_id = $2 AND step = $3""",
                req.tenant_id, req.workflow_id, req.step, message_id,
            )  # fmt: skip
        return ReplySent(message_id=message_id)

    async def _send(self, req: SendReplyInput, text: str) -> int:
        reply_to = (
            ReplyParameters(message_id=req.reply_to_message_id, allow_sending_without_reply=True)
            if req.reply_to_message_id
            else None
        )
        try:
            msg = await self.bot.send_message(
                chat_id=req.chat_id,
                text=text,
                reply_parameters=reply_to,
                reply_markup=_keyboard(req.buttons),
            )
        except TelegramAPIError as exc:
            if (failure := telegram_failure(exc)) is None:
                raise
            raise failure from exc
        # Network errors and 5xx (TelegramNetworkError, TelegramServerError) propagate: retried.
        return msg.message_id

    @activity.defn(name="answer_callback")
    async def answer_callback(self, req: AnswerCallbackInput) -> None:
        try:
            await self.bot.answer_callback_query(
                req.callback_query_id, text=req.text or None, show_alert=req.show_alert
            )
        except TelegramBadRequest as exc:
            # "query is too old" / already answered: a retry or a late worker; nothing left to do.
            activity.logger.info("callback %s not answered: %s", req.callback_query_id, exc.message)

    @activity.defn(name="edit_card")
    async def edit_card(self, req: EditCardInput) -> None:
        """Edit in place; editing to the same content again (a retry) is done, not an error."""
        try:
            await self.bot.edit_message_text(
                text=fit_telegram(req.text), chat_id=req.chat_id, message_id=req.message_id,
                reply_markup=_keyboard(req.buttons),
            )  # fmt: skip
        except TelegramAPIError as exc:
            if isinstance(exc, TelegramBadRequest) and "not modified" in exc.message:
                return
            if (failure := telegram_failure(exc)) is None:
                raise
            raise failure from exc
