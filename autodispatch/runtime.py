"""Resolving where the running stack is, for the commands that join it (worker, bot, CLI admin)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from autodispatch import db
from autodispatch.embedded import PG_DATABASE, EmbeddedPostgres, port_is_open
from autodispatch.settings import Settings, SettingsError


@dataclass
class SandboxEndpoints:
    telegram: str | None
    google: str | None
    token: str | None
    chat_id: int | None
    calendar_id: str | None


def read_sandbox(settings: Settings) -> SandboxEndpoints | None:
    path = settings.data_dir / "run" / "sandbox.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return SandboxEndpoints(
        info.get("telegram"),
        info.get("google"),
        info.get("token"),
        info.get("chat_id"),
        info.get("calendar_id"),
    )


def telegram_endpoint(settings: Settings) -> tuple[str, str]:
    """(token, api base): configured ones, else the sandbox emulator `up` started."""
    if settings.telegram_bot_token is not None:
        return settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base
    sandbox = read_sandbox(settings)
    if sandbox and sandbox.telegram and sandbox.token:
        return sandbox.token, sandbox.telegram
    raise SettingsError(
        "configuration error: AUTODISPATCH_TELEGRAM_BOT_TOKEN: not set (and no sandbox from `autodispatch up` found)"
    )


def calendar_root(settings: Settings) -> str:
    if settings.google_configured:
        return settings.calendar_api_root
    sandbox = read_sandbox(settings)
    if sandbox and sandbox.google:
        return sandbox.google + "/calendar/v3/"
    raise SettingsError(
        "configuration error: AUTODISPATCH_GOOGLE_SERVICE_ACCOUNT_FILE: not set (and no sandbox from `up` found)"
    )


@dataclass(frozen=True)
class Dsns:
    owner: str  # migrations
    app: str | None  # the serving pool: row-level security binds it to one tenant per transaction
    system: str  # the cross-tenant context (autodispatch_system, or the owner with SET LOCAL ROLE)

    def app_login(self) -> str:
        """The app role's login. With an external DATABASE_URL it must be given: serving as the owner
        would leave row-level security to the owner's good will."""
        if self.app is None:
            raise SettingsError(
                "configuration error: AUTODISPATCH_APP_DATABASE_URL: not set; with AUTODISPATCH_DATABASE_URL "
                "the app would serve as the table owner, which row-level security does not bind; set it to a "
                f"login of the {db.APP_ROLE} role (docs/security.md)"
            )
        return self.app


def dsns(settings: Settings) -> Dsns:
    """Where to connect: the configured URLs, else the embedded PostgreSQL's roles."""
    if settings.database_url is not None:
        owner = settings.database_url.get_secret_value()
        system = settings.system_database_url.get_secret_value() if settings.system_database_url else owner
        app = settings.app_database_url.get_secret_value() if settings.app_database_url else None
        return Dsns(owner, app, system)
    host, port = "127.0.0.1", settings.postgres_port
    return Dsns(
        f"postgresql://postgres@{host}:{port}/{PG_DATABASE}",
        f"postgresql://{db.APP_ROLE}@{host}:{port}/{PG_DATABASE}",
        f"postgresql://{db.SYSTEM_ROLE}@{host}:{port}/{PG_DATABASE}",
    )


def _unusable(exc: BaseException) -> SettingsError:
    return SettingsError(f"configuration error: AUTODISPATCH_DATABASE_URL: cannot use the database: {exc}")


async def open_app_pool(urls: Dsns, *, max_size: int) -> asyncpg.Pool:
    """Migrate, open the app pool (with the system pool beside it) and refuse a role RLS would not bind."""
    try:
        await db.migrate(urls.owner)
    except (OSError, asyncpg.PostgresError) as exc:
        raise _unusable(exc) from exc
    app = urls.app_login()
    try:
        pool = await db.create_pool(app, system_dsn=urls.system, max_size=max_size)
    except (OSError, asyncpg.PostgresError) as exc:
        raise _unusable(exc) from exc
    try:
        await db.check_app_role(pool)
    except db.RoleError as exc:
        await pool.close()
        raise SettingsError(str(exc)) from None
    return pool


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Dsns]:
    """The database's URLs; on embedded defaults PostgreSQL is started for the command if `up` is not
    running, and stopped afterwards."""
    embedded: EmbeddedPostgres | None = None
    if settings.database_url is None and not port_is_open("127.0.0.1", settings.postgres_port):
        embedded = EmbeddedPostgres(settings.data_dir, port=settings.postgres_port)
        embedded.start()
    try:
        yield dsns(settings)
    finally:
        if embedded is not None:
            embedded.stop()


@asynccontextmanager
async def admin_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the application role, migrations applied first."""
    async with _database(settings) as urls:
        pool = await open_app_pool(urls, max_size=4)
        try:
            yield pool
        finally:
            await pool.close()


async def migrate_database(settings: Settings) -> list[str]:
    """`autodispatch migrate`: the owner's work only (the app's login is not needed for it)."""
    async with _database(settings) as urls:
        try:
            return await db.migrate(urls.owner)
        except (OSError, asyncpg.PostgresError) as exc:
            raise _unusable(exc) from exc
