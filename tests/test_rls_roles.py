"""Row-level security the runtime cannot bypass: the app role sees one tenant at most whatever it sets,
the cross-tenant context is a role it cannot become, and start-up refuses a role RLS would not bind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from pydantic import SecretStr

from autodispatch import db
from autodispatch.runtime import Dsns, dsns, open_app_pool
from autodispatch.settings import Settings, SettingsError
from tests.api_fixtures import add_tenant_driver, api_settings, new_tenant
from tests.conftest import Postgres


async def test_an_app_session_cannot_switch_the_system_context_on(postgres: Postgres) -> None:
    settings = api_settings()
    a = await new_tenant(postgres.pool, settings)
    b = await new_tenant(postgres.pool, settings)
    chat_b = await add_tenant_driver(postgres.pool, b.tenant_id)
    conn = await asyncpg.connect(postgres.app_dsn)  # a leaked app credential, or an injection's session
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.system', 'on', true)")
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", a.tenant_id)
            assert await conn.fetchval("SELECT count(*) FROM drivers WHERE chat_id = $1", chat_b) == 0
            assert {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenants")} == {
                a.tenant_id
            }
            assert await conn.fetch("SELECT * FROM audit_log") == []
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.system', 'on', false)")
            await conn.execute("SELECT set_config('app.tenant_id', $1, false)", db.SYSTEM_TENANT)
            assert await conn.fetchval("SELECT count(*) FROM drivers WHERE chat_id = $1", chat_b) == 0
            seen = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM api_keys")}
            assert seen <= {db.SYSTEM_TENANT}
        for statement in (f"SET ROLE {db.SYSTEM_ROLE}", "SET ROLE postgres"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        # Writing into another tenant is refused the same way.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO outbox (tenant_id, workflow_id, step, chat_id, text) VALUES ($1, 'w', 's', 1, 'x')",
                b.tenant_id,
            )
    finally:
        await conn.close()
    # The system context, on its own pool, still sees both.
    async with db.system_tx(postgres.pool) as sys_conn:
        assert await sys_conn.fetchval("SELECT current_user") == db.SYSTEM_ROLE
        assert await sys_conn.fetchval("SELECT count(*) FROM drivers WHERE chat_id = $1", chat_b) == 1


async def test_a_pool_without_the_system_login_has_no_system_context(postgres: Postgres) -> None:
    pool = await db.create_pool(postgres.app_dsn, max_size=1)
    try:
        with pytest.raises(RuntimeError, match="no system context"):
            async with db.system_tx(pool):
                pass
    finally:
        await pool.close()


async def test_the_owner_login_reaches_the_system_context_only_inside_the_transaction(
    postgres: Postgres,
) -> None:
    pool = await db.create_pool(postgres.app_dsn, system_dsn=postgres.owner_dsn, max_size=1)
    try:
        async with db.system_tx(pool) as conn:
            assert await conn.fetchval("SELECT current_user") == db.SYSTEM_ROLE
        async with pool.system.acquire() as conn:  # type: ignore[attr-defined]
            assert await conn.fetchval("SELECT current_user") == "postgres"
    finally:
        await pool.close()


@asynccontextmanager
async def role(postgres: Postgres, attributes: str, *, setup: str = "") -> AsyncIterator[str]:
    """A throwaway login role with these attributes; yields its DSN."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    owner = await asyncpg.connect(postgres.owner_dsn)
    try:
        await owner.execute(f"CREATE ROLE {name} LOGIN {attributes}")
        await owner.execute(f"GRANT {db.APP_ROLE} TO {name}")
        if setup:
            await owner.execute(setup.format(role=name))
        yield postgres.app_dsn.replace(f"{db.APP_ROLE}@", f"{name}@")
    finally:
        await owner.execute(
            f"DROP TABLE IF EXISTS {name}_own; DROP OWNED BY {name}; DROP ROLE IF EXISTS {name}"
        )
        await owner.close()


async def refusal(app_dsn: str) -> str:
    pool = await db.create_pool(app_dsn, max_size=1)
    try:
        with pytest.raises(db.RoleError) as caught:
            await db.check_app_role(pool)
    finally:
        await pool.close()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("configuration error: AUTODISPATCH_APP_DATABASE_URL: ")
    assert "autodispatch_app" in message  # the fix
    return message


async def test_start_up_refuses_a_role_that_rls_would_not_bind(postgres: Postgres) -> None:
    assert "is a superuser" in await refusal(postgres.owner_dsn)
    async with role(postgres, "BYPASSRLS") as dsn:
        assert "has BYPASSRLS" in await refusal(dsn)
    async with role(
        postgres, "", setup="CREATE TABLE {role}_own (x int); ALTER TABLE {role}_own OWNER TO {role}"
    ) as dsn:
        assert "owns the tables" in await refusal(dsn)
    async with role(postgres, "", setup=f"GRANT {db.SYSTEM_ROLE} TO {{role}}") as dsn:
        assert f"member of {db.SYSTEM_ROLE}" in await refusal(dsn)
    pool = await db.create_pool(postgres.app_dsn, max_size=1)
    try:
        await db.check_app_role(pool)  # the real app role passes
    finally:
        await pool.close()


async def test_serving_as_the_owner_stops_start_up_with_one_line(postgres: Postgres) -> None:
    with pytest.raises(SettingsError) as caught:
        await open_app_pool(Dsns(postgres.owner_dsn, postgres.owner_dsn, postgres.owner_dsn), max_size=1)
    assert "is a superuser" in str(caught.value)
    with pytest.raises(SettingsError, match="AUTODISPATCH_APP_DATABASE_URL: not set"):
        await open_app_pool(Dsns(postgres.owner_dsn, None, postgres.owner_dsn), max_size=1)
    pool = await open_app_pool(Dsns(postgres.owner_dsn, postgres.app_dsn, postgres.owner_dsn), max_size=1)
    await pool.close()


def test_an_external_database_without_the_app_login_is_refused() -> None:
    settings = Settings(_env_file=None, database_url=SecretStr("postgresql://owner@db.example/app"))  # type: ignore[call-arg]
    with pytest.raises(SettingsError, match="AUTODISPATCH_APP_DATABASE_URL: not set"):
        dsns(settings).app_login()
    both = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=SecretStr("postgresql://owner@db.example/app"),
        app_database_url=SecretStr("postgresql://autodispatch_app@db.example/app"),
    )
    assert dsns(both) == Dsns(
        "postgresql://owner@db.example/app",
        "postgresql://autodispatch_app@db.example/app",
        "postgresql://owner@db.example/app",
    )
