"""OrderWorkflow on the time-skipping server: the card's buttons, changes, and the durable reminder.

Fake activities (tests.test_workflows.Fakes) record what the workflow asked of the outside world; the
parser is the real one (the ✏️ answer "10:30" must be understood as a time on the order's day).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.parsing import ParseActivities
from autodispatch import texts
from schemas.calendar import ConflictingEvent
from schemas.driver import DriverSettings
from schemas.lifecycle import OrderAction, OrderLifecycleInput
from schemas.order import ParsedOrder
from schemas.telegram import DriverAnswer
from tests.test_workflows import DRIVER, MSK, Fakes
from workers.worker import WORKFLOWS
from workflows.order import OrderWorkflow, merge_change

ORDER = ParsedOrder(
    pickup_address="Шереметьево",
    dropoff_address="Химки",
    price_amount=3000,
    price_currency="RUB",
    client_name="Анна",
    client_phone="+79161234567",
    flight_number="SU123",
    is_order=True,
)


def worker(env: WorkflowEnvironment, task_queue: str, fakes: Fakes) -> Worker:
    acts = [a for a in fakes.activities() if a.__name__ != "parse_order"] + [ParseActivities().parse_order]
    return Worker(
        env.client, task_queue=task_queue, workflows=list(WORKFLOWS), activities=acts,
        workflow_failure_exception_types=[Exception],
    )  # fmt: skip


async def start(
    env: WorkflowEnvironment, task_queue: str, pickup_in: timedelta, lead: int = 60
) -> tuple[WorkflowHandle, datetime]:
    now = await env.get_current_time()
    pickup = (now + pickup_in).replace(second=0, microsecond=0).astimezone(ZoneInfo(MSK))
    driver = DRIVER.model_copy(update={"settings": DriverSettings(reminder_lead_minutes=lead)})
    order_id = uuid.uuid4().hex
    handle = await env.client.start_workflow(
        OrderWorkflow.run,
        OrderLifecycleInput(
            driver=driver,
            order_id=order_id,
            order=ORDER.model_copy(update={"pickup_at": pickup}),
            event_id=order_id,
            card_message_id=500,
            source_message_id=400,
            touched_at=now,
        ),  # fmt: skip
        id=f"order-{order_id}",
        task_queue=task_queue,
    )
    return handle, pickup


async def end(handle: WorkflowHandle) -> None:
    try:
        await handle.terminate("test over")
    except RPCError:
        pass  # it already finished: time skipped past its pickup


def reminders(fakes: Fakes) -> list[str]:
    return [r.text for r in fakes.replies if r.step.startswith("reminder-")]


async def test_reminder_fires_lead_minutes_before_pickup_with_route_phone_and_flight(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    async with worker(time_skipping_env, task_queue, fakes):
        handle, pickup = await start(time_skipping_env, task_queue, timedelta(hours=3), lead=60)
        await time_skipping_env.sleep(timedelta(hours=1, minutes=50))
        assert reminders(fakes) == []
        await time_skipping_env.sleep(timedelta(minutes=15))
        (text,) = reminders(fakes)
        assert "60" in text and "Шереметьево → Химки" in text and "+79161234567" in text and "SU123" in text
        assert f"{pickup:%H:%M}" in text
        assert fakes.replies[-1].reply_to_message_id == 500  # under the order's card
        state = await handle.query(OrderWorkflow.order_state)
        assert state.reminded_for == pickup and state.reminder_at is None
        await time_skipping_env.sleep(timedelta(hours=7))  # past the pickup: the workflow is done
        assert await handle.result() == "in_calendar"
    assert len(reminders(fakes)) == 1
    assert [a.action for a in fakes.audit if a.action == "reminder_sent"] == ["reminder_sent"]


async def test_reminder_moves_with_the_order_and_vanishes_when_it_is_cancelled(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    async with worker(time_skipping_env, task_queue, fakes):
        handle, pickup = await start(time_skipping_env, task_queue, timedelta(hours=3), lead=60)
        later = pickup + timedelta(hours=2)
        await handle.signal(
            OrderWorkflow.order_action,
            OrderAction(action="change", order=ParsedOrder(pickup_at=later, date_stated=True), source="reply",
                        message_id=601),
        )  # fmt: skip
        await time_skipping_env.sleep(timedelta(hours=2, minutes=10))  # the old reminder time passes
        assert reminders(fakes) == []
        assert fakes.updates[-1].order.pickup_at == later
        state = await handle.query(OrderWorkflow.order_state)
        assert state.reminder_at == later - timedelta(hours=1)
        await time_skipping_env.sleep(timedelta(hours=2))
        (text,) = reminders(fakes)
        assert f"{later:%H:%M}" in text
        # A second order: cancelled before its reminder, which then never comes.
        handle2, _ = await start(time_skipping_env, task_queue, timedelta(hours=3), lead=60)
        await handle2.signal(
            OrderWorkflow.order_action, OrderAction(action="cancel", source="reply", message_id=7)
        )
        assert await handle2.result() == "cancelled"
        await time_skipping_env.sleep(timedelta(hours=4))
    assert len(reminders(fakes)) == 1
    assert fakes.cancelled == [handle2.id.removeprefix("order-")]
    assert any("отменён" in r.text for r in fakes.replies if r.reply_to_message_id == 7)
    await end(handle)


async def test_confirm_and_cancel_buttons_edit_the_card_in_place(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    async with worker(time_skipping_env, task_queue, fakes):
        handle, _ = await start(time_skipping_env, task_queue, timedelta(days=1))
        await handle.signal(OrderWorkflow.order_action, OrderAction(action="confirm", callback_query_id="q1"))
        await handle.signal(OrderWorkflow.order_action, OrderAction(action="cancel", callback_query_id="q2"))
        assert await handle.result() == "cancelled"
    assert [e.message_id for e in fakes.edits] == [500, 500]  # the card, edited, never re-sent
    confirmed, cancelled = fakes.edits
    assert "Подтверждён" in confirmed.text
    assert [b["callback_data"].split(":")[0] for b in confirmed.buttons[0]] == ["edit", "cancel"]
    assert "отменён" in cancelled.text and cancelled.buttons is None
    assert [a.callback_query_id for a in fakes.answers] == ["q1", "q2"]
    assert fakes.replies == []  # button presses answer on the card, not with new messages
    actions = [a.action for a in fakes.audit]
    assert "order_confirmed" in actions and "order_cancelled" in actions


async def test_edit_a_field_asks_then_applies_the_answer_on_the_orders_day(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    async with worker(time_skipping_env, task_queue, fakes):
        handle, pickup = await start(time_skipping_env, task_queue, timedelta(days=2))
        await handle.signal(OrderWorkflow.order_action, OrderAction(action="edit", callback_query_id="q1"))
        await handle.signal(
            OrderWorkflow.order_action, OrderAction(action="field", field="pickup_at", callback_query_id="q2")
        )
        async with asyncio.timeout(30):
            while not fakes.questions:
                await time_skipping_env.sleep(1)
        assert fakes.questions[DRIVER.chat_id] == handle.id  # the chat's next message is the answer
        assert "Время" in fakes.replies[-1].text
        await handle.signal(OrderWorkflow.driver_answer, DriverAnswer(text="10:30", message_id=777))
        async with asyncio.timeout(30):
            while not fakes.updates:
                await time_skipping_env.sleep(1)
        moved = fakes.updates[-1].order.pickup_at
        assert moved is not None and moved.date() == pickup.date() and (moved.hour, moved.minute) == (10, 30)
        assert DRIVER.chat_id not in fakes.questions
        assert "10:30" in fakes.edits[-1].text and "Изменён" in fakes.edits[-1].text
        # "отмена" instead of a value keeps the order as it is.
        await handle.signal(
            OrderWorkflow.order_action,
            OrderAction(action="field", field="price_amount", callback_query_id="q3"),
        )
        await handle.signal(OrderWorkflow.driver_answer, DriverAnswer(text="отмена", message_id=778))
        async with asyncio.timeout(30):
            while not any(r.reply_to_message_id == 778 for r in fakes.replies):
                await time_skipping_env.sleep(1)
        assert len(fakes.updates) == 1
        await end(handle)
    edit_menu = fakes.edits[0].buttons
    assert edit_menu and edit_menu[-1][0]["callback_data"].startswith("back:")


async def test_an_unanswered_edit_closes_after_an_hour(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    async with worker(time_skipping_env, task_queue, fakes):
        handle, _ = await start(time_skipping_env, task_queue, timedelta(days=2))
        await handle.signal(OrderWorkflow.order_action, OrderAction(action="field", field="client_phone"))
        await time_skipping_env.sleep(timedelta(minutes=61))
        assert DRIVER.chat_id not in fakes.questions
        assert "Не дождался" in fakes.replies[-1].text
        state = await handle.query(OrderWorkflow.order_state)
        assert state.editing_field is None and state.status == "in_calendar"
        await end(handle)


def test_a_time_without_a_day_keeps_the_orders_day() -> None:
    old = ORDER.model_copy(update={"pickup_at": datetime(2026, 11, 23, 14, 0, tzinfo=ZoneInfo(MSK))})
    today_1030 = datetime(2026, 11, 21, 10, 30, tzinfo=ZoneInfo(MSK))
    moved = merge_change(old, ParsedOrder(pickup_at=today_1030), replace_day=False)
    assert moved.pickup_at == datetime(2026, 11, 23, 10, 30, tzinfo=ZoneInfo(MSK))
    dated = merge_change(old, ParsedOrder(pickup_at=today_1030, date_stated=True), replace_day=False)
    assert dated.pickup_at == today_1030
    priced = merge_change(old, ParsedOrder(price_amount=3500), replace_day=False)
    assert priced.price_amount == 3500 and priced.price_currency == "RUB" and priced.client_name == "Анна"


def test_the_card_shows_what_the_order_overlaps() -> None:
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    ours = ConflictingEvent(event_id="a", summary="14:00 Шереметьево → Химки", start=at - timedelta(hours=1))
    foreign = ConflictingEvent(event_id="b", summary="Стоматолог", start=at)
    card = texts.order_card(
        ORDER.model_copy(update={"pickup_at": at}), MSK, "ru", None, conflicts=[ours, foreign]
    )
    assert "⚠️ Пересекается: 14:00 Шереметьево → Химки" in card
    assert "⚠️ Пересекается: 15:00 Стоматолог" in card
    en = texts.order_card(ORDER.model_copy(update={"pickup_at": at}), MSK, "en", None, conflicts=[ours])
    assert "⚠️ overlaps 14:00 Шереметьево → Химки" in en


def test_every_text_exists_in_both_languages() -> None:
    assert set(texts.TEXTS["ru"]) == set(texts.TEXTS["en"])
    for lang in ("ru", "en"):
        assert all(value.strip() for value in texts.TEXTS[lang].values())
