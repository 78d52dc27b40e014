"""Onboarding end to end on the real stack: Temporal dev server, embedded PostgreSQL, the Telegram and
Google emulators over HTTP, a service account whose sharing the emulator enforces. A new driver opens
the fleet's invite link, is walked through sharing, sends a calendar that is not shared (and is told
why), then a shared one; is pending; the admin approves them through the API; their order lands."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from autodispatch import admin, tenants
from autodispatch.db import system_tx
from autodispatch.embedded import EmbeddedTemporal
from autodispatch.stack import Stack
from schemas.onboarding import onboarding_workflow_id
from tests.conftest import Outside, Postgres, stack_settings, unique_chat_id, until

pytestmark = pytest.mark.e2e


async def test_start_to_first_order_through_the_running_stack(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    email = f"dispatch-{uuid.uuid4().hex[:6]}@fleet.iam.gserviceaccount.com"
    key = tmp_path / "sa.json"
    key.write_text(json.dumps(outside.google.create_service_account(email=email)))
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside, google_service_account_file=key)
    token = settings.telegram_bot_token.get_secret_value()  # type: ignore[union-attr]
    async with Stack(settings, announce=False) as stack:
        assert stack.pool is not None and stack.client is not None and stack.bot is not None
        fleet = await tenants.create_tenant(stack.pool, settings, f"Fleet {uuid.uuid4().hex[:6]}", source="cli", actor="test")  # fmt: skip
        async with system_tx(stack.pool) as conn:
            code = await conn.fetchval(
                "SELECT invite_code FROM tenants WHERE tenant_id = $1", fleet["tenant_id"]
            )
        chat = unique_chat_id()
        me = {"id": chat, "first_name": "Ivan", "last_name": "Petrov", "language_code": "ru"}

        async def say(text: str) -> str:
            """What the driver types, and the bot's next answer."""
            before = len(outside.telegram.sent(token, chat))
            outside.telegram.user_sends(token, chat, text, from_user=me)
            sent = await outside.telegram.wait_for_sent(token, chat, before + 1, timeout=60)
            return str(sent[-1]["text"])

        # The invite link's /start: which fleet, and the steps with the bot's e-mail.
        instructions = await say(f"/start {code}")
        assert fleet["name"] in instructions and email in instructions
        assert "Внесение изменений в мероприятия" in instructions

        # A calendar nobody shared with the bot: the precise reason, and the driver may try again.
        unshared = f"c_{uuid.uuid4().hex[:12]}@group.calendar.google.com"
        outside.google.create_calendar(
            unshared, owner="ivan@example.com", shares={"friend@example.com": "writer"}
        )
        answer = await say(unshared)
        assert "не найден или не открыт" in answer and email in answer and unshared in answer
        # Shared read-only: that is said too.
        outside.google.share_calendar(unshared, email, "reader")
        assert "только для просмотра" in await say(unshared)

        # Shared properly; the driver pastes the settings page's address (the id in base64).
        outside.google.share_calendar(unshared, email, "writer")
        b64 = base64.b64encode(unshared.encode()).decode().rstrip("=")
        done = await say(f"https://calendar.google.com/calendar/u/0/r/settings/calendar/{b64}")
        assert "✅" in done and "ожидает подтверждения" in done
        (driver,) = await admin.list_drivers(stack.pool, tenant=fleet["tenant_id"])
        assert (driver["chat_id"], driver["status"], driver["calendar_id"]) == (chat, "pending", unshared)
        assert driver["driver_name"] == "Ivan Petrov"
        handle = stack.client.get_workflow_handle(onboarding_workflow_id(stack.bot.id, chat))
        assert (await handle.result())["outcome"] == "registered"

        # Shared is not owned: the driver is told to prove it with the row's code, and does.
        proof_code = driver["calendar_code"]
        assert proof_code and proof_code in done
        proof = await say("завтра 9:30 Внуково → Тверская 7, 2500₽")
        assert "🔒" in proof and proof_code in proof and unshared in proof
        outside.google.set_description(unshared, f"Ivan's work calendar {proof_code}")
        # Pending: orders are refused until the admin approves.
        assert "ожидает подтверждения" in await say("завтра 9:30 Внуково → Тверская 7, 2500₽")
        base = f"http://{settings.http_host}:{settings.http_port}/api/v1"
        before_approval = len(outside.telegram.sent(token, chat))
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": fleet["api_key"]}) as api:
            r = await api.post(f"/tenants/{fleet['tenant_id']}/drivers/{chat}/approve")
            assert r.status_code == 200, r.text
            assert (r.json()["status"], r.json()["calendar_check"]) == ("active", "ok")
        # The driver hears it (DriverApprovedWorkflow, which the API's approval asked the stack to start).
        told = await outside.telegram.wait_for_sent(token, chat, before_approval + 1, timeout=60)
        assert "Доступ открыт" in told[-1]["text"] and fleet["name"] in told[-1]["text"]

        confirmation = await say("завтра 9:30 Внуково → Тверская 7, 2500₽")
        assert "✅" in confirmation and "Внуково → Тверская 7" in confirmation
        async with httpx.AsyncClient() as http:
            r = await http.get(f"{outside.google.base_url}/_emulator/calendars/{quote(unshared)}/events")
        events = [e for e in r.json() if e["status"] != "cancelled"]
        assert len(events) == 1 and events[0]["summary"].startswith("09:30 Внуково")

        # Every step is in the audit log: under `system` before the fleet was known, then the fleet's.
        rows = await admin.read_audit(stack.pool, workflow_id=onboarding_workflow_id(stack.bot.id, chat))
        by_tenant = {(r["tenant_id"], r["action"]) for r in rows}
        assert ("system", "onboarding_message") in by_tenant
        for action in ("tenant_chosen", "calendar_check_failed", "calendar_verified", "driver_registered",
                       "onboarding_registered"):  # fmt: skip
            assert (fleet["tenant_id"], action) in by_tenant, action
        proven = [r for r in await admin.read_audit(stack.pool, tenant=fleet["tenant_id"])
                  if r["action"] == "calendar_ownership_proven"]  # fmt: skip
        assert [r["details"]["proof"] for r in proven] == ["description"]
        failed = [r["details"]["status"] for r in rows if r["action"] == "calendar_check_failed"]
        assert failed == ["not_found_or_not_shared", "read_only"]
        approved = await admin.read_audit(stack.pool, tenant=fleet["tenant_id"])
        assert [r["workflow_id"] for r in approved if r["action"] == "driver_approved"] == ["api"]


async def test_a_bad_invite_code_is_refused_through_the_stack(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    token = settings.telegram_bot_token.get_secret_value()  # type: ignore[union-attr]
    async with Stack(settings, announce=False) as stack:
        chat = unique_chat_id()
        outside.telegram.user_sends(
            token, chat, "/start not-a-real-code-42", from_user={"id": chat, "first_name": "O"}
        )
        (reply,) = await outside.telegram.wait_for_sent(token, chat, 1, timeout=60)
        assert "not-a-real-code-42" in reply["text"] and "не найден" in reply["text"]
        assert stack.pool is not None

        async def rejected() -> bool:  # the dialogue's audit row, written after the refusal went out
            async with system_tx(stack.pool) as conn:  # type: ignore[arg-type]
                return bool(await conn.fetchval(
                    "SELECT count(*) FROM audit_log WHERE chat_id = $1 AND action = 'invite_rejected'", chat
                ))  # fmt: skip

        await until(rejected, 30)
        async with system_tx(stack.pool) as conn:
            assert await conn.fetchval("SELECT count(*) FROM drivers WHERE chat_id = $1", chat) == 0
