"""Bot commands (/start, /help): handed over like any update; the workflow answers."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.types import Message, Update

from bot.edge import TemporalEdge
from bot.handlers.convert import received_from

router = Router(name="commands")


@router.message(Command("start", "help"))
async def on_command(message: Message, event_update: Update, bot: Bot, edge: TemporalEdge) -> None:
    await edge.hand_over(received_from(bot.id, event_update, message, "command", message.text or ""))
