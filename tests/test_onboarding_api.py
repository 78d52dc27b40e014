"""#6 item 5 over HTTP: approve (calendar checked first, the `driver approve` code path) and disable a
driver through /api/v1; a tenant's onboarding settings (invite link, activation); and the onboarding
activities that read them, on the session's real PostgreSQL and the Google emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio

from activities.calendar import CalendarService
from activities.onboarding import OnboardingActivities
from autodispatch import admin, tenants
from autodispatch.api.auth import issue_jwt
from autodispatch.db import system_tx
from autodispatch.embedded import free_port
from schemas.onboarding import RegisterDriverInput, ResolveTenantInput
from tests.api_fixtures import Api, add_tenant_driver, audit_rows, bearer, new_tenant, start_api
from tests.conftest import Outside, Postgres, unique_chat_id


@pytest_asyncio.fixture
async def google_api(postgres: Postgres, outside: Outside, tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    """The API with a service account on the Google emulator: (api, the account's e-mail)."""
    email = f"ad-{uuid.uuid4().hex[:8]}@fleet.iam.gserviceaccount.com"
    key = tmp_path / "sa.json"
    key.write_text(json.dumps(outside.google.create_service_account(email=email)))
    api = await start_api(
        postgres.pool, google_api_endpoint=outside.google.base_url, google_service_account_file=key,
        telegram_bot_username="acme_dispatch_bot",
    )  # fmt: skip
    try:
        yield api, email
    finally:
        await api.client.close()


async def call(api: Api, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body) if body is not None else None
    async with api.client.request(method, "/api/v1" + path, data=data, headers=bearer(token)) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


def jwt_for(api: Api, role: str, tenant_id: str) -> str:
    return issue_jwt(api.settings, subject="ops", role=role, tenant_id=tenant_id, ttl=timedelta(minutes=5))  # type: ignore[arg-type]


async def status_of(postgres: Postgres, chat_id: int) -> str:
    async with system_tx(postgres.pool) as conn:
        return str(await conn.fetchval("SELECT status FROM drivers WHERE chat_id = $1", chat_id))


async def test_approve_checks_the_calendar_first_and_disable_switches_off(
    google_api: tuple[Api, str], postgres: Postgres, outside: Outside
) -> None:
    api, email = google_api
    t = await new_tenant(api.pool, api.settings)
    calendar_id = f"cal-{uuid.uuid4().hex[:10]}@group.calendar.google.com"
    outside.google.create_calendar(calendar_id, owner="driver@example.com")
    chat = await add_tenant_driver(api.pool, t.tenant_id, calendar_id=calendar_id)
    async with system_tx(api.pool) as conn:
        await conn.execute("UPDATE drivers SET status = 'pending' WHERE chat_id = $1", chat)
    path = f"/tenants/{t.tenant_id}/drivers/{chat}"

    # Not shared with the bot: refused with the precise reason, nothing changes.
    status, body = await call(api, "POST", f"{path}/approve", t.admin_key)
    assert status == 409 and body["error"]["code"] == "calendar_check_failed", body
    assert "not_found_or_not_shared" in body["error"]["message"] and email in body["error"]["message"]
    assert await status_of(postgres, chat) == "pending"
    outside.google.share_calendar(calendar_id, email, "reader")
    status, body = await call(api, "POST", f"{path}/approve", t.admin_key)
    assert status == 409 and "read-only" in body["error"]["message"]
    assert await status_of(postgres, chat) == "pending"

    outside.google.share_calendar(calendar_id, email, "writer")
    status, body = await call(api, "POST", f"{path}/approve", t.admin_key)
    assert status == 200, body
    assert (body["status"], body["changed"], body["calendar_check"]) == ("active", True, "ok")
    assert await status_of(postgres, chat) == "active"
    status, body = await call(api, "POST", f"{path}/approve", t.admin_key)  # again: nothing to do
    assert status == 200 and body["changed"] is False
    assert [e for e in outside.google.events(calendar_id) if e["status"] != "cancelled"] == []

    status, body = await call(api, "POST", f"{path}/disable", t.admin_key)
    assert status == 200 and body["status"] == "disabled"
    assert await status_of(postgres, chat) == "disabled"
    # ?verify=false: approved without the check, and the audit says so.
    status, body = await call(api, "POST", f"{path}/approve?verify=false", t.admin_key)
    assert status == 200 and body["calendar_check"] == "skipped" and body["status"] == "active"

    rows = [r for r in await audit_rows(api.pool, t.tenant_id) if r["chat_id"] == chat]
    actions = [r["action"] for r in rows]
    assert actions == [
        "calendar_check_failed",
        "calendar_check_failed",
        "calendar_verified",
        "driver_approved",
        "driver_disabled",
        "driver_approved",
    ]
    for r in rows:
        if r["action"] in ("driver_approved", "driver_disabled"):
            assert r["workflow_id"] == "api" and r["details"]["actor"].startswith("admin:"), r
    assert rows[2]["details"]["context"] == "api_driver_approve"


async def test_approve_and_disable_are_refused_to_viewers_other_tenants_and_unknown_drivers(
    google_api: tuple[Api, str], postgres: Postgres
) -> None:
    api, _ = google_api
    a = await new_tenant(api.pool, api.settings)
    b = await new_tenant(api.pool, api.settings)
    chat = await add_tenant_driver(api.pool, a.tenant_id)
    viewer = jwt_for(api, "viewer", a.tenant_id)
    for action in ("approve", "disable"):
        path = f"/tenants/{a.tenant_id}/drivers/{chat}/{action}"
        status, body = await call(api, "POST", path, viewer)
        assert status == 403 and body["error"]["code"] == "forbidden", body
        status, body = await call(api, "POST", path, b.admin_key)  # another tenant's admin
        assert status == 403 and body["error"]["code"] == "forbidden_tenant", body
        # B's admin on B's own path cannot reach A's driver either: it is not there.
        status, body = await call(api, "POST", f"/tenants/{b.tenant_id}/drivers/{chat}/{action}", b.admin_key)
        assert status == 404, body
        status, body = await call(
            api, "POST", f"/tenants/{a.tenant_id}/drivers/{unique_chat_id()}/{action}", a.admin_key
        )
        assert status == 404 and "no driver" in body["error"]["message"]
    assert await status_of(postgres, chat) == "active"  # nothing changed
    denied = await audit_rows(api.pool, a.tenant_id, "api_denied")
    assert len([r for r in denied if r["details"]["path"].endswith(("/approve", "/disable"))]) == 2
    denied_b = await audit_rows(api.pool, b.tenant_id, "api_denied")
    assert any(r["details"].get("target_tenant") == a.tenant_id for r in denied_b)


async def test_approve_when_google_cannot_be_asked_is_503_and_changes_nothing(
    postgres: Postgres, tmp_path: Path
) -> None:
    api = await start_api(postgres.pool, google_api_endpoint=f"http://127.0.0.1:{free_port()}/")
    try:
        t = await new_tenant(api.pool, api.settings)
        chat = await add_tenant_driver(api.pool, t.tenant_id)
        async with system_tx(api.pool) as conn:
            await conn.execute("UPDATE drivers SET status = 'pending' WHERE chat_id = $1", chat)
        status, body = await call(api, "POST", f"/tenants/{t.tenant_id}/drivers/{chat}/approve", t.admin_key)
        assert status == 503 and body["error"]["code"] == "calendar_check_unavailable", body
        assert "verify=false" in body["error"]["message"]
        assert await status_of(postgres, chat) == "pending"
    finally:
        await api.client.close()


async def test_onboarding_settings_invite_link_and_activation(google_api: tuple[Api, str]) -> None:
    api, _ = google_api
    t = await new_tenant(api.pool, api.settings)
    path = f"/tenants/{t.tenant_id}/onboarding"
    status, body = await call(api, "GET", path, t.admin_key)
    assert status == 200, body
    code = body["invite_code"]
    assert body["activation"] == "approval" and len(code) >= 16
    assert body["deep_link"] == f"https://t.me/acme_dispatch_bot?start={code}"
    assert body["start_command"] == f"/start {code}" and body["default_tenant"] is False

    status, body = await call(api, "PATCH", path, t.admin_key, {"activation": "payment", "invite": "rotate"})
    assert status == 200 and body["activation"] == "payment" and body["invite_code"] not in (None, code)
    status, body = await call(api, "PATCH", path, t.admin_key, {"invite": "close"})
    assert status == 200 and body["invite_code"] is None and body["deep_link"] is None
    status, body = await call(api, "PATCH", path, t.admin_key, {"activation": "free"})
    assert status == 400 and "activation" in body["error"]["message"]
    assert (await call(api, "GET", path, jwt_for(api, "viewer", t.tenant_id)))[0] == 403
    other = await new_tenant(api.pool, api.settings)
    assert (await call(api, "GET", path, other.admin_key))[0] == 403
    updates = await audit_rows(api.pool, t.tenant_id, "onboarding_updated")
    assert [r["details"].get("invite") for r in updates] == ["rotate", "close"]
    assert all(code not in json.dumps(r["details"]) for r in updates)  # the code never reaches the log


# -- the activities behind the dialogue, on the real database --------------------------------------
async def test_invite_codes_resolve_to_their_tenant_only(postgres: Postgres, outside: Outside) -> None:
    settings_tenant = await new_tenant(postgres.pool, _settings())
    code = await _code(postgres, settings_tenant.tenant_id)
    calendar = CalendarService(outside.google.calendar_api_root)
    acts = OnboardingActivities(postgres.pool, calendar, default_tenant=None)
    found = await acts.resolve_tenant(ResolveTenantInput(code=code))
    assert found.tenant is not None and found.tenant.tenant_id == settings_tenant.tenant_id
    assert found.tenant.activation == "approval"
    assert (await acts.resolve_tenant(ResolveTenantInput(code="nope-" + code))).problem == "unknown_code"
    assert (await acts.resolve_tenant(ResolveTenantInput())).problem == "no_code"
    # The reserved tenant has no invite; a bot whose default is a real tenant joins a bare /start there.
    async with system_tx(postgres.pool) as conn:
        assert await conn.fetchval("SELECT invite_code FROM tenants WHERE tenant_id = 'system'") is None
    with_default = OnboardingActivities(postgres.pool, calendar, default_tenant=settings_tenant.name)
    dflt = await with_default.resolve_tenant(ResolveTenantInput())
    assert dflt.tenant is not None and dflt.tenant.tenant_id == settings_tenant.tenant_id
    await tenants.set_tenant_status(
        postgres.pool, _settings(), settings_tenant.tenant_id, "disabled", source="cli", actor="test"
    )
    assert (await acts.resolve_tenant(ResolveTenantInput(code=code))).problem == "tenant_disabled"


async def test_registration_whitelists_pending_once(postgres: Postgres, outside: Outside) -> None:
    t = await new_tenant(postgres.pool, _settings())
    acts = OnboardingActivities(postgres.pool, CalendarService(outside.google.calendar_api_root))
    chat = unique_chat_id()
    req = RegisterDriverInput(
        tenant_id=t.tenant_id, chat_id=chat, driver_name="Ivan Petrov", calendar_id="ivan@gmail.com",
        calendar_time_zone="Asia/Yekaterinburg", workflow_id=f"onboarding-1-{chat}", step="r1:m2:registered",
    )  # fmt: skip
    first = await acts.register_driver(req)
    again = await acts.register_driver(req)  # a retried activity
    assert first.outcome == again.outcome == "registered" and first.status == "pending"
    (row,) = await admin.list_drivers(postgres.pool, tenant=t.tenant_id)
    assert (row["status"], row["time_zone"], row["driver_name"]) == (
        "pending",
        "Asia/Yekaterinburg",
        "Ivan Petrov",
    )
    assert len(await audit_rows(postgres.pool, t.tenant_id, "driver_registered")) == 1
    # The chat is somebody's driver already (another tenant): not taken over.
    other = await new_tenant(postgres.pool, _settings())
    taken = await acts.register_driver(req.model_copy(update={"tenant_id": other.tenant_id}))
    assert taken.outcome == "already_registered" and taken.tenant_id == t.tenant_id


def _settings() -> Any:
    from tests.api_fixtures import api_settings

    return api_settings()


async def _code(postgres: Postgres, tenant_id: str) -> str:
    async with system_tx(postgres.pool) as conn:
        return str(await conn.fetchval("SELECT invite_code FROM tenants WHERE tenant_id = $1", tenant_id))
