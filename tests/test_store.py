"""Store activities against real PostgreSQL as the application role, and tenant isolation by RLS."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.store import StoreActivities
from autodispatch import admin, db
from schemas.audit import AuditEntry
from schemas.driver import LookupDriverInput
from schemas.order import ParsedOrder
from schemas.store import FinishStepInput, OrderRecord, QuestionInput
from tests.conftest import Postgres, add_driver, unique_chat_id

TENANT_TABLES = ["tenants", "drivers", "orders", "audit_log", "outbox", "open_questions"]


async def test_lookup_resolves_a_whitelisted_chat_and_nothing_else(postgres: Postgres) -> None:
    driver = await add_driver(postgres.pool, "cal@example.com", name="Ivan")
    store = StoreActivities(postgres.pool)
    env = ActivityEnvironment()
    found = await env.run(store.lookup_driver, LookupDriverInput(chat_id=driver.chat_id))
    assert found.driver is not None
    assert (found.driver.tenant_id, found.driver.driver_name, found.driver.calendar_id) == (
        driver.tenant_id, "Ivan", "cal@example.com",
    )  # fmt: skip
    assert found.driver.status == "active" and found.pending_question_workflow_id is None
    missing = await env.run(store.lookup_driver, LookupDriverInput(chat_id=unique_chat_id()))
    assert missing.driver is None


async def test_disabled_driver_is_reported_disabled(postgres: Postgres) -> None:
    driver = await add_driver(postgres.pool, "cal@example.com")
    await admin.set_driver_status(postgres.pool, chat_id=driver.chat_id, status="disabled")
    found = await ActivityEnvironment().run(
        StoreActivities(postgres.pool).lookup_driver, LookupDriverInput(chat_id=driver.chat_id)
    )
    assert found.driver is not None and found.driver.status == "disabled"


async def test_audit_rows_are_written_once_per_step(postgres: Postgres) -> None:
    driver = await add_driver(postgres.pool, "cal@example.com")
    store = StoreActivities(postgres.pool)
    wf = f"wf-{uuid.uuid4()}"
    rows = [
        AuditEntry(tenant_id=driver.tenant_id, workflow_id=wf, step=s, action=s, chat_id=driver.chat_id)
        for s in ("received", "whitelist", "outcome")
    ]
    order = OrderRecord(
        tenant_id=driver.tenant_id, order_id="abc" + uuid.uuid4().hex[:10], chat_id=driver.chat_id, workflow_id=wf,
        status="in_calendar", order=ParsedOrder(pickup_address="Внуково", is_order=True),
    )  # fmt: skip
    env = ActivityEnvironment()
    assert await env.run(store.finish_step, FinishStepInput(audit=rows, order=order)) == 3
    # A retried or replayed step changes nothing.
    assert await env.run(store.finish_step, FinishStepInput(audit=rows, order=order)) == 0
    audit = await admin.read_audit(postgres.pool, tenant=driver.tenant_id, workflow_id=wf)
    assert [r["step"] for r in audit] == ["received", "whitelist", "outcome"]
    async with db.tenant_tx(postgres.pool, driver.tenant_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE workflow_id = $1", wf) == 1


async def test_open_question_is_found_by_lookup_and_closed_only_by_its_owner(postgres: Postgres) -> None:
    driver = await add_driver(postgres.pool, "cal@example.com")
    store = StoreActivities(postgres.pool)
    env = ActivityEnvironment()
    q = QuestionInput(tenant_id=driver.tenant_id, chat_id=driver.chat_id, workflow_id="wf-a")
    await env.run(store.set_open_question, q)
    found = await env.run(store.lookup_driver, LookupDriverInput(chat_id=driver.chat_id))
    assert found.pending_question_workflow_id == "wf-a"
    await env.run(store.set_open_question, q.model_copy(update={"workflow_id": "wf-b", "open": False}))
    found = await env.run(store.lookup_driver, LookupDriverInput(chat_id=driver.chat_id))
    assert found.pending_question_workflow_id == "wf-a"
    await env.run(store.set_open_question, q.model_copy(update={"open": False}))
    found = await env.run(store.lookup_driver, LookupDriverInput(chat_id=driver.chat_id))
    assert found.pending_question_workflow_id is None


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_rls_hides_other_tenants_rows_from_a_bare_select(postgres: Postgres, table: str) -> None:
    """A query that forgets its WHERE clause still sees only its own tenant (application role)."""
    a = await add_driver(postgres.pool, "a@example.com")
    b = await add_driver(postgres.pool, "b@example.com")
    for d in (a, b):
        async with db.tenant_tx(postgres.pool, d.tenant_id) as conn:
            await conn.execute(
                "INSERT INTO outbox (tenant_id, workflow_id, step, chat_id, text) VALUES ($1, 'wf', 's', $2, 'x')",
                d.tenant_id, d.chat_id,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO orders (tenant_id, order_id, chat_id, workflow_id, status) VALUES ($1, 'o', $2, 'wf', 'x')",
                d.tenant_id, d.chat_id,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO open_questions (tenant_id, chat_id, workflow_id) VALUES ($1, $2, 'wf')",
                d.tenant_id,
                d.chat_id,
            )
            await conn.execute(
                "INSERT INTO audit_log (tenant_id, workflow_id, step, action) VALUES ($1, 'wf', 's', 'x')",
                d.tenant_id,
            )
    async with db.tenant_tx(postgres.pool, a.tenant_id) as conn:
        rows = await conn.fetch(f"SELECT * FROM {table}")
    assert all(r["tenant_id"] == a.tenant_id for r in rows)
    if table != "audit_log":  # the audit log is not readable outside the system context at all
        assert rows, f"tenant A should see its own {table} rows"
    else:
        assert rows == []
    async with db.system_tx(postgres.pool) as conn:
        seen = {r["tenant_id"] for r in await conn.fetch(f"SELECT tenant_id FROM {table}")}
    assert {a.tenant_id, b.tenant_id} <= seen


async def test_rls_refuses_writing_into_another_tenant(postgres: Postgres) -> None:
    a = await add_driver(postgres.pool, "a@example.com")
    b = await add_driver(postgres.pool, "b@example.com")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.tenant_tx(postgres.pool, a.tenant_id) as conn:
            await conn.execute(
                "INSERT INTO outbox (tenant_id, workflow_id, step, chat_id, text) VALUES ($1, 'wf', 'x', 1, 'x')",
                b.tenant_id,
            )


async def test_audit_log_is_append_only_for_the_application(postgres: Postgres) -> None:
    a = await add_driver(postgres.pool, "a@example.com")
    for statement in ("UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with db.system_tx(postgres.pool) as conn:
                await conn.execute(statement)
    assert await admin.read_audit(postgres.pool, tenant=a.tenant_id)


async def test_application_role_is_not_privileged(postgres: Postgres) -> None:
    conn = await asyncpg.connect(postgres.app_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        owner = await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'drivers'")
        user = await conn.fetchval("SELECT current_user")
    finally:
        await conn.close()
    assert tuple(row) == (False, False, False)
    assert owner != user
