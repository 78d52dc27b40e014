"""Telegram I/O through an outbox: each (workflow, step) reply is sent at most once.

The outbox row is locked for the duration of the send, so a retried attempt waits for the first one
and then sees it sent; a worker crash after the send, or an operator's reset/replay, finds the row
marked sent and does not send again. A commit that fails after Telegram took the message (the database
went away meanwhile) leaves the message id with the worker, and its retry records that message instead
of sending another. The only window left is a worker crash between Telegram's answer and our commit
(milliseconds); the Bot API offers no way to ask whether a message went out.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
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

from autodispatch import metrics
from autodispatch.db import tenant_tx
from autodispatch.texts import fit_telegram
from schemas.telegram import AnswerCallbackInput, EditCardInput, ReplySent, SendReplyInput

# aiogram validates every answer as Response[<result type>]; pydantic keeps parametrized generics only
# weakly, so without a strong reference the model is rebuilt on many calls (a sixth of the worker's
# CPU in the benchmark profile). Holding them here makes the cache hit.
_RESPONSE_MODELS = (Response[Message], Response[bool])

# A paused bot's send is tried again this often (its outbound worker is stopped meanwhile, so the
# retry waits in the queue until the bot is served again).
BOT_PAUSED_RETRY = timedelta(minutes=1)


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
    """Telegram's limits as this process sees them: at most `per_second` sends for the bot in any one
    second and `per_chat_interval` seconds between two sends to one chat. The outbound task queue's
    server-side rate limit holds the budget across workers, but it is a token bucket that may burst;
    this pacer smooths the burst.

    Two steps. `wait()` reserves a slot before the outbox transaction, so a burst is spread out without
    holding pooled connections. `sending()` wraps the HTTP call itself and is what keeps Telegram from
    ever seeing too much: Telegram counts a message when *it* receives it, somewhere between our send's
    start and its answer, and on a busy machine a request can sit in a socket for a while. So a send
    starts only when every earlier send that could share its one-second window (still in flight, or
    answered less than a second ago) leaves room, and a chat's next send starts only a full interval
    after its previous one was answered. Whatever the delays, Telegram's own clocks then see the spacing.
    """

    MARGIN = 0.05

    def __init__(self, per_second: float = 0.0, per_chat_interval: float = 0.0) -> None:
        self.spacing = 1.0 / per_second * 1.02 if per_second > 0 else 0.0
        self.budget = max(1, math.floor(per_second)) if per_second > 0 else 0
        self.per_chat_interval = per_chat_interval
        self._slots: list[float] = []  # reserved send times, sorted
        self._chat_next: dict[int, float] = {}
        self._in_flight = 0
        self._chat_in_flight: set[int] = set()
        self._answered: deque[float] = deque()  # answer times of sends in the last second
        self._chat_answered: dict[int, float] = {}

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
        metrics.send_budget_wait(max(0.0, at - now))
        if at > now:
            await asyncio.sleep(at - now)

    def delay(self, chat_id: int, now: float) -> float:
        """How long this send must still wait (0: it may start now). A send in flight blocks its chat and
        a place in the bot's budget until answered; 10 ms is the poll while one is."""
        waits = [0.0]
        if self.budget:
            while self._answered and self._answered[0] <= now - 1.0:
                self._answered.popleft()
            if self._in_flight + len(self._answered) >= self.budget:
                oldest = len(self._answered) + self._in_flight - self.budget
                waits.append(self._answered[oldest] + 1.0 - now if oldest < len(self._answered) else 0.01)
        if self.per_chat_interval > 0:
            if chat_id in self._chat_in_flight:
                waits.append(0.01)
            elif (last := self._chat_answered.get(chat_id)) is not None:
                waits.append(last + self.per_chat_interval + self.MARGIN - now)
        return max(waits)

    @asynccontextmanager
    async def sending(self, chat_id: int) -> AsyncIterator[None]:
        """Around the HTTP call to Telegram: starts it when the limits allow, records its answer."""
        # A deadline to sleep until, re-checked after: an Event would need a timer to set it anyway.
        started = time.monotonic()
        while (pause := self.delay(chat_id, time.monotonic())) > 0:  # noqa: ASYNC110
            await asyncio.sleep(pause)
        metrics.send_budget_wait(time.monotonic() - started)
        # No await between the check above and these: atomic on the event loop.
        self._in_flight += 1
        self._chat_in_flight.add(chat_id)
        try:
            yield
        finally:
            now = time.monotonic()
            self._in_flight -= 1
            self._chat_in_flight.discard(chat_id)
            if self.budget:
                self._answered.append(now)
            if self.per_chat_interval > 0:
                self._chat_answered[chat_id] = now
                if len(self._chat_answered) > 10_000:
                    self._chat_answered = {
                        c: t for c, t in self._chat_answered.items() if t > now - self.per_chat_interval - 1
                    }


Revoked = Callable[[str], Awaitable[None]]


class TelegramActivities:
    """`revoked`: a tenant's own bot (docs/bots.md) is paused, not failed, when Telegram refuses its token:
    its sends wait (retried) in the bot's outbound queue until the new token is registered."""

    def __init__(
        self, bot: Bot, pool: asyncpg.Pool, pacer: SendPacer | None = None, revoked: Revoked | None = None
    ) -> None:
        self.bot = bot
        self.pool = pool
        self.pacer = pacer
        # Sent, but not yet recorded as sent: (tenant, workflow, step) -> Telegram's message id.
        self._unrecorded: dict[tuple[str, str, str], int] = {}
        self.revoked = revoked

    async def _failure(self, exc: TelegramAPIError) -> ApplicationError | None:
        if isinstance(exc, TelegramUnauthorizedError) and self.revoked is not None:
            await self.revoked(exc.message)
            return ApplicationError(
                f"the bot {self.bot.id} is paused: Telegram does not accept its token; register the new one",
                type="TelegramBotPaused",
                next_retry_delay=BOT_PAUSED_RETRY,
            )
        return telegram_failure(exc)

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
            key = (req.tenant_id, req.workflow_id, req.step)
            if row["status"] == "sent":
                self._unrecorded.pop(key, None)
                return ReplySent(message_id=row["telegram_message_id"], already_sent=True)
            message_id = self._unrecorded.get(key)
            if message_id is None:
                async with self._paced(req.chat_id):
                    message_id = await self._send(req, text)
                if len(self._unrecorded) >= 10_000:  # a long outage: the oldest are the least likely back
                    del self._unrecorded[next(iter(self._unrecorded))]
                self._unrecorded[key] = message_id
            await conn.execute(
                """UPDATE outbox SET status = 'sent', telegram_message_id = $4, sent_at = now()
                    WHERE tenant_id = $1 AND workflow_id = $2 AND step = $3""",
                req.tenant_id, req.workflow_id, req.step, message_id,
            )  # fmt: skip
        self._unrecorded.pop(key, None)  # committed
        return ReplySent(message_id=message_id)

    def _paced(self, chat_id: int) -> AbstractAsyncContextManager[None]:
        return self.pacer.sending(chat_id) if self.pacer is not None else nullcontext()

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
            if (failure := await self._failure(exc)) is None:
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
        except TelegramUnauthorizedError as exc:
            raise await self._failure(exc) or exc from exc

    @activity.defn(name="edit_card")
    async def edit_card(self, req: EditCardInput) -> None:
        """Edit in place; editing to the same content again (a retry) is done, not an error. Telegram
        counts edits against the same limits as sends, so they take their turn in the pacer."""
        if self.pacer is not None:
            await self.pacer.wait(req.chat_id)
        try:
            async with self._paced(req.chat_id):
                await self.bot.edit_message_text(
                    text=fit_telegram(req.text), chat_id=req.chat_id, message_id=req.message_id,
                    reply_markup=_keyboard(req.buttons),
                )  # fmt: skip
        except TelegramAPIError as exc:
            if isinstance(exc, TelegramBadRequest) and "not modified" in exc.message:
                return
            if (failure := await self._failure(exc)) is None:
                raise
            raise failure from exc
