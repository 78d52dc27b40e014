"""Tenant onboarding and credentials, shared by the CLI (operators) and the admin API.

Each action writes an audit row in the tenant it concerns; `source` says which door it came through
("cli" → workflow_id 'admin', like the driver commands; "api" → 'api') and `actor` who did it.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from autodispatch.admin import AdminError, check_time_zone
from autodispatch.api.auth import (
    ROLES,
    Role,
    generate_api_key,
    hash_api_key,
    issue_jwt,
    key_tenant,
    new_jti,
    require_signing_key,
)
from autodispatch.db import SYSTEM_TENANT, system_tx, tenant_tx
from autodispatch.settings import Settings

Source = Literal["cli", "api"]

_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = timedelta(days=366)
# Columns of a key a caller may see: never the hash.
_KEY_COLUMNS = "tenant_id, key_id, prefix, role, name, chat_id, created_at, last_used_at, revoked_at"


class NotFound(AdminError):
    """Something named that does not exist (HTTP 404)."""


class Conflict(AdminError):
    """A duplicate, or a state that forbids the action (HTTP 409)."""


class Forbidden(AdminError):
    """The caller may not do this to this object (HTTP 403)."""


# -- validation -------------------------------------------------------------------------
def check_currency(code: str | None) -> str | None:
    if code is None:
        return None
    value = code.strip().upper()
    if not _CURRENCY.match(value):
        raise AdminError(f"currency {code!r}: use a three-letter ISO 4217 code such as RUB, EUR or USD")
    return value


def check_name(name: str) -> str:
    value = name.strip()
    if not value:
        raise AdminError("tenant name must not be empty")
    if len(value) > 200 or any(ord(c) < 32 for c in value):
        raise AdminError("tenant name: at most 200 printable characters")
    return value


def parse_ttl(text: str) -> timedelta:
    """`3600`, `90s`, `15m`, `12h`, `30d`."""
    m = _TTL.match(text.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise AdminError(f"ttl {text!r}: use a positive number of seconds or 15m / 12h / 30d")
    ttl = timedelta(seconds=int(m.group(1)) * _TTL_UNITS[m.group(2)])
    if ttl > MAX_TTL:
        raise AdminError(f"ttl {text!r}: at most {MAX_TTL.days} days; use an API key for longer-lived access")
    return ttl


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:40].strip("-_")
    # Names without latin letters or digits (e.g. Cyrillic) still get a readable, valid id.
    return slug if slug and _TENANT_ID.match(slug) else "t-" + secrets.token_hex(4)


# -- audit ------------------------------------------------------------------------------
async def audit(
    conn: asyncpg.Connection,
    tenant_id: str,
    action: str,
    *,
    source: Source,
    actor: str,
    outcome: str = "ok",
    chat_id: int | None = None,
    **details: Any,
) -> None:
    await conn.execute(
        """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, outcome, details)
           VALUES ($1, $2, $2 || '-' || gen_random_uuid()::text, $3, $4, $5, $6)""",
        tenant_id, "admin" if source == "cli" else "api", action, chat_id, outcome,
        {"actor": actor, **details},
    )  # fmt: skip


# -- tenants ----------------------------------------------------------------------------
async def find_tenant(conn: asyncpg.Connection, tenant: str) -> asyncpg.Record | None:
    """By id or name; an exact id wins over a name that happens to be spelled like it."""
    return await conn.fetchrow(
        "SELECT * FROM tenants WHERE tenant_id = $1 OR name = $1 ORDER BY (tenant_id = $1) DESC LIMIT 1",
        tenant,
    )


async def get_tenant(pool: asyncpg.Pool, tenant: str) -> dict[str, Any]:
    async with system_tx(pool) as conn:
        row = await find_tenant(conn, tenant)
    if row is None:
        raise NotFound(f"no tenant {tenant!r}")
    return dict(row)


def task_queue_of(tenant: dict[str, Any], settings: Settings) -> str:
    """A dedicated tenant's own queue, else the shared one (stored as NULL: it follows the setting)."""
    return tenant["task_queue"] or settings.temporal_task_queue


def tenant_view(row: asyncpg.Record | dict[str, Any], settings: Settings) -> dict[str, Any]:
    out = dict(row)
    out["task_queue"] = task_queue_of(out, settings)
    return out


async def create_tenant(
    pool: asyncpg.Pool,
    settings: Settings,
    name: str,
    *,
    dedicated: bool = False,
    time_zone: str | None = None,
    currency: str | None = None,
    source: Source,
    actor: str,
) -> dict[str, Any]:
    """The tenant, its first admin API key (returned once as `api_key`) and its task queue."""
    name = check_name(name)
    zone = check_time_zone(time_zone) if time_zone else settings.default_time_zone
    code = check_currency(currency)
    async with system_tx(pool) as conn:
        # Names are unique, and a name must not read as another tenant's id: --tenant takes either.
        taken = await conn.fetchval(
            "SELECT tenant_id FROM tenants WHERE lower(name) = lower($1) OR tenant_id = lower($1)", name
        )
        if taken is not None:
            raise Conflict(f"tenant name {name!r} is already taken")
        tenant_id = _slug(name)
        while await conn.fetchval(
            "SELECT 1 FROM tenants WHERE tenant_id = $1 OR lower(name) = $1", tenant_id
        ):  # fmt: skip
            tenant_id = f"{tenant_id[:54]}-{secrets.token_hex(3)}"
        queue = f"tenant-{tenant_id}" if dedicated else None
        try:
            row = await conn.fetchrow(
                """INSERT INTO tenants (tenant_id, name, time_zone, currency, dedicated, task_queue)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
                tenant_id, name, zone, code, dedicated, queue,
            )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:  # a concurrent create of the same name
            raise Conflict(f"tenant name {name!r} is already taken") from exc
        key = await _insert_key(conn, tenant_id, role="admin", name="initial admin key", chat_id=None)
        await audit(
            conn, tenant_id, "tenant_created", source=source, actor=actor, name=name, dedicated=dedicated,
            time_zone=zone, currency=code, task_queue=queue or settings.temporal_task_queue,
        )  # fmt: skip
        await audit(
            conn, tenant_id, "api_key_created", source=source, actor=actor, key_id=key["key_id"], role="admin"
        )
    out = tenant_view(row, settings)
    out["api_key"] = key.pop("api_key")
    out["key_id"] = key["key_id"]
    return out


async def list_tenants(
    pool: asyncpg.Pool, settings: Settings, *, tenant: str | None = None, include_system: bool = False
) -> list[dict[str, Any]]:
    """All tenants, or the one named (a tenant-scoped caller sees only its own)."""
    async with system_tx(pool) as conn:
        if tenant is not None:
            row = await find_tenant(conn, tenant)
            if row is None:
                raise NotFound(f"no tenant {tenant!r}")
            rows = [row]
        else:
            rows = await conn.fetch(
                "SELECT * FROM tenants WHERE $1 OR tenant_id <> $2 ORDER BY tenant_id",
                include_system,
                SYSTEM_TENANT,
            )
    return [tenant_view(r, settings) for r in rows]


async def set_tenant_status(
    pool: asyncpg.Pool, settings: Settings, tenant: str, status: Literal["active", "disabled"], *,
    source: Source, actor: str,
) -> dict[str, Any]:  # fmt: skip
    async with system_tx(pool) as conn:
        row = await find_tenant(conn, tenant)
        if row is None:
            raise NotFound(f"no tenant {tenant!r}")
        if row["tenant_id"] == SYSTEM_TENANT:
            raise Conflict("the reserved tenant 'system' cannot be disabled")
        row = await conn.fetchrow(
            "UPDATE tenants SET status = $2 WHERE tenant_id = $1 RETURNING *", row["tenant_id"], status
        )
        await audit(
            conn, row["tenant_id"], "tenant_disabled" if status == "disabled" else "tenant_enabled",
            source=source, actor=actor,
        )  # fmt: skip
    return tenant_view(row, settings)


async def update_tenant(
    pool: asyncpg.Pool,
    settings: Settings,
    tenant_id: str,
    *,
    time_zone: str | None = None,
    currency: str | None = None,
    source: Source,
    actor: str,
) -> dict[str, Any]:
    """A tenant's own settings, changed inside its own RLS context."""
    changes: dict[str, Any] = {}
    if time_zone is not None:
        changes["time_zone"] = check_time_zone(time_zone)
    if currency is not None:
        changes["currency"] = check_currency(currency)
    async with tenant_tx(pool, tenant_id) as conn:
        row = await conn.fetchrow(
            """UPDATE tenants SET time_zone = coalesce($2, time_zone), currency = coalesce($3, currency)
               WHERE tenant_id = $1 RETURNING *""",
            tenant_id, changes.get("time_zone"), changes.get("currency"),
        )  # fmt: skip
        if row is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        if changes:
            await audit(conn, tenant_id, "tenant_updated", source=source, actor=actor, **changes)
    return tenant_view(row, settings)


# -- API keys ---------------------------------------------------------------------------
async def _insert_key(
    conn: asyncpg.Connection, tenant_id: str, *, role: Role, name: str, chat_id: int | None
) -> dict[str, Any]:
    new = generate_api_key(tenant_id)
    row = await conn.fetchrow(
        f"""INSERT INTO api_keys (tenant_id, key_id, prefix, key_hash, role, name, chat_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_KEY_COLUMNS}""",
        tenant_id, new.key_id, new.prefix, new.key_hash, role, name, chat_id,
    )  # fmt: skip
    return {**dict(row), "api_key": new.plaintext}


async def create_api_key(
    pool: asyncpg.Pool,
    tenant: str,
    *,
    role: Role = "admin",
    name: str = "",
    chat_id: int | None = None,
    source: Source,
    actor: str,
) -> dict[str, Any]:
    """A new key; the plaintext is in the result's `api_key` and nowhere else, ever."""
    if role not in ROLES:
        raise AdminError(f"role {role!r}: use one of {', '.join(ROLES)}")
    t = await get_tenant(pool, tenant)
    tenant_id = t["tenant_id"]
    if (role == "system") != (tenant_id == SYSTEM_TENANT):
        raise AdminError("role `system` keys belong to tenant 'system', and that tenant has only those")
    if t["status"] != "active":
        raise Conflict(f"tenant {tenant!r} is disabled")
    if (role == "user") != (chat_id is not None):
        raise AdminError("a `user` key needs the driver's chat id (--chat-id), and only it takes one")
    if len(name) > 200:
        raise AdminError("key name: at most 200 characters")
    async with tenant_tx(pool, tenant_id) as conn:
        if chat_id is not None and not await conn.fetchval(
            "SELECT 1 FROM drivers WHERE tenant_id = $1 AND chat_id = $2", tenant_id, chat_id
        ):
            raise NotFound(f"no driver with chat id {chat_id} in tenant {tenant!r}")
        key = await _insert_key(conn, tenant_id, role=role, name=name, chat_id=chat_id)
        await audit(
            conn, tenant_id, "api_key_created", source=source, actor=actor, chat_id=chat_id,
            key_id=key["key_id"], role=role, name=name,
        )  # fmt: skip
    return key


async def list_api_keys(pool: asyncpg.Pool, tenant_id: str) -> list[dict[str, Any]]:
    async with tenant_tx(pool, tenant_id) as conn:
        rows = await conn.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id")
    return [dict(r) for r in rows]


async def revoke_api_key(
    pool: asyncpg.Pool, key: str, *, tenant: str | None = None, source: Source, actor: str
) -> dict[str, Any]:
    """Revoke by key id (`k…`) or by the key itself; with `tenant`, the key must be that tenant's."""
    async with system_tx(pool) as conn:
        tenant_id: str | None = None
        if tenant is not None:
            t = await find_tenant(conn, tenant)
            if t is None:
                raise NotFound(f"no tenant {tenant!r}")
            tenant_id = t["tenant_id"]
        if key_tenant(key) is not None:
            rows = await conn.fetch(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND key_hash = $2",
                key_tenant(key), hash_api_key(key),
            )  # fmt: skip
        else:
            rows = await conn.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = $1", key)
        if tenant_id is not None:
            rows = [r for r in rows if r["tenant_id"] == tenant_id]
        if not rows:
            where = f" in tenant {tenant!r}" if tenant is not None else ""
            raise NotFound(f"no API key {_shown(key)}{where}")
        if len(rows) > 1:
            raise Conflict(f"key id {key!r} exists in several tenants; name the tenant")
        row = rows[0]
        if row["revoked_at"] is not None:
            return dict(row)  # revoking twice is not an error: the key is revoked either way
        row = await conn.fetchrow(
            f"""UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND key_id = $2
                RETURNING {_KEY_COLUMNS}""",
            row["tenant_id"], row["key_id"],
        )  # fmt: skip
        await audit(
            conn, row["tenant_id"], "api_key_revoked", source=source, actor=actor, key_id=row["key_id"]
        )
    return dict(row)


def _shown(key: str) -> str:
    """A key id as is; a full key only by its prefix (it must not reach logs or terminals again)."""
    return repr(key[:14] + "…") if key_tenant(key) is not None else repr(key)


# -- tokens -----------------------------------------------------------------------------
async def issue_token(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    tenant: str,
    role: Role,
    subject: str | None = None,
    chat_id: int | None = None,
    ttl: timedelta = timedelta(hours=1),
    source: Source,
    actor: str,
) -> dict[str, Any]:
    require_signing_key(settings)
    if role not in ROLES:
        raise AdminError(f"role {role!r}: use one of {', '.join(ROLES)}")
    t = await get_tenant(pool, tenant)
    tenant_id = t["tenant_id"]
    if (role == "system") != (tenant_id == SYSTEM_TENANT):
        raise AdminError(
            "role `system` tokens are issued for tenant 'system', and that tenant has only those"
        )
    if (role == "user") != (chat_id is not None):
        raise AdminError("a `user` token needs the driver's chat id (--chat-id), and only it takes one")
    if role == "user":
        async with tenant_tx(pool, tenant_id) as conn:
            if not await conn.fetchval(
                "SELECT 1 FROM drivers WHERE tenant_id = $1 AND chat_id = $2", tenant_id, chat_id
            ):
                raise NotFound(f"no driver with chat id {chat_id} in tenant {tenant!r}")
        subject = str(chat_id)
    subject = subject or actor
    now = datetime.now(UTC)
    jti = new_jti()
    token = issue_jwt(
        settings, subject=subject, role=role, tenant_id=tenant_id, ttl=ttl, now=now,
        version=t["token_version"], jti=jti,
    )  # fmt: skip
    async with tenant_tx(pool, tenant_id) as conn:
        await audit(
            conn, tenant_id, "token_issued", source=source, actor=actor, chat_id=chat_id, role=role,
            subject=subject, expires_at=(now + ttl).isoformat(), jti=jti,
        )  # fmt: skip
    return {
        "token": token, "tenant_id": tenant_id, "role": role, "sub": subject, "expires_at": now + ttl,
        "jti": jti,
    }  # fmt: skip


async def revoke_tokens(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    tenant: str,
    jti: str | None = None,
    source: Source,
    actor: str,
) -> dict[str, Any]:
    """End JWTs before they expire: the one with this `jti` (the audit row of `token_issued` names
    it), or with `jti` None every token of the tenant issued so far (its token_version goes up)."""
    t = await get_tenant(pool, tenant)
    tenant_id = t["tenant_id"]
    async with tenant_tx(pool, tenant_id) as conn:
        if jti is not None:
            jti = jti.strip()
            if not jti or len(jti) > 100:
                raise AdminError("jti: give the token's jti (from `token issue --json` or the audit log)")
            await conn.execute(
                """INSERT INTO revoked_tokens (tenant_id, jti, expires_at, actor)
                   VALUES ($1, $2, now() + make_interval(days => $3), $4) ON CONFLICT DO NOTHING""",
                tenant_id, jti, settings.jwt_max_ttl_days, actor,
            )  # fmt: skip
            await audit(conn, tenant_id, "token_revoked", source=source, actor=actor, jti=jti)
            return {"tenant_id": tenant_id, "revoked": jti}
        version = await conn.fetchval(
            "UPDATE tenants SET token_version = token_version + 1 WHERE tenant_id = $1 RETURNING token_version",
            tenant_id,
        )
        await audit(conn, tenant_id, "tokens_revoked", source=source, actor=actor, token_version=version)
    return {"tenant_id": tenant_id, "revoked": "all", "token_version": version}


# -- the bot side of scoping ------------------------------------------------------------
async def order_for_chat(
    pool: asyncpg.Pool, *, chat_id: int, order_id: str, workflow_id: str
) -> dict[str, Any]:
    """The order named by callback data, if it is this chat's own; else Forbidden.

    Callback data comes from the client and can name any order id: the order must be in the chat's
    tenant *and* the chat's. A denial is audited once per (workflow, order), so a retried activity
    does not write it twice; it is committed before the error is raised.
    """
    async with system_tx(pool) as conn:
        tenant_id = await conn.fetchval("SELECT tenant_id FROM drivers WHERE chat_id = $1", chat_id)
        row = None
        if tenant_id is not None:
            row = await conn.fetchrow(
                "SELECT * FROM orders WHERE tenant_id = $1 AND order_id = $2 AND chat_id = $3",
                tenant_id, order_id, chat_id,
            )  # fmt: skip
        if row is None:
            await conn.execute(
                """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, order_id, outcome, details)
                   VALUES ($1, $2, 'callback_denied:' || $4, 'callback_denied', $3, $4, 'denied', $5)
                   ON CONFLICT (tenant_id, workflow_id, step) DO NOTHING""",
                tenant_id or SYSTEM_TENANT, workflow_id, chat_id, order_id,
                {"reason": "the order is not this driver's" if tenant_id else "unknown chat"},
            )  # fmt: skip
    if row is None:
        raise Forbidden(f"order {order_id!r} is not yours")
    return dict(row)
