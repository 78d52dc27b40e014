"""OAuth2 pieces on their own (#6 phase 4): the signed state (tampered, expired, other chat, replayed),
PKCE, refresh tokens encrypted at rest with key rotation, and the Calendar activity writing with a
driver's own grant against the Google emulator (and classifying a revoked grant)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet, InvalidToken
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.agenda import AgendaActivities
from activities.calendar import CalendarActivities, CalendarService
from activities.oauth import OAuthGrants
from autodispatch import admin, db, oauth
from autodispatch.settings import Settings
from schemas.agenda import ListEventsInput
from schemas.calendar import CancelEventInput, CreateEventInput
from schemas.order import ParsedOrder
from tests.conftest import Outside, Postgres, add_driver
from workflows.ids import order_id_for

SECRET = "s" * 40
ORDER = ParsedOrder(
    pickup_at=datetime(2026, 11, 22, 5, 40, tzinfo=UTC), pickup_address="Внуково", dropoff_address="Тверская 7",
    price_amount=2500, price_currency="RUB", is_order=True,
)  # fmt: skip


# -- the signed state ------------------------------------------------------------------------------
def test_state_round_trip_carries_tenant_chat_and_language() -> None:
    state, claims = oauth.sign_state(SECRET, "acme", 42, language="en")
    got = oauth.verify_state(SECRET, state, chat_id=42)
    assert got == claims and got.tenant_id == "acme" and got.chat_id == 42 and got.language == "en"
    assert got.expires_at - time.time() == pytest.approx(600, abs=5)


def _reencode(state: str, **changes: object) -> str:
    version, payload, mac = state.split(".")
    raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    return f"{version}.{forged}.{mac}"


@pytest.mark.parametrize(
    "change",
    [{"c": 43}, {"t": "other-tenant"}, {"e": int(time.time()) + 10**6}],
    ids=["chat", "tenant", "expiry"],
)
def test_a_tampered_state_is_refused(change: dict) -> None:
    state, _ = oauth.sign_state(SECRET, "acme", 42)
    with pytest.raises(oauth.StateError) as err:
        oauth.verify_state(SECRET, _reencode(state, **change))
    assert err.value.reason == "bad_signature" and err.value.claims is None


def test_a_state_signed_with_another_key_or_mangled_is_refused() -> None:
    state, _ = oauth.sign_state("x" * 40, "acme", 42)
    with pytest.raises(oauth.StateError) as err:
        oauth.verify_state(SECRET, state)
    assert err.value.reason == "bad_signature"
    for junk in ("", "v1.abc", "v2.a.b", state + "x", "v1..", "v1.!!!.###"):
        with pytest.raises(oauth.StateError):
            oauth.verify_state(SECRET, junk)


def test_an_expired_state_is_refused_but_says_whose_it_was() -> None:
    now = time.time()
    state, _ = oauth.sign_state(SECRET, "acme", 42, now=now)
    assert oauth.verify_state(SECRET, state, now=now + 599).chat_id == 42
    with pytest.raises(oauth.StateError) as err:
        oauth.verify_state(SECRET, state, now=now + 600)
    assert err.value.reason == "expired" and err.value.claims is not None and err.value.claims.chat_id == 42


def test_a_state_for_another_chat_is_refused() -> None:
    state, _ = oauth.sign_state(SECRET, "acme", 42)
    with pytest.raises(oauth.StateError) as err:
        oauth.verify_state(SECRET, state, chat_id=43)
    assert err.value.reason == "other_chat"


def test_pkce_s256_matches_rfc_7636_and_verifier_is_derived_per_nonce() -> None:
    # RFC 7636 appendix B.
    assert (
        oauth.code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    v1, v2 = oauth.code_verifier(SECRET, "n1"), oauth.code_verifier(SECRET, "n2")
    assert len(v1) == 43 and v1 != v2 and v1 == oauth.code_verifier(SECRET, "n1")
    assert oauth.code_verifier("y" * 40, "n1") != v1


def test_authorization_url_asks_for_code_with_pkce_offline_and_consent() -> None:
    settings = _settings("https://accounts.example/auth", "https://accounts.example/token")
    state, claims = oauth.sign_state(SECRET, "acme", 42)
    url = oauth.authorization_url(settings, state, claims.nonce)
    assert url.startswith("https://accounts.example/auth?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
    assert q["code_challenge"] == oauth.code_challenge(oauth.code_verifier(SECRET, claims.nonce))
    assert q["access_type"] == "offline" and q["prompt"] == "consent" and q["state"] == state
    assert q["redirect_uri"] == settings.oauth_redirect_url
    assert "code_verifier" not in q  # the verifier never leaves the server but to the token endpoint


def test_settings_refuse_weak_state_secret_and_bad_token_keys() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(_env_file=None, oauth_state_secret="short")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(_env_file=None, oauth_token_keys="not-a-fernet-key")  # type: ignore[arg-type]
    ok = Settings(_env_file=None, google_oauth_client_id="c")  # type: ignore[arg-type]
    assert oauth.oauth_problem(ok) is not None and "CLIENT_SECRET" in oauth.oauth_problem(ok)


# -- refresh tokens at rest ------------------------------------------------------------------------
def test_cipher_round_trip_never_stores_plaintext() -> None:
    cipher = oauth.TokenCipher([oauth.generate_key()])
    token = cipher.encrypt("1//refresh-token")
    assert "refresh-token" not in token
    assert cipher.decrypt(token) == ("1//refresh-token", False)


def test_key_rotation_new_key_first_then_rotate_then_drop_the_old() -> None:
    old, new = oauth.generate_key(), oauth.generate_key()
    stored = oauth.TokenCipher([old]).encrypt("1//refresh")
    both = oauth.TokenCipher.from_setting(f"{new}, {old}")
    assert both.decrypt(stored) == ("1//refresh", True)  # readable, and reported stale
    rotated = both.rotate(stored)
    assert both.decrypt(rotated) == ("1//refresh", False)
    only_new = oauth.TokenCipher([new])
    assert only_new.decrypt(rotated)[0] == "1//refresh"
    with pytest.raises(InvalidToken):
        only_new.decrypt(stored)  # dropping the old key before rotating would lose this token


# -- the database side -----------------------------------------------------------------------------
def _settings(auth_uri: str, token_uri: str, keys: str | None = None) -> Settings:
    return Settings(
        _env_file=None, google_oauth_client_id="client-1", google_oauth_client_secret="client-secret",
        google_oauth_auth_uri=auth_uri, google_oauth_token_uri=token_uri, oauth_state_secret=SECRET,
        oauth_token_keys=keys or Fernet.generate_key().decode(),
    )  # type: ignore[arg-type]  # fmt: skip


async def test_a_state_is_single_use_and_bound_to_its_chat(postgres: Postgres) -> None:
    driver = await add_driver(postgres.pool, "cal@example.com")
    grants = OAuthGrants(postgres.pool, _settings("https://a.example/auth", "https://a.example/token"))
    link = await grants.new_link(driver.tenant_id, driver.chat_id, "wf-1", "ru")
    state = parse_qs(urlsplit(link.url or "").query)["state"][0]
    claims = oauth.verify_state(SECRET, state)
    other = oauth.StateClaims(driver.tenant_id, driver.chat_id + 1, claims.nonce, claims.expires_at)
    with pytest.raises(oauth.StateError) as err:
        await grants.consume_state(other)  # the row is the chat's own
    assert err.value.reason == "used"
    await grants.consume_state(claims)
    with pytest.raises(oauth.StateError) as err:
        await grants.consume_state(claims)  # replayed
    assert err.value.reason == "used"


async def test_grant_is_stored_encrypted_and_lazily_re_encrypted_under_the_new_key(
    postgres: Postgres,
) -> None:
    driver = await add_driver(postgres.pool, "cal@example.com")
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = OAuthGrants(postgres.pool, _settings("https://a/auth", "https://a/token", old))
    await before.save(driver.tenant_id, driver.chat_id, "1//the-refresh-token", "d@example.com", "scope")

    async def stored() -> str:
        async with db.tenant_tx(postgres.pool, driver.tenant_id) as conn:
            return await conn.fetchval(
                "SELECT refresh_token FROM oauth_grants WHERE tenant_id = $1 AND chat_id = $2",
                driver.tenant_id, driver.chat_id,
            )  # fmt: skip

    raw = await stored()
    assert "the-refresh-token" not in raw
    after = OAuthGrants(postgres.pool, _settings("https://a/auth", "https://a/token", f"{new},{old}"))
    grant = await after.load(driver.tenant_id, driver.chat_id)
    assert grant is not None and grant.refresh_token == "1//the-refresh-token" and grant.status == "active"
    rewritten = await stored()
    assert rewritten != raw and oauth.TokenCipher([new]).decrypt(rewritten)[0] == "1//the-refresh-token"

    # The bulk path (`autodispatch oauth rotate-keys`) finds nothing left for this row.
    assert (await after.rotate_all()) >= 0
    assert oauth.TokenCipher([new]).decrypt(await stored())[1] is False


# -- the Calendar activity with the driver's own grant ----------------------------------------------
async def _connected_driver(postgres: Postgres, outside: Outside) -> tuple[object, OAuthGrants, str, str]:
    """A driver whose calendar is their own Google account's, connected through the emulator's code flow."""
    email = f"driver-{uuid.uuid4().hex[:8]}@gmail.example"
    outside.google.create_user(email, make_current=False)
    client_id, secret = f"client-{uuid.uuid4().hex[:6]}", "client-secret"
    outside.google.create_oauth_client(client_id, secret, ["http://127.0.0.1/cb"])
    settings = Settings(
        _env_file=None, google_oauth_client_id=client_id, google_oauth_client_secret=secret,
        google_oauth_auth_uri=f"{outside.google.base_url}/o/oauth2/v2/auth",
        google_oauth_token_uri=outside.google.token_uri, oauth_state_secret=SECRET,
        oauth_token_keys=Fernet.generate_key().decode(), google_oauth_redirect_url="http://127.0.0.1/cb",
    )  # type: ignore[arg-type]  # fmt: skip
    driver = await add_driver(postgres.pool, email)
    grants = OAuthGrants(postgres.pool, settings)
    link = await grants.new_link(driver.tenant_id, driver.chat_id, "wf", "ru")
    import httpx

    async with httpx.AsyncClient() as http:
        r = await http.get(f"{link.url}&approve=1&user={email}")
        assert r.status_code == 302
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        tokens = (
            await http.post(
                outside.google.token_uri,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": "http://127.0.0.1/cb",
                    "client_id": client_id,
                    "client_secret": secret,
                    "code_verifier": oauth.code_verifier(SECRET, link.nonce or ""),
                },
            )  # fmt: skip
        ).json()
    await grants.save(driver.tenant_id, driver.chat_id, tokens["refresh_token"], email, tokens["scope"])
    return driver, grants, email, client_id


def _event_request(driver: object, calendar_id: str) -> CreateEventInput:
    order_id = order_id_for(driver.tenant_id, driver.chat_id, uuid.uuid4().int % 10**6)  # type: ignore[attr-defined]
    return CreateEventInput(
        calendar_id=calendar_id, event_id=order_id, time_zone="Europe/Moscow", order_id=order_id,
        tenant_id=driver.tenant_id, chat_id=driver.chat_id, order=ORDER,  # type: ignore[attr-defined]
    )  # fmt: skip


async def test_calendar_writes_with_the_drivers_grant_and_a_revoked_one_is_classified(
    postgres: Postgres, outside: Outside
) -> None:
    driver, grants, email, _ = await _connected_driver(postgres, outside)
    sa = outside.google.create_service_account(
        email=f"sa-{uuid.uuid4().hex[:6]}@sandbox.iam.gserviceaccount.com"
    )
    acts = CalendarActivities(
        CalendarService(outside.google.calendar_api_root, service_account_info=sa, grants=grants)
    )
    req = _event_request(driver, email)
    got = await asyncio.to_thread(ActivityEnvironment().run, acts.create_event, req)
    assert got.created
    (event,) = outside.google.events(email)
    assert event["creator"]["email"] == email  # the driver's own principal, not the service account

    # The agenda reads the driver's own calendar with the same grant (the service account cannot).
    start = ORDER.pickup_at.replace(hour=0, minute=0)  # type: ignore[union-attr]
    listing = ListEventsInput(
        calendar_id=email, time_min=start, time_max=start + timedelta(days=1), time_zone="Europe/Moscow",
        tenant_id=driver.tenant_id, chat_id=driver.chat_id,  # type: ignore[attr-defined]
    )  # fmt: skip
    agenda = AgendaActivities(acts.calendar)
    (item,) = await asyncio.to_thread(ActivityEnvironment().run, agenda.list_agenda_events, listing)
    assert item.event_id == req.event_id
    anonymous = listing.model_copy(update={"tenant_id": None, "chat_id": None, "calendar_id": "nobody@x"})
    with pytest.raises(ApplicationError):
        await asyncio.to_thread(ActivityEnvironment().run, agenda.list_agenda_events, anonymous)

    # Cancel naming the tenant but not the driver: the tenant's one driver of that calendar (naming no
    # tenant at all, no grant is looked up by calendar id: tests/test_calendar_ownership.py).
    assert await asyncio.to_thread(
        ActivityEnvironment().run,
        acts.cancel_event,
        CancelEventInput(calendar_id=email, event_id=req.event_id, tenant_id=driver.tenant_id),  # type: ignore[attr-defined]
    )

    # Revoked in the Google account: invalid_grant → CalendarGrantRevoked, the grant is marked.
    assert outside.google.revoke_user_grants(email) == 1
    with pytest.raises(ApplicationError) as err:
        await asyncio.to_thread(ActivityEnvironment().run, acts.create_event, _event_request(driver, email))
    assert err.value.type == "CalendarGrantRevoked" and err.value.non_retryable
    grant = await grants.load(driver.tenant_id, driver.chat_id)  # type: ignore[attr-defined]
    assert grant is not None and grant.status == "revoked" and grant.refresh_token is None

    # The next order fails fast without asking Google again.
    before = outside.google.stats()["tokens_issued"]
    with pytest.raises(ApplicationError) as err:
        await asyncio.to_thread(ActivityEnvironment().run, acts.create_event, _event_request(driver, email))
    assert err.value.type == "CalendarGrantRevoked"
    assert outside.google.stats()["tokens_issued"] == before
    assert len([e for e in outside.google.events(email) if e["status"] != "cancelled"]) == 0


async def test_a_driver_without_a_grant_still_writes_as_the_service_account(
    postgres: Postgres, outside: Outside
) -> None:
    _, grants, _, _ = await _connected_driver(postgres, outside)
    sa = outside.google.create_service_account(
        email=f"sa-{uuid.uuid4().hex[:6]}@sandbox.iam.gserviceaccount.com"
    )
    other = await add_driver(postgres.pool, f"shared-{uuid.uuid4().hex[:6]}@group.calendar.google.com")
    outside.google.create_calendar(
        other.calendar_id, owner="boss@example.com", shares={sa["client_email"]: "writer"}
    )
    acts = CalendarActivities(
        CalendarService(outside.google.calendar_api_root, service_account_info=sa, grants=grants)
    )
    await asyncio.to_thread(
        ActivityEnvironment().run, acts.create_event, _event_request(other, other.calendar_id)
    )
    (event,) = outside.google.events(other.calendar_id)
    assert event["creator"]["email"] == sa["client_email"]


async def test_disconnect_revokes_at_google_and_falls_back_to_the_service_account(
    postgres: Postgres, outside: Outside
) -> None:
    from autodispatch.cli_oauth import disconnect

    driver, grants, email, _ = await _connected_driver(postgres, outside)
    settings = grants.settings.model_copy(
        update={"google_oauth_revoke_uri": f"{outside.google.base_url}/revoke"}
    )
    done = await disconnect(settings, postgres.pool, driver.chat_id, actor="test")  # type: ignore[attr-defined]
    assert done["google"] == "revoked"
    assert outside.google.revoke_user_grants(email) == 0  # Google already forgot it
    grant = await grants.load(driver.tenant_id, driver.chat_id)  # type: ignore[attr-defined]
    assert grant is not None and grant.status == "disconnected" and grant.refresh_token is None
    service = CalendarService(outside.google.calendar_api_root, grants=grants)
    http, used = await asyncio.to_thread(service.http_for, _event_request(driver, email))
    assert used is None  # the service account's Http again
    audit = await admin.read_audit(postgres.pool, tenant=driver.tenant_id)  # type: ignore[attr-defined]
    assert any(r["action"] == "oauth_disconnected" for r in audit)


async def test_a_driver_is_never_told_a_grant_is_gone_while_google_still_honours_it(
    postgres: Postgres, outside: Outside
) -> None:
    """Google's revoke endpoint unreachable: /disconnect's step changes nothing and is retried; the
    admin's `oauth disconnect` forgets the grant anyway and says what Google did."""
    from activities.oauth import OAuthActivities, RevokeUnavailable
    from autodispatch.cli_oauth import disconnect
    from autodispatch.embedded import free_port
    from schemas.oauth import DisconnectGrantInput

    driver, grants, email, _ = await _connected_driver(postgres, outside)
    down = grants.settings.model_copy(
        update={"google_oauth_revoke_uri": f"http://127.0.0.1:{free_port()}/revoke"}
    )
    unreachable = OAuthGrants(postgres.pool, down)
    with pytest.raises(RevokeUnavailable):
        await unreachable.disconnect_and_revoke(driver.tenant_id, driver.chat_id, insist=True)  # type: ignore[attr-defined]
    with pytest.raises(ApplicationError) as step:
        await ActivityEnvironment().run(
            OAuthActivities(postgres.pool, unreachable).disconnect_grant,
            DisconnectGrantInput(tenant_id=driver.tenant_id, chat_id=driver.chat_id),  # type: ignore[attr-defined]
        )
    assert step.value.type == "GoogleUnavailable" and not step.value.non_retryable
    grant = await grants.load(driver.tenant_id, driver.chat_id)  # type: ignore[attr-defined]
    assert grant is not None and grant.status == "active" and grant.refresh_token  # nothing changed
    assert outside.google.revoke_user_grants(email) == 1  # and Google still honours it

    driver, grants, email, _ = await _connected_driver(postgres, outside)  # its own token key
    down = grants.settings.model_copy(update={"google_oauth_revoke_uri": down.google_oauth_revoke_uri})
    done = await disconnect(down, postgres.pool, driver.chat_id, actor="test")  # type: ignore[attr-defined]
    assert done["google"].startswith("google unreachable")
    grant = await grants.load(driver.tenant_id, driver.chat_id)  # type: ignore[attr-defined]
    assert grant is not None and grant.status == "disconnected" and grant.refresh_token is None


async def test_sandbox_points_oauth_at_its_google_emulator(tmp_path, outside: Outside) -> None:  # noqa: ANN001
    from autodispatch.stack import Stack

    stack = Stack(Settings(_env_file=None, data_dir=tmp_path, http_port=18080), announce=False)  # type: ignore[arg-type]
    stack.google_emulator, stack.sandbox.google = outside.google, outside.google.base_url
    s = stack._configure_oauth()
    assert s.oauth_configured and s.google_oauth_token_uri == outside.google.token_uri
    assert s.google_oauth_auth_uri == f"{outside.google.base_url}/o/oauth2/v2/auth"
    assert s.oauth_redirect_url == "http://127.0.0.1:18080/oauth/google/callback"
    again = Stack(Settings(_env_file=None, data_dir=tmp_path, http_port=18080), announce=False)  # type: ignore[arg-type]
    again.google_emulator, again.sandbox.google = outside.google, outside.google.base_url
    # Keys survive a restart: grants stored by the first run stay readable.
    assert (
        again._configure_oauth().oauth_token_keys.get_secret_value() == s.oauth_token_keys.get_secret_value()
    )  # type: ignore[union-attr]
    state, claims = oauth.sign_state(s.oauth_state_secret.get_secret_value(), "demo", 1)  # type: ignore[union-attr]
    import httpx

    async with httpx.AsyncClient() as http:
        r = await http.get(
            oauth.authorization_url(s, state, claims.nonce) + "&approve=1&user=demo@sandbox.local"
        )
    assert r.status_code == 302 and r.headers["location"].startswith(s.oauth_redirect_url + "?code=")
