"""Order texts: a message's text, or the caption of a video or a file (pictures: bot.handlers.pictures)."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.types import Message, Update

from bot.edge import TemporalEdge
from bot.handlers.convert import received_from


async def on_text(message: Message, event_update: Update, bot: Bot, edge: TemporalEdge) -> None:
    await edge.hand_over(received_from(bot.id, event_update, message, "text", message.text or ""))


async def on_caption(message: Message, event_update: Update, bot: Bot, edge: TemporalEdge) -> None:
    await edge.hand_over(received_from(bot.id, event_update, message, "text", message.caption or ""))


def build_router() -> Router:
    router = Router(name="orders")
    router.message.register(on_text, F.text)
    router.message.register(on_caption, F.caption)
    # An edited order message re-parses and changes the same order (the workflow finds it by message).
    router.edited_message.register(on_text, F.text)
    router.edited_message.register(on_caption, F.caption)
    return router
