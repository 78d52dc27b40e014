"""Record the replay-test histories from real runs: `python -m tests.record_histories`.

Two sources, both real executions of today's workflow code:
- the stack scenarios below: the real stack (embedded Temporal and Postgres, the emulators), one order per
  outcome through Telegram, each history saved under the outcome's name;
- the scenario tests in RECORDED_TESTS, run by pytest with this module as a plugin: every workflow they
  start (on the dev server or the time-skipping one, children and Schedule runs included) is fetched
  when the test ends and saved as tests/histories/<shape>.json if no committed history has that shape.
  A shape is the workflow type, the update's kind for MainWorkflow, and the patches it took
  (`history_shape`); test_replay checks that every workflow type and every `workflow.patched()` id has one.

Existing files are never overwritten: they are what workflows started by older code look like, and must
keep replaying (that is what workflow.patched() guards). Delete a file on purpose to re-record it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
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

# The tests that drive what the stack scenarios do not: billing, onboarding, /connect and /disconnect with
# a revoked grant in between, the agenda and settings, the reconciler, the LLM filling an order's gaps.
RECORDED_TESTS = (
    "tests/test_billing.py",
    "tests/test_onboarding_e2e.py",
    "tests/test_onboarding.py::test_a_message_without_a_dialogue_is_refused_with_the_way_in",
    "tests/test_e2e_oauth.py::test_connect_write_as_driver_revoke_pause_reconnect_resume_once",
    "tests/test_e2e_oauth.py::test_disconnect_in_the_chat_revokes_at_google_and_says_so",
    "tests/test_e2e_day.py",
    "tests/test_agenda_workflows.py",
    "tests/test_llm_fallback.py",
)

_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


def history_patches(history: WorkflowHistory) -> list[str]:
    """The `workflow.patched()` ids this execution took, in the order it took them."""
    ids: list[str] = []
    for event in history.events:
        marker = event.marker_recorded_event_attributes
        if event.HasField("marker_recorded_event_attributes") and marker.marker_name == "core_patch":
            patch = json.loads(marker.details["patch-data"].payloads[0].data)["id"]
            if patch not in ids:
                ids.append(patch)
    return ids


def history_shape(history: WorkflowHistory) -> str:
    """`<type>[_<update kind>][__<patch>...]`: what a replay of this history exercises."""
    started = history.events[0].workflow_execution_started_event_attributes
    name = started.workflow_type.name
    shape = re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Workflow")).lower()
    if name == "MainWorkflow" and started.input.payloads:
        shape += f"_{json.loads(started.input.payloads[0].data).get('kind', 'message')}"
    for patch in sorted(history_patches(history)):
        shape += "__" + patch.replace("-", "_")
    return shape


def load_history(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    return WorkflowHistory.from_json(data["workflowId"], data["history"])


def save_history(name: str, history: WorkflowHistory) -> None:
    data = {"workflowId": history.workflow_id, "history": json.loads(history.to_json())}
    (OUT / f"{name}.json").write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    print("recorded", name)


# The pytest plugin (`-p tests.record_histories`): every client the tests build, every workflow they start.
_clients: list[Client] = []
_started: list[tuple[Client, str, str | None]] = []


def pytest_configure(config: pytest.Config) -> None:
    original_init, original_start = Client.__init__, Client.start_workflow

    def init(self: Client, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        _clients.append(self)

    async def start_workflow(self: Client, *args: Any, **kwargs: Any) -> Any:
        handle = await original_start(self, *args, **kwargs)
        _started.append((self, handle.id, handle.result_run_id))
        return handle

    Client.__init__ = init  # type: ignore[method-assign]
    Client.start_workflow = start_workflow  # type: ignore[method-assign]


async def _executions(since: datetime.datetime) -> list[tuple[Client, str, str | None]]:
    """What the test started: through a client, and (where the server can list) by a Schedule, a child
    or an activity on the worker's client."""
    found = list(_started)
    for client in _clients:
        try:
            async for wf in client.list_workflows(f'StartTime >= "{since.isoformat()}"'):
                found.append((client, wf.id, wf.run_id))
        except Exception:  # the time-skipping server cannot list, a stopped server cannot answer
            continue
    return found


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _record_the_tests_histories() -> AsyncIterator[None]:
    from workers.worker import WORKFLOWS

    types = {w.__temporal_workflow_definition.name for w in WORKFLOWS}  # type: ignore[attr-defined]
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    _started.clear()
    yield
    known = {history_shape(load_history(p)) for p in OUT.glob("*.json")}
    seen: set[tuple[str, str | None]] = set()
    for client, workflow_id, run_id in await _executions(since):
        if (workflow_id, run_id) in seen:
            continue
        seen.add((workflow_id, run_id))
        try:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        except Exception:
            continue
        started = history.events[0].workflow_execution_started_event_attributes
        shape = history_shape(history)
        closed = history.events[-1].event_type in _CLOSED
        if started.workflow_type.name in types and closed and shape not in known:
            save_history(shape, history)
            known.add(shape)
    _clients.clear()


async def _result(handle: Any) -> Any:
    """The workflow's result; Telegram's webhook delivery starts the workflow a moment later."""
    async with asyncio.timeout(90):
        while True:
            try:
                return await handle.result()
            except RPCError:
                await asyncio.sleep(0.1)


async def main() -> None:
    telegram, google = TelegramEmulator(), GoogleEmulator()
    tg, gg = await telegram.start(), await google.start()
    token = f"7000000001:{uuid.uuid4().hex}"
    key = google.create_service_account()  # the bot signs in to Google as this account
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sa.json").write_text(json.dumps(key))
        settings = Settings(
            _env_file=None, data_dir=Path(tmp), telegram_bot_token=token, telegram_api_base=tg,
            google_api_endpoint=gg, google_service_account_file=Path(tmp) / "sa.json",
            http_port=free_port(), temporal_grpc_port=free_port(),
            postgres_port=free_port(), temporal_ui_port=free_port(), telegram_mode="webhook", telegram_webhook_secret="record-" + "0" * 32,
            payload_encryption=False,  # committed histories stay plain JSON, readable in review
        )  # fmt: skip
        async with Stack(settings, announce=False, durable_postgres=False) as stack:
            assert stack.pool and stack.client and stack.bot
            google.create_calendar(
                "shared@example.com", owner="d@example.com", time_zone="Europe/Moscow",
                shares={key["client_email"]: "writer"},
            )  # fmt: skip
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
                result = await _result(handle)
                if press is not None:  # press the card's button (with this data) instead
                    card = [m for m in telegram.sent(token, chat_id) if m["method"] == "sendMessage"][-1]
                    data = press.replace("{order_id}", result["order_id"])
                    clicked = telegram.user_clicks(token, chat_id, card["message_id"], data)
                    handle = stack.client.get_workflow_handle(
                        main_workflow_id(stack.bot.id, clicked["update_id"])
                    )
                    await _result(handle)
                if order_history and not (OUT / f"{order_history}.json").exists():
                    await asyncio.sleep(2)  # let the order's workflow handle the press
                    order = stack.client.get_workflow_handle(f"order-{result['order_id']}")
                    save_history(order_history, await order.fetch_history())
                if calendar_history and result.get("order_id"):
                    # The CALENDAR 2 AUTO child, named by its shape: a remote activity (children started
                    # before #7's local write) or a local one; each file is kept once recorded.
                    child = stack.client.get_workflow_handle(calendar_workflow_id(result["order_id"]))
                    history = await child.fetch_history()
                    local = any(e.HasField("marker_recorded_event_attributes") for e in history.events)
                    child_name = f"{calendar_history}_{'local_activity' if local else 'activity'}"
                    if not (OUT / f"{child_name}.json").exists():
                        save_history(child_name, history)
                if (OUT / f"{name}.json").exists():
                    print("kept", name)
                    return
                save_history(name, await handle.fetch_history())

            await drive(
                "order_event_created", 501, "завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 916 123-45-67",
                calendar_history="calendar_write",
            )  # fmt: skip
            # The edge gives TenantId and the memo at the start: the flow upserts neither.
            await drive(
                "order_attributes_at_start",
                501,
                "завтра 10:40 Внуково → Тверская 9, 2600₽, Анна +7 916 123-45-67",
            )
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
                    save_history(record_name, record)
    await telegram.stop()
    await google.stop()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(pytest.main(["-q", "-p", "tests.record_histories", "-p", "no:cacheprovider", *RECORDED_TESTS]))
