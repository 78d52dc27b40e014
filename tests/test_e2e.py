"""End to end on the real stack: Temporal dev server, embedded PostgreSQL, the project's Telegram and
Google emulators spoken to over HTTP by aiogram and google-api-python-client. Nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode

from autodispatch import admin, db
from autodispatch.embedded import EmbeddedTemporal
from autodispatch.settings import Settings
from autodispatch.stack import Stack
from bot.server import SECRET_HEADER, WEBHOOK_PATH
from schemas.telegram import main_workflow_id
from tests.conftest import Outside, Postgres, stack_settings, unique_chat_id, until
from workflows.main import MainWorkflow

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def running(settings: Settings, **kw: object) -> AsyncIterator[Stack]:
    stack = Stack(settings, announce=False, **kw)  # type: ignore[arg-type]
    async with stack:
        yield stack


async def new_driver(
    stack: Stack, outside: Outside, *, shared: bool = True, **kw: object
) -> tuple[int, str, str]:
    """A fresh tenant, chat and calendar: (chat_id, calendar_id, tenant_id)."""
    calendar_id = f"cal-{uuid.uuid4().hex[:12]}@group.calendar.google.com"
    if shared:
        outside.google.create_calendar(
            calendar_id, owner="driver@example.com", time_zone="Europe/Moscow",
            shares={outside.service_account: "writer"},  # the driver shared it with the bot's account
        )  # fmt: skip
    chat_id = unique_chat_id()
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    assert stack.pool is not None
    await admin.add_driver(
        stack.pool, tenant=tenant, chat_id=chat_id, calendar_id=calendar_id, name="Ivan", **kw
    )  # type: ignore[arg-type]
    return chat_id, calendar_id, tenant


def token_of(stack: Stack) -> str:
    assert stack.settings.telegram_bot_token is not None
    return stack.settings.telegram_bot_token.get_secret_value()


def send(outside: Outside, stack: Stack, chat_id: int, text: str) -> dict:
    return outside.telegram.user_sends(
        token_of(stack), chat_id, text, from_user={"id": chat_id, "first_name": "Ivan", "language_code": "ru"}
    )


async def events_of(outside: Outside, calendar_id: str) -> list[dict]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{outside.google.base_url}/_emulator/calendars/{quote(calendar_id)}/events")
        r.raise_for_status()
        return r.json()


async def finished(stack: Stack, update_id: int, timeout: float = 90.0):
    """The MainWorkflow's result for an update; waits for Telegram's delivery to start it first."""
    assert stack.client is not None and stack.bot is not None
    handle = stack.client.get_workflow_handle_for(MainWorkflow.run, main_workflow_id(stack.bot.id, update_id))
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await handle.result()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                await asyncio.sleep(0.1)


def replies(outside: Outside, stack: Stack, chat_id: int) -> list[dict]:
    return [m for m in outside.telegram.sent(token_of(stack), chat_id) if m["method"] == "sendMessage"]


def delivery(outside: Outside, stack: Stack, update_id: int) -> dict:
    """Telegram's bookkeeping of one update: pending until our webhook acknowledged it, attempts."""
    return next(u for u in outside.telegram.updates(token_of(stack)) if u["update_id"] == update_id)


async def audit_actions(stack: Stack, tenant: str, action: str) -> list[dict]:
    assert stack.pool is not None
    return [r for r in await admin.read_audit(stack.pool, tenant=tenant) if r["action"] == action]


async def test_order_lands_as_one_event_one_reply_and_audit_rows(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 916 123-45-67")
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "event_created"

        events = await events_of(outside, calendar_id)
        assert len(events) == 1
        event = events[0]
        assert event["id"] == result.order_id
        assert event["summary"].startswith("09:30 Внуково → Тверская 7")
        assert event["location"] == "Аэропорт Внуково"  # a known airport by its full name, for navigation
        assert "2 500 ₽" in event["description"] and "+79161234567" in event["description"]
        assert "завтра 9:30 Внуково" in event["description"]  # the original text
        assert event["start"]["timeZone"] == "Europe/Moscow"
        assert event["extendedProperties"]["private"]["order_id"] == result.order_id
        # Written with credentials: the bot's service account, signed in at the emulator's token endpoint
        # (a call without them gets Google's 401).
        assert event["creator"]["email"] == outside.service_account

        (reply,) = replies(outside, stack, chat_id)
        assert reply["reply_to_message_id"] == sent["message_id"]
        assert "✅" in reply["text"] and "Внуково → Тверская 7" in reply["text"]
        assert event["htmlLink"] in reply["text"]

        assert stack.pool is not None and stack.client is not None
        wf_id = main_workflow_id(stack.bot.id, sent["update_id"])  # type: ignore[union-attr]
        audit = await admin.read_audit(stack.pool, tenant=tenant, workflow_id=wf_id)
        assert [r["step"] for r in audit] == [
            "received",
            "whitelist",
            "parsed",
            "calendar",
            "reply",
            "outcome",
        ]
        assert audit[-1]["action"] == "event_created"

        desc = await stack.client.get_workflow_handle(wf_id).describe()
        attrs = desc.typed_search_attributes
        ours = {p.key.name: p.value for p in attrs if p.key.name in ("TenantId", "ChatId", "OrderId")}
        assert ours == {"TenantId": tenant, "ChatId": str(chat_id), "OrderId": result.order_id}
        assert (await desc.memo())["driver"] == "Ivan"


async def test_unknown_chat_is_refused_and_nothing_else_happens(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        stranger = unique_chat_id()
        sent = send(outside, stack, stranger, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "unknown_chat"
        (reply,) = replies(outside, stack, stranger)
        assert str(stranger) in reply["text"] and "не подключён" in reply["text"]
        assert stack.pool is not None
        audit = await admin.read_audit(
            stack.pool,
            workflow_id=main_workflow_id(stack.bot.id, sent["update_id"]),  # type: ignore[union-attr]
        )
        assert {r["tenant_id"] for r in audit} == {"system"} and audit[-1]["action"] == "unknown_chat"


async def test_update_delivered_three_times_runs_once(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        sent = send(outside, stack, chat_id, "завтра 14:20 Шереметьево B → Долгопрудный, 1800р")
        await finished(stack, sent["update_id"])
        # Telegram redelivers (the emulator), and someone replays the very same webhook body by hand.
        outside.telegram.redeliver(token_of(stack), sent["update_id"])
        update = next(
            u for u in outside.telegram.updates(token_of(stack)) if u["update_id"] == sent["update_id"]
        )
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"http://127.0.0.1:{stack.settings.http_port}{WEBHOOK_PATH}",
                json=update["update"],
                headers={SECRET_HEADER: stack.settings.telegram_webhook_secret.get_secret_value()},  # type: ignore[union-attr]
            )
            assert r.status_code == 200  # answered after the (deduplicated) start: nothing more is coming
        # Telegram's redelivery acknowledged by our webhook: it too was handled.
        await until(lambda: not delivery(outside, stack, sent["update_id"])["pending"], 30)
        assert delivery(outside, stack, sent["update_id"])["redeliveries"] >= 1
        assert len(await events_of(outside, calendar_id)) == 1
        assert len(replies(outside, stack, chat_id)) == 1
        assert stack.client is not None
        count = await stack.client.count_workflows(f'ChatId = "{chat_id}" AND WorkflowType = "MainWorkflow"')
        assert count.count == 1


async def test_webhook_without_the_secret_gets_401_and_starts_nothing(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, _, _ = await new_driver(stack, outside)
        forged = {
            "update_id": 555000111,
            "message": {
                "message_id": 1, "date": 1795000000, "text": "завтра 9:30 Внуково → Тверская 7",
                "chat": {"id": chat_id, "type": "private"}, "from": {"id": chat_id, "is_bot": False, "first_name": "X"},
            },
        }  # fmt: skip
        url = f"http://127.0.0.1:{stack.settings.http_port}{WEBHOOK_PATH}"
        async with httpx.AsyncClient() as http:
            assert (await http.post(url, json=forged)).status_code == 401
            assert (await http.post(url, json=forged, headers={SECRET_HEADER: "guess"})).status_code == 401
        # The chat's next genuine message goes through: had the forged ones started anything, it would
        # be there by the time this one is done.
        genuine = send(outside, stack, chat_id, "Ок, спасибо")
        await finished(stack, genuine["update_id"])
        assert stack.client is not None
        count = await stack.client.count_workflows(f'ChatId = "{chat_id}"')
        assert count.count == 1


async def test_calendar_not_shared_tells_the_driver_what_to_do(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside, shared=False)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "calendar_failed"
        (reply,) = replies(outside, stack, chat_id)
        assert calendar_id in reply["text"] and "не найден" in reply["text"]
        assert stack.pool is not None
        audit = await admin.read_audit(stack.pool, tenant=tenant)
        failed = [r for r in audit if r["action"] == "calendar_failed" and r["step"] == "calendar"]
        assert failed and failed[0]["details"]["error"] == "CalendarNotFound"


async def test_missing_time_is_asked_and_the_answer_completes_the_order(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        first = send(outside, stack, chat_id, "Внуково → Тверская 7, 2500₽")
        await outside.telegram.wait_for_sent(token_of(stack), chat_id, 1, timeout=30, method="sendMessage")
        assert "время" in replies(outside, stack, chat_id)[0]["text"]
        answer = send(outside, stack, chat_id, "завтра в 9:30")
        assert (await finished(stack, answer["update_id"])).outcome == "answer_forwarded"
        result = await finished(stack, first["update_id"])
        assert result.outcome == "event_created"
        (event,) = await events_of(outside, calendar_id)
        assert event["summary"].startswith("09:30 Внуково")


async def test_polling_mode_delivers_orders(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside, telegram_mode="polling")
    async with running(settings) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        sent = send(outside, stack, chat_id, "завтра в 23:50 Курский вокзал — Внуково, 2 100 ₽")
        assert (await finished(stack, sent["update_id"])).outcome == "event_created"
        assert len(await events_of(outside, calendar_id)) == 1


async def test_calendar_failing_30_percent_still_lands_every_order_once(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        # 30% of calls fail before doing anything; 10% write and then "lose" the answer (→ 409 on retry).
        before = outside.google.stats()
        outside.google.configure(fail_rate=0.3, fail_after_write_rate=0.1, seed=7)
        try:
            sent = [send(outside, stack, chat_id, f"завтра {8 + i // 6}:{(i % 6) * 10:02d} Внуково → Тверская {i + 1}, 1000₽")
                    for i in range(20)]  # fmt: skip

            # A flaky spell, then Google recovers. Bounded on purpose: the retry policy backs off
            # exponentially, so under a never-ending 30% failure one unlucky order's streak of eight failed
            # attempts alone takes over a minute, and the test would time the policy, not the guarantee.
            # The spell is measured in what it did (failures and lost answers injected), not in seconds,
            # so a slow machine gets the same spell. Whatever was written, half-written or failed
            # meanwhile must land exactly once.
            async def spell_done() -> bool:
                now = outside.google.stats()
                injected = (
                    now["injected_failures"] - before["injected_failures"] >= 5
                    and now["injected_after_write"] - before["injected_after_write"] >= 1
                )  # or every order is written already: the assertions below then tell what was missed
                return injected or len(await events_of(outside, calendar_id)) >= 20

            await until(spell_done, 120)
        finally:
            outside.google.configure(fail_rate=0.0, fail_after_write_rate=0.0)
        results = await asyncio.gather(*(finished(stack, s["update_id"]) for s in sent))
        injected = outside.google.stats()
        assert injected["injected_failures"] > before["injected_failures"]
        assert injected["injected_after_write"] > before["injected_after_write"]
        assert [r.outcome for r in results] == ["event_created"] * 20
        events = await events_of(outside, calendar_id)
        assert len(events) == 20 and len({e["id"] for e in events}) == 20
        assert Counter(m["reply_to_message_id"] for m in replies(outside, stack, chat_id)) == Counter(
            {s["message_id"]: 1 for s in sent}
        )


def _spawn_worker(settings: Settings, tmp_path: Path) -> subprocess.Popen[bytes]:
    return spawn_cli(settings, tmp_path, "worker", "--task-queue", settings.temporal_task_queue)


def spawn_cli(settings: Settings, tmp_path: Path, *args: str, **env_extra: str) -> subprocess.Popen[bytes]:
    """`autodispatch <args>` as its own process, joined to this test's stack by its settings."""
    env = dict(os.environ)
    env.update(
        AUTODISPATCH_TEMPORAL_ADDRESS=str(settings.temporal_address),
        AUTODISPATCH_DATABASE_URL=settings.database_url.get_secret_value(),  # type: ignore[union-attr]
        AUTODISPATCH_APP_DATABASE_URL=settings.app_database_url.get_secret_value(),  # type: ignore[union-attr]
        AUTODISPATCH_TELEGRAM_BOT_TOKEN=settings.telegram_bot_token.get_secret_value(),  # type: ignore[union-attr]
        AUTODISPATCH_TELEGRAM_API_BASE=settings.telegram_api_base,
        AUTODISPATCH_GOOGLE_API_ENDPOINT=settings.google_api_endpoint,
        AUTODISPATCH_DATA_DIR=str(tmp_path),
        AUTODISPATCH_TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
        AUTODISPATCH_LOG_LEVEL="WARNING",
        AUTODISPATCH_PAYLOAD_KEYS=settings.payload_keys.get_secret_value(),  # type: ignore[union-attr]
        **env_extra,
    )
    if settings.google_service_account_file is not None:  # Google refuses calls without credentials
        env["AUTODISPATCH_GOOGLE_SERVICE_ACCOUNT_FILE"] = str(settings.google_service_account_file)
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "autodispatch", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


async def test_worker_killed_mid_burst_loses_and_duplicates_nothing(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings, run_worker=False) as stack:
        chat_ids = []
        calendars = []
        for _ in range(3):
            chat_id, calendar_id, _ = await new_driver(stack, outside)
            chat_ids.append(chat_id)
            calendars.append(calendar_id)
        # Slow the calendar a little so the kill lands while calls are in flight.
        outside.google.configure(latency_ms=150)
        worker = _spawn_worker(settings, tmp_path)
        try:
            sent = []
            for i in range(30):
                chat_id = chat_ids[i % 3]
                sent.append(
                    (
                        chat_id,
                        send(outside, stack, chat_id, f"завтра 10:{i:02d} Внуково → Тверская {i + 1}, 1500₽"),
                    )
                )
            # Kill once five events are written: a moment that is not tied to a reply going out.
            async with asyncio.timeout(60):
                while sum([len(await events_of(outside, c)) for c in calendars]) < 5:
                    await asyncio.sleep(0.05)
            killed_at = time.time()
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            done_before_restart = sum(len(replies(outside, stack, c)) for c in chat_ids)
            worker = _spawn_worker(settings, tmp_path)
            results = await asyncio.gather(*(finished(stack, s["update_id"]) for _, s in sent))
        finally:
            outside.google.configure(latency_ms=0)
            worker.send_signal(signal.SIGTERM)
            worker.wait(20)
        assert done_before_restart < 30, "the kill should land in the middle of the burst"
        assert [r.outcome for r in results] == ["event_created"] * 30
        assert stack.pool is not None
        async with db.system_tx(stack.pool) as conn:
            # The Telegram message each reply's outbox row committed as sent (message ids count per chat).
            committed = {
                (r["chat_id"], r["telegram_message_id"])
                for r in await conn.fetch(
                    "SELECT chat_id, telegram_message_id FROM outbox"
                    " WHERE chat_id = ANY($1::bigint[]) AND status = 'sent'",
                    chat_ids,
                )
            }
        for chat_id, calendar_id in zip(chat_ids, calendars, strict=True):
            mine = [s for c, s in sent if c == chat_id]
            assert len(await events_of(outside, calendar_id)) == len(mine)
            sent_replies = replies(outside, stack, chat_id)
            per_message = Counter(m["reply_to_message_id"] for m in sent_replies)
            assert set(per_message) == {s["message_id"] for s in mine}, "every order got its reply"
            for message_id in per_message:
                copies = [m for m in sent_replies if m["reply_to_message_id"] == message_id]
                kept = [m for m in copies if (chat_id, m["message_id"]) in committed]
                assert len(kept) == 1, ("each reply committed once", copies)
                # The one window no outbox closes (module docstring of activities/telegram.py): Telegram
                # took the reply, the kill came before our commit, and the restarted worker sent it again
                # and committed that. Told apart by the recorded sequence (Telegram's log, our outbox),
                # not by time: any other second copy is a bug.
                for extra in copies:
                    if extra is not kept[0]:
                        assert extra["ts"] < killed_at < kept[0]["ts"], (extra, kept[0], killed_at)


async def test_temporal_down_the_update_is_stored_acknowledged_and_lands_later(
    tmp_path: Path, postgres: Postgres, outside: Outside
) -> None:
    """While Temporal is unreachable the edge still stores and acknowledges the update (Telegram need
    not keep it); the inbox's relay hands it over once Temporal is back, and it lands once."""
    from autodispatch.embedded import free_port

    server = EmbeddedTemporal(tmp_path / "temporal", port=free_port(), headless=True)
    server.start()
    try:
        settings = stack_settings(tmp_path, postgres, server, outside)  # type: ignore[arg-type]
        async with running(settings) as stack:
            chat_id, calendar_id, _ = await new_driver(stack, outside)
            server.stop()
            sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
            token = token_of(stack)

            def record() -> dict:
                return next(u for u in outside.telegram.updates(token) if u["update_id"] == sent["update_id"])

            async with asyncio.timeout(30):
                while record()["pending"]:
                    await asyncio.sleep(0.1)
            assert record()["attempts"] == 1, "acknowledged on the first delivery"
            assert stack.relay is not None
            async with asyncio.timeout(30):  # the relay tried and keeps the row for the next attempt
                while not await _inbox_attempts(stack, sent["update_id"]):
                    await asyncio.sleep(0.1)
            server.start()
            result = await finished(stack, sent["update_id"])
            assert result.outcome == "event_created"
            assert len(await events_of(outside, calendar_id)) == 1
            assert len(replies(outside, stack, chat_id)) == 1
            async with asyncio.timeout(10):  # handed over, so retired from the inbox
                while await _inbox_row(stack, sent["update_id"]) is not None:
                    await asyncio.sleep(0.1)
    finally:
        server.stop()


async def _inbox_row(stack: Stack, update_id: int) -> dict | None:
    from autodispatch.db import system_tx

    assert stack.pool is not None and stack.bot is not None
    async with system_tx(stack.pool) as conn:
        row = await conn.fetchrow(
            "SELECT attempts, last_error FROM telegram_inbox WHERE bot_id = $1 AND update_id = $2",
            stack.bot.id,
            update_id,
        )
    return dict(row) if row else None


async def _inbox_attempts(stack: Stack, update_id: int) -> int:
    row = await _inbox_row(stack, update_id)
    return row["attempts"] if row else 0


async def test_up_in_sandbox_mode_then_chat(session_dir: Path) -> None:
    """`autodispatch up` with nothing configured, `autodispatch chat`, SIGTERM; a second `up` recovers."""
    from autodispatch.embedded import free_port

    # Not pytest's tmp_path: pytest keeps its root private (0700), and PostgreSQL runs as another user.
    tmp_path = session_dir / f"up-{uuid.uuid4().hex[:8]}"

    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODISPATCH_")}
    ports = {
        "AUTODISPATCH_HTTP_PORT": free_port(), "AUTODISPATCH_TEMPORAL_GRPC_PORT": free_port(),
        "AUTODISPATCH_TEMPORAL_UI_PORT": free_port(), "AUTODISPATCH_POSTGRES_PORT": free_port(),
        "AUTODISPATCH_SANDBOX_TELEGRAM_PORT": free_port(), "AUTODISPATCH_SANDBOX_GOOGLE_PORT": free_port(),
    }  # fmt: skip
    env.update({k: str(v) for k, v in ports.items()}, AUTODISPATCH_DATA_DIR=str(tmp_path / "data"))
    health = f"http://127.0.0.1:{ports['AUTODISPATCH_HTTP_PORT']}/healthz"
    cli = [sys.executable, "-m", "autodispatch"]

    async def start_up() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [*cli, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )  # noqa: S603
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(health)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("healthz never answered 200")
        return proc, ""

    proc, _ = await start_up()
    try:
        chat = subprocess.run(  # noqa: S603
            [*cli, "chat", "завтра 9:30 Внуково → Тверская 7, 2500₽"], env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert chat.returncode == 0, chat.stdout + chat.stderr
        assert "✅" in chat.stdout and "calendar event" in chat.stdout and "Внуково" in chat.stdout
        # A message that changes no order shows no event (not the previous order's).
        hello = subprocess.run(  # noqa: S603
            [*cli, "chat", "привет"], env=env, capture_output=True, text=True, timeout=60
        )
        assert hello.returncode == 0 and "bot:" in hello.stdout, hello.stdout + hello.stderr
        assert "calendar event" not in hello.stdout, hello.stdout
        # The operator's endpoints: metrics, and the codec server the embedded UI uses (loopback,
        # sandbox: no credential needed).
        base = f"http://127.0.0.1:{ports['AUTODISPATCH_HTTP_PORT']}"
        async with httpx.AsyncClient() as http:
            scraped = await http.get(f"{base}/metrics")
            assert "autodispatch_orders_confirmed_total" in scraped.text
            decoded = await http.post(f"{base}/codec/decode", json={"payloads": []})
            assert decoded.status_code == 200 and decoded.json() == {}, decoded.text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "SANDBOX MODE" in out.splitlines()[0] or "SANDBOX MODE" in out
    assert "autodispatch chat" in out and "Temporal UI" in out
    assert f"{base}/metrics" in out and f"{base}/codec" in out

    # A crash: SIGKILL leaves pid files behind (its children die with it); the next `up` recovers.
    proc, _ = await start_up()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc, _ = await start_up()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out


def test_broken_config_stops_with_one_line_naming_the_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODISPATCH_")}
    env.update(AUTODISPATCH_TELEGRAM_MODE="carrier-pigeon", AUTODISPATCH_DATA_DIR=str(tmp_path))
    res = subprocess.run(
        [sys.executable, "-m", "autodispatch", "up"], env=env, capture_output=True, text=True
    )  # noqa: S603
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: AUTODISPATCH_TELEGRAM_MODE"), (
        res.stderr
    )


async def test_cancel_button_removes_the_event_and_edits_the_card(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        order = await finished(stack, sent["update_id"])
        (card,) = replies(outside, stack, chat_id)
        buttons = [b["callback_data"] for b in card["reply_markup"]["inline_keyboard"][0]]
        assert f"cancel:{order.order_id}" in buttons

        press = outside.telegram.user_clicks(
            token_of(stack), chat_id, card["message_id"], f"cancel:{order.order_id}"
        )
        result = await finished(stack, press["update_id"])
        assert result.outcome == "button_forwarded"  # to the order's own workflow
        async with asyncio.timeout(60):
            while (await events_of(outside, calendar_id))[0]["status"] != "cancelled":
                await asyncio.sleep(0.2)
            while not any(
                m["method"] == "answerCallbackQuery" for m in outside.telegram.sent(token_of(stack), chat_id)
            ):
                await asyncio.sleep(0.2)
        log = outside.telegram.sent(token_of(stack), chat_id)
        edited = next(
            m for m in log if m.get("message_id") == card["message_id"] and m["method"] == "sendMessage"
        )
        assert edited["edits"] and "Заказ отменён" in edited["edits"][-1]["text"]
        assert len(replies(outside, stack, chat_id)) == 1  # the card was edited, not re-sent
        assert stack.pool is not None
        audit = await admin.read_audit(stack.pool, tenant=tenant)
        assert "order_cancelled" in [r["action"] for r in audit]


async def test_a_button_naming_another_drivers_order_is_denied_and_audited(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        victim, victim_calendar, _ = await new_driver(stack, outside)
        intruder, _, intruder_tenant = await new_driver(stack, outside)
        order = await finished(
            stack, send(outside, stack, victim, "завтра 9:30 Внуково → Тверская 7, 2500₽")["update_id"]
        )
        own = await finished(
            stack, send(outside, stack, intruder, "завтра 11:00 Шереметьево → Химки, 1800₽")["update_id"]
        )
        (intruder_card,) = replies(outside, stack, intruder)
        # A tampered client sends the victim's order id from the intruder's own card.
        press = outside.telegram.user_clicks(
            token_of(stack), intruder, intruder_card["message_id"], f"cancel:{order.order_id}"
        )
        result = await finished(stack, press["update_id"])
        assert result.outcome == "callback_denied" and own.outcome == "event_created"
        (event,) = await events_of(outside, victim_calendar)
        assert event["status"] != "cancelled"
        answer = next(
            m
            for m in outside.telegram.sent(token_of(stack), intruder)
            if m["method"] == "answerCallbackQuery"
        )
        assert "не ваш" in json.dumps(answer, ensure_ascii=False)
        assert stack.pool is not None
        audit = await admin.read_audit(stack.pool, tenant=intruder_tenant)
        denied = [r for r in audit if r["action"] == "callback_denied"]
        assert denied and denied[0]["order_id"] == order.order_id


async def test_signed_payment_activates_a_pending_driver_through_the_running_stack(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    import stripe

    from tests.test_billing import PRICE, PRODUCT, checkout, set_activation

    secret = "whsec_" + uuid.uuid4().hex
    settings = stack_settings(
        tmp_path, postgres, temporal_dev, outside, billing_webhook_secret=secret,
        billing_price_minor=PRICE, billing_product_id=PRODUCT,
    )  # fmt: skip
    async with running(settings) as stack:
        chat_id, _, tenant = await new_driver(stack, outside, status="pending")
        assert stack.pool is not None
        await set_activation(stack.pool, tenant, "payment")  # a self-serve fleet: paying activates
        url = f"http://127.0.0.1:{settings.http_port}/billing/webhook"
        body = json.dumps(checkout(tenant, chat_id))
        async with httpx.AsyncClient() as http:
            forged = stripe.WebhookSignature.generate_signature_header(body, "whsec_wrong")
            r = await http.post(url, content=body, headers={"Stripe-Signature": forged})
            assert r.status_code == 400 and "Stripe-Signature" in r.json()["error"]
            good = stripe.WebhookSignature.generate_signature_header(body, secret)
            r = await http.post(url, content=body, headers={"Stripe-Signature": good})
            assert r.status_code == 200, r.text
        assert stack.pool is not None
        async with asyncio.timeout(60):
            while (await admin.list_drivers(stack.pool, tenant=tenant))[0]["status"] != "active":
                await asyncio.sleep(0.2)
        audit = [r["action"] for r in await admin.read_audit(stack.pool, tenant="system")]
        assert "billing_signature_rejected" in audit


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "autodispatch", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_taken_port_or_an_unreachable_server_is_one_line_naming_the_setting(session_dir: Path) -> None:
    import socket

    from autodispatch.embedded import free_port

    data = session_dir / f"ports-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODISPATCH_")}
    env.update(AUTODISPATCH_DATA_DIR=str(data), AUTODISPATCH_HTTP_PORT=str(free_port()),
               AUTODISPATCH_POSTGRES_PORT=str(free_port()), AUTODISPATCH_TEMPORAL_UI_PORT=str(free_port()))  # fmt: skip
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = _cli({**env, "AUTODISPATCH_TEMPORAL_GRPC_PORT": str(port)}, "up")
    assert up.returncode == 2, up.stdout + up.stderr
    lines = up.stderr.strip().splitlines()
    assert len(lines) == 1, up.stderr
    (line,) = lines
    assert line.startswith("configuration error: AUTODISPATCH_TEMPORAL_GRPC_PORT:") and str(port) in line

    closed = free_port()  # nothing listens there
    replay = _cli({**env, "AUTODISPATCH_TEMPORAL_ADDRESS": f"127.0.0.1:{closed}"}, "replay", "some-workflow")
    assert replay.returncode == 2, replay.stdout + replay.stderr
    (line,) = replay.stderr.strip().splitlines()
    assert line.startswith("configuration error: AUTODISPATCH_TEMPORAL_ADDRESS: cannot reach Temporal"), line
