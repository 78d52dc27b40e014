"""The edge's durable inbox: stored before acknowledged, handed over tenant by tenant, nothing lost."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from autodispatch import db
from autodispatch.embedded import EmbeddedPostgres, free_port
from bot.inbox import Inbox, InboxItem, InboxRelay, TenantTurns
from schemas.telegram import TelegramUpdateReceived
from tests.conftest import Outside, Postgres, stack_settings
from tests.test_e2e import events_of, finished, new_driver, replies, running, send, token_of


def item(tenant: str, update_id: int, bot_id: int = 42) -> InboxItem:
    received = TelegramUpdateReceived(
        bot_id=bot_id, update_id=update_id, chat_id=update_id, text="x", received_at=datetime.now(UTC)
    )
    return InboxItem(tenant_id=tenant, received=received)


def test_tenants_take_turns() -> None:
    turns = TenantTurns()
    for i in range(5):
        turns.push(item("flood", i))
    turns.push(item("quiet", 100))
    turns.push(item("other", 200))
    order = []
    while (next_item := turns.pop()) is not None:
        order.append((next_item.tenant_id, next_item.received.update_id))
    # Each tenant's first update before anyone's second; within a tenant, arrival order.
    assert order[:3] == [("flood", 0), ("quiet", 100), ("other", 200)]
    assert [u for t, u in order if t == "flood"] == [0, 1, 2, 3, 4]
    assert len(turns) == 0


class Recorder:
    """Stands in for Temporal's start: records the order of hand-overs, can refuse the first few."""

    def __init__(self, refuse: int = 0, hold: asyncio.Event | None = None) -> None:
        self.handed: list[tuple[str, int]] = []
        self.refuse = refuse
        self.hold = hold

    async def __call__(self, it: InboxItem) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if self.refuse > 0:
            self.refuse -= 1
            raise RuntimeError("Temporal unavailable")
        self.handed.append((it.tenant_id, it.received.update_id))


async def rows(pool, bot_id: int) -> list[dict]:
    async with db.system_tx(pool) as conn:
        return [
            dict(r)
            for r in await conn.fetch(
                "SELECT tenant_id, update_id, attempts FROM telegram_inbox WHERE bot_id = $1", bot_id
            )
        ]


async def wait_until(predicate, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_a_quiet_tenant_goes_ahead_of_a_queued_flood(postgres: Postgres) -> None:
    bot_id = uuid.uuid4().int % 10**9
    inbox = Inbox(postgres.pool)
    hold = asyncio.Event()
    recorder = Recorder(hold=hold)
    relay = InboxRelay(inbox, recorder, [bot_id], concurrency=4)
    await relay.start()
    try:
        for i in range(200):
            flood = item("flood", i, bot_id)
            assert await inbox.put(flood)
            relay.push(flood)
        quiet = item("quiet", 10_000, bot_id)
        assert await inbox.put(quiet)
        relay.push(quiet)
        hold.set()

        async def all_handed() -> bool:
            return len(recorder.handed) == 201 and not await rows(postgres.pool, bot_id)

        await wait_until(all_handed)
        # Four hand-overs were already waiting when the quiet one arrived; it is next in line.
        assert recorder.handed.index(("quiet", 10_000)) <= relay.concurrency
    finally:
        await relay.stop()


async def test_a_refused_hand_over_is_kept_counted_and_retried(postgres: Postgres) -> None:
    bot_id = uuid.uuid4().int % 10**9
    inbox = Inbox(postgres.pool)
    recorder = Recorder(refuse=2)
    relay = InboxRelay(inbox, recorder, [bot_id], concurrency=1)
    await relay.start()
    try:
        it = item("t", 1, bot_id)
        assert await inbox.put(it)
        assert not await inbox.put(it), "a redelivery is stored once"
        relay.push(it)

        async def refused_once() -> bool:
            stored = await rows(postgres.pool, bot_id)
            return bool(stored) and stored[0]["attempts"] >= 1

        await wait_until(refused_once)

        async def handed() -> bool:
            return recorder.handed == [("t", 1)] and not await rows(postgres.pool, bot_id)

        await wait_until(handed)
    finally:
        await relay.stop()


async def test_rows_left_by_a_crash_are_handed_over_at_start(postgres: Postgres) -> None:
    bot_id = uuid.uuid4().int % 10**9
    inbox = Inbox(postgres.pool)
    for i in range(3):
        assert await inbox.put(item(f"t{i % 2}", i, bot_id))  # stored, acknowledged, then the process died
    recorder = Recorder()
    relay = InboxRelay(inbox, recorder, [bot_id])
    await relay.start()
    try:

        async def handed() -> bool:
            return len(recorder.handed) == 3 and not await rows(postgres.pool, bot_id)

        await wait_until(handed)
        assert sorted(u for _, u in recorder.handed) == [0, 1, 2]
    finally:
        await relay.stop()


@pytest.mark.e2e
async def test_an_update_stored_before_a_crash_lands_once_after_restart(
    tmp_path: Path, postgres: Postgres, temporal_dev, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        assert stack.relay is not None
        await stack.relay.stop()  # the process dies right after the commit: nothing hands it over
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        token = token_of(stack)

        async def acknowledged() -> bool:
            record = next(u for u in outside.telegram.updates(token) if u["update_id"] == sent["update_id"])
            return not record["pending"]

        await wait_until(acknowledged)
        assert await events_of(outside, calendar_id) == []
    async with running(settings) as stack:
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "event_created"
        assert len(await events_of(outside, calendar_id)) == 1
        assert len(replies(outside, stack, chat_id)) == 1


@pytest.mark.e2e
async def test_postgres_down_means_no_ack_and_the_update_lands_later(
    tmp_path: Path, session_dir: Path, temporal_dev, outside: Outside
) -> None:
    """Where the update cannot be stored it is not acknowledged: Telegram keeps it and delivers again."""
    server = EmbeddedPostgres(session_dir / f"pg-{uuid.uuid4().hex[:8]}", port=free_port(), durable=False)
    server.start()
    try:
        await db.migrate(server.owner_dsn)
        pool = await db.create_pool(server.app_dsn, system_dsn=server.system_dsn)
        try:
            own = Postgres(server.owner_dsn, server.app_dsn, pool)
            settings = stack_settings(tmp_path, own, temporal_dev, outside)
            async with running(settings) as stack:
                chat_id, calendar_id, _ = await new_driver(stack, outside)
                server.stop()
                sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
                token = token_of(stack)

                def record() -> dict:
                    return next(
                        u for u in outside.telegram.updates(token) if u["update_id"] == sent["update_id"]
                    )

                async def refused_twice() -> bool:
                    return record()["attempts"] >= 2

                await wait_until(refused_twice, timeout=60)
                assert record()["pending"] is True
                assert "503" in str(outside.telegram.webhook_info(token).get("last_error_message", ""))
                server.start()
                result = await finished(stack, sent["update_id"], timeout=120)
                assert result.outcome == "event_created"
                assert len(await events_of(outside, calendar_id)) == 1
                assert len(replies(outside, stack, chat_id)) == 1
        finally:
            await pool.close()
    finally:
        server.stop()


@pytest.mark.e2e
async def test_webhook_acknowledges_without_waiting_for_temporal(
    tmp_path: Path, postgres: Postgres, temporal_dev, outside: Outside
) -> None:
    """The acknowledgement is the inbox commit: a webhook answered while no relay runs still lands."""
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings) as stack:
        chat_id, _, tenant = await new_driver(stack, outside)
        assert stack.relay is not None
        await stack.relay.stop()
        update = {
            "update_id": uuid.uuid4().int % 10**9,
            "message": {
                "message_id": 7, "date": int(datetime.now(UTC).timestamp()),
                "chat": {"id": chat_id, "type": "private"}, "from": {"id": chat_id, "is_bot": False, "first_name": "I"},
                "text": "привет",
            },
        }  # fmt: skip
        secret = settings.telegram_webhook_secret
        assert secret is not None
        async with httpx.AsyncClient() as http:
            resp = await http.post(
                f"http://127.0.0.1:{settings.http_port}/telegram/webhook",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": secret.get_secret_value()},
            )
        assert resp.status_code == 200
        stored = await rows(postgres.pool, stack.bot.id)  # type: ignore[union-attr]
        assert [(r["tenant_id"], r["update_id"]) for r in stored] == [(tenant, update["update_id"])]


async def test_at_most_concurrency_flows_run_and_a_freed_slot_goes_to_the_next_tenant(
    postgres: Postgres,
) -> None:
    bot_id = uuid.uuid4().int % 10**9
    inbox = Inbox(postgres.pool)
    recorder = Recorder()
    running: list[tuple[str, int]] = []
    release = asyncio.Event()

    async def settle(it: InboxItem) -> None:
        running.append((it.tenant_id, it.received.update_id))
        await release.wait()
        running.remove((it.tenant_id, it.received.update_id))

    relay = InboxRelay(inbox, recorder, [bot_id], settle=settle, concurrency=3)
    await relay.start()
    try:
        for i in range(10):
            flood = item("flood", i, bot_id)
            assert await inbox.put(flood)
            relay.push(flood)

        async def three_running() -> bool:
            return len(running) == 3

        await wait_until(three_running)
        quiet = item("quiet", 500, bot_id)
        assert await inbox.put(quiet)
        relay.push(quiet)
        await asyncio.sleep(0.2)  # nothing more is handed over while every slot's flow runs
        assert recorder.handed == [("flood", 0), ("flood", 1), ("flood", 2)]
        release.set()

        async def all_handed() -> bool:
            return len(recorder.handed) == 11

        await wait_until(all_handed)
        # Tenants take turns for the freed slots: the quiet one's is the second, ahead of the flood's rest.
        assert recorder.handed[3:5] == [("flood", 3), ("quiet", 500)]
    finally:
        await relay.stop()
