"""Google's redirect back to us after the consent screen: `GET /oauth/google/callback?code=…&state=…`.

Order of checks, each refusal audited and shown as a plain page that says what to do (send /connect
again): the state's signature (forged or altered → refused before anything in it is believed), its
expiry (10 min), then single use (its oauth_states row is consumed). Only then is the code exchanged
at the token endpoint (with the PKCE verifier derived from the state's nonce), the refresh token stored
encrypted, and `CalendarConnectedWorkflow` started: it tells the driver in Telegram and writes the
orders paused while their grant was revoked.
"""

from __future__ import annotations

import html
import logging
import uuid
from typing import Any

import aiohttp
import asyncpg
import jwt
from aiohttp import web
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from activities.oauth import OAuthGrants
from autodispatch import oauth, texts
from autodispatch.db import SYSTEM_TENANT, tenant_tx
from autodispatch.settings import Settings
from schemas.oauth import CalendarConnected
from workflows.ids import CHAT_ID, TENANT_ID
from workflows.oauth import CalendarConnectedWorkflow, connected_workflow_id

log = logging.getLogger(__name__)

OAUTH_CALLBACK_PATH = "/oauth/google/callback"
_TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=20)


def _page(lang: str, key: str, status: int, **kw: object) -> web.Response:
    title = html.escape(texts.t(lang, "oauth_page_title"))
    body = html.escape(texts.t(lang, key, **kw))
    page = (
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'><title>{title}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'></head>"
        f"<body><h1>{title}</h1><p id='message' data-result='{key}'>{body}</p></body></html>"
    )
    return web.Response(text=page, status=status, content_type="text/html")


def _language(request: web.Request) -> str:
    return texts.language_for(request.headers.get("Accept-Language"))


async def audit(
    pool: asyncpg.Pool, tenant_id: str, workflow_id: str, step: str, action: str, *,
    chat_id: int | None = None, outcome: str = "ok", **details: Any,
) -> None:  # fmt: skip
    """One audit row per step of a connect attempt (workflow id `oauth-<nonce>`); never a token."""
    async with tenant_tx(pool, tenant_id) as conn:
        await conn.execute(
            """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, outcome, details)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
            tenant_id, workflow_id, step, action, chat_id, outcome, details,
        )  # fmt: skip


class OAuthCallback:
    def __init__(
        self,
        client: Client | None,
        pool: asyncpg.Pool,
        settings: Settings,
        grants: OAuthGrants | None,
        *,
        reply_task_queue: str | None,
    ) -> None:
        self.client = client
        self.pool = pool
        self.settings = settings
        self.grants = grants
        self.reply_task_queue = reply_task_queue

    async def _refuse(self, request: web.Request, err: oauth.StateError) -> web.Response:
        claims = err.claims
        lang = claims.language if claims else _language(request)
        if claims is None:
            # Nothing in a state with a bad signature is believed: recorded under the system tenant.
            await audit(
                self.pool, SYSTEM_TENANT, "oauth-rejected", f"rejected-{uuid.uuid4()}", "oauth_state_rejected",
                outcome="denied", reason=err.reason, remote=request.remote,
            )  # fmt: skip
        else:
            await audit(
                self.pool, claims.tenant_id, f"oauth-{claims.nonce}", f"rejected-{uuid.uuid4()}",
                "oauth_state_rejected", chat_id=claims.chat_id, outcome="denied", reason=err.reason,
            )  # fmt: skip
        key = {"expired": "oauth_page_expired", "used": "oauth_page_used"}.get(
            err.reason, "oauth_page_invalid"
        )
        return _page(lang, key, 400)

    async def handle(self, request: web.Request) -> web.Response:
        if self.grants is None or self.settings.oauth_state_secret is None:
            return _page(_language(request), "oauth_page_unavailable", 503)
        secret = self.settings.oauth_state_secret.get_secret_value()
        try:
            claims = oauth.verify_state(secret, request.query.get("state", ""))
            await self.grants.consume_state(claims)
        except oauth.StateError as err:
            log.warning("OAuth callback refused: %s", err)
            return await self._refuse(request, err)
        lang, wf = claims.language, f"oauth-{claims.nonce}"
        tenant, chat = claims.tenant_id, claims.chat_id

        if request.query.get("error") or not request.query.get("code"):
            error = request.query.get("error") or "no_code"
            await self.grants.finish_state(claims, "denied")
            await audit(
                self.pool, tenant, wf, "callback", "oauth_denied", chat_id=chat, outcome="denied", error=error
            )
            return _page(lang, "oauth_page_denied", 400)
        await audit(self.pool, tenant, wf, "callback", "oauth_callback", chat_id=chat)

        try:
            tokens = await self._exchange(request.query["code"], claims.nonce, secret)
        except TokenExchangeError as err:
            await self.grants.finish_state(claims, "failed")
            await audit(self.pool, tenant, wf, "token", "oauth_token_failed", chat_id=chat, outcome="error",
                        error=err.error, message=str(err))  # fmt: skip
            return _page(lang, "oauth_page_failed", 502, reason=err.error)
        email = _email_of(tokens)
        await self.grants.save(tenant, chat, tokens["refresh_token"], email, str(tokens.get("scope") or ""))
        await self.grants.finish_state(claims, "connected")
        await audit(self.pool, tenant, wf, "grant", "oauth_connected", chat_id=chat, account=email,
                    scope=str(tokens.get("scope") or ""))  # fmt: skip

        try:
            await self._start_connected(claims, email)
        except Exception as exc:  # the grant is stored: new orders already use it
            log.exception("could not start CalendarConnectedWorkflow for %s/%s", tenant, chat)
            await audit(self.pool, tenant, wf, "workflow", "oauth_notify_failed", chat_id=chat, outcome="error",
                        message=str(exc)[:500])  # fmt: skip
        return _page(lang, "oauth_page_connected", 200)

    async def _exchange(self, code: str, nonce: str, secret: str) -> dict[str, Any]:
        s = self.settings
        assert s.google_oauth_client_id and s.google_oauth_client_secret
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": s.oauth_redirect_url,
            "client_id": s.google_oauth_client_id,
            "client_secret": s.google_oauth_client_secret.get_secret_value(),
            "code_verifier": oauth.code_verifier(secret, nonce),
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=_TOKEN_TIMEOUT) as http,
                http.post(
                    s.google_oauth_token_uri, data=form, headers={"Accept": "application/json"}
                ) as resp,
            ):
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = {}
                if resp.status != 200 or not isinstance(body, dict):
                    error = (
                        body.get("error", f"http_{resp.status}") if isinstance(body, dict) else "bad_answer"
                    )
                    raise TokenExchangeError(str(error), str(body.get("error_description", "")))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenExchangeError("unreachable", f"token endpoint: {exc}") from exc
        if not body.get("refresh_token"):
            # Without it there is nothing to keep; prompt=consent makes Google send one every time.
            raise TokenExchangeError("no_refresh_token", "Google returned no refresh token")
        return body

    async def _start_connected(self, claims: oauth.StateClaims, email: str | None) -> None:
        if self.client is None:
            return
        async with tenant_tx(self.pool, claims.tenant_id) as conn:
            queue = await conn.fetchval(
                "SELECT task_queue FROM tenants WHERE tenant_id = $1", claims.tenant_id
            )
        await self.client.start_workflow(
            CalendarConnectedWorkflow.run,
            CalendarConnected(
                tenant_id=claims.tenant_id,
                chat_id=claims.chat_id,
                nonce=claims.nonce,
                account_email=email,
                language=claims.language,
                reply_task_queue=self.reply_task_queue,
                calendar_task_queue=queue,
            ),  # fmt: skip
            id=connected_workflow_id(claims.tenant_id, claims.chat_id, claims.nonce),
            task_queue=queue or self.settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(TENANT_ID, claims.tenant_id),
                    SearchAttributePair(CHAT_ID, str(claims.chat_id)),
                ]
            ),
        )


class TokenExchangeError(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}" if message else error)
        self.error = error


def _email_of(tokens: dict[str, Any]) -> str | None:
    """The Google account's e-mail from the ID token. It came straight from the token endpoint over
    our own connection, so OpenID Connect allows reading it without checking the signature."""
    id_token = tokens.get("id_token")
    if not id_token:
        return None
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return str(claims["email"]) if claims.get("email") else None


def add_oauth_routes(
    app: web.Application,
    client: Client | None,
    pool: asyncpg.Pool,
    settings: Settings,
    grants: OAuthGrants | None,
    *,
    reply_task_queue: str | None,
) -> OAuthCallback:
    callback = OAuthCallback(client, pool, settings, grants, reply_task_queue=reply_task_queue)
    app.router.add_get(OAUTH_CALLBACK_PATH, callback.handle)
    return callback
