"""The tenants' own bots a running process serves next to the default one (docs/bots.md).

The `tenant_bots` table is the truth: this process serves each active bot in it (its webhook at
/telegram/webhook/<bot id> with its own secret, or its own long polling; its command menu; its outbound
worker with its own send budget). Adding, removing, pausing or re-tokening a bot reaches every process
at once through LISTEN/NOTIFY, and within `bot_reload_seconds` through the periodic reload should a
notification be lost (a dropped listening connection is opened again on the next round).

A 401 from Telegram (the token was revoked in @BotFather) pauses that bot only: whoever sees it first
marks the row paused (audited in the tenant's log), and every process stops serving the bot. Its
replies wait in its outbound queue; `bot add` with the new token resumes it and they go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError
from temporalio.client import Client
from temporalio.worker import Worker

from autodispatch.admin import AdminError
from autodispatch.bots import NOTIFY_CHANNEL, BotConfig, bot_cipher, load_bots, pause_bot
from autodispatch.oauth import TokenCipher
from autodispatch.settings import Settings
from bot.dead_letters import DeadLetters
from bot.dispatcher import ALLOWED_UPDATES, make_bot
from bot.menu import register_commands
from bot.polling import poll_updates

log = logging.getLogger(__name__)


@dataclass
class ServedBot:
    config: BotConfig
    bot: Bot
    stop_polling: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    worker: Worker | None = None


@dataclass
class BotFleet:
    """`dp` None: serve only the outbound queues (a worker process); `serve_outbound` False: only the
    edge (`autodispatch bot`). `webhook_url` None: long polling."""

    pool: asyncpg.Pool
    client: Client
    settings: Settings
    api_base: str
    listen_dsn: str
    dp: Dispatcher | None = None
    webhook_url: str | None = None
    serve_outbound: bool = True
    default_bot_id: int | None = None
    # The inbox relay's bot list: it sweeps what a crash left stored for the bots served here.
    relay_bot_ids: list[int] | None = None

    served: dict[int, ServedBot] = field(default_factory=dict)
    _cipher: TokenCipher | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _listener: asyncpg.Connection | None = None
    _loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self._cipher = bot_cipher(self.settings)
        except AdminError as exc:
            log.info("tenants' own bots are not served: %s", exc)
            return
        await self._listen()
        await self.reload()
        self._loop_task = asyncio.create_task(self._watch(), name="bot-fleet")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(BaseException):
                await self._loop_task
        async with self._lock:
            for bot_id in list(self.served):
                await self._stop(bot_id)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    def lookup(self, bot_id: int) -> tuple[Bot, str] | None:
        """The webhook's view: the bot and its secret, while served here."""
        served = self.served.get(bot_id)
        return (served.bot, served.config.webhook_secret) if served is not None else None

    def tenant_of(self, bot_id: int) -> str | None:
        served = self.served.get(bot_id)
        return served.config.tenant_id if served is not None else None

    # -- watching the table -------------------------------------------------------------
    async def _listen(self) -> None:
        try:
            conn = await asyncpg.connect(self.listen_dsn)
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._changed.set())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("bot changes not listened to (%s); the periodic reload picks them up", exc)
            return
        self._listener = conn

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self.settings.bot_reload_seconds)
            self._changed.clear()
            if self._listener is None or self._listener.is_closed():
                self._listener = None
                await self._listen()
            try:
                await self.reload()
            except Exception as exc:  # the database away for a moment: the bots served stay served
                log.warning("bot reload failed (%s); next in %.0fs", exc, self.settings.bot_reload_seconds)

    async def reload(self) -> None:
        """Serve exactly the active bots of the table (a changed token restarts its bot)."""
        assert self._cipher is not None
        async with self._lock:
            wanted = {
                c.bot_id: c
                for c in await load_bots(self.pool, self._cipher)
                if c.status == "active" and c.bot_id != self.default_bot_id
            }
            for bot_id, served in list(self.served.items()):
                if wanted.get(bot_id) != served.config:
                    await self._stop(bot_id, removed=bot_id not in wanted)
            for bot_id, config in wanted.items():
                if bot_id not in self.served:
                    await self._start(config)

    # -- one bot ------------------------------------------------------------------------
    async def _start(self, config: BotConfig) -> None:
        bot = make_bot(config.token, self.api_base)
        served = ServedBot(config, bot)
        try:
            if self.dp is not None:
                if self.webhook_url is not None:
                    await bot.set_webhook(
                        url=f"{self.webhook_url.rstrip('/')}/{config.bot_id}", secret_token=config.webhook_secret,
                        allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False,
                    )  # fmt: skip
                else:
                    served.tasks.append(
                        asyncio.create_task(self._poll(served), name=f"polling-{config.bot_id}")
                    )
                await register_commands(bot)  # the bot's own command menu
        except TelegramUnauthorizedError as exc:
            await bot.session.close()
            for task in served.tasks:
                task.cancel()
            await self.revoked(config.bot_id, exc.message)
            return
        except TelegramAPIError as exc:
            # Telegram unreachable or refusing for now: the next reload tries again.
            await bot.session.close()
            log.warning("bot %s (@%s) not started: %s", config.bot_id, config.username, exc)
            return
        if self.serve_outbound:
            from workers.worker import outbound_worker

            async def revoked(reason: str, bot_id: int = config.bot_id) -> None:
                await self.revoked(bot_id, reason)

            served.worker = outbound_worker(self.client, bot, self.pool, self.settings, revoked=revoked)
            served.tasks.append(asyncio.create_task(served.worker.run(), name=f"outbound-{config.bot_id}"))
        self.served[config.bot_id] = served
        if self.relay_bot_ids is not None and config.bot_id not in self.relay_bot_ids:
            self.relay_bot_ids.append(config.bot_id)
        log.info("serving @%s (%s) of tenant %s", config.username, config.bot_id, config.tenant_id)

    async def _stop(self, bot_id: int, removed: bool = False) -> None:
        served = self.served.pop(bot_id)
        served.stop_polling.set()
        if removed and self.dp is not None and self.webhook_url is not None:
            # Removed (or paused): Telegram should stop calling a path nobody serves any more.
            with contextlib.suppress(TelegramAPIError):
                await served.bot.delete_webhook(drop_pending_updates=False)
        if served.worker is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(served.worker.shutdown(), timeout=20)
        for task in served.tasks:
            task.cancel()
        for task in served.tasks:
            with contextlib.suppress(BaseException):
                await task
        await served.bot.session.close()
        if self.relay_bot_ids is not None and bot_id in self.relay_bot_ids:
            self.relay_bot_ids.remove(bot_id)
        log.info("stopped serving @%s (%s)", served.config.username, bot_id)

    async def _poll(self, served: ServedBot) -> None:
        assert self.dp is not None
        try:
            dead = DeadLetters(self.pool, self.settings.telegram_update_max_attempts)
            await poll_updates(self.dp, served.bot, served.stop_polling, dead=dead)
        except TelegramUnauthorizedError as exc:
            await self.revoked(served.config.bot_id, exc.message)

    async def revoked(self, bot_id: int, reason: str) -> None:
        """Telegram refused the bot's token: pause it (audited once) and stop serving it everywhere."""
        if await pause_bot(self.pool, bot_id, f"Telegram refused the token: {reason}"):
            log.warning("bot %s paused: Telegram refused its token (%s)", bot_id, reason)
        # Not here: this may run inside the bot's own outbound activity, which its worker's shutdown
        # would wait for. The reload (now, by the notification) stops it.
        self._changed.set()
