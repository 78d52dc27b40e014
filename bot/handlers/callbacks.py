"""Button presses on order cards: handed over like any update; the workflow checks the order is the
presser's own before acting on it."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.types import CallbackQuery, Update

from bot.edge import TemporalEdge
from bot.handlers.convert import received_from_callback


async def on_button(callback: CallbackQuery, event_update: Update, bot: Bot, edge: TemporalEdge) -> None:
    await edge.hand_over(received_from_callback(bot.id, event_update, callback))


def build_router() -> Router:
    router = Router(name="callbacks")
    router.callback_query.register(on_button)
    return router
