"""Tenancy on the real stack: dedicated tenants' own queues, fair scheduling between tenants on the
shared queue, and Telegram's send budget held by the server-side rate limit."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from autodispatch import admin, db
from autodispatch.embedded import EmbeddedTemporal
from tests.conftest import Outside, Postgres, stack_settings, unique_chat_id
from tests.test_e2e import events_of, finished, replies, running, send, token_of
from workers.worker import build_workers

pytestmark = pytest.mark.e2e
# Ten times the relay's admission (24 in flight): enough that an unfair queue would serve it last.
FLOOD = 240


async def _driver(stack, outside: Outside, tenant: str) -> tuple[int, str]:
    calendar_id = f"cal-{uuid.uuid4().hex[:12]}@group.calendar.google.com"
    outside.google.create_calendar(
        calendar_id,
        owner="driver@example.com",
        time_zone="Europe/Moscow",
        shares={outside.service_account: "writer"},
    )
    chat_id = unique_chat_id()
    await admin.add_driver(stack.pool, tenant=tenant, chat_id=chat_id, calendar_id=calendar_id, name="Driver")
    return chat_id, calendar_id


async def test_dedicated_tenant_runs_only_on_its_own_worker(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        tenant = f"big-{uuid.uuid4().hex[:6]}"
        chat_id, calendar_id = await _driver(stack, outside, tenant)
        queue = f"tenant-{tenant}"
        async with db.system_tx(stack.pool) as conn:
            await conn.execute(
                "UPDATE tenants SET dedicated = true, task_queue = $2 WHERE tenant_id = $1", tenant, queue
            )
        own = build_workers(
            stack.client, queue, pool=stack.pool, bot=stack.bot, calendar=stack.calendar,
            settings=stack.settings, serve_outbound=False,
        )  # fmt: skip
        runner = asyncio.create_task(own.run())
        try:
            sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
            result = await finished(stack, sent["update_id"])
        finally:
            await own.shutdown()
            await runner
        assert result.outcome == "event_created"
        assert len(await events_of(outside, calendar_id)) == 1
        main = await stack.client.get_workflow_handle(f"tg-{stack.bot.id}-{sent['update_id']}").describe()
        child = await stack.client.get_workflow_handle(f"calendar-{result.order_id}").describe()
        assert main.task_queue == queue and child.task_queue == queue


async def test_a_flood_from_one_tenant_does_not_queue_another_behind_it(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside, telegram_messages_per_second=1000.0)
    async with running(settings) as stack:
        noisy = f"noisy-{uuid.uuid4().hex[:6]}"
        quiet = f"quiet-{uuid.uuid4().hex[:6]}"
        noisy_chats = [(await _driver(stack, outside, noisy))[0] for _ in range(20)]
        quiet_chat, _ = await _driver(stack, outside, quiet)
        flood = [send(outside, stack, noisy_chats[i % 20], f"завтра 10:{i % 60:02d} Внуково → Тверская {i + 1}, 900₽")
                 for i in range(FLOOD)]  # fmt: skip
        # The quiet tenant's single order arrives once the whole flood is already queued.
        async with asyncio.timeout(120):
            while outside.telegram.webhook_info(token_of(stack))["pending_update_count"] > 0:
                await asyncio.sleep(0.05)
        lone = send(outside, stack, quiet_chat, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        assert (await finished(stack, lone["update_id"])).outcome == "event_created"
        noisy_done_before = sum(len(replies(outside, stack, c)) for c in noisy_chats)
        results = await asyncio.gather(*(finished(stack, s["update_id"], timeout=300) for s in flood))
    assert all(r.outcome == "event_created" for r in results)
    # Fair scheduling: the lone order is served among the flood, not after all 500 of it.
    assert noisy_done_before < FLOOD * 0.8, (
        f"{noisy_done_before} of {FLOOD} flood orders were done before the quiet one"
    )


async def test_replies_stay_within_telegrams_budget(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    """With the emulator enforcing 5 messages/s per bot and 1/s per chat, a burst gets no 429 at all."""
    settings = stack_settings(
        tmp_path,
        postgres,
        temporal_dev,
        outside,
        telegram_messages_per_second=5.0,
        telegram_per_chat_interval=1.0,
    )
    async with running(settings) as stack:
        tenant = f"t-{uuid.uuid4().hex[:6]}"
        chats = [(await _driver(stack, outside, tenant))[0] for _ in range(10)]
        before = outside.telegram.stats()["too_many_requests"]
        outside.telegram.configure(rate_limits=True, per_bot_per_s=5, per_chat_per_s=1)
        try:
            burst = [send(outside, stack, chats[i % 10], f"завтра 11:{i:02d} Внуково → Тверская {i + 1}, 900₽")
                     for i in range(15)]  # fmt: skip
            results = await asyncio.gather(*(finished(stack, s["update_id"], timeout=120) for s in burst))
        finally:
            outside.telegram.configure(rate_limits=False)
        assert all(r.outcome == "event_created" for r in results)
        assert sum(len(replies(outside, stack, c)) for c in chats) == 15
        assert outside.telegram.stats()["too_many_requests"] == before
