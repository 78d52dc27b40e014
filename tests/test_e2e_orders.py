"""The driver's day end to end (issue #5): the order card's ✅ / ✏️ / ❌, conflicts, changes by an
edited message, a reply or "перенос", several orders in one message, forwarded texts, and a reminder
that fires after the worker and the Temporal server were restarted. Real stack, real clients, the
project's Telegram and Google emulators; nothing of ours is mocked."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from autodispatch import admin
from autodispatch.db import tenant_tx
from autodispatch.embedded import EmbeddedTemporal, free_port
from autodispatch.stack import Stack
from schemas.lifecycle import order_workflow_id
from tests.conftest import Outside, Postgres, stack_settings, until
from tests.test_e2e import (
    _spawn_worker,
    audit_actions,
    delivery,
    events_of,
    finished,
    new_driver,
    replies,
    running,
    send,
    token_of,
)
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.e2e
MSK = ZoneInfo("Europe/Moscow")


def card_of(outside: Outside, stack: Stack, chat_id: int, message_id: int) -> dict:
    """The bot's message as the driver sees it now (its last edit applied)."""
    sent = next(
        m for m in outside.telegram.sent(token_of(stack), chat_id) if m.get("message_id") == message_id
    )
    return {**sent, **sent["edits"][-1]} if sent.get("edits") else sent


def button(card: dict, prefix: str) -> str:
    return next(b["callback_data"] for row in card["reply_markup"]["inline_keyboard"] for b in row
                if b["callback_data"].startswith(prefix))  # fmt: skip


async def set_driver_settings(stack: Stack, tenant: str, chat_id: int, **values: object) -> None:
    assert stack.pool is not None
    async with tenant_tx(stack.pool, tenant) as conn:
        await conn.execute(
            "UPDATE drivers SET settings = settings || $3::jsonb WHERE tenant_id = $1 AND chat_id = $2",
            tenant, chat_id, values,
        )  # fmt: skip


async def test_card_confirm_then_edit_a_field_moves_the_event_and_edits_the_card_in_place(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        token = token_of(stack)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 916 123-45-67")
        order = await finished(stack, sent["update_id"])
        (card,) = replies(outside, stack, chat_id)
        labels = [b["text"] for b in card["reply_markup"]["inline_keyboard"][0]]
        assert [label[0] for label in labels] == ["✅", "✏", "❌"]

        press = outside.telegram.user_clicks(token, chat_id, card["message_id"], button(card, "ok:"))
        assert (await finished(stack, press["update_id"])).outcome == "button_forwarded"
        await until(lambda: "Подтверждён" in card_of(outside, stack, chat_id, card["message_id"])["text"])

        press = outside.telegram.user_clicks(token, chat_id, card["message_id"], button(card, "edit:"))
        await finished(stack, press["update_id"])
        menu = await until(
            lambda: (
                (c := card_of(outside, stack, chat_id, card["message_id"]))["reply_markup"][
                    "inline_keyboard"
                ][-1][0]["text"].startswith("↩")
                and c
            )  # noqa: E501
        )
        press = outside.telegram.user_clicks(
            token, chat_id, card["message_id"], button(menu, "field:pickup_at:")
        )
        await finished(stack, press["update_id"])
        await until(lambda: len(replies(outside, stack, chat_id)) == 2)  # "send the new time"
        answer = send(outside, stack, chat_id, "11:00")
        assert (await finished(stack, answer["update_id"])).outcome == "answer_forwarded"

        async def moved() -> dict | None:
            (event,) = await events_of(outside, calendar_id)
            return (
                event
                if event["start"]["dateTime"].startswith(
                    f"{(datetime.now(MSK) + timedelta(days=1)):%Y-%m-%d}T11:00"
                )
                else None
            )  # noqa: E501

        event = await until(moved)
        assert event["id"] == order.order_id and event["summary"].startswith("11:00 Внуково → Тверская 7")
        final = await until(
            lambda: (
                (c := card_of(outside, stack, chat_id, card["message_id"]))["text"].find("11:00") >= 0 and c
            )
        )  # noqa: E501
        assert "Изменён" in final["text"]
        sent_cards = [m for m in replies(outside, stack, chat_id) if m.get("reply_markup")]
        assert len(sent_cards) == 1  # one card, edited in place
        assert stack.pool is not None

        async def audited() -> bool:
            actions = {r["action"] for r in await admin.read_audit(stack.pool, tenant=tenant)}  # type: ignore[arg-type]
            return {"order_confirmed", "field_asked", "order_changed"} <= actions

        await until(audited)


async def test_an_overlapping_order_is_written_and_its_card_says_what_it_overlaps(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        first = send(outside, stack, chat_id, "завтра 14:00 Шереметьево → Химки, 3000₽")
        await finished(stack, first["update_id"])
        # 15:20 starts 20 min after the first order's hour ends: inside the default 30-min buffer.
        second = send(outside, stack, chat_id, "завтра 15:20 Внуково → Тверская 7, 2500₽")
        await finished(stack, second["update_id"])
        far = send(outside, stack, chat_id, "завтра 19:00 Внуково → Тверская 7, 2500₽")
        await finished(stack, far["update_id"])
        cards = replies(outside, stack, chat_id)
        assert "⚠️" not in cards[0]["text"]
        assert "⚠️ Пересекается: 14:00 Шереметьево → Химки" in cards[1]["text"]
        assert "⚠️" not in cards[2]["text"]
        assert len(await events_of(outside, calendar_id)) == 3  # written at once; the driver chooses


async def test_editing_the_message_updates_the_same_event_and_a_reply_cancel_removes_it(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        token = token_of(stack)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        order = await finished(stack, sent["update_id"])
        edit = outside.telegram.user_edits(
            token, chat_id, sent["message_id"], "завтра 10:15 Внуково → Тверская 9, 2700₽"
        )
        assert (await finished(stack, edit["update_id"])).outcome == "order_change_forwarded"

        async def patched() -> dict | None:
            events = await events_of(outside, calendar_id)
            return events[0] if len(events) == 1 and "10:15" in events[0]["summary"] else None

        event = await until(patched)
        assert (
            event["id"] == order.order_id
            and "Тверская 9" in event["summary"]
            and "2 700" in event["description"]
        )
        (card,) = replies(outside, stack, chat_id)
        await until(lambda: "10:15" in card_of(outside, stack, chat_id, card["message_id"])["text"])
        # The same edit delivered again changes nothing more (idempotent).
        outside.telegram.redeliver(token, edit["update_id"])

        cancel = outside.telegram.user_sends(
            token, chat_id, "отмена", reply_to_message_id=card["message_id"],
            from_user={"id": chat_id, "first_name": "Ivan", "language_code": "ru"},
        )  # fmt: skip
        assert (await finished(stack, cancel["update_id"])).outcome == "order_change_forwarded"

        async def gone() -> bool:
            (ev,) = await events_of(outside, calendar_id)
            return ev["status"] == "cancelled"

        await until(gone)
        said = await until(lambda: [m for m in replies(outside, stack, chat_id) if "отменён" in m["text"]])
        assert said[0]["reply_to_message_id"] == cancel["message_id"]
        assert "отменён" in card_of(outside, stack, chat_id, card["message_id"])["text"]
        assert stack.pool is not None

        async def audited() -> list:
            rows = await admin.read_audit(stack.pool, tenant=tenant)  # type: ignore[arg-type]
            return rows if "order_cancelled" in [r["action"] for r in rows] else []

        audit = await until(audited)  # the order's workflow writes its rows at the end of each step
        changes = [r for r in audit if r["action"] == "order_changed"]
        assert len(changes) == 1 and changes[0]["details"]["source"] == "message_edit"


async def test_a_reschedule_naming_the_clients_phone_moves_that_order_instead_of_adding_one(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 916 123-45-67")
        order = await finished(stack, sent["update_id"])
        move = send(outside, stack, chat_id, "Перенос: Анна +7 916 123-45-67 на 10:30")
        assert (await finished(stack, move["update_id"])).outcome == "order_change_forwarded"

        async def moved() -> dict | None:
            events = await events_of(outside, calendar_id)
            return events[0] if len(events) == 1 and events[0]["summary"].startswith("10:30") else None

        event = await until(moved)
        assert event["id"] == order.order_id
        tomorrow = f"{(datetime.now(MSK) + timedelta(days=1)):%Y-%m-%d}"
        assert event["start"]["dateTime"].startswith(f"{tomorrow}T10:30")  # the order's day, not today
        said = await until(lambda: [m for m in replies(outside, stack, chat_id) if "изменён" in m["text"]])
        assert said[0]["reply_to_message_id"] == move["message_id"]
        # Without a phone or a reply the bot cannot know which order: it asks instead of guessing.
        vague = send(outside, stack, chat_id, "перенос на 12:00")
        assert (await finished(stack, vague["update_id"])).outcome == "change_unclear"
        assert len(await events_of(outside, calendar_id)) == 1


async def test_several_orders_in_one_message_make_one_event_and_card_each(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        text = "Заказы на завтра:\n1) 9:30 Внуково → Тверская 7, 2500₽\n2) 18:00 Шереметьево → Химки, 3000₽, рейс SU123"
        sent = outside.telegram.user_sends(
            token_of(stack), chat_id, text, forwarded_from_name="Диспетчер Ольга",
            from_user={"id": chat_id, "first_name": "Ivan", "language_code": "ru"},
        )  # fmt: skip
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "orders_created" and len(result.order_ids) == 2
        events = sorted(await events_of(outside, calendar_id), key=lambda e: e["start"]["dateTime"])
        assert [e["summary"] for e in events] == ["09:30 Внуково → Тверская 7", "18:00 Шереметьево → Химки"]
        assert sorted(e["id"] for e in events) == sorted(result.order_ids)
        cards = replies(outside, stack, chat_id)
        assert len(cards) == 2 and "Внуково" in cards[0]["text"] and "SU123" in cards[1]["text"]
        # Redelivery of the whole message writes nothing twice.
        outside.telegram.redeliver(token_of(stack), sent["update_id"])
        await until(lambda: not delivery(outside, stack, sent["update_id"])["pending"], 30)  # acknowledged
        assert len(await events_of(outside, calendar_id)) == 2 and len(replies(outside, stack, chat_id)) == 2


async def test_a_reminder_fires_after_the_worker_and_the_temporal_server_restart(
    tmp_path: Path, postgres: Postgres, outside: Outside
) -> None:
    server = EmbeddedTemporal(tmp_path / "temporal", port=free_port(), headless=True)
    server.start()
    worker = None
    try:
        settings = stack_settings(tmp_path, postgres, server, outside)  # type: ignore[arg-type]
        async with running(settings, run_worker=False) as stack:
            worker = _spawn_worker(settings, tmp_path)
            chat_id, _, tenant = await new_driver(stack, outside)
            await set_driver_settings(stack, tenant, chat_id, reminder_lead_minutes=1)
            # The worker answers a first message before the clock starts: a cold worker's start-up must
            # not eat the minute before the reminder (an order written after its reminder time gets none).
            warm = send(outside, stack, chat_id, "Ок, спасибо")
            assert (await finished(stack, warm["update_id"])).outcome == "not_an_order"
            now = datetime.now(MSK)
            # A one-minute lead, the pickup 100-160 s away: the reminder is due 40-100 s from now.
            pickup = (now + timedelta(seconds=160)).replace(second=0, microsecond=0)
            sent = send(
                outside,
                stack,
                chat_id,
                f"{pickup:%d.%m} в {pickup:%H:%M} Внуково → Тверская 7, Анна +7 916 123-45-67",
            )
            written = await finished(stack, sent["update_id"])
            assert written.outcome == "event_created"
            assert stack.client is not None
            order = stack.client.get_workflow_handle(order_workflow_id(written.order_id))
            state = await until(lambda: order.query(OrderWorkflow.order_state), 30)
            assert state.reminder_at is not None, state  # the reminder is due: what follows must deliver it

            worker.send_signal(signal.SIGKILL)
            worker.wait()
            server.stop()
            server.start()
            worker = _spawn_worker(settings, tmp_path)

            def reminded() -> list[dict]:
                return [m for m in replies(outside, stack, chat_id) if m["text"].startswith("⏰")]

            (reminder,) = await until(reminded, timeout=150)
            assert f"{pickup:%H:%M}" in reminder["text"] and "+79161234567" in reminder["text"]
            # The reminder's audit row is written after its send: anything sent twice is sent by then.
            rows = await until(lambda: audit_actions(stack, tenant, "reminder_sent"), 60)
            assert len(rows) == 1 and len(reminded()) == 1
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        if worker is not None and worker.stdout is not None:
            print(worker.stdout.read().decode(errors="replace")[-3000:])  # shown if the test fails
        server.stop()


async def test_messages_in_the_wild_never_stick_a_workflow(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        token, user = token_of(stack), {"id": chat_id, "first_name": "Ivan", "language_code": "ru"}
        photo = outside.telegram.user_sends(
            token,
            chat_id,
            None,
            photo=True,
            caption="завтра 9:30 Внуково → Тверская 7, 2500₽",
            from_user=user,
        )
        sticker = outside.telegram.user_sends(token, chat_id, None, sticker=True, from_user=user)
        voice = outside.telegram.user_sends(token, chat_id, None, voice=True, from_user=user)
        long_text = "завтра 13:00 Внуково → Химки, 2000₽, примечание: " + "очень длинный текст " * 300
        long = send(outside, stack, chat_id, long_text[:4096])
        assert (await finished(stack, photo["update_id"])).outcome == "event_created"
        assert (await finished(stack, sticker["update_id"])).outcome == "unsupported_message"
        assert (await finished(stack, voice["update_id"])).outcome == "unsupported_message"
        assert (await finished(stack, long["update_id"])).outcome == "event_created"
        assert len(await events_of(outside, calendar_id)) == 2
        sent = replies(outside, stack, chat_id)
        by_reply = {m["reply_to_message_id"]: m["text"] for m in sent}
        assert "текст" in by_reply[sticker["message_id"]] and "текст" in by_reply[voice["message_id"]]
        assert all(len(m["text"]) <= 4096 for m in sent)  # the emulator rejects longer ones, as Telegram does
