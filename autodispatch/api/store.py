"""The API's reads and writes of drivers and orders, each inside the tenant's own RLS context.

The handlers have already checked who may act on which tenant; running in tenant_tx means a mistake
there still cannot reach another tenant's rows.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from autodispatch.db import tenant_tx
from autodispatch.tenants import Conflict, NotFound, Source, audit

# What PATCH may change on a driver; the values are validated by the request model.
DRIVER_FIELDS = ("driver_name", "calendar_id", "time_zone", "status")


async def list_drivers(pool: asyncpg.Pool, tenant_id: str) -> list[dict[str, Any]]:
    async with tenant_tx(pool, tenant_id) as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM drivers ORDER BY chat_id")]


async def get_driver(pool: asyncpg.Pool, tenant_id: str, chat_id: int) -> dict[str, Any]:
    async with tenant_tx(pool, tenant_id) as conn:
        row = await conn.fetchrow("SELECT * FROM drivers WHERE chat_id = $1", chat_id)
    if row is None:
        raise NotFound(f"no driver with chat id {chat_id} in this tenant")
    return dict(row)


async def create_driver(
    pool: asyncpg.Pool,
    tenant: dict[str, Any],
    *,
    chat_id: int,
    driver_name: str,
    calendar_id: str,
    time_zone: str | None,
    status: str,
    source: Source,
    actor: str,
) -> dict[str, Any]:
    tenant_id = tenant["tenant_id"]
    async with tenant_tx(pool, tenant_id) as conn:
        try:
            async with conn.transaction():  # a savepoint: the transaction survives the violation
                row = await conn.fetchrow(
                    """INSERT INTO drivers (tenant_id, chat_id, driver_name, calendar_id, time_zone, status)
                       VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
                    tenant_id, chat_id, driver_name, calendar_id, time_zone or tenant["time_zone"], status,
                )  # fmt: skip
        except asyncpg.UniqueViolationError:
            # A chat is one driver in one tenant. Which tenant holds it is not this caller's business.
            if await conn.fetchval("SELECT 1 FROM drivers WHERE chat_id = $1", chat_id):
                raise Conflict(f"driver with chat id {chat_id} already exists in this tenant") from None
            raise Conflict(
                f"chat {chat_id} is already whitelisted in another tenant; it must be removed there first"
            ) from None
        await audit(
            conn, tenant_id, "driver_added", source=source, actor=actor, chat_id=chat_id,
            calendar_id=calendar_id, name=driver_name, status=status,
        )  # fmt: skip
    return dict(row)


async def update_driver(
    pool: asyncpg.Pool, tenant_id: str, chat_id: int, changes: dict[str, Any], *, source: Source, actor: str
) -> dict[str, Any]:
    changes = {k: v for k, v in changes.items() if k in DRIVER_FIELDS and v is not None}
    async with tenant_tx(pool, tenant_id) as conn:
        if not changes:
            row = await conn.fetchrow("SELECT * FROM drivers WHERE chat_id = $1", chat_id)
        else:
            # Column names come from DRIVER_FIELDS only; values are parameters.
            sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(changes, start=2))
            row = await conn.fetchrow(
                f"UPDATE drivers SET {sets}, updated_at = now() WHERE chat_id = $1 RETURNING *",
                chat_id, *changes.values(),
            )  # fmt: skip
        if row is None:
            raise NotFound(f"no driver with chat id {chat_id} in this tenant")
        if changes:
            await audit(
                conn, tenant_id, "driver_updated", source=source, actor=actor, chat_id=chat_id, **changes
            )
    return dict(row)


async def delete_driver(
    pool: asyncpg.Pool, tenant_id: str, chat_id: int, *, source: Source, actor: str
) -> None:
    async with tenant_tx(pool, tenant_id) as conn:
        row = await conn.fetchrow("DELETE FROM drivers WHERE chat_id = $1 RETURNING driver_name", chat_id)
        if row is None:
            raise NotFound(f"no driver with chat id {chat_id} in this tenant")
        # Their API keys act as them: they go with the driver.
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE chat_id = $1 AND revoked_at IS NULL", chat_id
        )
        await audit(
            conn,
            tenant_id,
            "driver_removed",
            source=source,
            actor=actor,
            chat_id=chat_id,
            name=row["driver_name"],
        )


async def list_orders(
    pool: asyncpg.Pool, tenant_id: str, *, chat_id: int | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    async with tenant_tx(pool, tenant_id) as conn:
        rows = await conn.fetch(
            """SELECT * FROM orders WHERE ($1::bigint IS NULL OR chat_id = $1) AND ($2::text IS NULL OR status = $2)
               ORDER BY created_at DESC, order_id LIMIT $3""",
            chat_id, status, limit,
        )  # fmt: skip
    return [dict(r) for r in rows]


async def get_order(pool: asyncpg.Pool, tenant_id: str, order_id: str) -> dict[str, Any]:
    async with tenant_tx(pool, tenant_id) as conn:
        row = await conn.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)
    if row is None:
        raise NotFound(f"no order {order_id!r} in this tenant")
    return dict(row)
