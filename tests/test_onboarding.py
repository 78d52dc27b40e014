"""Onboarding (#6 phase 2) on the time-skipping server: MainWorkflow routes an unknown chat's /start to
that chat's one OnboardingWorkflow, which explains, checks the calendar, nudges, gives up, and registers
the driver as pending. Fake activities with the real names record what the workflows asked of the
outside world; the workflow code is the real one. Also the pure parsing of what a new driver types."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.onboarding import OnboardingRouter
from activities.verification import CalendarAccess
from autodispatch.onboarding_input import parse_calendar_reference, parse_invite_code, start_payload
from schemas.audit import AuditEntry
from schemas.driver import Driver, DriverLookup, LookupDriverInput
from schemas.flow import MainResult
from schemas.onboarding import (
    CheckCalendarInput,
    OnboardingResult,
    OnboardingTenant,
    RegisterDriverInput,
    Registration,
    ResolveTenantInput,
    TenantResolution,
    onboarding_workflow_id,
)
from schemas.store import FinishStepInput
from schemas.telegram import ReplySent, SendReplyInput, TelegramUpdateReceived
from workers.worker import WORKFLOWS
from workflows.main import MainWorkflow
from workflows.onboarding import OnboardingWorkflow

SA = "autodispatch@fleet-project.iam.gserviceaccount.com"
CODE = "Inv1te-Code_42xyzABC"
FLEET = OnboardingTenant(tenant_id="acme", name="ACME Taxi", activation="approval", time_zone="Europe/Moscow")
CAL = "c_0123456789abcdef@group.calendar.google.com"


@dataclass
class Fakes:
    """The activities an unknown chat's flows call, under their real names."""

    drivers: dict[int, Driver] = field(default_factory=dict)
    tenants: dict[str | None, OnboardingTenant] = field(default_factory=lambda: {CODE: FLEET})
    # calendar id → statuses the probe answers, one per check (then "ok").
    checks: dict[str, list[str]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    registered: list[RegisterDriverInput] = field(default_factory=list)
    replies: list[SendReplyInput] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)

    def texts(self, chat_id: int) -> list[str]:
        return [r.text for r in self.replies if r.chat_id == chat_id]

    def activities(self) -> list:
        @activity.defn(name="lookup_driver")
        async def lookup_driver(req: LookupDriverInput) -> DriverLookup:
            return DriverLookup(driver=self.drivers.get(req.chat_id))

        @activity.defn(name="finish_step")
        async def finish_step(req: FinishStepInput) -> int:
            self.audit.extend(req.audit)
            return len(req.audit)

        @activity.defn(name="send_reply")
        async def send_reply(req: SendReplyInput) -> ReplySent:
            self.replies.append(req)
            return ReplySent(message_id=1000 + len(self.replies))

        @activity.defn(name="onboarding_resolve_tenant")
        async def resolve_tenant(req: ResolveTenantInput) -> TenantResolution:
            tenant = self.tenants.get(req.code)
            if tenant is None:
                return TenantResolution(problem="unknown_code" if req.code else "no_code", service_account=SA)
            return TenantResolution(tenant=tenant, service_account=SA)

        @activity.defn(name="onboarding_check_calendar")
        async def check_calendar(req: CheckCalendarInput) -> CalendarAccess:
            self.checked.append(req.calendar_id)
            queue = self.checks.get(req.calendar_id, [])
            status = queue.pop(0) if queue else "ok"
            role = {"read_only": "reader", "ok": "writer"}.get(status)
            return CalendarAccess(
                calendar_id=req.calendar_id, status=status, message=f"probe: {status}", account=SA,
                access_role=role, time_zone="Europe/Samara",
            )  # type: ignore[arg-type]  # fmt: skip

        @activity.defn(name="onboarding_register_driver")
        async def register_driver(req: RegisterDriverInput) -> Registration:
            self.registered.append(req)
            self.drivers[req.chat_id] = Driver(
                tenant_id=req.tenant_id, chat_id=req.chat_id, driver_name=req.driver_name,
                calendar_id=req.calendar_id, status="pending",
            )  # fmt: skip
            return Registration(
                outcome="registered", tenant_id=req.tenant_id, status="pending", activation="approval"
            )

        # The router is the real one: it signals-with-start through the worker's own client.
        return [
            lookup_driver, finish_step, send_reply, resolve_tenant, check_calendar, register_driver,
            OnboardingRouter().route_message,
        ]  # fmt: skip


def update(text: str, chat_id: int, kind: str = "text") -> TelegramUpdateReceived:
    n = uuid.uuid4().int % 10**9
    return TelegramUpdateReceived(
        bot_id=1, update_id=n, chat_id=chat_id, message_id=n % 10**6, text=text, kind=kind,
        sender_name="Ivan Petrov", language_code="ru", received_at=datetime(2026, 11, 21, 7, 0, tzinfo=UTC),
    )  # type: ignore[arg-type]  # fmt: skip


def command(text: str, chat_id: int) -> TelegramUpdateReceived:
    return update(text, chat_id, kind="command")


def new_chat() -> int:
    return 10**9 + uuid.uuid4().int % 10**9


def worker(client: Client, task_queue: str, fakes: Fakes) -> Worker:
    # Any exception in workflow code fails the workflow instead of retrying its task forever (a hang).
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=fakes.activities(),
        workflow_failure_exception_types=[Exception],
    )


async def send(env: WorkflowEnvironment, task_queue: str, upd: TelegramUpdateReceived) -> MainResult:
    """One Telegram update, as the edge hands it over: a MainWorkflow of its own."""
    return await env.client.execute_workflow(
        MainWorkflow.run, upd, id=f"tg-1-{upd.update_id}", task_queue=task_queue
    )


def dialogue(env: WorkflowEnvironment, chat_id: int) -> WorkflowHandle:
    return env.client.get_workflow_handle_for(OnboardingWorkflow.run, onboarding_workflow_id(1, chat_id))


async def until_it_ends(env: WorkflowEnvironment, chat_id: int) -> OnboardingResult:
    """The dialogue's result, letting the server skip time to its timers meanwhile (a handle from
    get_workflow_handle does not do that by itself; a sleep past the workflow's end would hang)."""
    async with env.time_skipping_unlocked():
        return await dialogue(env, chat_id).result()


async def replies(env: WorkflowEnvironment, fakes: Fakes, chat_id: int, count: int) -> list[str]:
    """The chat's replies once there are `count` of them (the dialogue answers asynchronously)."""
    for _ in range(600):
        if len(fakes.texts(chat_id)) >= count:
            return fakes.texts(chat_id)
        await env.sleep(0.05)
    raise AssertionError(f"expected {count} replies, got {fakes.texts(chat_id)}")


def settings_url(calendar_id: str) -> str:
    b64 = base64.b64encode(calendar_id.encode()).decode().rstrip("=")
    return f"https://calendar.google.com/calendar/u/0/r/settings/calendar/{b64}"


# -- the dialogue -----------------------------------------------------------------------------------
async def test_start_explains_checks_and_registers_pending(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    async with worker(env.client, task_queue, fakes):
        started = await send(env, task_queue, command(f"/start {CODE}", chat))
        assert started.outcome == "onboarding_started"
        (instructions,) = await replies(env, fakes, chat, 1)
        assert "ACME Taxi" in instructions and SA in instructions
        assert (
            "Внесение изменений в мероприятия" in instructions and "Идентификатор календаря" in instructions
        )

        # The calendar's settings page address (its id in base64) is as good as the id.
        later = await send(env, task_queue, update(f"вот: {settings_url(CAL)}", chat))
        assert later.outcome == "onboarding_continued"
        result: OnboardingResult = await dialogue(env, chat).result()
    assert result.outcome == "registered" and result.tenant_id == "acme" and result.calendar_id == CAL
    assert fakes.checked == [CAL]
    (reg,) = fakes.registered
    assert (reg.tenant_id, reg.chat_id, reg.calendar_id, reg.driver_name) == (
        "acme",
        chat,
        CAL,
        "Ivan Petrov",
    )
    assert reg.calendar_time_zone == "Europe/Samara"
    done = fakes.texts(chat)[-1]
    assert "✅" in done and CAL in done and "ожидает подтверждения" in done
    # Every step is on record: under `system` until the fleet is known, then under the fleet.
    rows = [a for a in fakes.audit if a.workflow_id == onboarding_workflow_id(1, chat)]
    actions = [a.action for a in rows]
    for expected in ("onboarding_message", "tenant_chosen", "calendar_verified", "onboarding_registered"):
        assert expected in actions, actions
    assert {a.tenant_id for a in rows if a.action == "calendar_verified"} == {"acme"}
    assert len({a.step for a in rows}) == len(rows)  # one row per step
    main_rows = [a for a in fakes.audit if a.workflow_id.startswith("tg-1-")]
    assert {a.action for a in main_rows if a.step == "outcome"} == {
        "onboarding_started",
        "onboarding_continued",
    }


async def test_a_failed_check_says_what_is_wrong_and_the_driver_retries(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    fakes.checks[CAL] = ["not_found_or_not_shared", "read_only", "unavailable"]
    async with worker(env.client, task_queue, fakes):
        await send(env, task_queue, command(f"/start {CODE}", chat))
        await replies(env, fakes, chat, 1)
        await send(env, task_queue, update("мой календарь тот, что для работы", chat))
        assert "Не нашёл здесь идентификатора календаря" in (await replies(env, fakes, chat, 2))[-1]
        await send(env, task_queue, update(CAL, chat))
        not_shared = (await replies(env, fakes, chat, 3))[-1]
        assert "не найден или не открыт" in not_shared and SA in not_shared and CAL in not_shared
        embed = (
            f"https://calendar.google.com/calendar/embed?src={CAL.replace('@', '%40')}&ctz=Europe%2FMoscow"
        )
        await send(env, task_queue, update(embed, chat))
        read_only = (await replies(env, fakes, chat, 4))[-1]
        assert "только для просмотра (reader)" in read_only and "Внесение изменений" in read_only
        await send(env, task_queue, update(CAL, chat))
        assert "не отвечает" in (await replies(env, fakes, chat, 5))[-1]
        assert not fakes.registered  # nothing whitelisted while the calendar is not usable
        await send(env, task_queue, update(CAL, chat))
        result = await dialogue(env, chat).result()
    assert result.outcome == "registered" and fakes.checked == [CAL] * 4
    failed = [a.details["status"] for a in fakes.audit if a.action == "calendar_check_failed"]
    assert failed == ["not_found_or_not_shared", "read_only", "unavailable"]
    assert [a.action for a in fakes.audit if a.action == "calendar_id_unrecognised"]


async def test_one_nudge_after_a_day_of_silence_and_a_polite_end_after_seven_days(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    async with worker(env.client, task_queue, fakes):
        await send(env, task_queue, command(f"/start {CODE}", chat))
        await replies(env, fakes, chat, 1)
        await env.sleep(timedelta(hours=23))
        assert len(fakes.texts(chat)) == 1  # not before a full day
        await env.sleep(timedelta(hours=2))
        nudge = (await replies(env, fakes, chat, 2))[-1]
        assert "Напоминаю" in nudge and SA in nudge
        await env.sleep(timedelta(days=5))
        assert len(fakes.texts(chat)) == 2  # once, not every day
        await env.sleep(timedelta(hours=22))  # 6 d 23 h since the driver's last message
        assert len(fakes.texts(chat)) == 2
        result = await until_it_ends(env, chat)  # time skips to the seventh day
    assert result.outcome == "gave_up"
    texts = fakes.texts(chat)
    assert len(texts) == 3 and "7 дней" in texts[-1] and "/start" in texts[-1]
    actions = [a.action for a in fakes.audit if a.workflow_id == onboarding_workflow_id(1, chat)]
    assert actions.count("onboarding_nudged") == 1 and actions[-1] == "onboarding_gave_up"
    assert not fakes.registered


async def test_the_silence_clock_restarts_with_each_message(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    fakes.checks[CAL] = ["read_only"] * 10
    async with worker(env.client, task_queue, fakes):
        await send(env, task_queue, command(f"/start {CODE}", chat))
        await replies(env, fakes, chat, 1)
        await env.sleep(timedelta(hours=20))
        await send(env, task_queue, update(CAL, chat))
        await replies(env, fakes, chat, 2)
        await env.sleep(timedelta(hours=20))  # 40 h since /start, 20 h since the last message
        assert len(fakes.texts(chat)) == 2
        await env.sleep(timedelta(hours=5))
        assert "Напоминаю" in (await replies(env, fakes, chat, 3))[-1]


async def test_one_dialogue_per_chat_a_second_start_resumes_it(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    async with worker(env.client, task_queue, fakes):
        first = await send(env, task_queue, command(f"/start {CODE}", chat))
        await replies(env, fakes, chat, 1)
        run_id = (await dialogue(env, chat).describe()).run_id
        second = await send(env, task_queue, command("/start", chat))
        assert (first.outcome, second.outcome) == ("onboarding_started", "onboarding_continued")
        resumed = (await replies(env, fakes, chat, 2))[-1]
        assert "Продолжаем подключение" in resumed and "ACME Taxi" in resumed and SA in resumed
        sticker = await send(env, task_queue, update("", chat, kind="unsupported"))
        assert sticker.outcome == "onboarding_continued"
        assert "Жду идентификатор календаря" in (await replies(env, fakes, chat, 3))[-1]
        assert (await dialogue(env, chat).describe()).run_id == run_id  # still the same one
        state = await dialogue(env, chat).query(OnboardingWorkflow.state)
        assert state.stage == "calendar" and state.handled == 3

        # The driver cancels; a later /start begins a fresh dialogue under the same id.
        await send(env, task_queue, update("отмена", chat))
        assert (await dialogue(env, chat).result()).outcome == "cancelled"
        assert "отменено" in (await replies(env, fakes, chat, 4))[-1]
        again = await send(env, task_queue, command(f"/start {CODE}", chat))
        assert again.outcome == "onboarding_started"
        assert "Здравствуйте" in (await replies(env, fakes, chat, 5))[-1]
        assert (await dialogue(env, chat).describe()).run_id != run_id
        await send(env, task_queue, update(CAL, chat))
        assert (await dialogue(env, chat).result()).outcome == "registered"
    # Two dialogues, one workflow id: their steps (audit rows, outbox keys) never collide.
    steps = [a.step for a in fakes.audit if a.workflow_id == onboarding_workflow_id(1, chat)]
    assert len(steps) == len(set(steps))
    reply_steps = [r.step for r in fakes.replies if r.chat_id == chat]
    assert len(reply_steps) == len(set(reply_steps)) == 6


async def test_a_message_without_a_dialogue_is_refused_with_the_way_in(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    async with worker(env.client, task_queue, fakes):
        result = await send(env, task_queue, update("завтра 9:30 Внуково", chat))
    assert result.outcome == "unknown_chat"
    (text,) = fakes.texts(chat)
    assert str(chat) in text and "/start" in text and "не подключён" in text


async def test_a_bad_invite_code_is_refused_clearly_then_a_good_one_works(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    async with worker(env.client, task_queue, fakes):
        await send(env, task_queue, command("/start WRONG-code-123", chat))
        bad = (await replies(env, fakes, chat, 1))[-1]
        assert "WRONG-code-123" in bad and "не найден" in bad
        # A bare /start: no default fleet for this bot, so the driver needs the link (and gets their id).
        await send(env, task_queue, command("/start", chat))
        need = (await replies(env, fakes, chat, 2))[-1]
        assert "ссылку-приглашение" in need and str(chat) in need
        # The link pasted as text works as well as opening it.
        await send(env, task_queue, update(f"https://t.me/acme_dispatch_bot?start={CODE}", chat))
        assert "ACME Taxi" in (await replies(env, fakes, chat, 3))[-1]
        state = await dialogue(env, chat).query(OnboardingWorkflow.state)
        assert state.stage == "calendar" and state.tenant == FLEET
    rejected = [a for a in fakes.audit if a.action == "invite_rejected"]
    assert [a.details["problem"] for a in rejected] == ["unknown_code", "no_code"]
    assert {a.tenant_id for a in rejected} == {"system"}


async def test_a_bare_start_joins_the_default_tenant(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    fakes.tenants[None] = FLEET  # AUTODISPATCH_ONBOARDING_DEFAULT_TENANT=acme
    async with worker(env.client, task_queue, fakes):
        await send(env, task_queue, command("/start", chat))
        assert "ACME Taxi" in (await replies(env, fakes, chat, 1))[-1]
        # End the dialogue here: left waiting on this test's queue, its 24-hour nudge would fire on a
        # queue nobody polls once a later test skips time, and stall the shared test server's clock.
        await send(env, task_queue, update("отмена", chat))
        assert (await dialogue(env, chat).result()).outcome == "cancelled"
    chosen = [a for a in fakes.audit if a.action == "tenant_chosen"]
    assert chosen[0].details["via"] == "default_tenant"


async def test_whitelisted_meanwhile_ends_the_dialogue_without_nagging(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    async with worker(env.client, task_queue, fakes):
        await send(env, task_queue, command(f"/start {CODE}", chat))
        await replies(env, fakes, chat, 1)
        # The admin added the chat by hand (`driver add`) instead.
        fakes.drivers[chat] = Driver(tenant_id="acme", chat_id=chat, driver_name="I", calendar_id=CAL)
        result = await until_it_ends(env, chat)  # time skips to the nudge, which is not sent
    assert result.outcome == "already_registered" and len(fakes.texts(chat)) == 1


# -- what the driver types ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CAL, CAL),
        ("ivan.petrov@gmail.com", "ivan.petrov@gmail.com"),
        ("Мой календарь: «ivan.petrov@gmail.com».", "ivan.petrov@gmail.com"),
        (settings_url(CAL), CAL),
        (settings_url(CAL) + "?tab=mc&pli=1", CAL),
        ("https://calendar.google.com/calendar/r/settings/calendar/" + base64.urlsafe_b64encode(CAL.encode()).decode(), CAL),
        (f"https://calendar.google.com/calendar/embed?src={CAL.replace('@', '%40')}&ctz=Europe%2FMoscow", CAL),
        (f"https://calendar.google.com/calendar/u/0?cid={base64.b64encode(CAL.encode()).decode()}", CAL),
        ("https://calendar.google.com/calendar/ical/ivan%40gmail.com/public/basic.ics", "ivan@gmail.com"),
        ("en.russian#holiday@group.v.calendar.google.com", "en.russian#holiday@group.v.calendar.google.com"),
        ("primary", None),
        ("календарь для работы", None),
        ("https://example.com/?src=a%40b.com", None),
        ("https://calendar.google.com/calendar/u/0/r/settings/calendar/bm90LWFuLWlk", None),
    ],
)  # fmt: skip
def test_calendar_references(text: str, expected: str | None) -> None:
    assert parse_calendar_reference(text) == expected


def test_invite_codes_and_start_payloads() -> None:
    assert parse_invite_code(f"https://t.me/acme_bot?start={CODE}") == CODE
    assert parse_invite_code(f"  {CODE} ") == CODE
    assert parse_invite_code("привет") is None and parse_invite_code("hi") is None
    assert start_payload(f"/start {CODE}") == CODE and start_payload("/start") is None
    assert start_payload("/start@acme_bot  x1") == "x1"


async def test_an_update_handed_over_twice_is_handled_once(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """A retried routing call may signal the same update again: one reply, one check, one audit row."""
    env, fakes, chat = time_skipping_env, Fakes(), new_chat()
    async with worker(env.client, task_queue, fakes):
        await send(env, task_queue, command(f"/start {CODE}", chat))
        await replies(env, fakes, chat, 1)
        again = update(CAL, chat)
        fakes.checks[CAL] = ["read_only", "read_only"]
        for _ in range(2):
            await dialogue(env, chat).signal(OnboardingWorkflow.message, again)
        await replies(env, fakes, chat, 2)
        await send(env, task_queue, update("ещё раз?", chat))  # something after it, to be sure
        await replies(env, fakes, chat, 3)
    assert len(fakes.texts(chat)) == 3 and fakes.checked == [CAL]
