"""The codec server: POST /codec/encode and /codec/decode as the Temporal UI and CLI call them
(`--codec-endpoint http://<host>:<HTTP_PORT>/codec`), so operators still read encrypted histories.

Body and answer are Temporal's Payloads in protobuf JSON: {"payloads": [{"metadata": {...}, "data": …}]},
bytes base64. Callers authenticate as on the admin API (API key or JWT) with role system or admin; an
admin opens only payloads tagged with their own tenant, decided by the payload's tag (sealed with it),
never by what the caller claims. In sandbox mode a loopback call without credentials (the embedded UI in
this machine's browser) is let through as system.
"""

from __future__ import annotations

import ipaddress
import logging

import asyncpg
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads

from autodispatch.api.auth import AuthError, Principal, authenticate
from autodispatch.api.routes import error_response, record_denial
from autodispatch.codec import CodecError, EncryptionCodec, content_tenant, is_encrypted, payload_tenant
from autodispatch.settings import Settings

log = logging.getLogger(__name__)

CODEC_PATH = "/codec"
SANDBOX_PRINCIPAL = Principal(role="system", tenant_id="system", subject="sandbox-loopback", via="api_key")
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization, X-API-Key"


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _has_credentials(request: web.Request) -> bool:
    return bool(request.headers.get("Authorization") or request.headers.get("X-API-Key"))


class CodecServer:
    def __init__(self, pool: asyncpg.Pool | None, settings: Settings, codec: EncryptionCodec) -> None:
        self.pool = pool
        self.settings = settings
        self.codec = codec
        self.origins = set(settings.codec_origins)

    # -- HTTP ----------------------------------------------------------------------------
    def cors(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin", "").rstrip("/")
        if origin not in self.origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=self.cors(request))

    async def principal(self, request: web.Request) -> Principal:
        if self.settings.sandbox and _loopback(request.remote) and not _has_credentials(request):
            return SANDBOX_PRINCIPAL
        if self.pool is None:
            raise AuthError(401, "unauthenticated", "no database: the codec server cannot check credentials")
        principal = await authenticate(self.pool, self.settings, request.headers)
        if not principal.at_least("admin"):
            raise AuthError(
                403, "forbidden", f"role {principal.role!r} may not use the codec server (admin or system)",
                claimed_tenant=principal.tenant_id,
            )  # fmt: skip
        return principal

    async def handle(self, request: web.Request, direction: str) -> web.Response:
        cors = self.cors(request)
        namespace = request.headers.get("X-Namespace")
        if namespace and namespace != self.settings.temporal_namespace:
            return self._error(
                400, "wrong_namespace",
                f"this codec server serves namespace {self.settings.temporal_namespace!r}, not {namespace!r}",
                cors,
            )  # fmt: skip
        principal: Principal | None = None
        try:
            principal = await self.principal(request)
            try:
                payloads = json_format.Parse(await request.read(), Payloads())
            except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
                return self._error(400, "invalid_request", f'body must be {{"payloads": [...]}}: {exc}', cors)
            try:
                if direction == "encode":
                    out = [self.encode_one(p, principal) for p in payloads.payloads]
                else:
                    out = [self.decode_one(p, principal) for p in payloads.payloads]
            except CodecError as exc:
                return self._error(422, "undecodable", str(exc), cors)
        except AuthError as exc:
            log.info("codec %s denied: %s %s", direction, exc.status, exc.message)
            if self.pool is not None:
                try:
                    await record_denial(self.pool, request, exc, principal)
                except (OSError, asyncpg.PostgresError):
                    log.exception("could not audit a denied codec request")
            return self._error(exc.status, exc.code, exc.message, cors)
        body = json_format.MessageToJson(Payloads(payloads=out))
        return web.Response(text=body, content_type="application/json", headers=cors)

    def _error(self, status: int, code: str, message: str, cors: dict[str, str]) -> web.Response:
        return error_response(status, code, message, **cors)

    # -- payloads ------------------------------------------------------------------------
    def decode_one(self, payload: Payload, principal: Principal) -> Payload:
        if not is_encrypted(payload):
            return payload  # plain already (histories from before encryption)
        tenant = payload_tenant(payload)
        if not principal.is_system and tenant != principal.tenant_id:
            owner = f"tenant {tenant!r}" if tenant else "no tenant (only role system may open it)"
            raise AuthError(
                403, "forbidden", f"this payload belongs to {owner}, not to tenant {principal.tenant_id!r}",
                claimed_tenant=principal.tenant_id,
            )  # fmt: skip
        return self.codec.open(payload)

    def encode_one(self, payload: Payload, principal: Principal) -> Payload:
        if principal.is_system:
            return self.codec.seal(payload)
        named = content_tenant(payload)
        if named and named != principal.tenant_id:
            raise AuthError(
                403, "forbidden", f"the payload names tenant {named!r}; you act for {principal.tenant_id!r}",
                claimed_tenant=principal.tenant_id,
            )  # fmt: skip
        return self.codec.seal(payload, tenant=principal.tenant_id)


def add_codec_routes(
    app: web.Application, pool: asyncpg.Pool | None, settings: Settings, codec: EncryptionCodec
) -> CodecServer:
    server = CodecServer(pool, settings, codec)
    for direction in ("encode", "decode"):

        async def handler(request: web.Request, direction: str = direction) -> web.Response:
            return await server.handle(request, direction)

        app.router.add_post(f"{CODEC_PATH}/{direction}", handler)
        app.router.add_route("OPTIONS", f"{CODEC_PATH}/{direction}", server.preflight)
    return server
