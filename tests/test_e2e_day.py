"""The driver's day (#5) end to end on the real stack: the agenda matches the emulated calendar, the
settings card is edited in place and changes what the driver gets, the morning agenda's Temporal
Schedule follows the settings and the whitelist, the command menu is registered in both languages."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from temporalio.client import ScheduleActionStartWorkflow

from autodispatch import admin, texts
from autodispatch.agenda_sync import request_agenda_sync
from autodispatch.db import system_tx
from autodispatch.embedded import EmbeddedTemporal
from schemas.agenda import agenda_schedule_id
from tests.conftest import Outside, Postgres, stack_settings
from tests.test_e2e import events_of, finished, new_driver, replies, running, send, token_of

pytestmark = pytest.mark.e2e
MSK = ZoneInfo("Europe/Moscow")


def expected_day(events: list[dict], day: date, *, all_events: bool) -> list[str]:
    """What the agenda must list for `day`, computed from the calendar as the emulator holds it."""
    lines = []
    for ev in events:
        ours = (ev.get("extendedProperties") or {}).get("private", {}).get("autodispatch") == "1"
        if ev["status"] == "cancelled" or not (ours or all_events):
            continue
        start = datetime.fromisoformat(ev["start"]["dateTime"]).astimezone(MSK)
        if start.date() != day:
            continue
        title = ev["summary"].split(" ", 1)[1] if ours else ev["summary"]
        price = ev["extendedProperties"]["private"].get("price_amount") if ours else ""
        money = ""
        if price:
            money = " · " + texts.format_money(
                float(price), ev["extendedProperties"]["private"]["price_currency"]
            )
        lines.append((start, f"{start:%H:%M} {title}{money}"))
    return [line for _, line in sorted(lines)]


async def add_foreign_event(outside: Outside, calendar_id: str, start: datetime, summary: str) -> None:
    body = {
        "summary": summary, "description": "Цена: 999 ₽",  # not ours: its description means nothing to us
        "start": {"dateTime": start.isoformat()}, "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
    }  # fmt: skip
    async with httpx.AsyncClient() as http:
        url = f"{outside.google.base_url}/calendar/v3/calendars/{quote(calendar_id)}/events"
        owner = outside.google.issue_access_token("driver@example.com")  # the driver adds it themselves
        (await http.post(url, json=body, headers={"Authorization": f"Bearer {owner}"})).raise_for_status()


def titled_day(reply: dict, around: date) -> date:
    """The day an agenda's title names ("📅 Завтра, Пт 04.12"), in the year that puts it near `around`."""
    day, month = map(int, re.search(r"(\d\d)\.(\d\d)", reply["text"].splitlines()[0]).groups())  # type: ignore[union-attr]
    return min(
        (date(around.year + dy, month, day) for dy in (-1, 0, 1)), key=lambda d: abs((d - around).days)
    )


async def command(outside: Outside, stack, chat_id: int, text: str) -> dict:  # type: ignore[no-untyped-def]
    sent = send(outside, stack, chat_id, text)
    result = await finished(stack, sent["update_id"])
    reply = next(m for m in replies(outside, stack, chat_id) if m["message_id"] == result.reply_message_id)
    return reply


async def click(outside: Outside, stack, chat_id: int, card: dict, data: str) -> dict:  # type: ignore[no-untyped-def]
    pressed = outside.telegram.user_clicks(token_of(stack), chat_id, card["message_id"], data)
    result = await finished(stack, pressed["update_id"])
    assert result.outcome == "settings"
    log = outside.telegram.sent(token_of(stack), chat_id)
    return next(m for m in log if m.get("message_id") == card["message_id"] and m["method"] == "sendMessage")


async def driver_row(stack, chat_id: int) -> dict:  # type: ignore[no-untyped-def]
    async with system_tx(stack.pool) as conn:
        return dict(await conn.fetchrow("SELECT * FROM drivers WHERE chat_id = $1", chat_id))


async def test_agenda_matches_the_calendar_and_settings_change_what_the_driver_gets(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        now = datetime.now(MSK)
        today, tomorrow = now.date(), now.date() + timedelta(days=1)
        # Dates written out, and each agenda checked against the day its own title names: a run that
        # crosses Moscow midnight checks the same things against the days they then mean.
        orders = [f"{tomorrow:%d.%m} в 9:30 Внуково → Тверская 7, 2500₽",
                  f"{tomorrow:%d.%m} в 14:00 Шереметьево → Химки, 90$",
                  f"{tomorrow + timedelta(days=1):%d.%m} в 8:00 Казанский вокзал → Внуково, 1500₽"]  # fmt: skip
        if now.hour < 22:
            orders.append(f"{today:%d.%m} в 23:50 Курский вокзал → Домодедово, 3000₽")
        for text in orders:
            assert (await finished(stack, send(outside, stack, chat_id, text)["update_id"])).outcome in (
                "event_created", "orders_created",
            )  # fmt: skip
        await add_foreign_event(
            outside, calendar_id, datetime.combine(tomorrow, datetime.min.time(), MSK) + timedelta(hours=12),
            "Стоматолог",
        )  # fmt: skip
        events = await events_of(outside, calendar_id)

        day_reply = await command(outside, stack, chat_id, "/today")
        lines = day_reply["text"].splitlines()
        assert lines[0].startswith("📅 Сегодня")
        want_today = expected_day(events, titled_day(day_reply, today), all_events=False)
        assert lines[1:-1] == want_today if want_today else lines[1:] == ["Заказов нет."]

        tomorrow_reply = await command(outside, stack, chat_id, "/tomorrow")
        lines = tomorrow_reply["text"].splitlines()
        shown = titled_day(tomorrow_reply, today)
        want = expected_day(events, shown, all_events=False)
        assert want and lines[1:-1] == want
        if shown == tomorrow:
            assert len(want) == 2 and lines[-1] == "Итого: 2 заказа · 2 500 ₽ + $90"
        assert "Стоматолог" not in tomorrow_reply["text"]

        week = await command(outside, stack, chat_id, "/week")
        assert week["text"].count("Итого:") >= 2 and "Казанский вокзал → Внуково · 1 500 ₽" in week["text"]

        # /settings → the card; each press edits that very message.
        card = await command(outside, stack, chat_id, "/settings")
        assert card["text"].startswith("⚙️ Настройки") and card["reply_markup"]["inline_keyboard"]
        edited = await click(outside, stack, chat_id, card, "set:o:sc")
        assert "все события календаря" in str(edited["edits"][-1]["reply_markup"])
        edited = await click(outside, stack, chat_id, card, "set:v:sc:all")
        assert "📋 Показывать: все события календаря" in edited["edits"][-1]["text"]
        assert (await driver_row(stack, chat_id))["settings"]["agenda_scope"] == "all"

        tomorrow_all = await command(outside, stack, chat_id, "/tomorrow")
        shown = titled_day(tomorrow_all, today)
        want_all = expected_day(events, shown, all_events=True)
        assert want_all and tomorrow_all["text"].splitlines()[1:-1] == want_all
        if shown == tomorrow:
            assert len(want_all) == 3
            assert "12:00 Стоматолог\n" in tomorrow_all["text"]  # listed; its "Цена" is not ours to add up

        edited = await click(outside, stack, chat_id, card, "set:v:lang:en")
        assert "🗣 Language: English" in edited["edits"][-1]["text"]
        assert (await driver_row(stack, chat_id))["settings"]["language"] == "en"
        english = await command(outside, stack, chat_id, "/tomorrow")
        assert english["text"].startswith("📅 Tomorrow,")
        if titled_day(english, today) == tomorrow:
            assert english["text"].splitlines()[-1].startswith("Total: 3 orders")

        cards = [m for m in replies(outside, stack, chat_id) if m["text"] and "⚙️" in m["text"]]
        assert len(cards) == 1  # the card was edited, never re-sent
        audit = await admin.read_audit(stack.pool, tenant=tenant)  # type: ignore[arg-type]
        changes = [r["details"]["changes"] for r in audit if r["action"] == "settings_changed"]
        assert changes == [{"agenda_scope": "all"}, {"language": "en"}]


async def test_morning_agenda_schedule_follows_settings_and_whitelist_and_menu_is_registered(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings) as stack:
        assert stack.client is not None and stack.pool is not None
        menus = {
            m["language_code"]: [c["command"] for c in m["commands"]]
            for m in (await _menus(outside, token_of(stack)))
            if m["scope"] == {"type": "default"}
        }
        assert menus == {"": ["today", "tomorrow", "week", "settings", "help"], "en": menus["en"]}
        assert menus["en"] == menus[""]

        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        # The admin path (CLI `driver add`) asks the running stack to sync the new driver's Schedule.
        assert await request_agenda_sync(settings, tenant, chat_id)
        handle = stack.client.get_schedule_handle(agenda_schedule_id(tenant, chat_id))
        desc = await _wait_for_schedule(handle, lambda d: True)
        cal = desc.schedule.spec.calendars[0]
        assert (cal.hour[0].start, cal.minute[0].start) == (7, 0)
        assert desc.schedule.spec.time_zone_name == "Europe/Moscow" and not desc.schedule.state.paused
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "AgendaWorkflow"
        assert action.task_queue == settings.temporal_task_queue

        # The driver picks 08:30 and Vladivostok: the Schedule follows at once.
        card = await command(outside, stack, chat_id, "/settings agenda 8:30")
        assert "☀️ Утренняя сводка: в 08:30" in card["text"]
        await command(outside, stack, chat_id, "/settings tz Asia/Vladivostok")
        desc = await handle.describe()
        cal = desc.schedule.spec.calendars[0]
        assert (cal.hour[0].start, cal.minute[0].start) == (8, 30)
        assert desc.schedule.spec.time_zone_name == "Asia/Vladivostok"

        # What the Schedule starts sends the morning agenda (triggered now instead of at 08:30).
        await finished(
            stack, send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")["update_id"]
        )
        before = len(replies(outside, stack, chat_id))
        await handle.trigger()
        await outside.telegram.wait_for_sent(
            token_of(stack), chat_id, before + 1, timeout=60, method="sendMessage"
        )
        morning = replies(outside, stack, chat_id)[-1]
        assert morning["text"].startswith("☀️ Доброе утро!") and morning.get("reply_to_message_id") is None

        # Turned off by the driver: paused; back on: running again.
        await command(outside, stack, chat_id, "/settings agenda off")
        assert (await handle.describe()).schedule.state.paused
        await command(outside, stack, chat_id, "/settings agenda 07:00")
        assert not (await handle.describe()).schedule.state.paused

        # Disabled by the admin: paused (the reconciler or the CLI hook); removed: the Schedule is deleted.
        await admin.set_driver_status(stack.pool, chat_id=chat_id, status="disabled")
        assert await request_agenda_sync(settings, tenant, chat_id)
        desc = await _wait_for_schedule(handle, lambda d: d.schedule.state.paused)
        assert desc.schedule.state.note == "driver not active"
        async with system_tx(stack.pool) as conn:
            await conn.execute("DELETE FROM drivers WHERE chat_id = $1", chat_id)
        assert await request_agenda_sync(settings, tenant, chat_id)
        await _wait_for_schedule(handle, None)


async def _menus(outside: Outside, token: str) -> list[dict]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{outside.telegram.base_url}/_emulator/bots/{token}/commands")
        r.raise_for_status()
        return r.json()


async def _wait_for_schedule(handle, ok, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """The schedule's description once `ok` holds (None: once it no longer exists)."""
    from temporalio.service import RPCError, RPCStatusCode

    async with asyncio.timeout(timeout):
        while True:
            try:
                desc = await handle.describe()
                if ok is not None and ok(desc):
                    return desc
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                if ok is None:
                    return None
            await asyncio.sleep(0.2)
