"""Fixtures and helpers for the admin API tests: a real aiohttp server on the session's PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from autodispatch import tenants
from autodispatch.api.routes import add_api_routes
from autodispatch.db import system_tx
from autodispatch.settings import Settings
from bot.server import Health, add_health_route
from tests.conftest import unique_chat_id

JWT_SECRET = "test-secret-" + "x" * 40


def api_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"jwt_secret": JWT_SECRET}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class NewTenant:
    tenant_id: str
    name: str
    admin_key: str
    key_id: str


async def new_tenant(pool: asyncpg.Pool, settings: Settings, **kw: Any) -> NewTenant:
    name = kw.pop("name", f"Fleet {uuid.uuid4().hex[:8]}")
    t = await tenants.create_tenant(pool, settings, name, source="cli", actor="test", **kw)
    return NewTenant(t["tenant_id"], t["name"], t["api_key"], t["key_id"])


async def system_key(pool: asyncpg.Pool) -> str:
    key = await tenants.create_api_key(
        pool, "system", role="system", name="tests", source="cli", actor="test"
    )
    return str(key["api_key"])


async def add_order(pool: asyncpg.Pool, tenant_id: str, chat_id: int, **fields: Any) -> str:
    order_id = "o" + uuid.uuid4().hex[:12]
    async with system_tx(pool) as conn:
        await conn.execute(
            """INSERT INTO orders (tenant_id, order_id, chat_id, workflow_id, status, pickup_address, original_text)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            tenant_id, order_id, chat_id, f"wf-{order_id}", fields.get("status", "in_calendar"),
            fields.get("pickup_address", "Внуково"), fields.get("text", "завтра 9:30 Внуково"),
        )  # fmt: skip
    return order_id


async def add_tenant_driver(pool: asyncpg.Pool, tenant_id: str, **kw: Any) -> int:
    chat_id = int(kw.get("chat_id", unique_chat_id()))
    async with system_tx(pool) as conn:
        await conn.execute(
            """INSERT INTO drivers (tenant_id, chat_id, driver_name, calendar_id, time_zone)
               VALUES ($1, $2, $3, $4, 'Europe/Moscow')""",
            tenant_id, chat_id, kw.get("name", "Driver"), kw.get("calendar_id", f"{chat_id}@example.com"),
        )  # fmt: skip
    return chat_id


async def audit_rows(pool: asyncpg.Pool, tenant_id: str, action: str | None = None) -> list[dict[str, Any]]:
    async with system_tx(pool) as conn:
        rows = await conn.fetch(
            "SELECT * FROM audit_log WHERE tenant_id = $1 AND ($2::text IS NULL OR action = $2) ORDER BY id",
            tenant_id, action,
        )  # fmt: skip
    return [dict(r) for r in rows]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    client: TestClient
    app: web.Application
    settings: Settings
    pool: asyncpg.Pool


async def start_api(pool: asyncpg.Pool, **settings_overrides: Any) -> Api:
    """The API mounted next to /healthz, as `up` mounts it, on a real test server."""
    settings = api_settings(**settings_overrides)
    app = web.Application()
    add_health_route(app, Health())
    add_api_routes(app, pool, settings)
    client = TestClient(TestServer(app))
    await client.start_server()
    return Api(client, app, settings, pool)
