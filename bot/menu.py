"""The bot's command menu (setMyCommands): Russian by default, English for English-speaking clients."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeDefault

from autodispatch import texts

log = logging.getLogger(__name__)

# The commands in the menu, in its order (each has a "cmd_<name>" text per language).
MENU: tuple[str, ...] = ("today", "tomorrow", "week", "settings", "help")


def menu_commands(lang: str) -> list[BotCommand]:
    return [BotCommand(command=name, description=texts.t(lang, f"cmd_{name}")) for name in MENU]


async def register_commands(bot: Bot) -> bool:
    """At every bot start (idempotent). A failure is logged, not fatal: the commands work typed."""
    try:
        await bot.set_my_commands(menu_commands("ru"), scope=BotCommandScopeDefault())
        await bot.set_my_commands(menu_commands("en"), scope=BotCommandScopeDefault(), language_code="en")
    except TelegramAPIError as exc:
        log.warning("command menu not registered: %s", exc)
        return False
    return True
