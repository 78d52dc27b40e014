"""Postgres access: versioned migrations (as the owner) and tenant-scoped transactions (as the app role)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

APP_ROLE = "autodispatch_app"
SYSTEM_TENANT = "system"
# Held while migrating so two processes starting at once do not both apply a version.
_MIGRATION_LOCK = 7_341_001


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) in order, from the packaged autodispatch/migrations/*.sql."""
    root = resources.files("autodispatch.migrations")
    files = sorted(p for p in root.iterdir() if p.name.endswith(".sql"))
    return [(p.name.removesuffix(".sql"), p.read_text(encoding="utf-8")) for p in files]


async def migrate(owner_dsn: str) -> list[str]:
    """Apply the versions not applied yet, each in its own transaction; returns what it applied."""
    conn = await asyncpg.connect(owner_dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
            log.info("applied migration %s", version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
    assert pool is not None
    return pool


@asynccontextmanager
async def tenant_tx(pool: asyncpg.Pool, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction that sees only `tenant_id`'s rows (SET LOCAL semantics: gone at commit)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
        yield conn


@asynccontextmanager
async def system_tx(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """The owner's view across tenants: whitelist resolution by chat, the audit log, admin work."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.system', 'on', true)")
        yield conn
