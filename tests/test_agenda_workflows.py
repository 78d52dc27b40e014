"""AgendaWorkflow and SettingsWorkflow on the time-skipping server, started the way the driver starts them
(a command or a press through MainWorkflow) and the way the morning Schedule does; activities are fakes
under the real names, the workflow code is the real one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from schemas.agenda import AgendaInput, AgendaItem, ListEventsInput, SyncAgendaInput, SyncAgendaResult
from schemas.driver import Driver, DriverSettings
from schemas.settings import SaveSettingsInput
from schemas.telegram import TelegramUpdateReceived
from tests.test_workflows import DRIVER, Fakes, run_main, update
from workers.worker import WORKFLOWS
from workflows.agenda import AgendaWorkflow

# 2026-11-21 07:00 UTC is 10:00 in Moscow: "today" is the 21st there.
ORDERS = [
    AgendaItem(event_id="a", start=datetime(2026, 11, 21, 6, 30, tzinfo=UTC), title="Внуково → Тверская 7",
               price_amount=2500, price_currency="RUB", ours=True),
    AgendaItem(event_id="b", start=datetime(2026, 11, 21, 20, 30, tzinfo=UTC), title="Шереметьево → Химки",
               price_amount=90, price_currency="USD", ours=True),
]  # fmt: skip
FOREIGN = AgendaItem(event_id="c", start=datetime(2026, 11, 21, 9, 0, tzinfo=UTC), title="Стоматолог")


@dataclass
class DayFakes(Fakes):
    listed: list[ListEventsInput] = field(default_factory=list)
    saved: list[SaveSettingsInput] = field(default_factory=list)
    synced: list[SyncAgendaInput] = field(default_factory=list)

    def activities(self) -> list:
        @activity.defn(name="list_agenda_events")
        async def list_agenda_events(req: ListEventsInput) -> list[AgendaItem]:
            self.listed.append(req)
            events = ORDERS if req.only_ours else [*ORDERS, FOREIGN]
            return [e for e in events if req.time_min <= e.start < req.time_max]

        @activity.defn(name="save_driver_settings")
        async def save_driver_settings(req: SaveSettingsInput) -> DriverSettings:
            self.saved.append(req)
            driver = self.drivers[req.chat_id]
            changes = dict(req.changes)
            tz = changes.pop("time_zone", driver.time_zone)
            settings = driver.settings.model_copy(update=changes)
            self.drivers[req.chat_id] = driver.model_copy(update={"settings": settings, "time_zone": tz})
            return settings

        @activity.defn(name="sync_agenda_schedule")
        async def sync_agenda_schedule(req: SyncAgendaInput) -> SyncAgendaResult:
            self.synced.append(req)
            return SyncAgendaResult(schedule_id=f"agenda-{req.tenant_id}-{req.chat_id}", action="updated")

        return [*super().activities(), list_agenda_events, save_driver_settings, sync_agenda_schedule]


def day_worker(env: WorkflowEnvironment, task_queue: str, fakes: DayFakes) -> Worker:
    return Worker(
        env.client, task_queue=task_queue, workflows=list(WORKFLOWS), activities=fakes.activities(),
        workflow_failure_exception_types=[Exception],
    )  # fmt: skip


def with_settings(**changes: object) -> Driver:
    return DRIVER.model_copy(update={"settings": DriverSettings(**changes)})  # type: ignore[arg-type]


def press(data: str, card_id: int = 555) -> TelegramUpdateReceived:
    upd = update("⚙️ card", kind="callback")
    return upd.model_copy(update={"callback_data": data, "callback_query_id": "q1", "message_id": card_id})


async def test_today_lists_the_moscow_day_with_a_total(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = DayFakes()
    async with day_worker(time_skipping_env, task_queue, fakes):
        cmd = update("/today", kind="command")
        result = await run_main(time_skipping_env, task_queue, cmd)
    assert result.outcome == "agenda"
    (listed,) = fakes.listed
    assert listed.only_ours and listed.calendar_id == DRIVER.calendar_id
    assert listed.time_min == datetime(2026, 11, 20, 21, 0, tzinfo=UTC)  # Moscow midnight
    assert listed.time_max == datetime(2026, 11, 21, 21, 0, tzinfo=UTC)
    (reply,) = fakes.replies
    assert reply.reply_to_message_id == cmd.message_id and reply.step == "agenda"
    assert reply.text == (
        "📅 Сегодня, сб 21.11\n09:30 Внуково → Тверская 7 · 2 500 ₽\n23:30 Шереметьево → Химки · $90\n"
        "Итого: 2 заказа · 2 500 ₽ + $90"
    )
    assert result.reply_message_id == 1001
    assert "agenda_sent" in [a.action for a in fakes.audit]


async def test_scope_all_shows_foreign_events_and_tomorrow_is_the_next_local_day(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = DayFakes(drivers={DRIVER.chat_id: with_settings(agenda_scope="all", language="en")})
    async with day_worker(time_skipping_env, task_queue, fakes):
        await run_main(time_skipping_env, task_queue, update("/today", kind="command"))
        await run_main(time_skipping_env, task_queue, update("/tomorrow@AutoDispatchBot", kind="command"))
    assert [x.only_ours for x in fakes.listed] == [False, False]
    assert fakes.listed[1].time_min == datetime(2026, 11, 21, 21, 0, tzinfo=UTC)
    today, tomorrow = (r.text for r in fakes.replies)
    assert "12:00 Стоматолог" in today and today.startswith("📅 Today, Sat 21.11")
    assert tomorrow == "📅 Tomorrow, Sun 22.11\nNo orders."


async def test_morning_agenda_runs_only_for_an_active_driver_who_wants_it(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = DayFakes()
    run = AgendaInput(tenant_id=DRIVER.tenant_id, chat_id=DRIVER.chat_id, kind="morning")
    client = time_skipping_env.client
    async with day_worker(time_skipping_env, task_queue, fakes):
        sent = await client.execute_workflow(
            AgendaWorkflow.run, run, id=f"m-{uuid.uuid4()}", task_queue=task_queue
        )
        fakes.drivers[DRIVER.chat_id] = with_settings(agenda_enabled=False)
        off = await client.execute_workflow(
            AgendaWorkflow.run, run, id=f"m-{uuid.uuid4()}", task_queue=task_queue
        )
        fakes.drivers[DRIVER.chat_id] = DRIVER.model_copy(update={"status": "disabled"})
        disabled = await client.execute_workflow(
            AgendaWorkflow.run, run, id=f"m-{uuid.uuid4()}", task_queue=task_queue
        )
        other = run.model_copy(update={"tenant_id": "someone-else"})
        gone = await client.execute_workflow(
            AgendaWorkflow.run, other, id=f"m-{uuid.uuid4()}", task_queue=task_queue
        )
    assert (sent.outcome, off.outcome, disabled.outcome, gone.outcome) == (
        "sent",
        "skipped",
        "skipped",
        "skipped",
    )
    assert (off.reason, disabled.reason, gone.reason) == ("agenda_off", "driver_not_active", "driver_gone")
    (reply,) = fakes.replies  # only the first run said anything
    assert reply.text.startswith("☀️ Доброе утро!") and reply.reply_to_message_id is None


async def test_settings_press_saves_syncs_and_edits_the_card_in_place(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = DayFakes()
    async with day_worker(time_skipping_env, task_queue, fakes):
        opened = await run_main(time_skipping_env, task_queue, press("set:o:ag"))
        saved = await run_main(time_skipping_env, task_queue, press("set:v:ag:off"))
        english = await run_main(time_skipping_env, task_queue, press("set:v:lang:en"))
        forged = await run_main(time_skipping_env, task_queue, press("set:v:tz:Mars/Olympus"))
    assert [r.outcome for r in (opened, saved, english, forged)] == ["settings"] * 4
    assert [s.changes for s in fakes.saved] == [{"agenda_enabled": False}, {"language": "en"}]
    assert {s.step for s in fakes.saved} == {"settings:ag", "settings:lang"}
    assert len(fakes.synced) == 2  # every saved change re-syncs the morning agenda's Schedule
    assert fakes.replies == []  # never re-sent: edited
    assert [e.message_id for e in fakes.edits] == [555, 555, 555]
    assert "set:v:ag:07:00" in str(fakes.edits[0].buttons) and "06:45" in fakes.edits[0].text
    assert "☀️ Утренняя сводка: выкл." in fakes.edits[1].text and "✅ Сохранено" in fakes.edits[1].text
    assert "☀️ Morning agenda: off" in fakes.edits[2].text and "🗣 Language: English" in fakes.edits[2].text
    assert [a.text for a in fakes.answers] == ["", "✅ Сохранено", "✅ Saved", "This button has expired."]


async def test_settings_command_shows_the_card_and_takes_typed_values(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = DayFakes()
    async with day_worker(time_skipping_env, task_queue, fakes):
        card = await run_main(time_skipping_env, task_queue, update("/settings", kind="command"))
        typed = await run_main(
            time_skipping_env, task_queue, update("/settings tz asia/tbilisi", kind="command")
        )
        bad = await run_main(time_skipping_env, task_queue, update("/settings agenda 7 утра", kind="command"))
    assert [r.outcome for r in (card, typed, bad)] == ["settings"] * 3
    first, second, third = fakes.replies
    assert first.text.startswith("⚙️ Настройки") and first.buttons and first.step == "settings"
    assert "🌍 Часовой пояс: Asia/Tbilisi" in second.text
    assert fakes.drivers[DRIVER.chat_id].time_zone == "Asia/Tbilisi"
    assert third.text.startswith("Не понял «agenda 7 утра»") and third.buttons is None
    assert [s.changes for s in fakes.saved] == [{"time_zone": "Asia/Tbilisi"}]


async def test_a_calendar_that_is_not_shared_gets_a_clear_answer_not_a_failed_workflow(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    from temporalio.exceptions import ApplicationError

    fakes = DayFakes()

    @activity.defn(name="list_agenda_events")
    async def not_shared(req: ListEventsInput) -> list[AgendaItem]:
        raise ApplicationError("calendar not found", type="CalendarNotFound", non_retryable=True)

    acts = [a for a in fakes.activities() if a.__name__ != "list_agenda_events"] + [not_shared]
    async with Worker(
        time_skipping_env.client, task_queue=task_queue, workflows=list(WORKFLOWS), activities=acts,
        workflow_failure_exception_types=[Exception],
    ):  # fmt: skip
        result = await run_main(time_skipping_env, task_queue, update("/week", kind="command"))
    assert result.outcome == "agenda"
    (reply,) = fakes.replies
    assert reply.text == "Не удалось прочитать календарь (CalendarNotFound). Попробуйте позже."
    assert "agenda_calendar_failed" in [a.action for a in fakes.audit]
