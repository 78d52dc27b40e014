"""`autodispatch up`: the whole stack, embedded defaults for whatever is not configured.

Each component is started only if its setting does not point elsewhere: no DATABASE_URL → embedded
PostgreSQL; no TEMPORAL_ADDRESS → the Temporal dev server; no bot token → the Telegram emulator; no
Google credentials on the official endpoint → the Calendar emulator (sandbox mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.process
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiogram import Bot, Dispatcher
from aiohttp import web
from pydantic import SecretStr
from temporalio.client import Client

from activities.calendar import CalendarService
from activities.oauth import OAuthGrants
from autodispatch import db
from autodispatch.api.routes import add_api_routes
from autodispatch.codec import EncryptionCodec
from autodispatch.codec_server import CODEC_PATH, add_codec_routes
from autodispatch.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedTemporal, port_is_open
from autodispatch.fleet import BotFleet
from autodispatch.oauth import generate_key, oauth_problem
from autodispatch.runtime import Dsns, dsns, open_app_pool, read_sandbox
from autodispatch.settings import Settings, SettingsError
from autodispatch.temporal import connect, sdk_metrics_address
from bot.billing import add_billing_route
from bot.dead_letters import DeadLetters, redeliver_loop
from bot.dispatcher import ALLOWED_UPDATES, build_dispatcher, make_bot
from bot.edge import ChatRouting, TemporalEdge
from bot.inbox import Inbox, InboxRelay
from bot.menu import register_commands
from bot.oauth import add_oauth_routes
from bot.polling import poll_updates
from bot.server import (
    WEBHOOK_PATH,
    Health,
    WebhookIntake,
    add_fleet_webhook_route,
    add_health_route,
    add_metrics_route,
    add_webhook_route,
    traced,
)
from bot.strangers import DenialTally, StrangerGate, StrangerPolicy
from schemas.billing import billing_settings
from schemas.telegram import outbound_task_queue
from workers.day import start_agenda_reconciler
from workers.retention import start_retention_schedule
from workers.worker import Workers, build_workers

log = logging.getLogger(__name__)

SANDBOX_TOKEN = "1000000001:sandbox-token-not-a-secret"
SANDBOX_TENANT = "demo"
SANDBOX_CHAT_ID = 1000001
SANDBOX_CALENDAR = "demo-driver@sandbox.autodispatch.local"


@dataclass
class SandboxInfo:
    telegram: str | None = None
    google: str | None = None
    token: str | None = None
    chat_id: int = SANDBOX_CHAT_ID
    calendar_id: str = SANDBOX_CALENDAR
    http: str | None = None
    temporal_ui: str | None = None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2))


def sandbox_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "sandbox.json"


def _command() -> str:
    """How to call `autodispatch` from here: the venv's script, relative when inside the project."""
    script = Path(sys.executable).parent / "autodispatch"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script) if script.exists() else "autodispatch"


async def connect_with_retry(settings: Settings, address: str | None = None, timeout: float = 60.0) -> Client:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await connect(settings, address)
        except RuntimeError as exc:
            if asyncio.get_running_loop().time() > deadline:
                target = address or settings.temporal_address or f"127.0.0.1:{settings.temporal_grpc_port}"
                raise SettingsError(
                    f"configuration error: AUTODISPATCH_TEMPORAL_ADDRESS: cannot reach Temporal at {target}: "
                    + str(exc).splitlines()[0]
                ) from exc
            await asyncio.sleep(0.3)


@contextlib.contextmanager
def one_line() -> Iterator[None]:
    """An embedded server that cannot start: one line for the person (the log file has the rest)."""
    try:
        yield
    except EmbeddedError as exc:
        raise SettingsError(str(exc).splitlines()[0].rstrip(":")) from exc


@dataclass
class Stack:
    """Starts what `up` needs; every part can be turned off so tests and `worker`/`bot` reuse it."""

    settings: Settings
    run_worker: bool = True
    run_bot: bool = True
    durable_postgres: bool = True
    announce: bool = True
    # Join a stack started elsewhere (`autodispatch bot` next to `up`): start nothing embedded, use the
    # configured services or the embedded defaults' addresses, and the sandbox emulators `up` started.
    join: bool = False
    # Worker processes: the stack's own plus workers-1 joining it (Python runs one core per process).
    workers: int = 1

    health: Health = field(default_factory=Health)
    postgres: EmbeddedPostgres | None = None
    temporal: EmbeddedTemporal | None = None
    client: Client | None = None
    pool: asyncpg.Pool | None = None
    owner_dsn: str = ""
    app_dsn: str = ""
    system_dsn: str = ""
    bot: Bot | None = None
    calendar: CalendarService | None = None
    telegram_emulator: Any = None
    google_emulator: Any = None
    sandbox: SandboxInfo = field(default_factory=SandboxInfo)
    relay: InboxRelay | None = None
    strangers: StrangerGate | None = None
    denials: DenialTally | None = None
    temporal_address: str = ""
    worker_processes: list[multiprocessing.process.BaseProcess] = field(default_factory=list)
    _workers: Workers | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _http: web.AppRunner | None = None
    http_app: web.Application | None = None
    oauth_grants: OAuthGrants | None = None
    dispatcher: Dispatcher | None = None
    fleet: BotFleet | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def sandbox_parts(self) -> list[str]:
        """What the built-in emulators stand in for (nothing configured for it)."""
        if self.join:
            return []
        s = self.settings
        parts = (("Telegram", not s.telegram_configured), ("Google Calendar", not s.google_configured))
        return [name for name, emulated in parts if emulated]

    async def start(self) -> None:
        s = self.settings
        if self.announce and self.sandbox_parts():
            # The first thing a person sees: what is real and what is emulated.
            print(
                f"SANDBOX MODE: no credentials configured for {' and '.join(self.sandbox_parts())}; "
                "starting the built-in emulators (set AUTODISPATCH_TELEGRAM_BOT_TOKEN / "
                "AUTODISPATCH_GOOGLE_SERVICE_ACCOUNT_FILE to go live).",
                flush=True,
            )
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.health.set("postgres", False)
        self.health.set("temporal", False)
        self._claim_ports()  # before anything starts: a taken port is one line, at once
        await self._start_postgres()
        await self._start_temporal()
        await self._start_emulators()
        s = self._configure_oauth()
        self.calendar = CalendarService.from_settings(
            self.sandbox.google + "/calendar/v3/" if self.sandbox.google else s.calendar_api_root,
            s.google_service_account_file,
        )
        if s.oauth_configured and self.pool is not None:
            # One grant store for the callback and the Calendar activities (drivers' own credentials).
            self.oauth_grants = self.calendar.grants = OAuthGrants(self.pool, s)
        token = self.sandbox.token or (
            s.telegram_bot_token.get_secret_value() if s.telegram_bot_token else None
        )
        api_base = self.sandbox.telegram or s.telegram_api_base
        if token is None:
            raise SettingsError(
                "configuration error: AUTODISPATCH_TELEGRAM_BOT_TOKEN: not set (and no sandbox from `up` to join)"
            )
        self.bot = make_bot(token, api_base)
        if (self.sandbox.telegram or self.sandbox.google) and not self.join:
            await self._seed_sandbox()
        if self.run_worker:
            await self._start_worker()
        self.http_app = web.Application(middlewares=[traced])
        add_health_route(self.http_app, self.health)
        add_metrics_route(self.http_app, sdk_metrics_address)
        # The admin API checks a tenant bot's token with getMe where this stack talks to Telegram.
        api_settings = s.model_copy(
            update={"telegram_api_base": self.sandbox.telegram or s.telegram_api_base}
        )
        add_api_routes(self.http_app, self.pool, api_settings)
        assert self.client is not None
        codec = self.client.data_converter.payload_codec
        if isinstance(codec, EncryptionCodec):
            add_codec_routes(self.http_app, self.pool, self.settings, codec)
        add_billing_route(
            self.http_app,
            self.client,
            self.pool,
            self.settings,
            reply_task_queue=outbound_task_queue(self.bot.id),
        )
        add_oauth_routes(
            self.http_app, self.client, self.pool, self.settings, self.oauth_grants,
            reply_task_queue=outbound_task_queue(self.bot.id),
        )  # fmt: skip
        if self.run_bot:
            await self._start_bot()
        await self._start_fleet()
        await self._start_http()
        if self.announce:
            self._announce()

    async def _start_postgres(self) -> None:
        s = self.settings
        if self.join or s.database_url is not None:
            urls = dsns(s)
        else:
            self.postgres = EmbeddedPostgres(s.data_dir, port=s.postgres_port, durable=self.durable_postgres)
            with one_line():
                self.postgres.start()
            urls = Dsns(self.postgres.owner_dsn, self.postgres.app_dsn, self.postgres.system_dsn)
        self.owner_dsn, self.app_dsn, self.system_dsn = urls.owner, urls.app_login(), urls.system
        self.pool = await open_app_pool(urls, max_size=20)
        self.health.set("postgres", True)

    def _claim_ports(self) -> None:
        s = self.settings
        if s.temporal_address is None and not self.join:
            self.temporal = EmbeddedTemporal(
                s.data_dir,
                port=s.temporal_grpc_port,
                ui_port=s.temporal_ui_port,
                namespace=s.temporal_namespace,
                # The UI in the browser opens encrypted payloads through our codec server.
                codec_endpoint=f"http://{s.http_host}:{s.http_port}{CODEC_PATH}",
            )
            with one_line():
                self.temporal.claim_ports()
        if port_is_open(s.http_host, s.http_port):
            raise SettingsError(
                f"configuration error: AUTODISPATCH_HTTP_PORT: {s.http_host}:{s.http_port} is taken by another program"
            )

    async def _start_temporal(self) -> None:
        s = self.settings
        address = s.temporal_address
        if address is None and self.join:
            address = f"127.0.0.1:{s.temporal_grpc_port}"
        elif self.temporal is not None:
            with one_line():
                self.temporal.start()
            address = self.temporal.address
            self.sandbox.temporal_ui = self.temporal.ui_url
        self.temporal_address = address
        self.client = await connect_with_retry(s, address)
        self.health.set("temporal", True)

    async def _start_emulators(self) -> None:
        s = self.settings
        host = s.http_host
        if self.join:
            sandbox = read_sandbox(s)
            if sandbox is not None and not s.telegram_configured:
                self.sandbox.telegram, self.sandbox.token = sandbox.telegram, sandbox.token
            if sandbox is not None and not s.google_configured:
                self.sandbox.google = sandbox.google
            return
        if not s.telegram_configured:
            from emulators.telegram import TelegramEmulator

            # Ids from the clock: a restarted sandbox never reuses an update id Temporal has seen.
            self.telegram_emulator = TelegramEmulator(first_id=int(time.time() * 1000) % 2**52)
            try:
                self.sandbox.telegram = await self.telegram_emulator.start(
                    host=host, port=s.sandbox_telegram_port
                )
            except OSError as exc:
                raise SettingsError(
                    f"configuration error: AUTODISPATCH_SANDBOX_TELEGRAM_PORT: {exc}"
                ) from exc
            self.sandbox.token = SANDBOX_TOKEN
        if not s.google_configured:
            from emulators.google import GoogleEmulator

            # The sandbox has no service account to sign with: its calls go without credentials.
            self.google_emulator = GoogleEmulator(allow_anonymous=True)
            try:
                self.sandbox.google = await self.google_emulator.start(host=host, port=s.sandbox_google_port)
            except OSError as exc:
                raise SettingsError(f"configuration error: AUTODISPATCH_SANDBOX_GOOGLE_PORT: {exc}") from exc

    def _configure_oauth(self) -> Settings:
        """/connect in sandbox mode: the Google emulator is the consent screen and token endpoint, with an
        OAuth client registered for our callback. Keys are kept under DATA_DIR so grants survive a
        restart. Configured deployments only get their settings checked."""
        s = self.settings
        if self.google_emulator is not None and not s.google_oauth_client_id:
            keys_file = s.data_dir / "run" / "sandbox-oauth.json"
            keys = json.loads(keys_file.read_text()) if keys_file.exists() else {}
            keys.setdefault("client_secret", secrets.token_urlsafe(24))
            keys.setdefault("state_secret", secrets.token_urlsafe(32))
            keys.setdefault("token_key", generate_key())
            keys_file.parent.mkdir(parents=True, exist_ok=True)
            keys_file.write_text(json.dumps(keys))
            keys_file.chmod(0o600)
            base = self.sandbox.google
            s = self.settings = s.model_copy(
                update={
                    "google_oauth_client_id": "autodispatch-sandbox",
                    "google_oauth_client_secret": SecretStr(keys["client_secret"]),
                    "google_oauth_auth_uri": f"{base}/o/oauth2/v2/auth",
                    "google_oauth_token_uri": f"{base}/token",
                    "google_oauth_revoke_uri": f"{base}/revoke",
                    "oauth_state_secret": SecretStr(keys["state_secret"]),
                    "oauth_token_keys": SecretStr(keys["token_key"]),
                }
            )
            self.google_emulator.create_oauth_client(
                "autodispatch-sandbox", keys["client_secret"], [s.oauth_redirect_url]
            )
        problem = oauth_problem(s)
        if problem:
            raise SettingsError(f"configuration error: {problem}")
        return s

    async def _seed_sandbox(self) -> None:
        """A demo tenant and driver, so `autodispatch chat` works on a fresh machine."""
        assert self.pool is not None
        if self.google_emulator is not None:
            self.google_emulator.create_calendar(
                SANDBOX_CALENDAR, owner="demo@sandbox.local", time_zone="Europe/Moscow"
            )
        async with db.system_tx(self.pool) as conn:
            await conn.execute(
                "INSERT INTO tenants (tenant_id, name, time_zone, currency) VALUES ($1, $1, 'Europe/Moscow', 'RUB')"
                " ON CONFLICT DO NOTHING",
                SANDBOX_TENANT,
            )
            await conn.execute(
                # The sandbox's own calendar, in its own emulator: the system vouches for it.
                """INSERT INTO drivers (tenant_id, chat_id, driver_name, calendar_id, time_zone, status,
                                        calendar_proof, calendar_proven_id, calendar_proven_at)
                   VALUES ($1, $2, 'Demo Driver', $3, 'Europe/Moscow', 'active', 'owner', $3, now())
                   ON CONFLICT DO NOTHING""",
                SANDBOX_TENANT, SANDBOX_CHAT_ID, SANDBOX_CALENDAR,
            )  # fmt: skip

    async def _start_worker(self) -> None:
        assert self.client and self.pool and self.bot and self.calendar
        self._workers = build_workers(
            self.client,
            self.settings.temporal_task_queue,
            pool=self.pool,
            bot=self.bot,
            calendar=self.calendar,
            settings=self.settings,
        )
        self._tasks.append(asyncio.create_task(self._workers.run(), name="worker"))
        await self._await_worker_processes(self._start_worker_processes())
        # Morning agendas: every driver's Schedule in line with the whitelist (#5).
        await start_agenda_reconciler(self.client, self.settings.temporal_task_queue)
        await start_retention_schedule(self.client, self.settings.temporal_task_queue)
        self.health.set("worker", True)

    def _start_worker_processes(self) -> list[tuple[Any, Any]]:
        from workers.main import worker_process

        if self.workers <= 1:
            return []
        assert self.bot is not None and self.calendar is not None
        # What this stack resolved (embedded servers, sandbox emulators), so the others join it.
        joined = self.settings.model_copy(
            update={
                "temporal_address": self.temporal_address,
                "database_url": SecretStr(self.owner_dsn),
                "app_database_url": SecretStr(self.app_dsn),
                "system_database_url": SecretStr(self.system_dsn),
                "telegram_bot_token": SecretStr(self.bot.token),
                "telegram_api_base": self.sandbox.telegram or self.settings.telegram_api_base,
                "google_api_endpoint": self.calendar.api_root,
            }
        )
        spawn = multiprocessing.get_context("spawn")
        readiness = []
        for n in range(2, self.workers + 1):
            ready = spawn.Event()
            proc = spawn.Process(
                target=worker_process,
                args=(joined.model_dump(), self.settings.temporal_task_queue, ready),
                name=f"worker-{n}",
                daemon=True,
            )
            proc.start()
            self.worker_processes.append(proc)
            readiness.append((proc, ready))
        return readiness

    async def _await_worker_processes(self, readiness: list[tuple[Any, Any]], timeout: float = 120.0) -> None:
        """Up only once every worker process polls (a cold interpreter takes seconds to import)."""
        deadline = time.monotonic() + timeout
        for proc, ready in readiness:
            while not ready.is_set():
                if not proc.is_alive():
                    raise SettingsError(
                        f"worker process {proc.name} exited with code {proc.exitcode} at start"
                    )
                if time.monotonic() > deadline:
                    raise SettingsError(f"worker process {proc.name} not polling after {timeout:.0f}s")
                await asyncio.sleep(0.1)
        if readiness:
            log.info("%s more worker processes polling", len(readiness))

    def _stop_worker_processes(self) -> None:
        for proc in self.worker_processes:
            proc.terminate()  # SIGTERM: the worker finishes its tasks in hand
        for proc in self.worker_processes:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self.worker_processes = []

    async def _start_bot(self) -> None:
        assert self.client and self.bot and self.http_app is not None
        s = self.settings
        assert self.pool is not None
        self.denials = DenialTally(self.pool, s.denial_window_seconds)
        await self.denials.start()
        self.strangers = StrangerGate(self.pool, StrangerPolicy.from_settings(s), self.denials)
        edge = TemporalEdge(
            self.client, s.temporal_task_queue, ChatRouting(self.pool), Inbox(self.pool), [self.bot.id],
            max_attempts=s.telegram_update_max_attempts,
            strangers=self.strangers,
        )  # fmt: skip
        assert edge.relay is not None
        # Before the first update arrives: what a crash left stored is handed over first.
        await edge.relay.start()
        self.relay = edge.relay
        dp = self.dispatcher = build_dispatcher(edge, billing_settings(s))
        dead = DeadLetters(self.pool, s.telegram_update_max_attempts)
        self.health.set("bot", False)
        if s.telegram_mode == "webhook":
            secret = s.telegram_webhook_secret.get_secret_value() if s.telegram_webhook_secret else None
            if secret is None:
                if not self.sandbox.telegram:
                    raise SettingsError(
                        "configuration error: AUTODISPATCH_TELEGRAM_WEBHOOK_SECRET: required in webhook mode"
                    )
                secret = secrets.token_urlsafe(24)
            intake = WebhookIntake(dp, dead)
            add_webhook_route(self.http_app, intake=intake, bot=self.bot, secret=secret)
            add_fleet_webhook_route(
                self.http_app, intake=intake, served=lambda bot_id: self.fleet_lookup(bot_id)
            )
            url = self.webhook_url()
            await self.bot.set_webhook(
                url=url, secret_token=secret, allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False
            )
        else:
            stop = asyncio.Event()
            self._stop_polling = stop
            self._tasks.append(
                asyncio.create_task(poll_updates(dp, self.bot, stop, dead=dead), name="polling")
            )
        # What an operator retried (`autodispatch deadletter retry`), fed again by this edge.
        self._tasks.append(asyncio.create_task(redeliver_loop(dead, dp, self.bot), name="redelivery"))
        await register_commands(self.bot)  # the command menu, ru and en (#5)
        me = await self.bot.get_me()
        log.info("bot @%s (%s) in %s mode", me.username, me.id, s.telegram_mode)
        self.health.set("bot", True)

    def webhook_url(self) -> str:
        """The default bot's webhook URL; a tenant's bot has it with /<bot id> appended."""
        s = self.settings
        return s.telegram_webhook_url or f"http://{s.http_host}:{s.http_port}{WEBHOOK_PATH}"

    def fleet_lookup(self, bot_id: int) -> tuple[Bot, str] | None:
        return self.fleet.lookup(bot_id) if self.fleet is not None else None

    async def _start_fleet(self) -> None:
        """The tenants' own bots (docs/bots.md): their edges where this process runs the bot, their
        outbound queues where it runs the worker."""
        if not (self.run_bot or self.run_worker):
            return
        assert self.pool is not None and self.client is not None and self.bot is not None
        self.fleet = BotFleet(
            pool=self.pool,
            client=self.client,
            settings=self.settings,
            api_base=self.sandbox.telegram or self.settings.telegram_api_base,
            listen_dsn=self.app_dsn,
            dp=self.dispatcher if self.run_bot else None,
            webhook_url=self.webhook_url() if self.settings.telegram_mode == "webhook" else None,
            serve_outbound=self.run_worker,
            default_bot_id=self.bot.id,
            relay_bot_ids=self.relay.bot_ids if self.relay is not None else None,
        )
        await self.fleet.start()

    async def _start_http(self) -> None:
        assert self.http_app is not None
        self._http = web.AppRunner(self.http_app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, self.settings.http_host, self.settings.http_port)
        try:
            await site.start()
        except OSError as exc:
            raise SettingsError(f"configuration error: AUTODISPATCH_HTTP_PORT: {exc}") from exc
        self.sandbox.http = f"http://{self.settings.http_host}:{self.settings.http_port}"
        self.health.set("http", True)
        if (self.sandbox.telegram or self.sandbox.google) and not self.join:
            self.sandbox.write(sandbox_file(self.settings))

    def _announce(self) -> None:
        lines = ["Auto-Dispatcher is up."]
        if (self.sandbox.telegram or self.sandbox.google) and not self.join:
            emulated = (("Telegram", self.sandbox.telegram), ("Google Calendar", self.sandbox.google))
            lines += [
                "  sandbox emulators: " + ", ".join(f"{n} {u}" for n, u in emulated if u),
                f"  demo tenant {SANDBOX_TENANT!r}, driver chat {SANDBOX_CHAT_ID}, calendar {SANDBOX_CALENDAR}",
                f'  talk to the bot:  {_command()} chat "завтра 9:30 Внуково → Тверская 7, 2500₽"',
            ]
        if self.sandbox.temporal_ui:
            lines.append(
                f"  Temporal UI:      {self.sandbox.temporal_ui} (payloads decoded by the codec server)"
            )
        lines.append(f"  health:           {self.sandbox.http}/healthz")
        lines.append(f"  metrics:          {self.sandbox.http}/metrics")
        lines.append(
            f"  codec server:     {self.sandbox.http}{CODEC_PATH} "
            f"(temporal workflow show --codec-endpoint {self.sandbox.http}{CODEC_PATH} …)"
        )
        lines.append("  stop with Ctrl-C.")
        print("\n".join(lines), flush=True)

    async def stop(self) -> None:
        """Every part stops within its own bound: a part that hangs is named in the log and left behind,
        so Ctrl-C, a redeploy or a test's teardown never waits forever."""
        for name in list(self.health.components):
            self.health.set(name, False)
        stop_polling = getattr(self, "_stop_polling", None)
        if stop_polling is not None:
            stop_polling.set()
        for task in self._tasks:
            if task.get_name() in ("polling", "redelivery"):
                task.cancel()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.relay is not None:
            await _within("the inbox relay", self.relay.stop(), 15)
        if self.denials is not None:  # the counts of the window still open are written
            await _within("the denial tally", self.denials.stop(), 10)
        await _within("the worker processes", asyncio.to_thread(self._stop_worker_processes), 60)
        if self._workers is not None:
            await _within("the worker", self._workers.shutdown(), 20)
        if self._tasks:
            ended, hanging = await asyncio.wait(self._tasks, timeout=10)
            for task in ended:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("stopping: task %s had failed: %r", task.get_name(), task.exception())
            for task in hanging:
                log.warning("stopping: task %s did not end within 10 s; cancelled", task.get_name())
                task.cancel()
        if self._http is not None:
            await _within("the HTTP server", self._http.cleanup(), 10)
        if self.bot is not None:
            await _within("the bot's session", self.bot.session.close(), 5)
        for emulator in (self.telegram_emulator, self.google_emulator):
            if emulator is not None:
                await _within("an emulator", emulator.stop(), 10)
        if self.pool is not None and not await _within("the database pool", self.pool.close(), 10):
            self.pool.terminate()
        if self.temporal is not None:
            self.temporal.stop()
        if self.postgres is not None:
            self.postgres.stop()

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _within(what: str, step: Awaitable[object], seconds: float) -> bool:
    """Await one part of the shutdown for at most `seconds`; False (and a log line) if it did not end."""
    try:
        async with asyncio.timeout(seconds):
            await step
    except TimeoutError:
        log.warning("stopping: %s did not stop within %.0f s; going on without it", what, seconds)
        return False
    except Exception as exc:  # a part that fails while stopping must not keep the others running
        log.warning("stopping: %s failed: %r", what, exc)
    return True


async def run_until_signalled(stack: Stack) -> None:
    """Run until SIGINT/SIGTERM; a dying worker task ends the run too (and is reported)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with stack:
        waiters = [asyncio.create_task(stop.wait())] + list(stack._tasks)
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiters[0] and task.exception() is not None:
                log.error("component %s failed: %s", task.get_name(), task.exception())
        print("stopping…", flush=True)
