"""A tenant's onboarding settings (#6 phase 2), for the admin API and the CLI: its invite link and what
activates a driver who finished the dialogue.

The invite code is the payload of the deep link `https://t.me/<bot username>?start=<code>`: a new driver
who opens it sends `/start <code>`, and the OnboardingWorkflow joins them to this tenant. Rotating the
code makes every link handed out before stop working (a driver in the middle of the dialogue keeps the
fleet they chose); closing it (no code) stops invitations.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

import asyncpg

from autodispatch.db import tenant_tx
from autodispatch.settings import Settings
from autodispatch.tenants import NotFound, Source, audit

InviteChange = Literal["rotate", "close"]
Activation = Literal["payment", "approval"]


def new_invite_code() -> str:
    """22 characters of Telegram's deep-link alphabet (A-Z a-z 0-9 _ -), 128 random bits."""
    return secrets.token_urlsafe(16)


def onboarding_view(
    row: asyncpg.Record | dict[str, Any], settings: Settings, own_bot: str | None = None
) -> dict[str, Any]:
    """`own_bot`: the username of the tenant's own bot (docs/bots.md), whose link its drivers get."""
    code = row["invite_code"]
    username = (own_bot or settings.telegram_bot_username or "").lstrip("@")
    return {
        "tenant_id": row["tenant_id"],
        "activation": row["onboarding_activation"],
        "invite_code": code,
        "start_command": f"/start {code}" if code else None,
        "deep_link": f"https://t.me/{username}?start={code}" if code and username else None,
        "default_tenant": settings.onboarding_default_tenant in (row["tenant_id"], row["name"]),
    }


async def get_onboarding(pool: asyncpg.Pool, settings: Settings, tenant_id: str) -> dict[str, Any]:
    async with tenant_tx(pool, tenant_id) as conn:
        row = await conn.fetchrow("SELECT * FROM tenants WHERE tenant_id = $1", tenant_id)
        own_bot = await _own_bot(conn, tenant_id)
    if row is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    return onboarding_view(row, settings, own_bot)


async def update_onboarding(
    pool: asyncpg.Pool,
    settings: Settings,
    tenant_id: str,
    *,
    activation: Activation | None = None,
    invite: InviteChange | None = None,
    source: Source,
    actor: str,
) -> dict[str, Any]:
    """Change the activation mode and/or rotate or close the invite code, audited, in the tenant's context."""
    async with tenant_tx(pool, tenant_id) as conn:
        row = await conn.fetchrow("SELECT * FROM tenants WHERE tenant_id = $1 FOR UPDATE", tenant_id)
        if row is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        code = row["invite_code"]
        if invite == "rotate":
            code = new_invite_code()
        elif invite == "close":
            code = None
        row = await conn.fetchrow(
            """UPDATE tenants SET onboarding_activation = coalesce($2, onboarding_activation), invite_code = $3
               WHERE tenant_id = $1 RETURNING *""",
            tenant_id, activation, code,
        )  # fmt: skip
        changes: dict[str, Any] = {}
        if activation is not None:
            changes["activation"] = activation
        if invite is not None:
            changes["invite"] = invite  # never the code itself: the audit log is not where links leak from
        if changes:
            await audit(conn, tenant_id, "onboarding_updated", source=source, actor=actor, **changes)
        own_bot = await _own_bot(conn, tenant_id)
    return onboarding_view(row, settings, own_bot)


async def _own_bot(conn: asyncpg.Connection, tenant_id: str) -> str | None:
    return await conn.fetchval(
        "SELECT username FROM tenant_bots WHERE tenant_id = $1 ORDER BY created_at, bot_id LIMIT 1", tenant_id
    )
