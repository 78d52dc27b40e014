"""The aiogram Dispatcher: one Router per handler module, the edge injected into handlers."""

from __future__ import annotations

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.edge import TemporalEdge
from bot.handlers import callbacks, commands, orders, other, payments, pictures

# Updates the flows handle; anything else Telegram need not send us.
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "pre_checkout_query"]


def build_dispatcher(edge: TemporalEdge) -> Dispatcher:
    dp = Dispatcher(edge=edge)
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


def make_bot(token: str, api_base: str) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base.rstrip("/")))
    return Bot(token=token, session=session, default=DefaultBotProperties())
