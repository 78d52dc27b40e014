"""Who is calling the admin API: JWTs (HS256 or RS256) and per-tenant API keys, reduced to a Principal.

Every failure raises AuthError with the HTTP status (401: not authenticated, 403: authenticated but not
allowed), a stable code, a message for a person, and the tenant the caller claimed (for the audit row).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import asyncpg
import jwt
from cryptography.hazmat.primitives import serialization

from autodispatch.admin import AdminError
from autodispatch.db import SYSTEM_TENANT, system_tx
from autodispatch.settings import Settings
from schemas.telegram import INT64_MAX, INT64_MIN

Role = Literal["user", "viewer", "admin", "system"]
ROLES: tuple[Role, ...] = get_args(Role)
# What each role may do includes what the roles before it may (user is the narrowest: one driver).
ROLE_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}

KEY_SCHEME = "adk"
# Clock skew tolerated between the token's issuer and this server.
JWT_LEEWAY = timedelta(seconds=10)
# `ver`: the tenant's token_version when issued (revoking all of a tenant's tokens raises it).
REQUIRED_CLAIMS = ("sub", "role", "tenant_id", "exp", "iat", "iss", "aud", "jti", "ver")


class AuthError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, claimed_tenant: str | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.claimed_tenant = claimed_tenant
        self.details = details


class JwtNotConfigured(AdminError):
    """`token issue` without a signing key: one line naming the setting."""


@dataclass(frozen=True)
class Principal:
    role: Role
    tenant_id: str
    subject: str
    via: Literal["jwt", "api_key"]
    chat_id: int | None = None  # the driver, for role `user`
    key_id: str | None = None

    @property
    def is_system(self) -> bool:
        return self.role == "system"

    def at_least(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def may_act_on(self, tenant_id: str) -> bool:
        return self.is_system or self.tenant_id == tenant_id

    def describe(self) -> dict[str, Any]:
        return {"role": self.role, "tenant_id": self.tenant_id, "subject": self.subject, "via": self.via,
                "chat_id": self.chat_id, "key_id": self.key_id}  # fmt: skip


# -- API keys ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NewApiKey:
    plaintext: str = field(repr=False)  # shown once, never stored
    key_id: str
    prefix: str
    key_hash: str


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key(tenant_id: str) -> NewApiKey:
    """`adk.<tenant_id>.<secret>`: 256 random bits; the tenant part lets the lookup use the tenant index."""
    secret = secrets.token_urlsafe(32)
    plaintext = f"{KEY_SCHEME}.{tenant_id}.{secret}"
    return NewApiKey(
        plaintext=plaintext,
        key_id="k" + secrets.token_hex(6),
        prefix=f"{KEY_SCHEME}.{tenant_id}.{secret[:6]}",
        key_hash=hash_api_key(plaintext),
    )


def key_tenant(key: str) -> str | None:
    """The tenant an API key names, or None when it is not shaped like one of ours."""
    parts = key.split(".", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or not parts[1] or len(parts[2]) < 32:
        return None
    return parts[1]


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_SCHEME + ".")


async def authenticate_api_key(pool: asyncpg.Pool, key: str) -> Principal:
    tenant = key_tenant(key)
    if tenant is None:
        raise AuthError(401, "invalid_api_key", "malformed API key (expected adk.<tenant>.<secret>)")
    digest = hash_api_key(key)
    # The tenant is not known yet (and not trusted): look the key up in the system context.
    async with system_tx(pool) as conn:
        row = await conn.fetchrow(
            """SELECT k.*, t.status AS tenant_status FROM api_keys k JOIN tenants t USING (tenant_id)
               WHERE k.tenant_id = $1 AND k.key_hash = $2""",
            tenant, digest,
        )  # fmt: skip
        # The index lookup already matched; the explicit compare keeps the check constant-time.
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            raise AuthError(401, "invalid_api_key", "unknown API key", claimed_tenant=tenant)
        if row["revoked_at"] is not None:
            raise AuthError(
                401, "revoked_api_key", f"API key {row['key_id']} was revoked at {row['revoked_at']:%Y-%m-%d %H:%M:%S %Z}",
                claimed_tenant=tenant, key_id=row["key_id"],
            )  # fmt: skip
        principal = Principal(
            role=row["role"], tenant_id=row["tenant_id"], subject=f"key:{row['key_id']}", via="api_key",
            chat_id=row["chat_id"], key_id=row["key_id"],
        )  # fmt: skip
        await _check_standing(conn, principal, row["tenant_status"])
        await conn.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE tenant_id = $1 AND key_id = $2",
            row["tenant_id"], row["key_id"],
        )  # fmt: skip
    return principal


async def _check_standing(conn: asyncpg.Connection, principal: Principal, tenant_status: str) -> None:
    """A disabled tenant, or a `user` whose driver left the whitelist, is refused."""
    if tenant_status != "active":
        raise AuthError(
            403, "tenant_disabled", f"tenant {principal.tenant_id!r} is disabled",
            claimed_tenant=principal.tenant_id,
        )  # fmt: skip
    if principal.role != "user":
        return
    status = await conn.fetchval(
        "SELECT status FROM drivers WHERE tenant_id = $1 AND chat_id = $2",
        principal.tenant_id,
        principal.chat_id,
    )
    if status is None:
        raise AuthError(
            401, "unknown_driver", f"no driver with chat id {principal.chat_id} in tenant {principal.tenant_id!r}",
            claimed_tenant=principal.tenant_id,
        )  # fmt: skip
    if status != "active":
        raise AuthError(
            403,
            "driver_disabled",
            f"driver {principal.chat_id} is {status}",
            claimed_tenant=principal.tenant_id,
        )


# -- JWT --------------------------------------------------------------------------------
def _read_key(path: Path) -> bytes:
    return path.read_bytes()


def _verification_keys(settings: Settings) -> dict[str, Any]:
    """Algorithm → key this server verifies with. The public key may be derived from the private one."""
    keys: dict[str, Any] = {}
    if settings.jwt_secret is not None:
        keys["HS256"] = settings.jwt_secret.get_secret_value()
    if settings.jwt_public_key_file is not None:
        keys["RS256"] = serialization.load_pem_public_key(_read_key(settings.jwt_public_key_file))
    elif settings.jwt_private_key_file is not None:
        private = serialization.load_pem_private_key(_read_key(settings.jwt_private_key_file), password=None)
        keys["RS256"] = private.public_key()
    return keys


def require_signing_key(settings: Settings) -> None:
    if settings.jwt_private_key_file is None and settings.jwt_secret is None:
        raise JwtNotConfigured(
            "configuration error: AUTODISPATCH_JWT_SECRET: not set (or set AUTODISPATCH_JWT_PRIVATE_KEY_FILE "
            "for RS256); cannot sign tokens"
        )


def issue_jwt(
    settings: Settings,
    *,
    subject: str,
    role: Role,
    tenant_id: str,
    ttl: timedelta,
    now: datetime | None = None,
    version: int = 0,
    jti: str | None = None,
) -> str:
    """A signed token: RS256 with the configured private key, else HS256 with the secret."""
    issued = now or datetime.now(UTC)
    if ttl > max_ttl(settings):
        raise AdminError(
            f"ttl {ttl}: at most {settings.jwt_max_ttl_days} days (AUTODISPATCH_JWT_MAX_TTL_DAYS); "
            "use an API key for longer-lived access"
        )
    claims = {
        "sub": subject, "role": role, "tenant_id": tenant_id, "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience, "iat": issued, "exp": issued + ttl, "jti": jti or new_jti(),
        "ver": version,
    }  # fmt: skip
    require_signing_key(settings)
    if settings.jwt_private_key_file is not None:
        key = serialization.load_pem_private_key(_read_key(settings.jwt_private_key_file), password=None)
        return jwt.encode(claims, key, algorithm="RS256")  # type: ignore[arg-type]
    assert settings.jwt_secret is not None
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def new_jti() -> str:
    return "j" + secrets.token_hex(12)


def max_ttl(settings: Settings) -> timedelta:
    return timedelta(days=settings.jwt_max_ttl_days)


def _unverified_tenant(token: str) -> str | None:
    """The tenant a (possibly forged) token claims: only used to file the denial's audit row."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    tenant = claims.get("tenant_id")
    return tenant if isinstance(tenant, str) else None


def decode_jwt(settings: Settings, token: str) -> dict[str, Any]:
    claimed = _unverified_tenant(token)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise AuthError(401, "invalid_token", f"malformed token: {exc}") from exc
    keys = _verification_keys(settings)
    if not keys:
        raise AuthError(
            401, "jwt_not_configured",
            "JWT authentication is not configured on this server (AUTODISPATCH_JWT_SECRET or "
            "AUTODISPATCH_JWT_PUBLIC_KEY_FILE); use an API key",
            claimed_tenant=claimed,
        )  # fmt: skip
    alg = header.get("alg")
    # The key is chosen by algorithm and only that algorithm is allowed with it: no HS/RS confusion.
    if alg not in keys:
        accepted = " or ".join(sorted(keys))
        raise AuthError(
            401, "invalid_token", f"token algorithm {alg!r} is not accepted here (use {accepted})",
            claimed_tenant=claimed,
        )  # fmt: skip
    try:
        claims: dict[str, Any] = jwt.decode(
            token, keys[alg], algorithms=[alg], leeway=JWT_LEEWAY, issuer=settings.jwt_issuer,
            audience=settings.jwt_audience, options={"require": list(REQUIRED_CLAIMS)},
        )  # fmt: skip
    except jwt.ExpiredSignatureError as exc:
        raise AuthError(401, "token_expired", "token has expired", claimed_tenant=claimed) from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError(
            401, "invalid_token", "token signature is invalid (tampered or signed with another key)",
            claimed_tenant=claimed,
        ) from exc  # fmt: skip
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(
            401, "invalid_token", f"token lacks the {exc.claim!r} claim", claimed_tenant=claimed
        ) from exc
    except jwt.InvalidIssuerError as exc:
        raise AuthError(
            401, "invalid_token", f"token issuer is not {settings.jwt_issuer!r}", claimed_tenant=claimed
        ) from exc
    except jwt.InvalidAudienceError as exc:
        raise AuthError(
            401, "invalid_token", f"token audience is not {settings.jwt_audience!r}", claimed_tenant=claimed
        ) from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(401, "invalid_token", f"invalid token: {exc}", claimed_tenant=claimed) from exc
    # A token minted with a longer life (a leaked signing key, an old issuer) is refused whatever it says.
    lifetime = claims["exp"] - claims["iat"]
    if not isinstance(lifetime, int | float) or lifetime > max_ttl(settings).total_seconds():
        raise AuthError(
            401, "invalid_token",
            f"token lifetime exceeds {settings.jwt_max_ttl_days} days (AUTODISPATCH_JWT_MAX_TTL_DAYS)",
            claimed_tenant=claimed,
        )  # fmt: skip
    if not isinstance(claims["jti"], str) or not claims["jti"] or not isinstance(claims["ver"], int):
        raise AuthError(
            401, "invalid_token", "token jti must be a string and ver a number", claimed_tenant=claimed
        )
    for name in ("sub", "role", "tenant_id"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise AuthError(
                401,
                "invalid_token",
                f"token claim {name!r} must be a non-empty string",
                claimed_tenant=claimed,
            )
    if claims["role"] not in ROLES:
        raise AuthError(
            401, "invalid_token", f"token role {claims['role']!r} is not one of {', '.join(ROLES)}",
            claimed_tenant=claimed,
        )  # fmt: skip
    return claims


async def authenticate_jwt(pool: asyncpg.Pool, settings: Settings, token: str) -> Principal:
    claims = decode_jwt(settings, token)
    role: Role = claims["role"]
    claimed = claims["tenant_id"]
    chat_id: int | None = None
    if role == "user":
        # A driver's token names the driver by chat id.
        try:
            chat_id = int(claims["sub"])
            if not INT64_MIN <= chat_id <= INT64_MAX:
                raise ValueError(claims["sub"])
        except ValueError:
            raise AuthError(
                401,
                "invalid_token",
                "a `user` token's sub must be the driver's chat id",
                claimed_tenant=claimed,
            ) from None
    async with system_tx(pool) as conn:
        tenant = await conn.fetchrow(
            "SELECT tenant_id, status, token_version, EXISTS (SELECT 1 FROM revoked_tokens r"
            " WHERE r.tenant_id = t.tenant_id AND r.jti = $2) AS revoked FROM tenants t"
            " WHERE tenant_id = $1 OR name = $1 ORDER BY (tenant_id = $1) DESC LIMIT 1",
            claimed, claims["jti"],
        )  # fmt: skip
        if tenant is None:
            raise AuthError(401, "invalid_token", f"token names an unknown tenant {claimed!r}")
        if tenant["revoked"] or claims["ver"] != tenant["token_version"]:
            raise AuthError(
                401, "token_revoked", f"token {claims['jti']} was revoked", claimed_tenant=tenant["tenant_id"]
            )
        if (role == "system") != (tenant["tenant_id"] == SYSTEM_TENANT):
            raise AuthError(
                401, "invalid_token", "role `system` goes with tenant 'system' only, and only it does",
                claimed_tenant=tenant["tenant_id"],
            )  # fmt: skip
        principal = Principal(
            role=role, tenant_id=tenant["tenant_id"], subject=claims["sub"], via="jwt", chat_id=chat_id
        )
        await _check_standing(conn, principal, tenant["status"])
    return principal


# -- requests ---------------------------------------------------------------------------
def credentials(headers: Mapping[str, str]) -> tuple[str, str]:
    """("api_key" | "bearer", value) from `Authorization: Bearer …` or `X-API-Key`."""
    auth = headers.get("Authorization", "").strip()
    api_key = headers.get("X-API-Key", "").strip()
    bearer = ""
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError(401, "unauthenticated", "Authorization header must be `Bearer <API key or JWT>`")
        bearer = value.strip()
    if bearer and api_key and not hmac.compare_digest(bearer.encode(), api_key.encode()):
        raise AuthError(401, "unauthenticated", "give one credential: Authorization or X-API-Key, not both")
    if api_key:
        return "api_key", api_key
    if bearer:
        return "bearer", bearer
    raise AuthError(
        401,
        "unauthenticated",
        "authentication required: `Authorization: Bearer <API key or JWT>` or `X-API-Key`",
    )


async def authenticate(pool: asyncpg.Pool, settings: Settings, headers: Mapping[str, str]) -> Principal:
    kind, value = credentials(headers)
    if kind == "api_key" or looks_like_api_key(value):
        return await authenticate_api_key(pool, value)
    return await authenticate_jwt(pool, settings, value)
