"""Poison inputs: an update that always fails is set aside as a dead letter (audited, retryable) instead
of holding the polling offset, the webhook or the inbox relay forever; out-of-range ids are a 400."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiogram import Dispatcher, Router
from aiogram.types import Message
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from autodispatch import db
from autodispatch.dead_letters import DeadLetters, get_dead_letter, list_dead_letters, retry_dead_letter
from bot.dead_letters import is_transient, redeliver_once
from bot.dispatcher import make_bot
from bot.inbox import Inbox, InboxItem, InboxRelay
from bot.polling import poll_updates
from bot.server import SECRET_HEADER, WEBHOOK_PATH, WebhookIntake, add_webhook_route
from schemas.telegram import TelegramUpdateReceived, id_out_of_range
from tests.api_fixtures import api_settings, bearer, new_tenant, start_api
from tests.conftest import Outside, Postgres, new_bot_token, unique_chat_id

ROOT = Path(__file__).resolve().parents[1]
HUGE = 2**70


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


class Handler:
    """The flow's stand-in behind the dispatcher: `poison` texts fail with `error`, others are taken."""

    def __init__(
        self, error: Callable[[], Exception] = lambda: ValueError("cannot read this update")
    ) -> None:
        self.taken: list[str] = []
        self.calls = 0
        self.error = error
        self.healed = False

    def dispatcher(self) -> Dispatcher:
        router = Router()

        @router.message()
        async def take(message: Message) -> None:
            self.calls += 1
            if (message.text or "").startswith("poison") and not self.healed:
                raise self.error()
            self.taken.append(message.text or "")

        dp = Dispatcher()
        dp.include_router(router)
        return dp


async def dead_rows(pool: asyncpg.Pool, bot_id: int) -> list[dict[str, Any]]:
    async with db.system_tx(pool) as conn:
        return [
            dict(r)
            for r in await conn.fetch("SELECT * FROM dead_letters WHERE bot_id = $1 ORDER BY id", bot_id)
        ]


async def audit_actions(pool: asyncpg.Pool, dead_id: int) -> list[str]:
    async with db.system_tx(pool) as conn:
        rows = await conn.fetch(
            "SELECT action FROM audit_log WHERE workflow_id = 'dead-letter' AND (details->>'dead_letter_id')::bigint = $1"
            " ORDER BY id",
            dead_id,
        )
    return [r["action"] for r in rows]


def message(chat_id: int, text: str) -> dict[str, Any]:
    return {
        "message": {
            "message_id": 1, "date": int(datetime.now(UTC).timestamp()), "text": text,
            "chat": {"id": chat_id, "type": "private"}, "from": {"id": chat_id, "is_bot": False, "first_name": "I"},
        }
    }  # fmt: skip


async def test_a_polling_update_that_always_fails_is_set_aside_and_the_offset_moves_on(
    postgres: Postgres, outside: Outside
) -> None:
    token = new_bot_token()
    bot = make_bot(token, outside.telegram.base_url)
    handler = Handler()
    dp = handler.dispatcher()
    dead = DeadLetters(postgres.pool, max_attempts=3)
    chat = unique_chat_id()
    poison = outside.telegram.enqueue_update(token, message(chat, "poison pill"))
    forged = outside.telegram.enqueue_update(token, message(HUGE, "from a chat beyond int64"))
    after = outside.telegram.enqueue_update(token, message(chat, "the next order"))
    stop = asyncio.Event()
    polling = asyncio.create_task(poll_updates(dp, bot, stop, timeout=1, dead=dead))
    try:

        async def moved_on() -> bool:
            return "the next order" in handler.taken and len(await dead_rows(postgres.pool, bot.id)) == 2

        await wait_until(moved_on)
        rows = {r["update_id"]: r for r in await dead_rows(postgres.pool, bot.id)}
        pill = rows[poison["update_id"]]
        assert (pill["source"], pill["status"], pill["attempts"], pill["tenant_id"]) == (
            "polling",
            "dead",
            3,
            "system",
        )
        assert "ValueError: cannot read this update" in pill["last_error"]
        assert pill["payload"]["message"]["text"] == "poison pill"
        beyond = rows[forged["update_id"]]
        assert (
            beyond["attempts"] == 0
            and "message.chat.id" in beyond["last_error"]
            and "out of range" in beyond["last_error"]
        )
        assert await audit_actions(postgres.pool, pill["id"]) == ["update_dead_lettered"]

        async def acknowledged() -> bool:
            return not any(
                u["pending"] for u in outside.telegram.updates(token) if u["update_id"] <= after["update_id"]
            )

        await wait_until(acknowledged)

        # The operator fixes the cause and retries: the running edge feeds it again, once.
        handler.healed = True
        assert "running bot" in await retry_dead_letter(postgres.pool, pill["id"], actor="test")
        assert (await get_dead_letter(postgres.pool, pill["id"]))["status"] == "retry"
        assert await redeliver_once(dead, dp, bot) == 1
        assert handler.taken.count("poison pill") == 1
        assert (await get_dead_letter(postgres.pool, pill["id"]))["status"] == "retried"
        assert await audit_actions(postgres.pool, pill["id"]) == [
            "update_dead_lettered", "dead_letter_retried", "dead_letter_redelivered",
        ]  # fmt: skip
        assert await redeliver_once(dead, dp, bot) == 0  # nothing marked any more
        with pytest.raises(Exception, match="retried already"):
            await retry_dead_letter(postgres.pool, pill["id"], actor="test")
        assert pill["id"] not in {r["id"] for r in await list_dead_letters(postgres.pool)}
    finally:
        stop.set()
        await asyncio.wait_for(polling, timeout=30)
        await bot.session.close()


async def test_a_service_away_is_never_a_poison(postgres: Postgres, outside: Outside) -> None:
    """Postgres or Temporal away fails every update alike: they wait, they are not set aside."""
    assert is_transient(ConnectionRefusedError()) and is_transient(asyncpg.CannotConnectNowError())
    assert not is_transient(ValueError()) and not is_transient(asyncpg.DataError())
    token = new_bot_token()
    bot = make_bot(token, outside.telegram.base_url)
    failures = {"left": 4}

    def away() -> Exception:
        failures["left"] -= 1
        return ConnectionRefusedError("database away")

    handler = Handler(error=away)
    dp = handler.dispatcher()
    outside.telegram.enqueue_update(
        token, message(unique_chat_id(), "poison? no: an order while Postgres restarts")
    )
    stop = asyncio.Event()
    polling = asyncio.create_task(
        poll_updates(dp, bot, stop, timeout=1, dead=DeadLetters(postgres.pool, max_attempts=2))
    )
    try:

        async def recovered() -> bool:
            if failures["left"] <= 0:
                handler.healed = True
            return bool(handler.taken)

        await wait_until(recovered, timeout=60)
        assert handler.calls >= 5 and await dead_rows(postgres.pool, bot.id) == []
    finally:
        stop.set()
        await asyncio.wait_for(polling, timeout=30)
        await bot.session.close()


def item(tenant: str, update_id: int, bot_id: int) -> InboxItem:
    received = TelegramUpdateReceived(
        bot_id=bot_id, update_id=update_id, chat_id=update_id, text="x", received_at=datetime.now(UTC)
    )
    return InboxItem(tenant_id=tenant, received=received)


async def inbox_rows(pool: asyncpg.Pool, bot_id: int) -> list[int]:
    async with db.system_tx(pool) as conn:
        return [
            r["update_id"]
            for r in await conn.fetch("SELECT update_id FROM telegram_inbox WHERE bot_id = $1", bot_id)
        ]


async def test_an_inbox_row_that_can_never_be_handed_over_is_set_aside_and_retried(
    postgres: Postgres,
) -> None:
    bot_id = uuid.uuid4().int % 10**9
    inbox = Inbox(postgres.pool)
    handed: list[int] = []
    poison_id = 7

    async def hand_over(it: InboxItem) -> None:
        if it.received.update_id == poison_id:
            raise TypeError("the flow's input cannot be encoded")
        handed.append(it.received.update_id)

    relay = InboxRelay(inbox, hand_over, [bot_id], concurrency=2, retry_max=0.05, max_attempts=3)
    await relay.start()
    try:
        for update_id in (poison_id, 8):
            it = item("fleet-x", update_id, bot_id)
            assert await inbox.put(it)
            relay.push(it)

        async def set_aside() -> bool:
            return (
                bool(await dead_rows(postgres.pool, bot_id)) and await inbox_rows(postgres.pool, bot_id) == []
            )

        await wait_until(set_aside)
        assert handed == [8]
        (row,) = await dead_rows(postgres.pool, bot_id)
        assert (row["source"], row["tenant_id"], row["update_id"]) == ("inbox", "fleet-x", poison_id)
        assert row["attempts"] == 3 and "TypeError" in row["last_error"]
        assert row["payload"]["received"]["update_id"] == poison_id
        assert await audit_actions(postgres.pool, row["id"]) == ["update_dead_lettered"]
    finally:
        await relay.stop()
    # Retried after the fix: back in the inbox, where the next relay's start sweep hands it over.
    assert "inbox" in await retry_dead_letter(postgres.pool, row["id"], actor="test")
    assert await inbox_rows(postgres.pool, bot_id) == [poison_id]
    fixed: list[int] = []

    async def fixed_hand_over(it: InboxItem) -> None:
        fixed.append(it.received.update_id)

    relay = InboxRelay(inbox, fixed_hand_over, [bot_id], max_attempts=3)
    await relay.start()
    try:

        async def handed_now() -> bool:
            return fixed == [poison_id] and await inbox_rows(postgres.pool, bot_id) == []

        await wait_until(handed_now)
    finally:
        await relay.stop()


async def test_an_unreadable_inbox_row_does_not_stop_the_sweep(postgres: Postgres) -> None:
    bot_id = uuid.uuid4().int % 10**9
    inbox = Inbox(postgres.pool)
    assert await inbox.put(item("fleet-y", 1, bot_id))
    async with db.system_tx(postgres.pool) as conn:
        await conn.execute(
            """INSERT INTO telegram_inbox (tenant_id, bot_id, update_id, workflow, received)
               VALUES ('fleet-y', $1, 2, 'MainWorkflow', '{"bot_id": "?", "no": "such shape"}'::jsonb)""",
            bot_id,
        )
    due = await inbox.due([bot_id], older_than=0.0)
    assert [i.received.update_id for i in due] == [1]
    (row,) = await dead_rows(postgres.pool, bot_id)
    assert row["source"] == "inbox" and row["update_id"] == 2 and "ValidationError" in row["last_error"]


# -- out-of-range ids -------------------------------------------------------------------------------
def test_ids_beyond_int64_are_named() -> None:
    assert id_out_of_range({"update_id": 1, "message": {"chat": {"id": 2**63 - 1}}}) is None
    assert (
        id_out_of_range({"message": {"chat": {"id": 2**63}}})
        == f"update.message.chat.id = {2**63} is out of range"
    )
    assert "update.callback_query.from_id" in (
        id_out_of_range({"callback_query": {"from_id": -(2**63) - 1}}) or ""
    )
    assert (
        id_out_of_range({"photo": [{"file_size": 2**70}, {"x_id": 2**64}]})
        == f"update.photo[1].x_id = {2**64} is out of range"
    )


async def test_the_webhook_answers_400_for_ids_beyond_int64_and_sets_a_poison_aside(
    postgres: Postgres, outside: Outside
) -> None:
    token, secret = new_bot_token(), uuid.uuid4().hex
    bot = make_bot(token, outside.telegram.base_url)
    handler = Handler()
    app = web.Application()
    dead = DeadLetters(postgres.pool, max_attempts=2)
    add_webhook_route(app, intake=WebhookIntake(handler.dispatcher(), dead), bot=bot, secret=secret)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        headers = {SECRET_HEADER: secret}
        forged = {"update_id": 5, **message(HUGE, "hi")}
        resp = await client.post(WEBHOOK_PATH, json=forged, headers=headers)
        assert resp.status == 400 and "out of range" in (await resp.json())["error"]
        resp = await client.post(WEBHOOK_PATH, json={"update_id": HUGE}, headers=headers)
        assert resp.status == 400
        pill = {"update_id": uuid.uuid4().int % 10**9, **message(unique_chat_id(), "poison again")}
        first = await client.post(WEBHOOK_PATH, json=pill, headers=headers)
        assert first.status == 503  # Telegram delivers it again...
        second = await client.post(WEBHOOK_PATH, json=pill, headers=headers)
        assert second.status == 200 and (await second.json()) == {
            "dead_letter": True
        }  # ...until it is set aside
        (row,) = [r for r in await dead_rows(postgres.pool, bot.id) if r["update_id"] == pill["update_id"]]
        assert row["source"] == "webhook" and row["attempts"] == 2
    finally:
        await client.close()
        await bot.session.close()


async def test_the_api_answers_400_for_ids_beyond_int64(postgres: Postgres) -> None:
    api = await start_api(postgres.pool)
    try:
        t = await new_tenant(api.pool, api_settings())
        h = bearer(t.admin_key)
        for method, path, body in [
            ("GET", f"/tenants/{t.tenant_id}/drivers/{HUGE}", None),
            ("PATCH", f"/tenants/{t.tenant_id}/drivers/{-HUGE}", {"driver_name": "x"}),
            ("POST", f"/tenants/{t.tenant_id}/drivers/{'9' * 5000}/approve", None),
            (
                "POST",
                f"/tenants/{t.tenant_id}/drivers",
                {"chat_id": HUGE, "driver_name": "x", "calendar_id": "c@x"},
            ),
            ("GET", f"/tenants/{t.tenant_id}/orders?chat_id={HUGE}", None),
            ("POST", f"/tenants/{t.tenant_id}/api-keys", {"role": "user", "chat_id": HUGE}),
        ]:
            async with api.client.request(method, "/api/v1" + path, headers=h, json=body) as resp:
                assert resp.status == 400, (method, path, resp.status, await resp.text())
    finally:
        await api.client.close()


# -- the operator's command and the repository --------------------------------------------------------
def test_deadletter_command_lists_shows_and_retries(postgres: Postgres) -> None:
    bot_id = uuid.uuid4().int % 10**9

    async def setup() -> int:
        pool = await db.create_pool(postgres.app_dsn, system_dsn=postgres.owner_dsn, max_size=1)
        try:
            return await DeadLetters(pool).bury_update(
                "polling", bot_id, {"update_id": 3, "x": 1}, 10, "ValueError: bad"
            )
        finally:
            await pool.close()

    dead_id = asyncio.run(setup())
    env = {
        **os.environ, "AUTODISPATCH_DATABASE_URL": postgres.owner_dsn, "AUTODISPATCH_APP_DATABASE_URL": postgres.app_dsn,
    }  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            [sys.executable, "-m", "autodispatch", "deadletter", *args], env=env, cwd=ROOT,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    listed = cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert dead_id in {r["id"] for r in json.loads(listed.stdout)}
    shown = cli("show", str(dead_id))
    assert json.loads(shown.stdout)["payload"] == {"update_id": 3, "x": 1}
    retried = cli("retry", str(dead_id))
    assert retried.returncode == 0 and "running bot" in retried.stdout
    again = cli("retry", str(dead_id))
    assert (
        again.returncode == 1
        and again.stderr.strip() == f"error: dead letter {dead_id} was retried already (status retry)"
    )


def test_dot_env_is_git_ignored() -> None:
    run = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, timeout=30)  # noqa: S603, S607
    assert run.returncode == 0, ".env (secrets) must be listed in .gitignore"
