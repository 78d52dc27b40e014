"""Admin API JWTs: issuer and audience checked, iat required, lifetime capped, revocable; and refresh
tokens of drivers' Google grants never shown in a repr, a log line or an exception."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import pytest_asyncio

from activities.calendar import grant_revoked
from activities.oauth import OAuthClient, OAuthGrants, UserGrant
from autodispatch import oauth, tenants
from autodispatch.admin import AdminError
from autodispatch.api.auth import AuthError, decode_jwt, issue_jwt
from tests.api_fixtures import JWT_SECRET, Api, api_settings, audit_rows, bearer, new_tenant, start_api
from tests.conftest import Postgres


@pytest_asyncio.fixture
async def api(postgres: Postgres) -> AsyncIterator[Api]:
    served = await start_api(postgres.pool)
    yield served
    await served.client.close()


async def me(api: Api, token: str) -> tuple[int, Any]:
    async with api.client.get("/api/v1/me", headers=bearer(token)) as resp:
        return resp.status, await resp.json()


def signed(**claims: Any) -> str:
    now = int(datetime.now(UTC).timestamp())
    base = {
        "sub": "ops", "role": "admin", "tenant_id": "acme", "iss": "autodispatch", "aud": "autodispatch-api",
        "iat": now, "exp": now + 300, "jti": "j1", "ver": 0,
    }  # fmt: skip
    return jwt.encode({k: v for k, v in {**base, **claims}.items() if v is not None}, JWT_SECRET, "HS256")


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"iss": "someone-else"}, "issuer"),
        ({"aud": "another-service"}, "audience"),
        ({"aud": None}, "'aud'"),
        ({"iss": None}, "'iss'"),
        ({"iat": None}, "'iat'"),
        ({"jti": None}, "'jti'"),
        ({"exp": int(datetime.now(UTC).timestamp()) + 31 * 86400}, "lifetime exceeds 30 days"),
        ({"iat": int(datetime.now(UTC).timestamp()) + 3600}, "invalid token"),  # issued in the future
    ],
)
def test_a_token_must_name_us_and_live_briefly(claims: dict[str, Any], words: str) -> None:
    with pytest.raises(AuthError) as caught:
        decode_jwt(api_settings(), signed(**claims))
    assert caught.value.status == 401 and words in caught.value.message
    assert decode_jwt(api_settings(), signed())["jti"] == "j1"  # the same token, as we issue it, passes


def test_issuing_is_capped_by_the_setting() -> None:
    settings = api_settings(jwt_max_ttl_days=7)
    with pytest.raises(AdminError, match="at most 7 days"):
        issue_jwt(settings, subject="x", role="admin", tenant_id="acme", ttl=timedelta(days=8))
    token = issue_jwt(settings, subject="x", role="admin", tenant_id="acme", ttl=timedelta(days=7))
    claims = decode_jwt(settings, token)
    assert claims["exp"] - claims["iat"] == 7 * 86400 and claims["aud"] == "autodispatch-api"
    # A server with a shorter cap refuses what a longer one issued.
    with pytest.raises(AuthError, match="lifetime exceeds 1 days"):
        decode_jwt(api_settings(jwt_max_ttl_days=1), token)


async def test_a_revoked_token_is_401_and_revoking_all_ends_every_earlier_one(api: Api) -> None:
    t = await new_tenant(api.pool, api.settings)
    first = await tenants.issue_token(
        api.pool,
        api.settings,
        tenant=t.tenant_id,
        role="viewer",
        ttl=timedelta(hours=1),
        source="cli",
        actor="t",
    )
    second = await tenants.issue_token(
        api.pool,
        api.settings,
        tenant=t.tenant_id,
        role="admin",
        ttl=timedelta(hours=1),
        source="cli",
        actor="t",
    )
    assert (await me(api, first["token"]))[0] == 200
    issued = await audit_rows(api.pool, t.tenant_id, "token_issued")
    assert [r["details"]["jti"] for r in issued] == [first["jti"], second["jti"]]  # how an operator finds it

    await tenants.revoke_tokens(
        api.pool, api.settings, tenant=t.name, jti=first["jti"], source="cli", actor="t"
    )
    status, body = await me(api, first["token"])
    assert status == 401 and body["error"]["code"] == "token_revoked"
    assert (await me(api, second["token"]))[0] == 200

    await tenants.revoke_tokens(api.pool, api.settings, tenant=t.tenant_id, source="cli", actor="t")
    assert (await me(api, second["token"]))[1]["error"]["code"] == "token_revoked"
    third = await tenants.issue_token(
        api.pool,
        api.settings,
        tenant=t.tenant_id,
        role="viewer",
        ttl=timedelta(hours=1),
        source="cli",
        actor="t",
    )
    assert (await me(api, third["token"]))[0] == 200  # issued after: works
    actions = [r["action"] for r in await audit_rows(api.pool, t.tenant_id)]
    assert {"token_revoked", "tokens_revoked"} <= set(actions)
    # Another tenant's revocation does not reach this one.
    other = await new_tenant(api.pool, api.settings)
    await tenants.revoke_tokens(api.pool, api.settings, tenant=other.tenant_id, source="cli", actor="t")
    assert (await me(api, third["token"]))[0] == 200


# -- refresh tokens ---------------------------------------------------------------------------------
REFRESH = "1//0g-" + secrets.token_urlsafe(40)
CLIENT_SECRET = "GOCSPX-" + secrets.token_urlsafe(20)


def grant() -> UserGrant:
    client = OAuthClient(
        "cid.apps.googleusercontent.com", CLIENT_SECRET, "https://oauth2.example/token", ("x",)
    )
    return UserGrant("acme", 42, "active", REFRESH, "d@example.com", client)


def test_a_grant_never_shows_its_refresh_token(caplog: pytest.LogCaptureFixture) -> None:
    g = grant()
    shown = [repr(g), str(g), f"{g}", f"{g!r}", repr(g.client)]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("autodispatch.test").info("grant %s / %r", g, g)
        try:
            raise RuntimeError(f"calendar call failed for {g}")
        except RuntimeError:
            logging.getLogger("autodispatch.test").exception("with the grant in the message")
    shown += [r.getMessage() for r in caplog.records] + [caplog.text]
    shown.append(str(grant_revoked(g, "Google answered invalid_grant")))
    for text in shown:
        assert REFRESH not in text and CLIENT_SECRET not in text
    assert g.refresh_token == REFRESH  # still there for the Calendar client


async def test_stored_grants_hold_only_ciphertext(postgres: Postgres) -> None:
    from cryptography.fernet import Fernet
    from pydantic import SecretStr

    from autodispatch.db import system_tx
    from tests.api_fixtures import add_tenant_driver

    settings = api_settings(
        google_oauth_client_id="cid", google_oauth_client_secret=SecretStr(CLIENT_SECRET),
        oauth_state_secret=SecretStr("s" * 32), oauth_token_keys=SecretStr(Fernet.generate_key().decode()),
    )  # fmt: skip
    t = await new_tenant(postgres.pool, settings)
    chat = await add_tenant_driver(postgres.pool, t.tenant_id)
    grants = OAuthGrants(postgres.pool, settings)
    await grants.save(t.tenant_id, chat, REFRESH, "d@example.com", "x")
    async with system_tx(postgres.pool) as conn:
        row = dict(await conn.fetchrow("SELECT * FROM oauth_grants WHERE chat_id = $1", chat))
    assert REFRESH not in repr(row)
    loaded = await grants.load(t.tenant_id, chat)
    assert loaded is not None and loaded.refresh_token == REFRESH and REFRESH not in repr(loaded)
    assert isinstance(oauth.TokenCipher.from_settings(settings), oauth.TokenCipher)
