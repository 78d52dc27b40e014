"""Admin operations on the whitelist and the audit log (used by the CLI and the HTTP API)."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from autodispatch.db import system_tx


class AdminError(ValueError):
    """A request that cannot be done as asked; the message says why, for a person."""


_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_time_zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise AdminError(f"unknown time zone {tz!r} (use an IANA name such as Europe/Moscow)") from exc
    return tz


async def resolve_tenant(conn: asyncpg.Connection, tenant: str) -> asyncpg.Record | None:
    """A tenant by id or by name."""
    return await conn.fetchrow("SELECT * FROM tenants WHERE tenant_id = $1 OR name = $1 LIMIT 1", tenant)


async def ensure_tenant(
    conn: asyncpg.Connection, tenant: str, time_zone: str | None = None
) -> asyncpg.Record:
    row = await resolve_tenant(conn, tenant)
    if row is not None:
        if row["status"] != "active":
            raise AdminError(f"tenant {tenant!r} is disabled")
        return row
    tenant_id = tenant.lower()
    if not _TENANT_ID.match(tenant_id):
        raise AdminError(f"tenant id {tenant!r}: use lowercase letters, digits, '-' or '_' (max 63)")
    return await conn.fetchrow(
        "INSERT INTO tenants (tenant_id, name, time_zone) VALUES ($1, $2, $3) RETURNING *",
        tenant_id, tenant, time_zone or "Europe/Moscow",
    )  # fmt: skip


async def add_driver(
    pool: asyncpg.Pool,
    *,
    tenant: str,
    chat_id: int,
    calendar_id: str,
    name: str,
    time_zone: str | None = None,
    status: str = "active",
    vouched_by: str | None = "owner",
) -> dict[str, Any]:
    """The system owner's whitelisting. `vouched_by` names who vouches that the calendar is the driver's
    (audited as `calendar_ownership_vouched`); None leaves the calendar unproven: the row gets a
    one-time code the driver puts into the calendar's description before the bot uses it."""
    if not calendar_id.strip():
        raise AdminError("calendar id must not be empty")
    if time_zone:
        check_time_zone(time_zone)
    calendar_id = calendar_id.strip()
    proof = "owner" if vouched_by else None
    async with system_tx(pool) as conn:
        t = await ensure_tenant(conn, tenant, time_zone)
        other = await conn.fetchrow("SELECT tenant_id FROM drivers WHERE chat_id = $1", chat_id)
        if other is not None and other["tenant_id"] != t["tenant_id"]:
            raise AdminError(f"chat {chat_id} already belongs to another tenant; disable it there first")
        row = await conn.fetchrow(
            """INSERT INTO drivers (tenant_id, chat_id, driver_name, calendar_id, time_zone, status,
                                    calendar_proof, calendar_proven_id, calendar_proven_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $7::text IS NULL THEN NULL ELSE $4 END,
                       CASE WHEN $7::text IS NULL THEN NULL ELSE now() END)
               ON CONFLICT (tenant_id, chat_id) DO UPDATE SET driver_name = EXCLUDED.driver_name,
                   calendar_id = EXCLUDED.calendar_id, time_zone = EXCLUDED.time_zone,
                   status = EXCLUDED.status, updated_at = now(),
                   calendar_proof = coalesce(EXCLUDED.calendar_proof, CASE
                       WHEN drivers.calendar_id = EXCLUDED.calendar_id THEN drivers.calendar_proof END),
                   calendar_proven_id = coalesce(EXCLUDED.calendar_proven_id, CASE
                       WHEN drivers.calendar_id = EXCLUDED.calendar_id THEN drivers.calendar_proven_id END),
                   calendar_proven_at = coalesce(EXCLUDED.calendar_proven_at, CASE
                       WHEN drivers.calendar_id = EXCLUDED.calendar_id THEN drivers.calendar_proven_at END)
               RETURNING *""",
            t["tenant_id"], chat_id, name, calendar_id, time_zone or t["time_zone"], status, proof,
        )  # fmt: skip
        await _audit(
            conn, t["tenant_id"], "driver_added", chat_id=chat_id, calendar_id=calendar_id, name=name,
            calendar_proof=row["calendar_proof"] or "awaiting_code",
        )  # fmt: skip
        if vouched_by:
            holders = await calendar_holders(conn, calendar_id, t["tenant_id"], chat_id)
            await _audit(
                conn, t["tenant_id"], "calendar_ownership_vouched", chat_id=chat_id, calendar_id=calendar_id,
                actor=vouched_by, also_used_by=holders,
            )  # fmt: skip
    return dict(row)


async def calendar_holders(
    conn: asyncpg.Connection, calendar_id: str, tenant_id: str, chat_id: int
) -> list[dict[str, Any]]:
    """Other active drivers (any tenant) whose proven calendar this is: in the system context only."""
    rows = await conn.fetch(
        """SELECT tenant_id, chat_id, calendar_proof FROM drivers
            WHERE calendar_id = $1 AND status = 'active' AND calendar_proof IS NOT NULL
              AND NOT (tenant_id = $2 AND chat_id = $3)""",
        calendar_id, tenant_id, chat_id,
    )  # fmt: skip
    return [dict(r) for r in rows]


async def list_drivers(pool: asyncpg.Pool, *, tenant: str | None = None) -> list[dict[str, Any]]:
    async with system_tx(pool) as conn:
        if tenant:
            t = await resolve_tenant(conn, tenant)
            if t is None:
                raise AdminError(f"no tenant {tenant!r}")
            rows = await conn.fetch(
                "SELECT * FROM drivers WHERE tenant_id = $1 ORDER BY chat_id", t["tenant_id"]
            )
        else:
            rows = await conn.fetch("SELECT * FROM drivers ORDER BY tenant_id, chat_id")
    return [dict(r) for r in rows]


async def set_driver_status(
    pool: asyncpg.Pool,
    *,
    chat_id: int,
    status: str,
    tenant: str | None = None,
    source: str = "cli",
    actor: str | None = None,
) -> dict[str, Any]:
    """`driver disable|enable` (and the API's disable, `source="api"` with the caller as `actor`)."""
    async with system_tx(pool) as conn:
        before = await conn.fetchval("SELECT status FROM drivers WHERE chat_id = $1", chat_id)
        row = await conn.fetchrow(
            "UPDATE drivers SET status = $2, updated_at = now() WHERE chat_id = $1 RETURNING *",
            chat_id,
            status,
        )
        if row is None:
            raise AdminError(f"no driver with chat id {chat_id}")
        if tenant:
            t = await resolve_tenant(conn, tenant)
            if t is None or t["tenant_id"] != row["tenant_id"]:
                raise AdminError(f"chat {chat_id} is not a driver of tenant {tenant!r}")
        if status == "disabled":
            # The admin's decision now: a later payment must not re-activate what billing suspended.
            await conn.execute(
                "UPDATE subscriptions SET suspended = false WHERE tenant_id = $1 AND chat_id = $2",
                row["tenant_id"], chat_id,
            )  # fmt: skip
        extra = {"actor": actor} if actor else {}
        await _audit(
            conn, row["tenant_id"], f"driver_{status}", chat_id=chat_id, previous=before,
            workflow_id="api" if source == "api" else "admin", **extra,
        )  # fmt: skip
    return dict(row)


async def read_audit(
    pool: asyncpg.Pool, *, tenant: str | None = None, limit: int = 200, workflow_id: str | None = None
) -> list[dict[str, Any]]:
    async with system_tx(pool) as conn:
        tenant_id = None
        if tenant:
            t = await resolve_tenant(conn, tenant)
            if t is None:
                raise AdminError(f"no tenant {tenant!r}")
            tenant_id = t["tenant_id"]
        rows = await conn.fetch(
            """SELECT * FROM (SELECT * FROM audit_log
                 WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR workflow_id = $2)
                 ORDER BY at DESC, id DESC LIMIT $3) recent ORDER BY at, id""",
            tenant_id, workflow_id, limit,
        )  # fmt: skip
    return [dict(r) for r in rows]


async def _audit(
    conn: asyncpg.Connection, tenant_id: str, action: str, workflow_id: str = "admin", **details: Any
) -> None:
    """Admin actions are audited too; each is its own step (a fresh id per action). `workflow_id` says
    which door: 'admin' (the CLI) or 'api'."""
    await conn.execute(
        """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, details)
           VALUES ($1, $5, $5 || '-' || gen_random_uuid()::text, $2, $3, $4)""",
        tenant_id, action, details.get("chat_id"), details, workflow_id,
    )  # fmt: skip
