"""Tenants' own Telegram bots (docs/bots.md): registered with `autodispatch bot add` or the admin API.

A token is checked with Telegram's getMe before it is stored, and stored (with the bot's webhook
secret) as a Fernet token under AUTODISPATCH_OAUTH_TOKEN_KEYS, the refresh tokens' keys and rotation
(docs/oauth.md). Telegram's bot id is the row's key: a token revoked in @BotFather and replaced keeps
the id, so registering the new token resumes the same bot. A bot Telegram stops accepting (401) is
paused by whichever process hits the 401, audited in its tenant's log and shown in the API.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramUnauthorizedError

from autodispatch.admin import AdminError
from autodispatch.db import system_tx
from autodispatch.oauth import InvalidToken, TokenCipher
from autodispatch.settings import Settings
from autodispatch.tenants import Conflict, NotFound, Source, audit, find_tenant

BotStatus = Literal["active", "paused"]
NOTIFY_CHANNEL = "tenant_bots"


def bot_cipher(settings: Settings) -> TokenCipher:
    """The refresh tokens' keys; in sandbox mode the key `up` keeps under DATA_DIR."""
    if settings.oauth_token_keys is not None:
        return TokenCipher.from_setting(settings.oauth_token_keys.get_secret_value())
    keys_file = settings.data_dir / "run" / "sandbox-oauth.json"
    if keys_file.exists():
        key = json.loads(keys_file.read_text()).get("token_key")
        if key:
            return TokenCipher([key])
    raise AdminError(
        "AUTODISPATCH_OAUTH_TOKEN_KEYS is not set: bot tokens are stored only encrypted "
        "(generate a key with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
    )


def token_bot_id(token: str) -> int:
    """Telegram's bot id is the token's part before the colon."""
    head, sep, tail = token.strip().partition(":")
    if not sep or not head.isdigit() or not tail:
        raise AdminError("not a bot token: @BotFather's tokens look like 123456789:AAH…")
    return int(head)


def default_bot_id(settings: Settings) -> int | None:
    token = settings.telegram_bot_token
    return token_bot_id(token.get_secret_value()) if token is not None else None


async def verify_token(token: str, api_base: str) -> tuple[int, str]:
    """(bot id, username) from Telegram's getMe; a token Telegram refuses is a clear error."""
    from bot.dispatcher import make_bot

    token_bot_id(token)
    bot = make_bot(token, api_base)
    try:
        me = await bot.get_me()
    except TelegramUnauthorizedError as exc:
        raise AdminError("Telegram does not accept this token (getMe: 401 Unauthorized)") from exc
    except (TelegramAPIError, TelegramNetworkError) as exc:
        raise AdminError(f"Telegram could not be asked about the token (getMe: {exc})") from exc
    finally:
        await bot.session.close()
    if not me.username:
        raise AdminError("getMe returned no username for this bot")
    return me.id, me.username


def bot_view(row: asyncpg.Record | dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What an admin sees of a bot: never its token or secret."""
    return {
        "bot_id": row["bot_id"],
        "tenant_id": row["tenant_id"],
        "username": row["username"],
        "status": row["status"],
        "paused_reason": row["paused_reason"],
        "paused_at": row["paused_at"],
        "webhook_path": webhook_path(row["bot_id"]),
        "link": f"https://t.me/{row['username']}",
        "created_at": row["created_at"],
    }


def webhook_path(bot_id: int) -> str:
    """A tenant bot's own webhook path (the default bot keeps /telegram/webhook)."""
    return f"/telegram/webhook/{bot_id}"


async def add_bot(
    pool: asyncpg.Pool,
    settings: Settings,
    tenant: str,
    token: str,
    *,
    api_base: str,
    source: Source,
    actor: str,
) -> dict[str, Any]:
    """Register the tenant's bot, or give a registered bot its new token (which also resumes it)."""
    cipher = bot_cipher(settings)
    bot_id, username = await verify_token(token, api_base)
    if bot_id == default_bot_id(settings):
        raise Conflict(f"@{username} is the stack's default bot (AUTODISPATCH_TELEGRAM_BOT_TOKEN)")
    async with system_tx(pool) as conn:
        row = await find_tenant(conn, tenant)
        if row is None:
            raise NotFound(f"no tenant {tenant!r}")
        tenant_id = row["tenant_id"]
        existing = await conn.fetchrow("SELECT tenant_id, status FROM tenant_bots WHERE bot_id = $1", bot_id)
        if existing is not None and existing["tenant_id"] != tenant_id:
            raise Conflict(f"@{username} is registered for another tenant")
        stored = await conn.fetchrow(
            """INSERT INTO tenant_bots (bot_id, tenant_id, username, token, webhook_secret)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (bot_id) DO UPDATE SET username = EXCLUDED.username, token = EXCLUDED.token,
                   status = 'active', paused_reason = NULL, paused_at = NULL, updated_at = now()
               RETURNING *""",
            bot_id, tenant_id, username, cipher.encrypt(token), cipher.encrypt(secrets.token_urlsafe(32)),
        )  # fmt: skip
        action = "bot_added" if existing is None else "bot_token_replaced"
        resumed = existing is not None and existing["status"] == "paused"
        await audit(
            conn, tenant_id, action, source=source, actor=actor, bot_id=bot_id, username=username,
            resumed=resumed,
        )  # fmt: skip
    return bot_view(stored, settings)


async def remove_bot(
    pool: asyncpg.Pool, settings: Settings, tenant: str, bot: str, *, source: Source, actor: str
) -> dict[str, Any]:
    """Stop serving the tenant's bot (by id or @username); its drivers go back to the default bot."""
    async with system_tx(pool) as conn:
        row = await find_tenant(conn, tenant)
        if row is None:
            raise NotFound(f"no tenant {tenant!r}")
        name = bot.lstrip("@")
        removed = await conn.fetchrow(
            """DELETE FROM tenant_bots WHERE tenant_id = $1 AND (bot_id::text = $2 OR lower(username) = lower($2))
               RETURNING *""",
            row["tenant_id"], name,
        )  # fmt: skip
        if removed is None:
            raise NotFound(f"tenant {row['tenant_id']!r} has no bot {bot!r}")
        await audit(
            conn, row["tenant_id"], "bot_removed", source=source, actor=actor, bot_id=removed["bot_id"],
            username=removed["username"],
        )  # fmt: skip
    return bot_view(removed, settings)


async def list_bots(
    pool: asyncpg.Pool, settings: Settings, tenant: str | None = None
) -> list[dict[str, Any]]:
    async with system_tx(pool) as conn:
        tenant_id = None
        if tenant is not None:
            row = await find_tenant(conn, tenant)
            if row is None:
                raise NotFound(f"no tenant {tenant!r}")
            tenant_id = row["tenant_id"]
        rows = await conn.fetch(
            "SELECT * FROM tenant_bots WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY tenant_id, bot_id",
            tenant_id,
        )
    return [bot_view(r, settings) for r in rows]


async def pause_bot(pool: asyncpg.Pool, bot_id: int, reason: str) -> bool:
    """Telegram refused the token: pause the bot (once) and tell its tenant's audit log. True if paused now."""
    async with system_tx(pool) as conn:
        row = await conn.fetchrow(
            """UPDATE tenant_bots SET status = 'paused', paused_reason = $2, paused_at = now(), updated_at = now()
                WHERE bot_id = $1 AND status = 'active' RETURNING tenant_id, username""",
            bot_id, reason[:500],
        )  # fmt: skip
        if row is None:
            return False
        await conn.execute(
            """INSERT INTO audit_log (tenant_id, workflow_id, step, action, outcome, details)
               VALUES ($1, 'telegram', 'telegram-' || gen_random_uuid()::text, 'bot_paused', 'error', $2)""",
            row["tenant_id"], {"bot_id": bot_id, "username": row["username"], "reason": reason[:500]},
        )  # fmt: skip
    return True


@dataclass(frozen=True)
class BotConfig:
    """A registered bot as the stack serves it (decrypted, in memory only)."""

    bot_id: int
    tenant_id: str
    username: str
    token: str
    webhook_secret: str
    status: BotStatus


async def load_bots(pool: asyncpg.Pool, cipher: TokenCipher) -> list[BotConfig]:
    """Every registered bot; one whose token no key decrypts is left out (and logged by the caller)."""
    async with system_tx(pool) as conn:
        rows = await conn.fetch("SELECT * FROM tenant_bots ORDER BY bot_id")
    out = []
    for r in rows:
        try:
            token, _ = cipher.decrypt(r["token"])
            secret, _ = cipher.decrypt(r["webhook_secret"])
        except InvalidToken:
            continue
        out.append(BotConfig(r["bot_id"], r["tenant_id"], r["username"], token, secret, r["status"]))
    return out


async def bot_tenants(pool: asyncpg.Pool) -> dict[int, str]:
    """bot id → its tenant, for routing."""
    async with system_tx(pool) as conn:
        rows = await conn.fetch("SELECT bot_id, tenant_id FROM tenant_bots")
    return {r["bot_id"]: r["tenant_id"] for r in rows}


async def rotate_bot_tokens(pool: asyncpg.Pool, settings: Settings) -> tuple[int, list[int]]:
    """Re-encrypt every bot token and secret under the newest key (after adding a key in front).
    Returns (re-encrypted, ids of bots no key decrypts: left as they are, to be registered again)."""
    cipher = bot_cipher(settings)
    changed, lost = 0, []
    async with system_tx(pool) as conn:
        for r in await conn.fetch("SELECT bot_id, token, webhook_secret FROM tenant_bots FOR UPDATE"):
            try:
                token, secret = cipher.rotate(r["token"]), cipher.rotate(r["webhook_secret"])
            except InvalidToken:
                lost.append(r["bot_id"])
                continue
            await conn.execute(
                "UPDATE tenant_bots SET token = $2, webhook_secret = $3 WHERE bot_id = $1",
                r["bot_id"],
                token,
                secret,
            )
            changed += 1
    return changed, lost


class BotDirectory:
    """Tenants' bots by id for calls made outside the bot's outbound queue (a picture's getFile: a file
    id is valid only with the bot that received it). Read from the table on first use, then kept.
    `make_bot` builds a client for a token (the worker's, so it talks to the same Bot API)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, make_bot: Callable[[str], Bot]) -> None:
        self.pool = pool
        self.settings = settings
        self.make_bot = make_bot
        self._bots: dict[int, Bot] = {}

    async def get(self, bot_id: int) -> Bot | None:
        """The client of this tenant bot, or None if it is not registered (or no key decrypts it)."""
        if bot_id in self._bots:
            return self._bots[bot_id]
        try:
            cipher = bot_cipher(self.settings)
        except AdminError:
            return None
        async with system_tx(self.pool) as conn:
            stored = await conn.fetchval("SELECT token FROM tenant_bots WHERE bot_id = $1", bot_id)
        if stored is None:
            return None
        try:
            token, _ = cipher.decrypt(stored)
        except InvalidToken:
            return None
        bot = self._bots[bot_id] = self.make_bot(token)
        return bot

    async def close(self) -> None:
        for bot in self._bots.values():
            await bot.session.close()
        self._bots = {}
