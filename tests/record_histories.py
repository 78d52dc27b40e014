"""Record the replay-test histories from a real run: `python -m tests.record_histories`.

Runs the real stack (embedded Temporal and Postgres, the emulators), drives one order per outcome
through Telegram, and writes each MainWorkflow history to tests/histories/<name>.json. Existing files
are never overwritten: they are what workflows started by older code look like, and must keep
replaying (that is what workflow.patched() guards). Delete a file on purpose to re-record it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path

from temporalio.service import RPCError

from autodispatch import admin, cli_drivers
from autodispatch.agenda_sync import request_agenda_sync
from autodispatch.db import system_tx
from autodispatch.embedded import free_port
from autodispatch.settings import Settings
from autodispatch.stack import Stack
from emulators.google import GoogleEmulator
from emulators.screenshots import render_png
from emulators.telegram import TelegramEmulator
from schemas.telegram import main_workflow_id
from workflows.ids import calendar_workflow_id

OUT = Path(__file__).parent / "histories"


async def main() -> None:
    telegram, google = TelegramEmulator(), GoogleEmulator()
    tg, gg = await telegram.start(), await google.start()
    token = f"7000000001:{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None, data_dir=Path(tmp), telegram_bot_token=token, telegram_api_base=tg,
            google_api_endpoint=gg, http_port=free_port(), temporal_grpc_port=free_port(),
            postgres_port=free_port(), temporal_ui_port=free_port(), telegram_mode="webhook", telegram_webhook_secret="record",
            payload_encryption=False,  # committed histories stay plain JSON, readable in review
        )  # fmt: skip
        async with Stack(settings, announce=False, durable_postgres=False) as stack:
            assert stack.pool and stack.client and stack.bot
            google.create_calendar("shared@example.com", owner="d@example.com", time_zone="Europe/Moscow")
            await admin.add_driver(
                stack.pool, tenant="acme", chat_id=501, calendar_id="shared@example.com", name="Ivan"
            )
            await admin.add_driver(
                stack.pool, tenant="acme", chat_id=502, calendar_id="missing@example.com", name="Olga"
            )
            user = {"first_name": "Ivan", "language_code": "ru"}

            async def drive(
                name: str,
                chat_id: int,
                text: str,
                answer: str | None = None,
                press: str | None = None,
                order_history: str | None = None,
                calendar_history: str | None = None,
                picture: bool = False,
            ) -> None:
                before = len(telegram.sent(token, chat_id)) if chat_id != 999 else 0
                if picture:  # the order as a screenshot, read with OCR
                    sent = telegram.user_sends(
                        token,
                        chat_id,
                        None,
                        photo=render_png(text, "chat"),
                        from_user={"id": chat_id, **user},
                    )
                else:
                    sent = telegram.user_sends(token, chat_id, text, from_user={"id": chat_id, **user})
                handle = stack.client.get_workflow_handle(main_workflow_id(stack.bot.id, sent["update_id"]))
                if answer:
                    await telegram.wait_for_sent(token, chat_id, before + 1, timeout=30)
                    telegram.user_sends(token, chat_id, answer, from_user={"id": chat_id, **user})
                while True:  # Telegram's webhook delivery starts the workflow a moment later
                    try:
                        result = await handle.result()
                        break
                    except RPCError:
                        await asyncio.sleep(0.1)
                if press is not None:  # press the card's button (with this data) instead
                    card = [m for m in telegram.sent(token, chat_id) if m["method"] == "sendMessage"][-1]
                    data = press.replace("{order_id}", result["order_id"])
                    clicked = telegram.user_clicks(token, chat_id, card["message_id"], data)
                    handle = stack.client.get_workflow_handle(
                        main_workflow_id(stack.bot.id, clicked["update_id"])
                    )
                    while True:
                        try:
                            await handle.result()
                            break
                        except RPCError:
                            await asyncio.sleep(0.1)
                if order_history and not (OUT / f"{order_history}.json").exists():
                    await asyncio.sleep(2)  # let the order's workflow handle the press
                    order = stack.client.get_workflow_handle(f"order-{result['order_id']}")
                    history = await order.fetch_history()
                    data = {"workflowId": history.workflow_id, "history": json.loads(history.to_json())}
                    (OUT / f"{order_history}.json").write_text(
                        json.dumps(data, ensure_ascii=False, indent=1) + "\n"
                    )
                    print("recorded", order_history)
                if calendar_history and result.get("order_id"):
                    # The CALENDAR 2 AUTO child, named by its shape: a remote activity (children started
                    # before #7's local write) or a local one; each file is kept once recorded.
                    child = stack.client.get_workflow_handle(calendar_workflow_id(result["order_id"]))
                    history = await child.fetch_history()
                    local = any(e.HasField("marker_recorded_event_attributes") for e in history.events)
                    child_name = f"{calendar_history}_{'local_activity' if local else 'activity'}"
                    if not (OUT / f"{child_name}.json").exists():
                        data = {"workflowId": history.workflow_id, "history": json.loads(history.to_json())}
                        (OUT / f"{child_name}.json").write_text(
                            json.dumps(data, ensure_ascii=False, indent=1) + "\n"
                        )
                        print("recorded", child_name)
                if (OUT / f"{name}.json").exists():
                    print("kept", name)
                    return
                history = await handle.fetch_history()
                data = {"workflowId": history.workflow_id, "history": json.loads(history.to_json())}
                (OUT / f"{name}.json").write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
                print("recorded", name)

            await drive(
                "order_event_created", 501, "завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 916 123-45-67",
                calendar_history="calendar_write",
            )  # fmt: skip
            await drive("unknown_chat", 999, "завтра 9:30 Внуково → Тверская 7")
            await drive("not_an_order", 501, "Ок, спасибо")
            await drive("question_answered", 501, "Шереметьево → Химки, 1800₽", answer="завтра в 6:40")
            await drive("calendar_not_shared", 502, "завтра 9:30 Внуково → Тверская 7, 2500₽")
            await drive(
                "order_cancelled", 501, "завтра 7:15 Внуково → Химки, 2000₽", press="cancel:{order_id}"
            )
            await drive(
                "callback_denied", 501, "завтра 8:15 Внуково → Химки, 2000₽", press="cancel:someone-elses"
            )
            # The driver's day (#5): the order card and the order's own workflow, changes, lists.
            await drive("lifecycle_order_created", 501, "послезавтра 9:30 Внуково → Тверская 7, 2500₽")
            await drive(
                "lifecycle_button_confirm", 501, "послезавтра 12:15 Внуково → Химки, 2000₽", press="ok:{order_id}",
                order_history="lifecycle_order_workflow_confirmed",
            )  # fmt: skip
            await drive(
                "lifecycle_orders_in_one_message", 501,
                "Заказы на послезавтра:\n1) 14:00 Внуково → Химки, 2000₽\n2) 18:30 Шереметьево → Тверская 7, 3000₽",
            )  # fmt: skip
            await drive(
                "lifecycle_order_with_phone",
                501,
                "послезавтра 20:00 Внуково → Химки, 2000₽, +7 916 555-44-33",
            )
            await drive("lifecycle_reschedule_by_phone", 501, "перенос +7 916 555-44-33 на 21:00")
            await drive("lifecycle_command_today", 501, "/today")
            await drive(
                "picture_order_created", 501, "послезавтра 16:40 Внуково → Химки, 2000₽, Анна +7 916 123-45-67",
                picture=True,
            )  # fmt: skip

            # An admin approves a pending driver (#6): the agenda sync the CLI asks for, which (since the
            # access notice) also starts the driver's "access open" message. Named by shape.
            await admin.add_driver(
                stack.pool, tenant="acme", chat_id=503, calendar_id="shared@example.com", name="Petr"
            )
            telegram.add_chat(token, 503)
            async with system_tx(stack.pool) as conn:
                await conn.execute("UPDATE drivers SET status = 'pending' WHERE chat_id = 503")
            await cli_drivers.approve_driver(stack.pool, settings, chat_id=503, verify=False)
            assert await request_agenda_sync(settings, "acme", 503)
            sync = stack.client.get_workflow_handle("agenda-sync-acme-503")
            await sync.result()
            history = await sync.fetch_history()
            patched = any(e.HasField("marker_recorded_event_attributes") for e in history.events)
            records = [(f"agenda_sync_{'with_access_notice' if patched else 'schedule_only'}", history)]
            if patched:
                token_row = None
                for _ in range(100):  # the notice's workflow clears the token when done
                    async with system_tx(stack.pool) as conn:
                        token_row = await conn.fetchval(
                            "SELECT workflow_id FROM audit_log WHERE chat_id = 503 AND action = 'driver_access_notice'"
                        )
                    if token_row:
                        break
                    await asyncio.sleep(0.1)
                assert token_row, "the access notice was not sent"
                notice = stack.client.get_workflow_handle(token_row)
                records.append(("driver_approved_notice", await notice.fetch_history()))
            for record_name, record in records:
                if not (OUT / f"{record_name}.json").exists():
                    data = {"workflowId": record.workflow_id, "history": json.loads(record.to_json())}
                    (OUT / f"{record_name}.json").write_text(
                        json.dumps(data, ensure_ascii=False, indent=1) + "\n"
                    )
                    print("recorded", record_name)
    await telegram.stop()
    await google.stop()


if __name__ == "__main__":
    asyncio.run(main())
