"""Everything else a driver may send (stickers, voice notes, locations): answered with "send text"."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.types import Message, Update

from bot.edge import TemporalEdge
from bot.handlers.convert import received_from


async def on_other(message: Message, event_update: Update, bot: Bot, edge: TemporalEdge) -> None:
    await edge.hand_over(received_from(bot.id, event_update, message, "unsupported", ""))


def build_router() -> Router:
    router = Router(name="other")
    router.message.register(on_other)
    return router
