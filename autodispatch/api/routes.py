"""The admin HTTP API, /api/v1, mounted on the aiohttp server that takes the Telegram webhook.

One table (ENDPOINTS) lists every operation with its roles and models; `add_api_routes` registers it
and openapi.build_document describes it. Each request: authenticate → role check → the `{tenant}` in
the path must be the caller's own (unless system) → the handler, which works in that tenant's RLS
context. Denials (401/403) are answered as JSON and written to the audit log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ValidationError

from autodispatch import admin, bots, cli_drivers, onboarding_admin, tenants
from autodispatch.agenda_sync import request_agenda_sync
from autodispatch.api import models as m
from autodispatch.api import store
from autodispatch.api.auth import AuthError, Principal, Role, authenticate
from autodispatch.api.openapi import API_PREFIX, Endpoint, build_document
from autodispatch.db import SYSTEM_TENANT, system_tx
from autodispatch.settings import Settings
from bot.strangers import DenialTally
from schemas.telegram import INT64_MAX, INT64_MIN

log = logging.getLogger(__name__)
# Fire-and-forget tasks kept referenced until done (the event loop holds only weak references).
_BACKGROUND: set[asyncio.Task[Any]] = set()

POOL = web.AppKey("autodispatch_pool", asyncpg.Pool)
SETTINGS = web.AppKey("autodispatch_settings", Settings)
DOCUMENT = web.AppKey("autodispatch_openapi", dict)
DENIALS = web.AppKey("autodispatch_denials", DenialTally)

ModelT = TypeVar("ModelT", bound=BaseModel)

READ: tuple[Role, ...] = ("viewer", "admin", "system")
MANAGE: tuple[Role, ...] = ("admin", "system")
OWN: tuple[Role, ...] = ("user", "viewer", "admin", "system")
SYSTEM: tuple[Role, ...] = ("system",)
# What a driver (`user`) may change about themselves.
USER_DRIVER_FIELDS = frozenset({"driver_name", "time_zone"})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@dataclass
class Ctx:
    """One request as a handler sees it: who calls, on which tenant (already checked)."""

    request: web.Request
    pool: asyncpg.Pool
    settings: Settings
    principal: Principal
    tenant: dict[str, Any] | None

    @property
    def tenant_id(self) -> str:
        assert self.tenant is not None
        return str(self.tenant["tenant_id"])

    @property
    def actor(self) -> str:
        p = self.principal
        return f"{p.role}:{p.tenant_id}:{p.subject}"

    def deny(self, message: str, **details: Any) -> AuthError:
        return AuthError(403, "forbidden", message, claimed_tenant=self.principal.tenant_id, **details)

    def path_int(self, name: str) -> int:
        raw = self.request.match_info[name]
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, "invalid_request", f"{name} must be an integer, not {raw[:40]!r}") from None
        if not INT64_MIN <= value <= INT64_MAX:
            raise ApiError(400, "invalid_request", f"{name} {raw[:40]} is out of range (a 64-bit integer)")
        return value

    async def body(self, model: type[ModelT]) -> ModelT:
        raw = await self.request.read()
        if not raw.strip():
            raise ApiError(400, "invalid_json", "request body is empty; send a JSON object")
        try:
            data = json.loads(raw)  # bytes: UTF-8/16/32 detected; bad bytes are a ValueError too
        except ValueError as exc:
            raise ApiError(400, "invalid_json", f"malformed JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "request body must be a JSON object")
        return _validate(model, data)

    def query(self, model: type[ModelT]) -> ModelT:
        return _validate(model, dict(self.request.query))


def _validate(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", _validation_message(exc)) from None


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "body"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def _json(model: type[BaseModel], obj: Any, status: int = 200) -> web.Response:
    return web.json_response(model.model_validate(obj).model_dump(mode="json"), status=status)


def _items(model: type[BaseModel], rows: list[dict[str, Any]]) -> web.Response:
    return _json(model, {"items": rows})


# -- handlers ---------------------------------------------------------------------------
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT])


async def get_me(ctx: Ctx) -> web.Response:
    return _json(m.Me, ctx.principal.describe())


async def list_tenants(ctx: Ctx) -> web.Response:
    # Only the owner sees every tenant; anyone else sees their own, exactly as if they had asked for it.
    scope = None if ctx.principal.is_system else ctx.principal.tenant_id
    return _items(m.TenantList, await tenants.list_tenants(ctx.pool, ctx.settings, tenant=scope))


async def create_tenant(ctx: Ctx) -> web.Response:
    body = await ctx.body(m.TenantCreate)
    created = await tenants.create_tenant(
        ctx.pool, ctx.settings, body.name, dedicated=body.dedicated, time_zone=body.time_zone,
        currency=body.currency, source="api", actor=ctx.actor,
    )  # fmt: skip
    return _json(m.TenantCreated, created, status=201)


async def get_tenant(ctx: Ctx) -> web.Response:
    assert ctx.tenant is not None
    return _json(m.Tenant, tenants.tenant_view(ctx.tenant, ctx.settings))


async def update_tenant(ctx: Ctx) -> web.Response:
    body = await ctx.body(m.TenantUpdate)
    if body.status is not None and not ctx.principal.is_system:
        raise ctx.deny("only the system role may enable or disable a tenant", target_tenant=ctx.tenant_id)
    row = await tenants.update_tenant(
        ctx.pool, ctx.settings, ctx.tenant_id, time_zone=body.time_zone, currency=body.currency,
        source="api", actor=ctx.actor,
    )  # fmt: skip
    if body.status is not None and body.status != row["status"]:
        row = await tenants.set_tenant_status(
            ctx.pool, ctx.settings, ctx.tenant_id, body.status, source="api", actor=ctx.actor
        )
    return _json(m.Tenant, row)


async def list_drivers(ctx: Ctx) -> web.Response:
    return _items(m.DriverList, await store.list_drivers(ctx.pool, ctx.tenant_id))


async def create_driver(ctx: Ctx) -> web.Response:
    body = await ctx.body(m.DriverCreate)
    assert ctx.tenant is not None
    row = await store.create_driver(
        ctx.pool, ctx.tenant, chat_id=body.chat_id, driver_name=body.driver_name, calendar_id=body.calendar_id,
        time_zone=body.time_zone, status=body.status, source="api", actor=ctx.actor,
    )  # fmt: skip
    return _json(m.Driver, row, status=201)


def _own_chat(ctx: Ctx, chat_id: int, what: str) -> None:
    """A driver (`user`) reaches only their own chat; anything else is denied and audited."""
    p = ctx.principal
    if p.role == "user" and p.chat_id != chat_id:
        raise ctx.deny(f"a driver may only see their own {what}", target_chat_id=chat_id)


async def get_driver(ctx: Ctx) -> web.Response:
    chat_id = ctx.path_int("chat_id")
    _own_chat(ctx, chat_id, "settings")
    return _json(m.Driver, await store.get_driver(ctx.pool, ctx.tenant_id, chat_id))


async def update_driver(ctx: Ctx) -> web.Response:
    chat_id = ctx.path_int("chat_id")
    _own_chat(ctx, chat_id, "settings")
    body = await ctx.body(m.DriverUpdate)
    changes = body.model_dump(exclude_none=True)
    if ctx.principal.role == "user" and set(changes) - USER_DRIVER_FIELDS:
        fields = ", ".join(sorted(set(changes) - USER_DRIVER_FIELDS))
        raise ctx.deny(f"a driver may change only driver_name and time_zone, not {fields}")
    row = await store.update_driver(ctx.pool, ctx.tenant_id, chat_id, changes, source="api", actor=ctx.actor)
    return _json(m.Driver, row)


async def delete_driver(ctx: Ctx) -> web.Response:
    await store.delete_driver(ctx.pool, ctx.tenant_id, ctx.path_int("chat_id"), source="api", actor=ctx.actor)
    return web.Response(status=204)


async def approve_driver(ctx: Ctx) -> web.Response:
    """`driver approve` over HTTP: the same code path (calendar check, then pending/disabled → active)."""
    chat_id = ctx.path_int("chat_id")
    q = ctx.query(m.DriverApproveQuery)
    await store.get_driver(ctx.pool, ctx.tenant_id, chat_id)  # 404 unless it is this tenant's driver
    try:
        row = await cli_drivers.approve_driver(
            ctx.pool, ctx.settings, chat_id=chat_id, tenant=ctx.tenant_id, verify=q.verify, source="api",
            actor=ctx.actor,
        )  # fmt: skip
    except cli_drivers.CalendarCheckFailed as exc:
        access = exc.access
        message = f"driver chat {chat_id} was not approved ({access.status}): {access.message}"
        if exc.check_not_made:
            raise ApiError(
                503, "calendar_check_unavailable", message + " (retry, or approve with ?verify=false)"
            ) from None
        raise ApiError(409, "calendar_check_failed", message) from None
    if row["changed"]:
        # The morning agenda and the driver's "access open" message, as `driver approve` does; in the
        # background, so the answer never waits for Temporal (the reconciler catches up if it is down).
        task = asyncio.create_task(request_agenda_sync(ctx.settings, row["tenant_id"], chat_id))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
    return _json(m.DriverApproval, row)


async def disable_driver(ctx: Ctx) -> web.Response:
    """`driver disable` over HTTP: orders are refused at once; a later payment does not re-enable."""
    chat_id = ctx.path_int("chat_id")
    await store.get_driver(ctx.pool, ctx.tenant_id, chat_id)  # 404 unless it is this tenant's driver
    row = await admin.set_driver_status(
        ctx.pool, chat_id=chat_id, status="disabled", tenant=ctx.tenant_id, source="api", actor=ctx.actor
    )
    return _json(m.Driver, row)


async def get_onboarding(ctx: Ctx) -> web.Response:
    row = await onboarding_admin.get_onboarding(ctx.pool, ctx.settings, ctx.tenant_id)
    return _json(m.TenantOnboarding, row)


async def update_onboarding(ctx: Ctx) -> web.Response:
    body = await ctx.body(m.TenantOnboardingUpdate)
    row = await onboarding_admin.update_onboarding(
        ctx.pool, ctx.settings, ctx.tenant_id, activation=body.activation, invite=body.invite, source="api",
        actor=ctx.actor,
    )  # fmt: skip
    return _json(m.TenantOnboarding, row)


async def list_orders(ctx: Ctx) -> web.Response:
    q = ctx.query(m.OrderQuery)
    chat_id = q.chat_id
    if ctx.principal.role == "user":
        if chat_id is not None:
            _own_chat(ctx, chat_id, "orders")
        chat_id = ctx.principal.chat_id
    rows = await store.list_orders(ctx.pool, ctx.tenant_id, chat_id=chat_id, status=q.status, limit=q.limit)
    return _items(m.OrderList, rows)


async def get_order(ctx: Ctx) -> web.Response:
    order_id = ctx.request.match_info["order_id"]
    row = await store.get_order(ctx.pool, ctx.tenant_id, order_id)
    if ctx.principal.role == "user" and row["chat_id"] != ctx.principal.chat_id:
        raise ctx.deny("this order belongs to another driver", order_id=order_id)
    return _json(m.Order, row)


async def list_api_keys(ctx: Ctx) -> web.Response:
    return _items(m.ApiKeyList, await tenants.list_api_keys(ctx.pool, ctx.tenant_id))


async def create_api_key(ctx: Ctx) -> web.Response:
    body = await ctx.body(m.ApiKeyCreate)
    key = await tenants.create_api_key(
        ctx.pool, ctx.tenant_id, role=body.role, name=body.name, chat_id=body.chat_id, source="api",
        actor=ctx.actor,
    )  # fmt: skip
    return _json(m.ApiKeyCreated, key, status=201)


async def revoke_api_key(ctx: Ctx) -> web.Response:
    key_id = ctx.request.match_info["key_id"]
    row = await tenants.revoke_api_key(ctx.pool, key_id, tenant=ctx.tenant_id, source="api", actor=ctx.actor)
    return _json(m.ApiKey, row)


async def list_tenant_bots(ctx: Ctx) -> web.Response:
    return _items(m.TenantBotList, await bots.list_bots(ctx.pool, ctx.settings, ctx.tenant_id))


async def create_tenant_bot(ctx: Ctx) -> web.Response:
    body = await ctx.body(m.TenantBotCreate)
    row = await bots.add_bot(
        ctx.pool, ctx.settings, ctx.tenant_id, body.token, api_base=ctx.settings.telegram_api_base,
        source="api", actor=ctx.actor,
    )  # fmt: skip
    return _json(m.TenantBot, row, status=201)


async def delete_tenant_bot(ctx: Ctx) -> web.Response:
    bot = ctx.request.match_info["bot"]
    await bots.remove_bot(ctx.pool, ctx.settings, ctx.tenant_id, bot, source="api", actor=ctx.actor)
    return web.Response(status=204)


async def read_audit(ctx: Ctx) -> web.Response:
    q = ctx.query(m.AuditQuery)
    tenant_id = (await tenants.get_tenant(ctx.pool, q.tenant))["tenant_id"] if q.tenant else None
    rows = await admin.read_audit(ctx.pool, tenant=tenant_id, limit=q.limit, workflow_id=q.workflow_id)
    return _items(m.AuditList, rows)


E = Endpoint
ENDPOINTS: list[Endpoint] = [
    E("GET", "/openapi.json", get_openapi, "getOpenApi", "this document", None, m.OpenApiDocument),
    E("GET", "/me", get_me, "getMe", "who the credential is", OWN, m.Me),
    E("GET", "/tenants", list_tenants, "listTenants", "tenants (system: all; others: their own)", READ,
      m.TenantList),
    E("POST", "/tenants", create_tenant, "createTenant", "create a tenant with its first admin API key", SYSTEM,
      m.TenantCreated, 201, m.TenantCreate, errors=(409,)),
    E("GET", "/tenants/{tenant}", get_tenant, "getTenant", "a tenant's settings", READ, m.Tenant),
    E("PATCH", "/tenants/{tenant}", update_tenant, "updateTenant", "change a tenant's time zone or currency "
      "(admin), or its status (system)", MANAGE, m.Tenant, body=m.TenantUpdate),
    E("GET", "/tenants/{tenant}/drivers", list_drivers, "listDrivers", "the tenant's whitelisted drivers", READ,
      m.DriverList),
    E("POST", "/tenants/{tenant}/drivers", create_driver, "createDriver", "whitelist a driver's chat", MANAGE,
      m.Driver, 201, m.DriverCreate, errors=(409,)),
    E("GET", "/tenants/{tenant}/drivers/{chat_id}", get_driver, "getDriver", "a driver (a `user`: only self)",
      OWN, m.Driver),
    E("PATCH", "/tenants/{tenant}/drivers/{chat_id}", update_driver, "updateDriver",
      "change a driver (a `user`: own driver_name and time_zone only)", ("user", "admin", "system"), m.Driver,
      body=m.DriverUpdate),
    E("DELETE", "/tenants/{tenant}/drivers/{chat_id}", delete_driver, "deleteDriver",
      "remove a driver from the whitelist (and revoke their keys)", MANAGE, None, 204),
    E("POST", "/tenants/{tenant}/drivers/{chat_id}/approve", approve_driver, "approveDriver",
      "activate a pending or disabled driver after checking their calendar (`driver approve`)", MANAGE,
      m.DriverApproval, query=m.DriverApproveQuery, errors=(409, 503),
      description="409: the calendar is not usable (not found or not shared, read-only: the message says "
      "which); 503: Google could not be asked. Approving an active driver changes nothing."),
    E("POST", "/tenants/{tenant}/drivers/{chat_id}/disable", disable_driver, "disableDriver",
      "disable a driver (`driver disable`): their orders are refused until approved again", MANAGE, m.Driver),
    E("GET", "/tenants/{tenant}/onboarding", get_onboarding, "getOnboarding",
      "the tenant's invite link for new drivers and what activates them", MANAGE, m.TenantOnboarding),
    E("PATCH", "/tenants/{tenant}/onboarding", update_onboarding, "updateOnboarding",
      "set the activation (payment or approval); rotate or close the invite code", MANAGE,
      m.TenantOnboarding, body=m.TenantOnboardingUpdate),
    E("GET", "/tenants/{tenant}/orders", list_orders, "listOrders", "orders, newest first (a `user`: own only)",
      OWN, m.OrderList, query=m.OrderQuery),
    E("GET", "/tenants/{tenant}/orders/{order_id}", get_order, "getOrder", "one order (a `user`: own only)", OWN,
      m.Order),
    E("GET", "/tenants/{tenant}/api-keys", list_api_keys, "listApiKeys", "the tenant's API keys (never the keys "
      "themselves)", MANAGE, m.ApiKeyList),
    E("POST", "/tenants/{tenant}/api-keys", create_api_key, "createApiKey", "create an API key, shown once",
      MANAGE, m.ApiKeyCreated, 201, m.ApiKeyCreate, errors=(409,)),
    E("DELETE", "/tenants/{tenant}/api-keys/{key_id}", revoke_api_key, "revokeApiKey", "revoke an API key",
      MANAGE, m.ApiKey),
    E("GET", "/tenants/{tenant}/bots", list_tenant_bots, "listTenantBots", "the tenant's own Telegram bots and "
      "their status (paused: Telegram refused the token)", MANAGE, m.TenantBotList),
    E("POST", "/tenants/{tenant}/bots", create_tenant_bot, "createTenantBot", "register the tenant's own bot, "
      "or give it its new token (resumes a paused bot)", MANAGE, m.TenantBot, 201, m.TenantBotCreate,
      errors=(409,)),
    E("DELETE", "/tenants/{tenant}/bots/{bot}", delete_tenant_bot, "deleteTenantBot", "stop serving the "
      "tenant's bot (by id or username)", MANAGE, None, 204),
    E("GET", "/audit", read_audit, "readAudit", "the central audit log, oldest first within the newest `limit`",
      SYSTEM, m.AuditList, query=m.AuditQuery),
]  # fmt: skip


# -- plumbing ---------------------------------------------------------------------------
async def _path_tenant(conn: asyncpg.Connection, principal: Principal, raw: str) -> dict[str, Any]:
    row = await tenants.find_tenant(conn, raw)
    if principal.is_system:
        if row is None:
            raise tenants.NotFound(f"no tenant {raw!r}")
        return dict(row)
    # Another tenant, or none at all: the same 403, so a credential cannot probe which tenants exist.
    if row is None or row["tenant_id"] != principal.tenant_id:
        raise AuthError(
            403, "forbidden_tenant",
            f"this credential belongs to tenant {principal.tenant_id!r}; it cannot act on tenant {raw!r}",
            claimed_tenant=principal.tenant_id, target_tenant=raw,
        )  # fmt: skip
    return dict(row)


def _wrap(endpoint: Endpoint) -> Any:
    if endpoint.roles is None:
        return endpoint.handler
    roles = endpoint.roles

    async def handle(request: web.Request) -> web.StreamResponse:
        pool, settings = request.app[POOL], request.app[SETTINGS]
        principal: Principal | None = None
        try:
            principal = await authenticate(pool, settings, request.headers)
            if principal.role not in roles:
                raise AuthError(
                    403, "forbidden",
                    f"role {principal.role!r} may not {endpoint.method} {endpoint.full_path} "
                    f"({endpoint.summary}); allowed roles: {', '.join(roles)}",
                    claimed_tenant=principal.tenant_id,
                )  # fmt: skip
            tenant = None
            if "tenant" in request.match_info:
                async with system_tx(pool) as conn:
                    tenant = await _path_tenant(conn, principal, request.match_info["tenant"])
            return await endpoint.handler(Ctx(request, pool, settings, principal, tenant))
        except AuthError as exc:
            return await _denied(pool, request, exc, principal)

    handle.__name__ = endpoint.operation_id
    return handle


async def _denied(
    pool: asyncpg.Pool, request: web.Request, exc: AuthError, principal: Principal | None
) -> web.Response:
    log.info("api denied %s %s: %s %s", request.method, request.path, exc.status, exc.message)
    try:
        await record_denial(pool, request, exc, principal)
    except (OSError, asyncpg.PostgresError):
        log.exception("could not audit a denied API request")
    headers = {"WWW-Authenticate": 'Bearer realm="autodispatch"'} if exc.status == 401 else {}
    return error_response(exc.status, exc.code, exc.message, **headers)


# 401s whose tenant the caller proved by a secret of it (a real key, revoked; a token we signed, expired;
# a credential whose tenant or driver was disabled). Any other claim is only what the caller typed.
_TENANT_PROVEN = {"revoked_api_key", "token_expired", "tenant_disabled", "unknown_driver", "driver_disabled"}


async def record_denial(
    pool: asyncpg.Pool, request: web.Request, exc: AuthError, principal: Principal | None
) -> None:
    """An audit row per 403 (an authenticated caller), in its tenant. A 401 is filed under its tenant
    only when the caller proved that tenant; an unverified claim goes under `system`, and per caller
    (address, code, claimed tenant) one row is written at once and the rest of the window's are counted
    into one aggregated row: forged requests cannot fill a tenant's log, nor anyone's."""
    proven = principal is not None or exc.code in _TENANT_PROVEN
    tenant = principal.tenant_id if principal is not None else exc.claimed_tenant
    actor = f"{principal.role}:{principal.tenant_id}:{principal.subject}" if principal else "anonymous"
    details = dict(exc.details)
    async with system_tx(pool) as conn:
        exists = tenant is not None and bool(
            await conn.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", tenant)
        )
        if not proven:
            if exc.claimed_tenant is not None:
                details["claimed_tenant"] = exc.claimed_tenant[:100]
            tally: DenialTally = request.app[DENIALS]
            key = f"api:{request.remote}:{exc.code}:{tenant if exists else '-'}"
            if not tally.count(
                key, exc.code, remote=request.remote, claimed_tenant=tenant if exists else None
            ):
                return  # counted into the window's aggregated row
            tenant, exists = SYSTEM_TENANT, True
        await tenants.audit(
            conn, tenant if exists else SYSTEM_TENANT, "api_denied", source="api", actor=actor,
            outcome="denied", status=exc.status, code=exc.code, reason=exc.message, method=request.method,
            path=request.path, remote=request.remote, **details,
        )  # fmt: skip


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure under /api/v1 is a JSON error with a message a person can act on."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except tenants.NotFound as exc:
        return error_response(404, "not_found", str(exc))
    except tenants.Conflict as exc:
        return error_response(409, "conflict", str(exc))
    except admin.AdminError as exc:
        return error_response(400, "invalid_request", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            return error_response(
                404, "not_found", f"no such endpoint: {request.path} (see {API_PREFIX}/openapi.json)"
            )
        if exc.status == 405:
            allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
            return error_response(
                405, "method_not_allowed", f"{request.method} is not allowed here; use {allowed}"
            )
        return error_response(exc.status, "http_error", exc.reason)
    except Exception:
        log.exception("api request %s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error; the server log has the details")


def build_api_app(pool: asyncpg.Pool, settings: Settings) -> web.Application:
    api = web.Application(middlewares=[_errors])
    api[POOL] = pool
    api[SETTINGS] = settings
    api[DOCUMENT] = build_document(ENDPOINTS)
    api[DENIALS] = denials = DenialTally(pool, settings.denial_window_seconds, workflow_id="api")

    async def start_denials(_: web.Application) -> None:
        await denials.start()

    async def stop_denials(_: web.Application) -> None:
        await denials.stop()

    api.on_startup.append(start_denials)
    api.on_cleanup.append(stop_denials)
    for e in ENDPOINTS:
        api.router.add_route(e.method, e.path, _wrap(e))
    return api


def add_api_routes(app: web.Application, pool: asyncpg.Pool, settings: Settings) -> None:
    """Mount /api/v1 on the server's app (a sub-application: its errors middleware stays under /api/v1)."""
    api = build_api_app(pool, settings)
    app[DENIALS] = api[DENIALS]  # the denials tally, for whoever runs the server (and its tests)
    app.add_subapp(API_PREFIX, api)
