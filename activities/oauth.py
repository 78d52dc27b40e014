"""Drivers' Google grants (#6 phase 4): the /connect link, the encrypted refresh tokens, paused orders.

`OAuthGrants` is the store (async, on the worker's or server's event loop). The Calendar activities run
on a thread pool, so it also offers blocking `grant_for` / `mark_revoked` that hop onto its loop; the
choice of credentials itself is made in one place, `activities.calendar.CalendarService.http_for`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cryptography.fernet import InvalidToken
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autodispatch import oauth
from autodispatch.db import system_tx, tenant_tx
from autodispatch.settings import Settings
from schemas.calendar import Calendar2AutoInput
from schemas.oauth import (
    ClaimPausedInput,
    ConnectLink,
    ConnectLinkInput,
    DisconnectGrantInput,
    DisconnectGrantResult,
    PausedOrder,
    PausedOrders,
    PauseOrderInput,
    ReleasePausedInput,
)

log = logging.getLogger(__name__)

_BRIDGE_TIMEOUT = 15.0


class RevokeUnavailable(Exception):
    """Google's revoke endpoint could not be reached or failed (5xx): the grant may still be live."""


@dataclass(frozen=True)
class OAuthClient:
    """What google-auth needs to refresh a driver's access token."""

    client_id: str
    client_secret: str = field(repr=False)
    token_uri: str
    scopes: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthClient:
        assert settings.google_oauth_client_id and settings.google_oauth_client_secret
        return cls(
            client_id=settings.google_oauth_client_id,
            client_secret=settings.google_oauth_client_secret.get_secret_value(),
            token_uri=settings.google_oauth_token_uri,
            scopes=tuple(settings.google_oauth_scopes.split()),
        )


@dataclass(frozen=True)
class UserGrant:
    """A driver's grant as the Calendar service needs it. `refresh_token` is plaintext: keep it in memory."""

    tenant_id: str
    chat_id: int
    status: str  # active | revoked | disconnected
    # Never in a repr (logs, tracebacks, test failures show the grant without it).
    refresh_token: str | None = field(repr=False)
    account_email: str | None
    client: OAuthClient


class OAuthGrants:
    """oauth_states and oauth_grants rows, refresh tokens encrypted with `cipher`."""

    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, cipher: oauth.TokenCipher | None = None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.cipher = cipher or oauth.TokenCipher.from_settings(settings)
        self.client = OAuthClient.from_settings(settings)
        # The loop the pool belongs to: calendar threads hop onto it (asyncpg is bound to one loop).
        self._loop = asyncio.get_running_loop()

    # -- links ------------------------------------------------------------------------------
    async def new_link(self, tenant_id: str, chat_id: int, workflow_id: str, language: str) -> ConnectLink:
        assert self.settings.oauth_state_secret is not None
        state, claims = oauth.sign_state(
            self.settings.oauth_state_secret.get_secret_value(), tenant_id, chat_id, language=language
        )
        expires = datetime.fromtimestamp(claims.expires_at, UTC)
        async with tenant_tx(self.pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO oauth_states (tenant_id, nonce, chat_id, workflow_id, expires_at)
                   VALUES ($1, $2, $3, $4, $5)""",
                tenant_id, claims.nonce, chat_id, workflow_id, expires,
            )  # fmt: skip
        return ConnectLink(
            url=oauth.authorization_url(self.settings, state, claims.nonce),
            nonce=claims.nonce,
            expires_at=expires,
        )

    async def consume_state(self, claims: oauth.StateClaims) -> None:
        """Single use: the first callback with this state wins; any later one is refused."""
        async with tenant_tx(self.pool, claims.tenant_id) as conn:
            row = await conn.fetchrow(
                """UPDATE oauth_states SET used_at = now()
                    WHERE tenant_id = $1 AND nonce = $2 AND chat_id = $3 AND used_at IS NULL
                      AND expires_at > now()
                RETURNING nonce""",
                claims.tenant_id, claims.nonce, claims.chat_id,
            )  # fmt: skip
        if row is None:
            raise oauth.StateError("used", "the link was already used (or never issued)", claims)

    async def finish_state(self, claims: oauth.StateClaims, outcome: str) -> None:
        async with tenant_tx(self.pool, claims.tenant_id) as conn:
            await conn.execute(
                "UPDATE oauth_states SET outcome = $3 WHERE tenant_id = $1 AND nonce = $2",
                claims.tenant_id, claims.nonce, outcome,
            )  # fmt: skip

    # -- grants -----------------------------------------------------------------------------
    async def save(
        self, tenant_id: str, chat_id: int, refresh_token: str, account_email: str | None, scope: str
    ) -> None:
        async with tenant_tx(self.pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO oauth_grants (tenant_id, chat_id, status, refresh_token, account_email, scope)
                   VALUES ($1, $2, 'active', $3, $4, $5)
                   ON CONFLICT (tenant_id, chat_id) DO UPDATE SET
                       status = 'active', refresh_token = EXCLUDED.refresh_token,
                       account_email = EXCLUDED.account_email, scope = EXCLUDED.scope,
                       connected_at = now(), updated_at = now(), revoked_at = NULL, revoked_reason = NULL""",
                tenant_id, chat_id, self.cipher.encrypt(refresh_token), account_email, scope,
            )  # fmt: skip

    def _grant(self, row: asyncpg.Record) -> UserGrant:
        token = None
        if row["refresh_token"] is not None:
            token, _stale = self.cipher.decrypt(row["refresh_token"])
        return UserGrant(
            tenant_id=row["tenant_id"], chat_id=row["chat_id"], status=row["status"], refresh_token=token,
            account_email=row["account_email"], client=self.client,
        )  # fmt: skip

    async def _reencrypt_if_stale(self, conn: asyncpg.Connection, row: asyncpg.Record) -> None:
        """Lazy rotation: a token still under an older key is rewritten under the newest one."""
        if row["refresh_token"] is None:
            return
        _plain, stale = self.cipher.decrypt(row["refresh_token"])
        if stale:
            await conn.execute(
                """UPDATE oauth_grants SET refresh_token = $3, updated_at = now()
                    WHERE tenant_id = $1 AND chat_id = $2 AND refresh_token = $4""",
                row["tenant_id"], row["chat_id"], self.cipher.rotate(row["refresh_token"]), row["refresh_token"],
            )  # fmt: skip

    async def load(self, tenant_id: str, chat_id: int) -> UserGrant | None:
        async with tenant_tx(self.pool, tenant_id) as conn:
            row = await conn.fetchrow(
                "SELECT * FROM oauth_grants WHERE tenant_id = $1 AND chat_id = $2", tenant_id, chat_id
            )
            if row is None:
                return None
            await self._reencrypt_if_stale(conn, row)
        return self._grant(row)

    async def load_for_calendar(self, tenant_id: str, calendar_id: str) -> UserGrant | None:
        """For a calendar call that names no driver (an input recorded before it carried one): the grant
        of the one driver of this tenant whose calendar this is; none when no driver or several do
        (ambiguous). Never across tenants: a calendar id is a name anyone can claim, not a key."""
        async with tenant_tx(self.pool, tenant_id) as conn:
            rows = await conn.fetch(
                """SELECT g.* FROM oauth_grants g JOIN drivers d USING (tenant_id, chat_id)
                    WHERE g.tenant_id = $1 AND d.calendar_id = $2 AND d.calendar_proof IS NOT NULL
                    LIMIT 2""",
                tenant_id, calendar_id,
            )  # fmt: skip
        return self._grant(rows[0]) if len(rows) == 1 else None

    async def mark_revoked(self, tenant_id: str, chat_id: int, reason: str) -> bool:
        """Google said invalid_grant: forget the token, remember why. True if it was active until now."""
        async with tenant_tx(self.pool, tenant_id) as conn:
            status = await conn.execute(
                """UPDATE oauth_grants SET status = 'revoked', refresh_token = NULL, revoked_at = now(),
                          revoked_reason = $3, updated_at = now()
                    WHERE tenant_id = $1 AND chat_id = $2 AND status = 'active'""",
                tenant_id, chat_id, reason[:500],
            )  # fmt: skip
        return status.endswith(" 1")

    async def revoke_at_google(self, token: str) -> tuple[bool, str]:
        """POST revoke_uri token=…: (whether Google no longer honours the grant, what it said). A 400 is
        Google's answer for a token it does not know: already revoked, so done as well."""
        import aiohttp

        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http,
                http.post(self.settings.google_oauth_revoke_uri, data={"token": token}) as resp,
            ):
                if resp.status == 200:
                    return True, "revoked"
                return resp.status == 400, f"google answered {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, f"google unreachable: {exc}"

    async def disconnect_and_revoke(
        self, tenant_id: str, chat_id: int, *, insist: bool = False
    ) -> str | None:
        """`/disconnect` and `autodispatch oauth disconnect`: Google first, then our row, so a crash in
        between leaves the token for the retry (revoking twice is harmless). None: nothing was connected.

        `insist` (the driver's /disconnect): if Google cannot be reached, raise RevokeUnavailable and
        change nothing, so the step is retried and the driver is never told a grant is gone that Google
        still honours. Without it (an admin cutting access) the row is forgotten anyway and the answer
        says what Google did."""
        async with tenant_tx(self.pool, tenant_id) as conn:
            row = await conn.fetchrow(
                "SELECT status, refresh_token FROM oauth_grants WHERE tenant_id = $1 AND chat_id = $2",
                tenant_id, chat_id,
            )  # fmt: skip
        if row is None or row["status"] == "disconnected":
            return None
        google = "no token stored"
        if row["refresh_token"] is not None:
            try:
                done, google = await self.revoke_at_google(self.cipher.decrypt(row["refresh_token"])[0])
            except InvalidToken:
                done, google = True, "token unreadable (key no longer configured); forgotten here"
            if not done and insist:
                raise RevokeUnavailable(google)
        await self.disconnect(tenant_id, chat_id)
        return google

    async def disconnect(self, tenant_id: str, chat_id: int) -> str | None:
        """The driver (or an admin) ends the grant: returns the refresh token to revoke at Google."""
        async with tenant_tx(self.pool, tenant_id) as conn:
            row = await conn.fetchrow(
                """UPDATE oauth_grants g SET status = 'disconnected', refresh_token = NULL,
                          revoked_at = now(), revoked_reason = 'disconnected', updated_at = now()
                     FROM oauth_grants old
                    WHERE g.tenant_id = $1 AND g.chat_id = $2
                      AND old.tenant_id = g.tenant_id AND old.chat_id = g.chat_id
                RETURNING old.refresh_token""",
                tenant_id, chat_id,
            )  # fmt: skip
        if row is None or row["refresh_token"] is None:
            return None
        return self.cipher.decrypt(row["refresh_token"])[0]

    async def rotate_all(self) -> int:
        """`autodispatch oauth rotate-keys`: every stored token under the newest key. Returns how many changed."""
        changed = 0
        async with system_tx(self.pool) as conn:
            rows = await conn.fetch("SELECT * FROM oauth_grants WHERE refresh_token IS NOT NULL")
            for row in rows:
                try:
                    stale = self.cipher.decrypt(row["refresh_token"])[1]
                except InvalidToken:
                    # Under a key no longer configured: rotating cannot fix it; the driver reconnects.
                    log.warning("grant of %s/%s is under an unknown key", row["tenant_id"], row["chat_id"])
                    continue
                if stale:
                    await self._reencrypt_if_stale(conn, row)
                    changed += 1
        return changed

    # -- blocking bridges for the Calendar threads -------------------------------------------
    def _blocking(self, coro: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coro.close()
            raise RuntimeError("OAuthGrants blocking call made on its own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=_BRIDGE_TIMEOUT)

    def grant_for(
        self, tenant_id: str | None, chat_id: int | None, calendar_id: str | None
    ) -> UserGrant | None:
        if tenant_id is not None and chat_id is not None:
            return self._blocking(self.load(tenant_id, chat_id))
        if tenant_id is not None and calendar_id:
            return self._blocking(self.load_for_calendar(tenant_id, calendar_id))
        return None  # no tenant named: the service account, never a grant found by calendar id alone

    def mark_revoked_blocking(self, tenant_id: str, chat_id: int, reason: str) -> bool:
        return self._blocking(self.mark_revoked(tenant_id, chat_id, reason))


class OAuthActivities:
    """The workflow steps of phase 4: hand out a /connect link, pause and resume orders."""

    def __init__(self, pool: asyncpg.Pool, grants: OAuthGrants | None) -> None:
        self.pool = pool
        self.grants = grants  # None: OAuth is not configured (/connect says so)

    @activity.defn(name="create_connect_link")
    async def create_connect_link(self, req: ConnectLinkInput) -> ConnectLink:
        if self.grants is None:
            return ConnectLink()
        return await self.grants.new_link(req.tenant_id, req.chat_id, req.workflow_id, req.language)

    @activity.defn(name="disconnect_grant")
    async def disconnect_grant(self, req: DisconnectGrantInput) -> DisconnectGrantResult:
        """/disconnect: the driver ends the bot's use of their Google account (revoked at Google too)."""
        if self.grants is None:
            return DisconnectGrantResult(configured=False)
        try:
            google = await self.grants.disconnect_and_revoke(req.tenant_id, req.chat_id, insist=True)
        except RevokeUnavailable as exc:  # retried by the call site's policy; nothing changed meanwhile
            raise ApplicationError(f"Google's revoke endpoint: {exc}", type="GoogleUnavailable") from exc
        return DisconnectGrantResult(had_grant=google is not None, google=google or "")

    @activity.defn(name="pause_order")
    async def pause_order(self, req: PauseOrderInput) -> None:
        """Keep the whole calendar write; a repeat (retry, replay) leaves the first row as it is."""
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            await conn.execute(
                """INSERT INTO calendar_paused_orders (tenant_id, order_id, chat_id, workflow_id, input,
                                                       reply_to_message_id, reply_task_queue)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (tenant_id, order_id) DO UPDATE SET
                       status = 'paused', claimed_by = NULL, paused_at = now()
                   WHERE calendar_paused_orders.status <> 'resumed'""",
                req.tenant_id, req.order_id, req.chat_id, req.workflow_id, req.calendar.model_dump(mode="json"),
                req.reply_to_message_id, req.reply_task_queue,
            )  # fmt: skip

    @activity.defn(name="claim_paused_orders")
    async def claim_paused_orders(self, req: ClaimPausedInput) -> PausedOrders:
        """The chat's paused orders, claimed for one resuming workflow (a retry gets the same ones back;
        another workflow resuming at the same time gets none of them)."""
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            rows = await conn.fetch(
                """UPDATE calendar_paused_orders SET status = 'resuming', claimed_by = $3
                    WHERE tenant_id = $1 AND chat_id = $2
                      AND (status = 'paused' OR (status = 'resuming' AND claimed_by = $3))
                RETURNING order_id, workflow_id, input, reply_to_message_id, reply_task_queue, paused_at""",
                req.tenant_id, req.chat_id, req.workflow_id,
            )  # fmt: skip
        rows = sorted(rows, key=lambda r: (r["paused_at"], r["order_id"]))
        return PausedOrders(
            orders=[
                PausedOrder(
                    order_id=r["order_id"],
                    workflow_id=r["workflow_id"],
                    calendar=Calendar2AutoInput.model_validate(r["input"]),
                    reply_to_message_id=r["reply_to_message_id"],
                    reply_task_queue=r["reply_task_queue"],
                )  # fmt: skip
                for r in rows
            ]
        )

    @activity.defn(name="release_paused_order")
    async def release_paused_order(self, req: ReleasePausedInput) -> None:
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            if req.done:
                await conn.execute(
                    """UPDATE calendar_paused_orders SET status = 'resumed', resumed_at = now()
                        WHERE tenant_id = $1 AND order_id = $2 AND claimed_by = $3""",
                    req.tenant_id, req.order_id, req.workflow_id,
                )  # fmt: skip
            else:
                await conn.execute(
                    """UPDATE calendar_paused_orders SET status = 'paused', claimed_by = NULL
                        WHERE tenant_id = $1 AND order_id = $2 AND claimed_by = $3 AND status = 'resuming'""",
                    req.tenant_id, req.order_id, req.workflow_id,
                )  # fmt: skip
