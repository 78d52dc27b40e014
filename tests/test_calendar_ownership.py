"""Naming a calendar is not owning it: a driver's calendar is used only with a proof of control.

On the real stack: a fleet admin who points their driver at another fleet's calendar (shared with the
service account) gets nothing out of it, and the driver who owns a calendar proves it with the code the
bot gives them; credentials are never resolved by a calendar id across tenants."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from activities.oauth import OAuthGrants
from autodispatch import admin
from autodispatch.api import store as api_store
from autodispatch.db import system_tx
from autodispatch.embedded import EmbeddedTemporal
from tests.conftest import Outside, Postgres, stack_settings, unique_chat_id
from tests.test_e2e import audit_actions, events_of, finished, new_driver, replies, running, send

pytestmark = pytest.mark.e2e

ORDER = "завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 916 123-45-67"


def shared_calendar(outside: Outside, owner: str) -> str:
    calendar_id = f"cal-{uuid.uuid4().hex[:12]}@group.calendar.google.com"
    outside.google.create_calendar(calendar_id, owner=owner, shares={outside.service_account: "writer"})
    return calendar_id


async def test_a_calendar_named_by_another_fleet_is_neither_read_nor_written(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        assert stack.pool is not None
        # Fleet A's driver, whose calendar is shared with the service account (vouched by the owner).
        victim_chat, victim_calendar, _victim_tenant = await new_driver(stack, outside)
        # Fleet B's admin points their own driver at it through the API's PATCH.
        chat_b, _calendar_b, tenant_b = await new_driver(stack, outside)
        row = await api_store.update_driver(
            stack.pool, tenant_b, chat_b, {"calendar_id": victim_calendar}, source="api", actor="admin-b"
        )
        assert row["calendar_proof"] is None and row["calendar_code"]
        # Even the victim's calendar description saying something does not help without B's own code.
        outside.google.set_description(victim_calendar, "Fleet A — Ivan's orders")

        sent = send(outside, stack, chat_b, ORDER)
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "calendar_unproven"
        assert await events_of(outside, victim_calendar) == []
        (reply,) = replies(outside, stack, chat_b)
        assert row["calendar_code"] in reply["text"] and "Описание" in reply["text"]
        # A /today from B reads nothing of it either.
        today = send(outside, stack, chat_b, "/today")
        assert (await finished(stack, today["update_id"])).outcome == "calendar_unproven"
        assert not await audit_actions(stack, tenant_b, "calendar_ownership_proven")

        # The victim's own orders go on as before.
        mine = send(outside, stack, victim_chat, ORDER)
        assert (await finished(stack, mine["update_id"])).outcome == "event_created"
        assert len(await events_of(outside, victim_calendar)) == 1


async def test_the_driver_proves_their_calendar_with_the_code_and_every_change_needs_it_again(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        assert stack.pool is not None
        calendar_id = shared_calendar(outside, "petr@example.com")
        chat_id, tenant = unique_chat_id(), f"t-{uuid.uuid4().hex[:8]}"
        # `driver add` without --no-verify: the owner does not vouch, the driver proves it.
        row = await admin.add_driver(
            stack.pool, tenant=tenant, chat_id=chat_id, calendar_id=calendar_id, name="Petr", vouched_by=None
        )
        code = row["calendar_code"]
        assert row["calendar_proof"] is None and code

        first = send(outside, stack, chat_id, ORDER)
        assert (await finished(stack, first["update_id"])).outcome == "calendar_unproven"
        assert code in replies(outside, stack, chat_id)[-1]["text"]

        outside.google.set_description(calendar_id, f"Рабочий календарь. {code.lower()}")
        again = send(outside, stack, chat_id, ORDER)
        assert (await finished(stack, again["update_id"])).outcome == "event_created"
        assert len(await events_of(outside, calendar_id)) == 1
        (proven,) = await audit_actions(stack, tenant, "calendar_ownership_proven")
        assert proven["details"]["proof"] == "description" and proven["details"]["calendar_id"] == calendar_id

        # Moving to another calendar, by any path (plain SQL here), needs a new proof and a new code.
        other = shared_calendar(outside, "petr@example.com")
        async with system_tx(stack.pool) as conn:
            moved = await conn.fetchrow(
                "UPDATE drivers SET calendar_id = $2 WHERE chat_id = $1 RETURNING *", chat_id, other
            )
        assert moved["calendar_proof"] is None and moved["calendar_code"] not in (None, code)
        outside.google.set_description(other, code)  # the old code proves nothing for the new calendar
        third = send(outside, stack, chat_id, "послезавтра 10:00 Шереметьево → Арбат 1, 3000₽")
        assert (await finished(stack, third["update_id"])).outcome == "calendar_unproven"
        assert await events_of(outside, other) == []


async def test_owner_override_is_audited(postgres: Postgres) -> None:
    tenant, chat_id = f"t-{uuid.uuid4().hex[:8]}", unique_chat_id()
    row = await admin.add_driver(
        postgres.pool, tenant=tenant, chat_id=chat_id, calendar_id="c@x", name="n", vouched_by="cli:root"
    )
    assert row["calendar_proof"] == "owner" and row["calendar_code"] is None
    (vouched,) = [
        r
        for r in await admin.read_audit(postgres.pool, tenant=tenant)
        if r["action"] == "calendar_ownership_vouched"
    ]
    assert vouched["details"]["actor"] == "cli:root" and vouched["chat_id"] == chat_id


async def test_no_grant_is_found_by_calendar_id_across_tenants(postgres: Postgres) -> None:
    from tests.test_oauth import _settings  # the OAuth-configured settings of the grant store's tests

    grants = OAuthGrants(postgres.pool, _settings("https://a.example/auth", "https://a.example/token"))
    calendar_id = f"shared-{uuid.uuid4().hex[:6]}@group.calendar.google.com"
    tenant_a = f"t-{uuid.uuid4().hex[:8]}"
    chat_a = unique_chat_id()
    await admin.add_driver(postgres.pool, tenant=tenant_a, chat_id=chat_a, calendar_id=calendar_id, name="a")
    await grants.save(tenant_a, chat_a, "refresh-a", "a@example.com", "calendar")
    tenant_b = f"t-{uuid.uuid4().hex[:8]}"
    await admin.add_driver(
        postgres.pool, tenant=tenant_b, chat_id=unique_chat_id(), calendar_id="b@x", name="b"
    )

    assert (await grants.load_for_calendar(tenant_a, calendar_id)) is not None
    assert await grants.load_for_calendar(tenant_b, calendar_id) is None
    # A calendar call that names no tenant runs as the service account, never as a grant found by id.
    assert await asyncio.to_thread(grants.grant_for, None, None, calendar_id) is None


async def test_connect_with_the_drivers_own_account_proves_its_main_calendar(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    from tests.test_e2e_oauth import approve, connect_link, connected, oauth_settings, oauth_stack

    settings, _sa = oauth_settings(tmp_path, postgres, temporal_dev, outside)
    email = f"driver-{uuid.uuid4().hex[:8]}@gmail.example"
    outside.google.create_user(email, make_current=False)  # their own calendar, id = e-mail
    async with oauth_stack(settings, outside) as stack:
        assert stack.pool is not None
        chat_id, tenant = unique_chat_id(), f"t-{uuid.uuid4().hex[:8]}"
        await admin.add_driver(
            stack.pool, tenant=tenant, chat_id=chat_id, calendar_id=email, name="Ivan", vouched_by=None
        )
        first = send(outside, stack, chat_id, ORDER)
        assert (await finished(stack, first["update_id"])).outcome == "calendar_unproven"
        assert "/connect" in replies(outside, stack, chat_id)[-1]["text"]

        url = await connect_link(outside, stack, chat_id)  # /connect works before the proof: it is one
        assert (await approve(url, email)).status_code == 200
        await connected(stack, tenant, chat_id, url)
        again = send(outside, stack, chat_id, ORDER)
        assert (await finished(stack, again["update_id"])).outcome == "event_created"
        (proven,) = await audit_actions(stack, tenant, "calendar_ownership_proven")
        assert proven["details"]["proof"] == "oauth"
