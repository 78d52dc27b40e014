"""/connect end to end on the real stack (#6 phase 4): Temporal dev server, embedded PostgreSQL, the
Telegram emulator and the Google emulator as consent screen, token endpoint and Calendar.

connect → approve → callback → an order written as the driver (not the service account) → grant revoked
in Google → the next order paused and the driver told → connect again → the paused order lands once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet

from autodispatch import admin, db, oauth
from autodispatch.embedded import EmbeddedTemporal, free_port
from autodispatch.settings import Settings
from autodispatch.stack import Stack
from schemas.oauth import ConnectedResult
from tests.conftest import Outside, Postgres, stack_settings, unique_chat_id
from tests.test_e2e import finished, replies, send
from workflows.oauth import CalendarConnectedWorkflow, connected_workflow_id

pytestmark = pytest.mark.e2e

STATE_SECRET = "state-secret-for-the-e2e-test-0123456789"


def oauth_settings(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> tuple[Settings, dict]:
    """A stack with a service account (that the driver never shares with) and an OAuth client."""
    sa = outside.google.create_service_account(
        email=f"bot-{uuid.uuid4().hex[:6]}@sandbox.iam.gserviceaccount.com"
    )
    sa_file = tmp_path / "sa.json"
    sa_file.write_text(json.dumps(sa))
    port = free_port()
    client_id, client_secret = f"client-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    outside.google.create_oauth_client(
        client_id, client_secret, [f"http://127.0.0.1:{port}/oauth/google/callback"]
    )
    base = outside.google.base_url
    settings = stack_settings(
        tmp_path, postgres, temporal_dev, outside, http_port=port, google_service_account_file=sa_file,
        google_oauth_client_id=client_id, google_oauth_client_secret=client_secret,
        google_oauth_auth_uri=f"{base}/o/oauth2/v2/auth", google_oauth_token_uri=f"{base}/token",
        google_oauth_revoke_uri=f"{base}/revoke", oauth_state_secret=STATE_SECRET,
        oauth_token_keys=Fernet.generate_key().decode(),
    )  # fmt: skip
    return settings, sa


@asynccontextmanager
async def oauth_stack(settings: Settings, outside: Outside) -> AsyncIterator[Stack]:
    # Without a token nobody may write (the emulator refuses, like Google): what lands was written by
    # someone with credentials.
    async with Stack(settings, announce=False) as stack:
        yield stack


async def connect_link(outside: Outside, stack: Stack, chat_id: int) -> str:
    before = len(replies(outside, stack, chat_id))
    sent = send(outside, stack, chat_id, "/connect")
    result = await finished(stack, sent["update_id"])
    assert result.outcome == "command"
    new = replies(outside, stack, chat_id)[before:]
    (link_msg,) = new
    assert "Google" in link_msg["text"] and "10" in link_msg["text"]
    (button,) = link_msg["reply_markup"]["inline_keyboard"][0]
    assert "callback_data" not in button
    return button["url"]


async def approve(url: str, email: str) -> httpx.Response:
    """The driver taps Allow on the consent screen; the browser follows Google's redirect to us."""
    async with httpx.AsyncClient(timeout=30) as http:
        consent = await http.get(f"{url}&{urlencode({'approve': '1', 'user': email})}")
        assert consent.status_code == 302, consent.text
        return await http.get(consent.headers["location"])


def nonce_of(url: str) -> str:
    state = parse_qs(urlsplit(url).query)["state"][0]
    return oauth.verify_state(STATE_SECRET, state).nonce


async def connected(stack: Stack, tenant: str, chat_id: int, url: str) -> ConnectedResult:
    assert stack.client is not None
    handle = stack.client.get_workflow_handle_for(
        CalendarConnectedWorkflow.run, connected_workflow_id(tenant, chat_id, nonce_of(url))
    )
    async with asyncio.timeout(90):
        return await handle.result()


async def order_status(stack: Stack, tenant: str, order_id: str) -> str | None:
    assert stack.pool is not None
    async with db.tenant_tx(stack.pool, tenant) as conn:
        return await conn.fetchval(
            "SELECT status FROM orders WHERE tenant_id = $1 AND order_id = $2", tenant, order_id
        )


async def test_connect_write_as_driver_revoke_pause_reconnect_resume_once(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings, sa = oauth_settings(tmp_path, postgres, temporal_dev, outside)
    email = f"driver-{uuid.uuid4().hex[:8]}@gmail.example"
    outside.google.create_user(email, make_current=False)  # their own calendar, id = e-mail, not shared
    async with oauth_stack(settings, outside) as stack:
        chat_id, tenant = unique_chat_id(), f"t-{uuid.uuid4().hex[:8]}"
        assert stack.pool is not None
        await admin.add_driver(stack.pool, tenant=tenant, chat_id=chat_id, calendar_id=email, name="Ivan")

        # 1. /connect → one URL button → Allow → our callback.
        url = await connect_link(outside, stack, chat_id)
        assert url.startswith(f"{outside.google.base_url}/o/oauth2/v2/auth?")
        assert parse_qs(urlsplit(url).query)["code_challenge_method"] == ["S256"]
        page = await approve(url, email)
        assert page.status_code == 200 and "oauth_page_connected" in page.text
        first = await connected(stack, tenant, chat_id, url)
        assert first == ConnectedResult()
        assert any("✅" in m["text"] and "Google" in m["text"] for m in replies(outside, stack, chat_id))
        async with db.tenant_tx(stack.pool, tenant) as conn:
            grant = await conn.fetchrow("SELECT * FROM oauth_grants WHERE tenant_id = $1", tenant)
        assert grant["status"] == "active" and grant["account_email"] == email
        assert "1//" not in grant["refresh_token"]  # encrypted at rest

        # 2. An order is written with the driver's own credentials.
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "event_created"
        (event,) = outside.google.events(email)
        assert event["id"] == result.order_id
        assert event["creator"]["email"] == email != sa["client_email"]

        # 3. The driver revokes access in their Google account: the next order is paused, not lost.
        assert outside.google.revoke_user_grants(email) == 1
        sent2 = send(outside, stack, chat_id, "послезавтра 14:20 Шереметьево B → Долгопрудный, 1800р")
        paused = await finished(stack, sent2["update_id"])
        assert paused.outcome == "calendar_paused" and paused.order_id
        told = replies(outside, stack, chat_id)[-1]
        assert "/connect" in told["text"] and told["reply_to_message_id"] == sent2["message_id"]
        assert [e["id"] for e in outside.google.events(email)] == [result.order_id]
        assert await order_status(stack, tenant, paused.order_id) == "awaiting_calendar"

        # 4. Connect again: the paused order lands exactly once, as the driver, with its card.
        url2 = await connect_link(outside, stack, chat_id)
        assert nonce_of(url2) != nonce_of(url)
        page2 = await approve(url2, email)
        assert page2.status_code == 200
        second = await connected(stack, tenant, chat_id, url2)
        assert second.resumed == [paused.order_id] and not second.failed and not second.still_paused
        events = {e["id"]: e for e in outside.google.events(email)}
        assert set(events) == {result.order_id, paused.order_id}
        assert events[paused.order_id]["creator"]["email"] == email
        assert await order_status(stack, tenant, paused.order_id) == "in_calendar"
        cards = [
            m for m in replies(outside, stack, chat_id) if m.get("reply_to_message_id") == sent2["message_id"]
        ]
        assert len(cards) == 2 and "✅" in cards[-1]["text"]  # "reconnect", then the confirmation

        # 5. Replaying the callback changes nothing (single use); another connect resumes nothing twice.
        async with httpx.AsyncClient() as http:
            again = await http.get(
                f"http://127.0.0.1:{settings.http_port}/oauth/google/callback?"
                + urlencode({"state": parse_qs(urlsplit(url2).query)["state"][0], "code": "4/0Aemu-replayed"})
            )
        assert again.status_code == 400 and "oauth_page_used" in again.text
        url3 = await connect_link(outside, stack, chat_id)
        assert (await approve(url3, email)).status_code == 200
        assert (await connected(stack, tenant, chat_id, url3)) == ConnectedResult()
        assert len(outside.google.events(email)) == 2

        # 6. Every step is in the audit log.
        audit = await admin.read_audit(stack.pool, tenant=tenant)
        actions = [r["action"] for r in audit]
        for action in ("connect_link_sent", "oauth_callback", "oauth_connected", "calendar_connected",
                       "calendar_paused", "resume_finished", "oauth_state_rejected"):  # fmt: skip
            assert action in actions, action
        assert not any("1//" in json.dumps(r["details"], default=str) for r in audit)  # no token in the log


async def test_forged_or_expired_state_gets_an_error_page_and_changes_nothing(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings, _ = oauth_settings(tmp_path, postgres, temporal_dev, outside)
    async with oauth_stack(settings, outside) as stack:
        chat_id, tenant = unique_chat_id(), f"t-{uuid.uuid4().hex[:8]}"
        assert stack.pool is not None
        await admin.add_driver(
            stack.pool, tenant=tenant, chat_id=chat_id, calendar_id="x@example.com", name="Ivan"
        )
        callback = f"http://127.0.0.1:{settings.http_port}/oauth/google/callback"
        forged, _ = oauth.sign_state("not-our-secret-" + "x" * 30, tenant, chat_id)
        expired, _ = oauth.sign_state(STATE_SECRET, tenant, chat_id, now=1_000_000_000)
        async with httpx.AsyncClient() as http:
            r1 = await http.get(callback, params={"state": forged, "code": "4/0Aemu-anything"})
            r2 = await http.get(callback, params={"state": expired, "code": "4/0Aemu-anything"})
            r3 = await http.get(callback, params={"code": "4/0Aemu-anything"})
        assert r1.status_code == 400 and "oauth_page_invalid" in r1.text and "/connect" in r1.text
        assert r2.status_code == 400 and "oauth_page_expired" in r2.text and "10" in r2.text
        assert r3.status_code == 400 and "oauth_page_invalid" in r3.text
        async with db.system_tx(stack.pool) as conn:
            grants = await conn.fetchval("SELECT count(*) FROM oauth_grants WHERE tenant_id = $1", tenant)
            rejected = await conn.fetch(
                "SELECT tenant_id, details FROM audit_log WHERE action = 'oauth_state_rejected' "
                "AND (tenant_id = $1 OR (tenant_id = 'system' AND at > now() - interval '5 minutes'))",
                tenant,
            )
        assert grants == 0
        reasons = {(r["tenant_id"], r["details"]["reason"]) for r in rejected}
        assert (tenant, "expired") in reasons and ("system", "bad_signature") in reasons
        assert ("system", "malformed") in reasons
        assert not replies(outside, stack, chat_id)  # the driver was told nothing by a forged request


async def test_disconnect_in_the_chat_revokes_at_google_and_says_so(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings, _ = oauth_settings(tmp_path, postgres, temporal_dev, outside)
    email = f"driver-{uuid.uuid4().hex[:8]}@gmail.example"
    outside.google.create_user(email, make_current=False)
    async with oauth_stack(settings, outside) as stack:
        chat_id, tenant = unique_chat_id(), f"t-{uuid.uuid4().hex[:8]}"
        assert stack.pool is not None
        await admin.add_driver(stack.pool, tenant=tenant, chat_id=chat_id, calendar_id=email, name="Ivan")
        url = await connect_link(outside, stack, chat_id)
        assert (await approve(url, email)).status_code == 200
        await connected(stack, tenant, chat_id, url)

        said = []
        for _ in range(2):  # the second time there is nothing left to disconnect
            sent = send(outside, stack, chat_id, "/disconnect")
            assert (await finished(stack, sent["update_id"])).outcome == "command"
            said.append(replies(outside, stack, chat_id)[-1]["text"])
        assert "🔌" in said[0] and email in said[0] and "/connect" in said[0]
        assert "отключать нечего" in said[1]
        assert outside.google.revoke_user_grants(email) == 0  # Google already forgot the grant
        async with db.tenant_tx(stack.pool, tenant) as conn:
            grant = await conn.fetchrow("SELECT * FROM oauth_grants WHERE tenant_id = $1", tenant)
        assert grant["status"] == "disconnected" and grant["refresh_token"] is None
        actions = [r["action"] for r in await admin.read_audit(stack.pool, tenant=tenant)]
        assert "oauth_disconnected" in actions and "oauth_not_connected" in actions
