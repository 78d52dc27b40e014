"""The aiogram Dispatcher: one Router per handler module, the edge injected into handlers."""

from __future__ import annotations

import time
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from autodispatch import metrics, tracing
from bot.edge import TemporalEdge
from bot.handlers import callbacks, commands, orders, other, payments, pictures
from schemas.billing import BillingSettings

# Updates the flows handle; anything else Telegram need not send us.
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "pre_checkout_query"]


def build_dispatcher(edge: TemporalEdge, billing: BillingSettings) -> Dispatcher:
    # `billing`: what a Telegram payment must be (price, currency) before it counts.
    dp = Dispatcher(edge=edge, billing=billing)
    # Order matters: commands before free text, the catch-all last.
    dp.include_routers(
        commands.build_router(),
        payments.build_router(),
        pictures.build_router(),  # before orders: a screenshot's caption is read with the picture
        orders.build_router(),
        callbacks.build_router(),
        other.build_router(),
    )
    return dp


_OUTCOMES: tuple[tuple[type[Exception], str], ...] = (
    (TelegramRetryAfter, "retry_after"), (TelegramForbiddenError, "forbidden"),
    (TelegramBadRequest, "bad_request"), (TelegramServerError, "server_error"),
    (TelegramNetworkError, "network_error"),
)  # fmt: skip


class MeasuredRequests(BaseRequestMiddleware):
    """Every Bot API call counted by method and outcome, with its latency (autodispatch/metrics.py)."""

    async def __call__(self, make_request: Any, bot: Bot, method: Any) -> Any:
        start = time.perf_counter()
        outcome = "ok"
        try:
            with tracing.outgoing(f"telegram {method.__api_method__}"):
                return await make_request(bot, method)
        except Exception as exc:
            outcome = next((name for kind, name in _OUTCOMES if isinstance(exc, kind)), "error")
            raise
        finally:
            metrics.telegram_call(method.__api_method__, time.perf_counter() - start, outcome)


def make_bot(token: str, api_base: str) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base.rstrip("/")))
    session.middleware(MeasuredRequests())
    return Bot(token=token, session=session, default=DefaultBotProperties())


def api_base_of(bot: Bot) -> str:
    """The Bot API root this bot talks to (the official one, or an emulator's)."""
    return bot.session.api.base.removesuffix("/bot{token}/{method}")
