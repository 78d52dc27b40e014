"""Isolation in the database for the API tables (api_keys), and a catalog check over every table.

tests/test_store.py covers the tables of 0001 with bare SELECTs; this adds api_keys, and asserts from
pg_catalog that no tenant table is left without tenant_id, forced RLS or a policy.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from autodispatch import db, tenants
from tests.api_fixtures import add_order, add_tenant_driver, api_settings, audit_rows, new_tenant
from tests.conftest import Postgres

# Unique constraints that deliberately span tenants (global uniqueness is their point).
CROSS_TENANT_INDEXES = {
    "tenants_name_key": "tenant names are unique across tenants",
    "drivers_chat_id_key": "one Telegram chat is one driver in one tenant",
    "billing_events_provider_event_id_key": "a provider's event id is recognised whichever tenant it names",
    "tenant_bots_bot_id_key": "a Telegram bot is one tenant's; an update names only the bot",
}


async def test_bare_select_on_api_keys_sees_only_the_current_tenant(postgres: Postgres) -> None:
    settings = api_settings()
    a = await new_tenant(postgres.pool, settings)
    b = await new_tenant(postgres.pool, settings)
    await tenants.create_api_key(postgres.pool, b.tenant_id, role="viewer", source="cli", actor="test")
    async with db.tenant_tx(postgres.pool, a.tenant_id) as conn:
        rows = await conn.fetch("SELECT * FROM api_keys")
    assert rows and {r["tenant_id"] for r in rows} == {a.tenant_id}
    async with db.tenant_tx(postgres.pool, b.tenant_id) as conn:
        assert {r["tenant_id"] for r in await conn.fetch("SELECT * FROM api_keys")} == {b.tenant_id}
    # Outside any context: nothing at all.
    async with postgres.pool.acquire() as conn:
        assert await conn.fetch("SELECT * FROM api_keys") == []
    async with db.system_tx(postgres.pool) as conn:
        seen = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM api_keys")}
    assert {a.tenant_id, b.tenant_id} <= seen


async def test_api_keys_refuse_writes_into_another_tenant(postgres: Postgres) -> None:
    settings = api_settings()
    a = await new_tenant(postgres.pool, settings)
    b = await new_tenant(postgres.pool, settings)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.tenant_tx(postgres.pool, a.tenant_id) as conn:
            await conn.execute(
                "INSERT INTO api_keys (tenant_id, key_id, prefix, key_hash, role) VALUES ($1, 'kx', 'p', $2, 'admin')",
                b.tenant_id, "0" * 64,
            )  # fmt: skip
    # An UPDATE from A's context simply does not reach B's key.
    async with db.tenant_tx(postgres.pool, a.tenant_id) as conn:
        assert (
            await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", b.key_id)
            == "UPDATE 0"
        )
    async with db.system_tx(postgres.pool) as conn:
        assert await conn.fetchval("SELECT revoked_at FROM api_keys WHERE key_id = $1", b.key_id) is None


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE api_keys SET key_hash = repeat('0', 64)",
        "UPDATE api_keys SET role = 'admin'",
        "UPDATE api_keys SET tenant_id = 'system'",
        "DELETE FROM api_keys",
    ],
)
async def test_the_application_cannot_rewrite_or_delete_keys(postgres: Postgres, statement: str) -> None:
    """Only last use and revocation may change; a key's hash, role and tenant are fixed at creation."""
    await new_tenant(postgres.pool, api_settings())
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.system_tx(postgres.pool) as conn:
            await conn.execute(statement)


async def test_every_table_is_a_tenant_table_with_forced_rls(postgres: Postgres) -> None:
    owner = await asyncpg.connect(postgres.owner_dsn)
    try:
        tables = await owner.fetch(
            """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                      (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
                      (SELECT a.attnotnull FROM pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS tenant_not_null
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'schema_migrations'"""
        )
        indexes = await owner.fetch(
            """SELECT t.relname AS table_name, i.relname AS index_name, a.attname AS first_column
               FROM pg_index x
               JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
               WHERE n.nspname = 'public' AND t.relname <> 'schema_migrations'"""
        )
    finally:
        await owner.close()
    names = {r["relname"] for r in tables}
    assert "api_keys" in names
    for r in tables:
        assert r["tenant_not_null"] is True, f"{r['relname']}: tenant_id NOT NULL"
        assert r["relrowsecurity"] and r["relforcerowsecurity"], f"{r['relname']}: RLS enabled and forced"
        assert r["policies"] >= 1, f"{r['relname']}: has a policy"
    for ix in indexes:
        if ix["index_name"] in CROSS_TENANT_INDEXES:
            continue
        assert ix["first_column"] == "tenant_id", (
            f"{ix['table_name']}.{ix['index_name']} must lead with tenant_id"
        )


async def test_callback_data_naming_another_drivers_order_is_denied_and_audited(postgres: Postgres) -> None:
    settings = api_settings()
    a = await new_tenant(postgres.pool, settings)
    b = await new_tenant(postgres.pool, settings)
    me = await add_tenant_driver(postgres.pool, a.tenant_id)
    colleague = await add_tenant_driver(postgres.pool, a.tenant_id)
    stranger = await add_tenant_driver(postgres.pool, b.tenant_id)
    mine = await add_order(postgres.pool, a.tenant_id, me)
    theirs = await add_order(postgres.pool, a.tenant_id, colleague)
    foreign = await add_order(postgres.pool, b.tenant_id, stranger)
    wf = f"tg-cb-{uuid.uuid4().hex[:8]}"
    got = await tenants.order_for_chat(postgres.pool, chat_id=me, order_id=mine, workflow_id=wf)
    assert (got["tenant_id"], got["chat_id"]) == (a.tenant_id, me)
    for order_id in (theirs, foreign, theirs):  # the repeat is a retried activity
        with pytest.raises(tenants.Forbidden, match="not yours"):
            await tenants.order_for_chat(postgres.pool, chat_id=me, order_id=order_id, workflow_id=wf)
    denied = await audit_rows(postgres.pool, a.tenant_id, "callback_denied")
    assert sorted((r["order_id"], r["chat_id"], r["outcome"]) for r in denied) == sorted(
        [(theirs, me, "denied"), (foreign, me, "denied")]
    )
    assert await audit_rows(postgres.pool, b.tenant_id, "callback_denied") == []
