"""Postgres access: versioned migrations (as the owner), tenant-scoped transactions (as the app role) and
the cross-tenant system context (as autodispatch_system, through its own pool)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

APP_ROLE = "autodispatch_app"
# The role whose sessions see every tenant (the policies' app_is_system()); the app role is no member.
SYSTEM_ROLE = "autodispatch_system"
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


class AppPool(asyncpg.Pool):
    """The application role's pool, carrying the system context's pool beside it (`system_tx`)."""

    __slots__ = ("system",)

    async def close(self) -> None:
        system = getattr(self, "system", None)
        try:
            await super().close()
        finally:
            if system is not None:
                await system.close()

    def terminate(self) -> None:
        system = getattr(self, "system", None)
        super().terminate()
        if system is not None:
            system.terminate()


async def create_pool(
    dsn: str, *, system_dsn: str | None = None, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """A pool as `dsn` (the app role). `system_dsn`: a login that may SET ROLE autodispatch_system
    (that role itself, or the owner); without it `system_tx` on this pool raises."""
    pool = AppPool(
        dsn, connection_class=asyncpg.Connection, record_class=asyncpg.Record, min_size=min_size,
        max_size=max_size, max_queries=50000, max_inactive_connection_lifetime=300.0, connect=None,
        setup=None, init=_init_connection, reset=None, loop=None,
    )  # fmt: skip
    pool.system = None
    await pool
    if system_dsn is not None:
        try:
            pool.system = await asyncpg.create_pool(
                system_dsn, min_size=min_size, max_size=max_size, init=_init_connection
            )
        except BaseException:
            await pool.close()
            raise
    return pool


class RoleError(Exception):
    """The app pool's role would not be bound by row-level security: one line naming problem and fix."""


_FIX = (
    "connect the app as a role that is neither superuser nor BYPASSRLS, owns no tables and is no member "
    f"of {SYSTEM_ROLE} (e.g. {APP_ROLE}, which the migrations create; docs/security.md)"
)


async def check_app_role(pool: asyncpg.Pool) -> None:
    """Refuse a runtime role that RLS would not bind (superuser, BYPASSRLS, table owner), or one that
    can become such a role or the system role."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT current_user AS role, r.rolsuper, r.rolbypassrls,
                      (SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
                          AND pg_has_role(current_user, c.relowner, 'MEMBER')) AS owns,
                      (SELECT string_agg(p.rolname, ', ') FROM pg_roles p
                        WHERE (p.rolsuper OR p.rolbypassrls) AND p.rolname <> current_user
                          AND pg_has_role(current_user, p.oid, 'MEMBER')) AS privileged,
                      EXISTS (SELECT 1 FROM pg_roles s WHERE s.rolname = $1
                                 AND pg_has_role(current_user, s.oid, 'MEMBER')) AS system
               FROM pg_roles r WHERE r.rolname = current_user""",
            SYSTEM_ROLE,
        )
    assert row is not None
    role = row["role"]
    if row["rolsuper"]:
        problem = f"role {role!r} is a superuser, which row-level security does not bind"
    elif row["rolbypassrls"]:
        problem = f"role {role!r} has BYPASSRLS, which skips row-level security"
    elif row["owns"]:
        owns = row["owns"] if len(row["owns"]) <= 60 else row["owns"][:57] + "..."
        problem = f"role {role!r} owns the tables ({owns}); an owner can turn row-level security off"
    elif row["privileged"]:
        problem = f"role {role!r} may SET ROLE to {row['privileged']} (superuser or BYPASSRLS)"
    elif row["system"]:
        problem = f"role {role!r} is a member of {SYSTEM_ROLE} and would see every tenant"
    else:
        return
    raise RoleError(f"configuration error: AUTODISPATCH_APP_DATABASE_URL: {problem}; {_FIX}")


@asynccontextmanager
async def tenant_tx(pool: asyncpg.Pool, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction that sees only `tenant_id`'s rows (SET LOCAL semantics: gone at commit)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
        yield conn


@asynccontextmanager
async def system_tx(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """The view across tenants (whitelist resolution by chat, the audit log, admin work), on the system
    pool kept beside the app pool: the app role itself cannot switch this on."""
    system = getattr(pool, "system", None)
    if system is None:
        raise RuntimeError("this pool has no system context (db.create_pool(..., system_dsn=...))")
    async with system.acquire() as conn, conn.transaction():
        # Transaction-local: a login that is the owner goes back to being the owner at commit.
        await conn.execute(f"SET LOCAL ROLE {SYSTEM_ROLE}")
        yield conn
