"""Bot commands (/start, /help, /today, /settings, ...): handed over like any update; the workflow answers."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.types import Message, Update

from bot.edge import TemporalEdge
from bot.handlers.convert import received_from

# The commands the flows answer (the payments router owns /subscribe).
COMMANDS: tuple[str, ...] = (
    "start",
    "help",
    "today",
    "tomorrow",
    "week",
    "settings",
    "connect",
    "disconnect",
)


async def on_command(message: Message, event_update: Update, bot: Bot, edge: TemporalEdge) -> None:
    await edge.hand_over(received_from(bot.id, event_update, message, "command", message.text or ""))


def build_router() -> Router:
    # A fresh Router per Dispatcher: a Router attaches to one Dispatcher only (several bots, tests).
    router = Router(name="commands")
    router.message.register(on_command, Command(*COMMANDS))
    return router
