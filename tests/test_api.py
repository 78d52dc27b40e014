"""The admin API (/api/v1) on a real aiohttp server and real PostgreSQL as the application role."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from autodispatch import tenants
from autodispatch.api.auth import issue_jwt
from autodispatch.api.openapi import build_document
from autodispatch.api.routes import DENIALS, ENDPOINTS
from autodispatch.db import system_tx
from autodispatch.embedded import EmbeddedTemporal
from autodispatch.stack import Stack
from tests.api_fixtures import (
    JWT_SECRET,
    Api,
    add_order,
    add_tenant_driver,
    api_settings,
    audit_rows,
    bearer,
    new_tenant,
    start_api,
    system_key,
)
from tests.conftest import Outside, Postgres, stack_settings, unique_chat_id

ApiFactory = Callable[..., Awaitable[Api]]


@pytest_asyncio.fixture
async def make_api(postgres: Postgres) -> AsyncIterator[ApiFactory]:
    """Starts API servers with the given settings; stops them all after the test."""
    started: list[Api] = []

    async def make(**settings_overrides: Any) -> Api:
        started.append(await start_api(postgres.pool, **settings_overrides))
        return started[-1]

    yield make
    for api in started:
        await api.client.close()


@pytest_asyncio.fixture
async def api(make_api: ApiFactory) -> Api:
    return await make_api()


async def call(
    api: Api, method: str, path: str, token: str | None = None, *, body: Any = None, raw: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:  # fmt: skip
    h = dict(headers or {})
    if token is not None:
        h.update(bearer(token))
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    async with api.client.request(method, "/api/v1" + path, data=data, headers=h) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


def token_for(
    api: Api, role: str, tenant_id: str, sub: str = "tester", ttl: timedelta = timedelta(minutes=5)
) -> str:
    return issue_jwt(api.settings, subject=sub, role=role, tenant_id=tenant_id, ttl=ttl)  # type: ignore[arg-type]


def assert_error(status: int, body: Any, expected: int, *words: str) -> None:
    assert status == expected, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    for word in words:
        assert word in body["error"]["message"], body


# -- the document ---------------------------------------------------------------------------
async def test_openapi_document_matches_the_registered_routes(api: Api) -> None:
    status, doc = await call(api, "GET", "/openapi.json")  # public: no credential
    assert status == 200
    assert doc == build_document(ENDPOINTS)
    registered = {
        (r.method, r.resource.canonical)
        for r in api.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/api/v1")
    }
    # Sub-application routes are registered on the sub-app; collect them through the mounted resource.
    for resource in api.app.router.resources():
        sub = getattr(resource, "_app", None)
        if sub is not None:
            registered |= {(r.method, r.resource.canonical) for r in sub.router.routes() if r.resource}
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert registered == documented
    assert len(documented) == len(ENDPOINTS)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] and "x-roles" in op, (method, path)
            for name in [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]:
                assert "{" + name + "}" in path
            # Every referenced schema exists.
            for ref in _refs(op):
                assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref


def _refs(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == "$ref"] + [r for v in obj.values() for r in _refs(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in _refs(v)]
    return []


async def test_unknown_endpoint_and_method_are_json_errors_and_healthz_still_answers(api: Api) -> None:
    assert_error(*await call(api, "GET", "/nothing-here"), 404, "no such endpoint")
    assert_error(*await call(api, "PUT", "/tenants"), 405, "not allowed")
    async with api.client.get("/healthz") as resp:
        assert resp.status == 503  # an empty Health: mounted next to the API, untouched by it


# -- authentication -------------------------------------------------------------------------
async def test_no_credential_is_401_with_a_hint_and_audited(api: Api) -> None:
    path = f"/tenants/nobody-{uuid.uuid4().hex[:6]}/drivers"
    async with api.client.get("/api/v1" + path) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body = await resp.json()
    assert_error(401, body, 401, "Authorization", "X-API-Key")
    rows = [
        r
        for r in await audit_rows(api.pool, "system", "api_denied")
        if r["details"]["path"] == "/api/v1" + path
    ]
    assert len(rows) == 1 and rows[0]["outcome"] == "denied" and rows[0]["details"]["status"] == 401


async def test_api_key_as_bearer_and_as_x_api_key_and_last_used_at(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    async with system_tx(api.pool) as conn:
        assert await conn.fetchval("SELECT last_used_at FROM api_keys WHERE key_id = $1", t.key_id) is None
    status, me = await call(api, "GET", "/me", t.admin_key)
    assert status == 200 and me == {
        "role": "admin", "tenant_id": t.tenant_id, "subject": f"key:{t.key_id}", "via": "api_key",
        "chat_id": None, "key_id": t.key_id,
    }  # fmt: skip
    async with system_tx(api.pool) as conn:
        first = await conn.fetchval("SELECT last_used_at FROM api_keys WHERE key_id = $1", t.key_id)
    assert first is not None
    status, _ = await call(api, "GET", "/me", headers={"X-API-Key": t.admin_key})
    assert status == 200
    async with system_tx(api.pool) as conn:
        second = await conn.fetchval("SELECT last_used_at FROM api_keys WHERE key_id = $1", t.key_id)
    assert second >= first
    # Two different credentials at once is ambiguous: refused.
    other = await new_tenant(api.pool, api.settings)
    status, body = await call(api, "GET", "/me", t.admin_key, headers={"X-API-Key": other.admin_key})
    assert_error(status, body, 401, "not both")


async def test_key_is_shown_once_and_stored_only_as_its_hash(api: Api, postgres: Postgres) -> None:
    sys_key = await system_key(api.pool)
    status, created = await call(
        api, "POST", "/tenants", sys_key, body={"name": f"Hash {uuid.uuid4().hex[:6]}"}
    )
    assert status == 201
    plaintext = created["api_key"]
    assert plaintext.startswith(f"adk.{created['tenant_id']}.")
    status, keys = await call(api, "GET", f"/tenants/{created['tenant_id']}/api-keys", plaintext)
    assert status == 200
    assert [k["key_id"] for k in keys["items"]] == [created["key_id"]]
    assert all("api_key" not in k and "key_hash" not in k for k in keys["items"])
    assert plaintext.startswith(keys["items"][0]["prefix"])
    # As the owner (no RLS): the plaintext and its secret part appear nowhere in the table.
    secret = plaintext.split(".", 2)[2]
    owner = await asyncpg.connect(postgres.owner_dsn)
    try:
        rows = await owner.fetch("SELECT row_to_json(k)::text AS j, key_hash FROM api_keys k")
        mine = await owner.fetchval("SELECT key_hash FROM api_keys WHERE key_id = $1", created["key_id"])
    finally:
        await owner.close()
    assert not any(secret in r["j"] for r in rows)
    assert mine == hashlib.sha256(plaintext.encode()).hexdigest()


async def test_revoked_key_is_401_and_audited(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    status, key = await call(
        api, "POST", f"/tenants/{t.tenant_id}/api-keys", t.admin_key, body={"role": "viewer"}
    )
    assert status == 201 and key["role"] == "viewer"
    assert (await call(api, "GET", f"/tenants/{t.tenant_id}/drivers", key["api_key"]))[0] == 200
    status, revoked = await call(
        api, "DELETE", f"/tenants/{t.tenant_id}/api-keys/{key['key_id']}", t.admin_key
    )
    assert status == 200 and revoked["revoked_at"] is not None
    assert_error(*await call(api, "GET", f"/tenants/{t.tenant_id}/drivers", key["api_key"]), 401, "revoked")
    denied = await audit_rows(api.pool, t.tenant_id, "api_denied")
    assert [(r["details"]["code"], r["details"]["key_id"]) for r in denied] == [
        ("revoked_api_key", key["key_id"])
    ]
    assert {"api_key_created", "api_key_revoked"} <= {
        r["action"] for r in await audit_rows(api.pool, t.tenant_id)
    }


async def test_forged_and_malformed_keys_are_401(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    forged = t.admin_key[:-4] + ("AAAA" if not t.admin_key.endswith("AAAA") else "BBBB")
    assert_error(*await call(api, "GET", "/me", forged), 401, "unknown API key")
    assert_error(*await call(api, "GET", "/me", headers={"X-API-Key": "adk.short"}), 401, "malformed API key")
    # A forged key proves nothing of the tenant it names: filed under `system`, the claim in the row.
    assert await audit_rows(api.pool, t.tenant_id, "api_denied") == []
    forged_rows = [
        r for r in await audit_rows(api.pool, "system", "api_denied")
        if r["details"].get("claimed_tenant") == t.tenant_id
    ]  # fmt: skip
    assert [r["details"]["code"] for r in forged_rows] == ["invalid_api_key"]


async def test_expired_jwt_is_401(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    expired = issue_jwt(
        api.settings, subject="ops", role="admin", tenant_id=t.tenant_id, ttl=timedelta(minutes=1),
        now=datetime.now(UTC) - timedelta(hours=1),
    )  # fmt: skip
    assert_error(*await call(api, "GET", f"/tenants/{t.tenant_id}", expired), 401, "expired")
    assert [r["details"]["code"] for r in await audit_rows(api.pool, t.tenant_id, "api_denied")] == [
        "token_expired"
    ]


async def test_tampered_jwt_is_401_and_audited(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    good = token_for(api, "viewer", t.tenant_id)
    assert (await call(api, "GET", f"/tenants/{t.tenant_id}/drivers", good))[0] == 200
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"  # promote oneself, keep the signature
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = f"{header}.{forged_payload}.{signature}"
    status, body = await call(
        api, "POST", f"/tenants/{t.tenant_id}/api-keys", tampered, body={"role": "admin"}
    )
    assert_error(status, body, 401, "signature")
    # Signed with a different secret, and with alg "none": refused too.
    other = jwt.encode({**claims, "exp": claims["exp"]}, "y" * 40, algorithm="HS256")
    assert_error(*await call(api, "GET", "/me", other), 401, "signature")
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_error(*await call(api, "GET", "/me", unsigned), 401, "not accepted")
    # Three forged tokens naming the tenant: nothing in its log; under `system`, the first one's row at
    # once and the other two counted into one aggregated row per window.
    assert await audit_rows(api.pool, t.tenant_id, "api_denied") == []
    claimed = [
        r for r in await audit_rows(api.pool, "system", "api_denied")
        if r["details"].get("claimed_tenant") == t.tenant_id
    ]  # fmt: skip
    assert [r["details"]["code"] for r in claimed] == ["invalid_token"]
    await api.app[DENIALS].flush(everything=True)
    (aggregated,) = [
        r for r in await audit_rows(api.pool, "system", "denials_aggregated")
        if r["details"].get("claimed_tenant") == t.tenant_id
    ]  # fmt: skip
    assert aggregated["details"]["count"] == 3 and aggregated["details"]["reasons"] == {"invalid_token": 3}


async def test_jwt_missing_claims_or_unknown_tenant_is_401(api: Api) -> None:
    now = datetime.now(UTC)
    no_role = jwt.encode(
        {"sub": "x", "tenant_id": "acme", "exp": now + timedelta(minutes=5)}, JWT_SECRET, "HS256"
    )
    assert_error(*await call(api, "GET", "/me", no_role), 401, "'role'")
    ghost = token_for(api, "admin", f"ghost-{uuid.uuid4().hex[:6]}")
    assert_error(*await call(api, "GET", "/me", ghost), 401, "unknown tenant")
    t = await new_tenant(api.pool, api.settings)
    assert_error(*await call(api, "GET", "/me", token_for(api, "system", t.tenant_id)), 401, "system")
    assert_error(*await call(api, "GET", "/me", token_for(api, "king", t.tenant_id)), 401, "king")


async def test_jwt_for_tenant_a_on_tenant_b_url_is_403_and_audited(api: Api) -> None:
    a = await new_tenant(api.pool, api.settings)
    b = await new_tenant(api.pool, api.settings)
    token = token_for(api, "admin", a.tenant_id)
    for path in (f"/tenants/{b.tenant_id}/drivers", f"/tenants/{b.name}", f"/tenants/{b.tenant_id}/api-keys"):
        assert_error(*await call(api, "GET", path, token), 403, a.tenant_id)
    status, body = await call(
        api, "POST", f"/tenants/{b.tenant_id}/drivers", token,
        body={"chat_id": unique_chat_id(), "driver_name": "X", "calendar_id": "x@example.com"},
    )  # fmt: skip
    assert_error(status, body, 403)
    # A tenant that does not exist answers the same: no probing for names.
    assert_error(*await call(api, "GET", "/tenants/no-such-tenant-xyz", token), 403)
    denied = await audit_rows(api.pool, a.tenant_id, "api_denied")
    assert [r["details"]["target_tenant"] for r in denied] == [
        b.tenant_id, b.name, b.tenant_id, b.tenant_id, "no-such-tenant-xyz",
    ]  # fmt: skip
    assert all(r["details"]["actor"] == f"admin:{a.tenant_id}:tester" for r in denied)
    async with system_tx(api.pool) as conn:
        assert await conn.fetchval("SELECT count(*) FROM drivers WHERE tenant_id = $1", b.tenant_id) == 0


async def test_rs256_tokens(make_api: ApiFactory, tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv_file, pub_file = tmp_path / "jwt.pem", tmp_path / "jwt.pub.pem"
    priv_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pub_file.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    # The server verifies with the public key only; the operator signs with the private one.
    api = await make_api(jwt_secret=None, jwt_public_key_file=pub_file)
    signer = api_settings(jwt_secret=None, jwt_private_key_file=priv_file)
    t = await new_tenant(api.pool, api.settings)
    token = issue_jwt(signer, subject="ops", role="viewer", tenant_id=t.tenant_id, ttl=timedelta(minutes=5))
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    status, me = await call(api, "GET", "/me", token)
    assert status == 200 and (me["role"], me["tenant_id"], me["via"]) == ("viewer", t.tenant_id, "jwt")
    # An HS256 token is not accepted where only RS256 is configured (no algorithm confusion).
    hs = issue_jwt(
        api_settings(), subject="ops", role="viewer", tenant_id=t.tenant_id, ttl=timedelta(minutes=5)
    )
    assert_error(*await call(api, "GET", "/me", hs), 401, "'HS256' is not accepted", "RS256")
    # Another RSA key's signature fails.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), other, algorithm="RS256")
    assert_error(*await call(api, "GET", "/me", forged), 401, "signature")


async def test_without_jwt_settings_tokens_are_refused_clearly_but_keys_work(make_api: ApiFactory) -> None:
    api = await make_api(jwt_secret=None)
    t = await new_tenant(api.pool, api.settings)
    foreign = issue_jwt(
        api_settings(), subject="x", role="admin", tenant_id=t.tenant_id, ttl=timedelta(minutes=5)
    )
    assert_error(*await call(api, "GET", "/me", foreign), 401, "AUTODISPATCH_JWT_SECRET", "API key")
    assert (await call(api, "GET", "/me", t.admin_key))[0] == 200


async def test_disabled_tenant_credentials_are_403(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    sys_key = await system_key(api.pool)
    status, body = await call(api, "PATCH", f"/tenants/{t.name}", sys_key, body={"status": "disabled"})
    assert status == 200 and body["status"] == "disabled"
    assert_error(*await call(api, "GET", "/me", t.admin_key), 403, "disabled")
    assert_error(*await call(api, "GET", "/me", token_for(api, "viewer", t.tenant_id)), 403, "disabled")
    # The owner still sees it, and may enable it again.
    assert (await call(api, "PATCH", f"/tenants/{t.tenant_id}", sys_key, body={"status": "active"}))[0] == 200
    assert (await call(api, "GET", "/me", t.admin_key))[0] == 200
    actions = [r["action"] for r in await audit_rows(api.pool, t.tenant_id)]
    assert "tenant_disabled" in actions and "tenant_enabled" in actions


# -- roles ----------------------------------------------------------------------------------
async def test_each_role_gets_exactly_its_endpoints(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    me = await add_tenant_driver(api.pool, t.tenant_id, name="Me")
    other = await add_tenant_driver(api.pool, t.tenant_id, name="Other")
    my_order = await add_order(api.pool, t.tenant_id, me)
    other_order = await add_order(api.pool, t.tenant_id, other)
    sys_key = await system_key(api.pool)
    creds = {
        "user": token_for(api, "user", t.tenant_id, sub=str(me)),
        "viewer": token_for(api, "viewer", t.tenant_id),
        "admin": t.admin_key,
        "system": sys_key,
    }
    tid = t.tenant_id

    def driver_body() -> dict[str, Any]:
        return {"chat_id": unique_chat_id(), "driver_name": "New", "calendar_id": "n@example.com"}

    # (method, path, body) → allowed roles. A denied role gets 403; an allowed one 2xx.
    cases: list[tuple[str, str, Any, set[str]]] = [
        ("GET", "/me", None, {"user", "viewer", "admin", "system"}),
        ("GET", "/tenants", None, {"viewer", "admin", "system"}),
        ("GET", f"/tenants/{tid}", None, {"viewer", "admin", "system"}),
        ("PATCH", f"/tenants/{tid}", {"currency": "eur"}, {"admin", "system"}),
        ("GET", f"/tenants/{tid}/drivers", None, {"viewer", "admin", "system"}),
        ("POST", f"/tenants/{tid}/drivers", driver_body, {"admin", "system"}),
        ("GET", f"/tenants/{tid}/drivers/{me}", None, {"user", "viewer", "admin", "system"}),
        ("GET", f"/tenants/{tid}/drivers/{other}", None, {"viewer", "admin", "system"}),
        (
            "PATCH",
            f"/tenants/{tid}/drivers/{me}",
            {"time_zone": "Europe/Berlin"},
            {"user", "admin", "system"},
        ),
        ("PATCH", f"/tenants/{tid}/drivers/{me}", {"calendar_id": "c@example.com"}, {"admin", "system"}),
        ("PATCH", f"/tenants/{tid}/drivers/{other}", {"driver_name": "X"}, {"admin", "system"}),
        ("GET", f"/tenants/{tid}/orders", None, {"user", "viewer", "admin", "system"}),
        ("GET", f"/tenants/{tid}/orders?chat_id={other}", None, {"viewer", "admin", "system"}),
        ("GET", f"/tenants/{tid}/orders/{my_order}", None, {"user", "viewer", "admin", "system"}),
        ("GET", f"/tenants/{tid}/orders/{other_order}", None, {"viewer", "admin", "system"}),
        ("GET", f"/tenants/{tid}/api-keys", None, {"admin", "system"}),
        ("POST", f"/tenants/{tid}/api-keys", {"role": "viewer", "name": "ro"}, {"admin", "system"}),
        ("GET", "/audit", None, {"system"}),
        ("POST", "/tenants", lambda: {"name": f"Made {uuid.uuid4().hex[:6]}"}, {"system"}),
    ]
    for method, path, body, allowed in cases:
        for role, cred in creds.items():
            status, answer = await call(api, method, path, cred, body=body() if callable(body) else body)
            if role in allowed:
                assert 200 <= status < 300, (role, method, path, answer)
            else:
                assert_error(status, answer, 403)
    # Deleting: admin can; viewer and user cannot.
    victim = await add_tenant_driver(api.pool, tid)
    for role in ("user", "viewer"):
        assert (await call(api, "DELETE", f"/tenants/{tid}/drivers/{victim}", creds[role]))[0] == 403
    assert (await call(api, "DELETE", f"/tenants/{tid}/drivers/{victim}", creds["admin"]))[0] == 204
    assert_error(
        *await call(api, "GET", f"/tenants/{tid}/drivers/{victim}", creds["admin"]), 404, "no driver"
    )
    # Every 403 above left an audit row in the tenant (the system key's denials are filed under system).
    denied = await audit_rows(api.pool, tid, "api_denied")
    assert len(denied) >= 20 and all(r["details"]["status"] == 403 for r in denied)


async def test_a_driver_sees_only_their_own_orders(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    me = await add_tenant_driver(api.pool, t.tenant_id)
    other = await add_tenant_driver(api.pool, t.tenant_id)
    mine = {await add_order(api.pool, t.tenant_id, me) for _ in range(2)}
    theirs = await add_order(api.pool, t.tenant_id, other)
    token = token_for(api, "user", t.tenant_id, sub=str(me))
    status, body = await call(api, "GET", f"/tenants/{t.tenant_id}/orders", token)
    assert status == 200 and {o["order_id"] for o in body["items"]} == mine
    assert_error(
        *await call(api, "GET", f"/tenants/{t.tenant_id}/orders/{theirs}", token), 403, "another driver"
    )
    denied = await audit_rows(api.pool, t.tenant_id, "api_denied")
    assert (
        denied[-1]["details"]["order_id"] == theirs
        and denied[-1]["details"]["actor"] == f"user:{t.tenant_id}:{me}"
    )
    # A viewer sees all of them; filters narrow.
    viewer = token_for(api, "viewer", t.tenant_id)
    status, body = await call(api, "GET", f"/tenants/{t.tenant_id}/orders?limit=10", viewer)
    assert {o["order_id"] for o in body["items"]} == mine | {theirs}
    status, body = await call(api, "GET", f"/tenants/{t.tenant_id}/orders?chat_id={other}", viewer)
    assert [o["order_id"] for o in body["items"]] == [theirs]
    await add_order(api.pool, t.tenant_id, other, status="needs_answer")
    status, body = await call(api, "GET", f"/tenants/{t.tenant_id}/orders?status=needs_answer", viewer)
    assert [(o["chat_id"], o["status"]) for o in body["items"]] == [(other, "needs_answer")]
    assert_error(*await call(api, "GET", f"/tenants/{t.tenant_id}/orders?limit=0", viewer), 400, "limit")
    # A driver key (role user) works like the driver's token.
    status, key = await call(
        api, "POST", f"/tenants/{t.tenant_id}/api-keys", t.admin_key, body={"role": "user", "chat_id": me}
    )
    assert status == 201
    status, body = await call(api, "GET", f"/tenants/{t.tenant_id}/orders", key["api_key"])
    assert {o["order_id"] for o in body["items"]} == mine
    # A token naming a driver who is not in the tenant is refused.
    stranger = token_for(api, "user", t.tenant_id, sub=str(unique_chat_id()))
    assert_error(*await call(api, "GET", f"/tenants/{t.tenant_id}/orders", stranger), 401, "no driver")


async def test_a_tenant_scoped_caller_lists_only_its_own_tenant(api: Api) -> None:
    a = await new_tenant(api.pool, api.settings)
    b = await new_tenant(api.pool, api.settings)
    status, body = await call(api, "GET", "/tenants", a.admin_key)
    assert status == 200 and [x["tenant_id"] for x in body["items"]] == [a.tenant_id]
    status, body = await call(api, "GET", "/tenants", await system_key(api.pool))
    assert {a.tenant_id, b.tenant_id} <= {x["tenant_id"] for x in body["items"]}
    # Drivers too: the listing of A never holds B's.
    await add_tenant_driver(api.pool, b.tenant_id)
    mine = await add_tenant_driver(api.pool, a.tenant_id)
    status, body = await call(api, "GET", f"/tenants/{a.tenant_id}/drivers", a.admin_key)
    assert [d["chat_id"] for d in body["items"]] == [mine]


# -- tenants, drivers, keys: the happy paths and bad input ---------------------------------
async def test_tenant_create_via_api_and_bad_input(api: Api) -> None:
    sys_key = await system_key(api.pool)
    name = f"Acme {uuid.uuid4().hex[:6]}"
    status, t = await call(
        api, "POST", "/tenants", sys_key,
        body={"name": name, "dedicated": True, "time_zone": "Asia/Dubai", "currency": "aed"},
    )  # fmt: skip
    assert status == 201
    assert (t["name"], t["time_zone"], t["currency"], t["dedicated"]) == (name, "Asia/Dubai", "AED", True)
    assert t["task_queue"] == f"tenant-{t['tenant_id']}"
    status, shared = await call(
        api, "POST", "/tenants", sys_key, body={"name": f"Shared {uuid.uuid4().hex[:6]}"}
    )
    assert (
        status == 201 and shared["task_queue"] == api.settings.temporal_task_queue and not shared["dedicated"]
    )
    async with system_tx(api.pool) as conn:
        row = await conn.fetchrow(
            "SELECT dedicated, task_queue FROM tenants WHERE tenant_id = $1", t["tenant_id"]
        )
    assert tuple(row) == (True, f"tenant-{t['tenant_id']}")
    # The id and the name both address it.
    for ref in (t["tenant_id"], name):
        status, got = await call(api, "GET", f"/tenants/{ref}", t["api_key"])
        assert status == 200 and got["tenant_id"] == t["tenant_id"]
    assert_error(*await call(api, "POST", "/tenants", sys_key, body={"name": name}), 409, "already taken")
    assert_error(
        *await call(api, "POST", "/tenants", sys_key, body={"name": name.upper()}), 409, "already taken"
    )
    assert_error(
        *await call(api, "POST", "/tenants", sys_key, body={"name": "Zed", "time_zone": "Mars/Olympus"}),
        400, "time_zone", "unknown time zone",
    )  # fmt: skip
    assert_error(
        *await call(api, "POST", "/tenants", sys_key, body={"name": "Zed", "currency": "rubles"}),
        400,
        "currency",
    )
    assert_error(*await call(api, "POST", "/tenants", sys_key, raw="{not json"), 400, "malformed JSON")
    assert_error(*await call(api, "POST", "/tenants", sys_key, raw="[1, 2]"), 400, "JSON object")
    assert_error(*await call(api, "POST", "/tenants", sys_key, raw=""), 400, "empty")
    async with api.client.post("/api/v1/tenants", data=b"\xff\xfe{", headers=bearer(sys_key)) as resp:
        assert_error(resp.status, await resp.json(), 400, "malformed JSON")
    assert_error(
        *await call(api, "POST", "/tenants", sys_key, body={"nmae": "typo"}),
        400,
        "nmae: unknown field",
        "name: required",
    )
    assert_error(*await call(api, "GET", "/tenants/no-such-tenant-abc", sys_key), 404, "no tenant")
    assert_error(*await call(api, "GET", "/audit?tenant=no-such-tenant-abc", sys_key), 404, "no tenant")
    assert_error(*await call(api, "GET", "/audit?limit=many", sys_key), 400, "limit")
    status, audit = await call(api, "GET", f"/audit?tenant={name}", sys_key)
    assert status == 200
    assert {"tenant_created", "api_key_created"} <= {r["action"] for r in audit["items"]}
    # An admin may change settings but not the status.
    assert_error(
        *await call(api, "PATCH", f"/tenants/{name}", t["api_key"], body={"status": "disabled"}),
        403,
        "system",
    )
    status, patched = await call(
        api, "PATCH", f"/tenants/{name}", t["api_key"], body={"time_zone": "Europe/Paris"}
    )
    assert status == 200 and patched["time_zone"] == "Europe/Paris"


async def test_driver_whitelist_crud(api: Api) -> None:
    a = await new_tenant(api.pool, api.settings)
    b = await new_tenant(api.pool, api.settings)
    chat = unique_chat_id()
    body = {
        "chat_id": chat,
        "driver_name": "Ivan",
        "calendar_id": "ivan@example.com",
        "time_zone": "Europe/Samara",
    }
    status, d = await call(api, "POST", f"/tenants/{a.name}/drivers", a.admin_key, body=body)
    assert status == 201 and (d["tenant_id"], d["chat_id"], d["status"], d["time_zone"]) == (
        a.tenant_id, chat, "active", "Europe/Samara",
    )  # fmt: skip
    assert_error(
        *await call(api, "POST", f"/tenants/{a.tenant_id}/drivers", a.admin_key, body=body),
        409,
        "already exists",
    )
    # The same chat in another tenant: refused, without saying which tenant holds it.
    status, err = await call(api, "POST", f"/tenants/{b.tenant_id}/drivers", b.admin_key, body=body)
    assert_error(status, err, 409, "another tenant")
    assert a.tenant_id not in err["error"]["message"] and a.name not in err["error"]["message"]
    assert_error(
        *await call(
            api,
            "POST",
            f"/tenants/{a.tenant_id}/drivers",
            a.admin_key,
            body={**body, "time_zone": "Nowhere/X"},
        ),
        400,
        "unknown time zone",
    )
    assert_error(*await call(api, "GET", f"/tenants/{a.tenant_id}/drivers/abc", a.admin_key), 400, "integer")
    status, d = await call(
        api, "PATCH", f"/tenants/{a.tenant_id}/drivers/{chat}", a.admin_key, body={"status": "disabled"}
    )
    assert status == 200 and d["status"] == "disabled"
    assert_error(
        *await call(
            api, "PATCH", f"/tenants/{a.tenant_id}/drivers/{chat}", a.admin_key, body={"status": "gone"}
        ),
        400,
        "status",
    )
    assert (await call(api, "DELETE", f"/tenants/{a.tenant_id}/drivers/{chat}", a.admin_key))[0] == 204
    assert_error(
        *await call(api, "DELETE", f"/tenants/{a.tenant_id}/drivers/{chat}", a.admin_key), 404, "no driver"
    )
    actions = [r["action"] for r in await audit_rows(api.pool, a.tenant_id) if r["chat_id"] == chat]
    assert actions == ["driver_added", "driver_updated", "driver_removed"]


async def test_api_keys_lifecycle_and_bad_input(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    path = f"/tenants/{t.tenant_id}/api-keys"
    assert_error(*await call(api, "POST", path, t.admin_key, body={"role": "system"}), 400, "system")
    assert_error(*await call(api, "POST", path, t.admin_key, body={"role": "user"}), 400, "chat id")
    assert_error(
        *await call(api, "POST", path, t.admin_key, body={"role": "user", "chat_id": 5}), 404, "no driver"
    )
    assert_error(*await call(api, "POST", path, t.admin_key, body={"role": "owner"}), 400, "role")
    assert_error(*await call(api, "DELETE", f"{path}/k000000000000", t.admin_key), 404, "no API key")
    # Another tenant's key id cannot be revoked through this tenant.
    other = await new_tenant(api.pool, api.settings)
    assert_error(*await call(api, "DELETE", f"{path}/{other.key_id}", t.admin_key), 404)
    assert (await call(api, "GET", "/me", other.admin_key))[0] == 200


async def test_settings_refuse_a_short_jwt_secret() -> None:
    from autodispatch.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="AUTODISPATCH_JWT_SECRET"):
        load_settings(_env_file=None, jwt_secret="short")
    with pytest.raises(SettingsError, match="AUTODISPATCH_JWT_SECRET: is empty"):
        load_settings(_env_file=None, jwt_secret="")  # an empty key is an error, never a key
    assert tenants.parse_ttl("15m") == timedelta(minutes=15)


@pytest.mark.e2e
async def test_the_stack_serves_the_api_next_to_the_webhook(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside, jwt_secret=JWT_SECRET)
    async with Stack(settings, announce=False, run_worker=False) as stack:
        assert stack.pool is not None
        t = await new_tenant(stack.pool, settings)
        base = f"http://{settings.http_host}:{settings.http_port}"
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/api/v1/openapi.json")).json()["openapi"] == "3.1.0"
            me = await http.get("/api/v1/me", headers={"X-API-Key": t.admin_key})
            assert me.status_code == 200 and me.json()["tenant_id"] == t.tenant_id
            token = issue_jwt(
                settings, subject="ops", role="viewer", tenant_id=t.tenant_id, ttl=timedelta(minutes=5)
            )
            assert (await http.get(f"/api/v1/tenants/{t.name}", headers=bearer(token))).status_code == 200
            # The webhook keeps its own secret check, untouched by the API's middleware.
            assert (await http.post("/telegram/webhook", json={})).status_code == 401
