"""MainWorkflow and Calendar2AutoWorkflow on the time-skipping server, with fake activities registered
under the real activity names (the workflow code is the real one)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from schemas.audit import AuditEntry
from schemas.calendar import CalendarEvent, CancelEventInput, CreateEventInput, UpdateEventInput
from schemas.driver import Driver, DriverLookup, LookupDriverInput
from schemas.lifecycle import StartOrderWorkflowInput, order_workflow_id
from schemas.oauth import (
    ConnectLink,
    ConnectLinkInput,
    DisconnectGrantInput,
    DisconnectGrantResult,
    PauseOrderInput,
)
from schemas.onboarding import RouteMessageInput, RouteResult
from schemas.order import OrderChunk, ParsedMessage, ParsedOrder
from schemas.store import (
    AuthorizeOrderInput,
    FindOrderInput,
    FinishStepInput,
    FoundOrders,
    OrderRef,
    OrderStatusInput,
    ParseOrderInput,
    QuestionInput,
)
from schemas.telegram import (
    AnswerCallbackInput,
    DriverAnswer,
    EditCardInput,
    ReplySent,
    SendReplyInput,
    TelegramUpdateReceived,
)
from workers.worker import WORKFLOWS
from workflows.main import MainWorkflow

MSK = "Europe/Moscow"
DRIVER = Driver(
    tenant_id="acme", chat_id=42, driver_name="Ivan", calendar_id="ivan@example.com", time_zone=MSK
)
FULL = ParsedOrder(
    pickup_at=datetime(2026, 11, 22, 9, 30, tzinfo=UTC),
    pickup_address="Внуково",
    dropoff_address="Тверская 7",
    price_amount=2500,
    price_currency="RUB",
    is_order=True,
)
NO_TIME = FULL.model_copy(update={"pickup_at": None})


@dataclass
class Fakes:
    """Fake activities with the real names; they record what the workflow asked of the outside world."""

    drivers: dict[int, Driver] = field(default_factory=lambda: {DRIVER.chat_id: DRIVER})
    parses: dict[str, ParsedOrder] = field(default_factory=dict)
    questions: dict[int, str] = field(default_factory=dict)
    replies: list[SendReplyInput] = field(default_factory=list)
    events: list[CreateEventInput] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    calendar_failures: list[ApplicationError] = field(default_factory=list)
    orders: dict[str, OrderRef] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    answers: list[AnswerCallbackInput] = field(default_factory=list)
    edits: list[EditCardInput] = field(default_factory=list)
    updates: list[UpdateEventInput] = field(default_factory=list)
    order_workflows: list[StartOrderWorkflowInput] = field(default_factory=list)
    paused: list[PauseOrderInput] = field(default_factory=list)
    # What Google's revoke says to /disconnect: a result, or a failure to raise.
    disconnect: DisconnectGrantResult | ApplicationError = field(default_factory=DisconnectGrantResult)
    disconnected: list[DisconnectGrantInput] = field(default_factory=list)

    def activities(self) -> list:
        @activity.defn(name="lookup_driver")
        async def lookup_driver(req: LookupDriverInput) -> DriverLookup:
            return DriverLookup(
                driver=self.drivers.get(req.chat_id),
                pending_question_workflow_id=self.questions.get(req.chat_id),
            )

        @activity.defn(name="parse_order")
        async def parse_order(req: ParseOrderInput) -> ParsedOrder:
            # The answer to a question is appended on a new line: the last line decides the fix-up.
            for key, parsed in sorted(self.parses.items(), key=lambda kv: -len(kv[0])):
                if req.text.endswith(key):
                    return parsed
            return ParsedOrder(is_order=False)

        @activity.defn(name="finish_step")
        async def finish_step(req: FinishStepInput) -> int:
            self.audit.extend(req.audit)
            return len(req.audit)

        @activity.defn(name="set_open_question")
        async def set_open_question(req: QuestionInput) -> None:
            if req.open:
                self.questions[req.chat_id] = req.workflow_id
            elif self.questions.get(req.chat_id) == req.workflow_id:
                del self.questions[req.chat_id]

        @activity.defn(name="send_reply")
        async def send_reply(req: SendReplyInput) -> ReplySent:
            self.replies.append(req)
            return ReplySent(message_id=1000 + len(self.replies))

        @activity.defn(name="create_event")
        async def create_event(req: CreateEventInput) -> CalendarEvent:
            if self.calendar_failures:
                raise self.calendar_failures.pop(0)
            self.events.append(req)
            return CalendarEvent(event_id=req.event_id, html_link=f"https://calendar.test/{req.event_id}")

        @activity.defn(name="authorize_order")
        async def authorize_order(req: AuthorizeOrderInput) -> OrderRef:
            order = self.orders.get(req.order_id)
            if order is None or order.chat_id != req.chat_id:
                raise ApplicationError("not yours", type="OrderForbidden", non_retryable=True)
            return order

        @activity.defn(name="set_order_status")
        async def set_order_status(req: OrderStatusInput) -> None:
            self.orders[req.order_id] = self.orders[req.order_id].model_copy(update={"status": req.status})

        @activity.defn(name="cancel_event")
        async def cancel_event(req: CancelEventInput) -> bool:
            self.cancelled.append(req.event_id)
            return True

        @activity.defn(name="answer_callback")
        async def answer_callback(req: AnswerCallbackInput) -> None:
            self.answers.append(req)

        @activity.defn(name="edit_card")
        async def edit_card(req: EditCardInput) -> None:
            self.edits.append(req)

        @activity.defn(name="parse_with_llm")
        async def parse_with_llm(req: ParseOrderInput) -> ParsedOrder | None:
            return None  # the optional LLM fallback, off

        @activity.defn(name="onboarding_route_message")
        async def onboarding_route_message(req: RouteMessageInput) -> RouteResult:
            return RouteResult()  # no onboarding dialogue runs (tests/test_onboarding.py covers it)

        @activity.defn(name="parse_message")
        async def parse_message(req: ParseOrderInput) -> ParsedMessage:
            chunks = [
                OrderChunk(text=t, order=self.parses[t]) for t in req.text.split("\n\n") if t in self.parses
            ]
            return ParsedMessage(order=await parse_order(req), orders=chunks if len(chunks) > 1 else [])

        @activity.defn(name="find_orders")
        async def find_orders(req: FindOrderInput) -> FoundOrders:
            mine = [o for o in self.orders.values() if o.chat_id == req.chat_id and o.status != "cancelled"]
            by_card = [o for o in mine if req.card_message_id and o.card_message_id == req.card_message_id]
            return FoundOrders(orders=by_card, matched_by="card") if by_card else FoundOrders()

        @activity.defn(name="start_order_workflow")
        async def start_order_workflow(req: StartOrderWorkflowInput) -> str:
            self.order_workflows.append(req)  # OrderWorkflow itself is tested on its own
            return order_workflow_id(req.order.order_id)

        @activity.defn(name="update_event")
        async def update_event(req: UpdateEventInput) -> CalendarEvent:
            self.updates.append(req)
            return CalendarEvent(event_id=req.event_id, created=False)

        @activity.defn(name="create_connect_link")
        async def create_connect_link(req: ConnectLinkInput) -> ConnectLink:
            return ConnectLink(url=f"https://accounts.test/auth?chat={req.chat_id}", nonce="nonce-1")

        @activity.defn(name="pause_order")
        async def pause_order(req: PauseOrderInput) -> None:
            self.paused.append(req)

        @activity.defn(name="disconnect_grant")
        async def disconnect_grant(req: DisconnectGrantInput) -> DisconnectGrantResult:
            self.disconnected.append(req)
            if isinstance(self.disconnect, ApplicationError):
                raise self.disconnect
            return self.disconnect

        return [
            lookup_driver,
            parse_order,
            finish_step,
            set_open_question,
            send_reply,
            create_event,
            parse_with_llm,
            authorize_order,
            set_order_status,
            cancel_event,
            answer_callback,
            edit_card,
            parse_message,
            find_orders,
            update_event,
            start_order_workflow,
            create_connect_link,
            pause_order,
            disconnect_grant,
            onboarding_route_message,
        ]


def update(text: str, chat_id: int = DRIVER.chat_id, kind: str = "text") -> TelegramUpdateReceived:
    n = uuid.uuid4().int % 10**9
    return TelegramUpdateReceived(
        bot_id=1, update_id=n, chat_id=chat_id, message_id=n % 10**6, text=text, kind=kind,
        received_at=datetime(2026, 11, 21, 7, 0, tzinfo=UTC),
    )  # fmt: skip


def worker(client: Client, task_queue: str, fakes: Fakes) -> Worker:
    # Any exception in workflow code fails the workflow instead of retrying its task forever (a hang).
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=fakes.activities(),
        workflow_failure_exception_types=[Exception],
    )


async def run_main(env: WorkflowEnvironment, task_queue: str, upd: TelegramUpdateReceived):
    return await env.client.execute_workflow(
        MainWorkflow.run, upd, id=f"wf-{uuid.uuid4()}", task_queue=task_queue
    )


async def test_order_becomes_event_reply_and_audit(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"order": FULL})
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("order"))
    assert result.outcome == "event_created"
    assert len(fakes.events) == 1 and fakes.events[0].calendar_id == DRIVER.calendar_id
    assert fakes.events[0].event_id == result.order_id and len(result.order_id) == 32
    assert len(fakes.replies) == 1
    reply = fakes.replies[0]
    assert reply.tenant_id == "acme" and reply.step == "reply"
    assert "12:30" in reply.text and "Внуково → Тверская 7" in reply.text and "2 500 ₽" in reply.text
    assert result.html_link and result.html_link in reply.text
    steps = [a.step for a in fakes.audit]
    assert steps == ["received", "whitelist", "parsed", "calendar", "reply", "outcome"]
    assert {a.tenant_id for a in fakes.audit} == {"acme"}


async def test_unknown_chat_is_refused_with_its_chat_id(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"order": FULL})
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("order", chat_id=777))
    assert result.outcome == "unknown_chat"
    assert fakes.events == []
    assert len(fakes.replies) == 1 and "777" in fakes.replies[0].text
    assert {a.tenant_id for a in fakes.audit} == {"system"}
    assert fakes.audit[-1].action == "unknown_chat"


@pytest.mark.parametrize(("status", "needle"), [("disabled", "отключён"), ("pending", "ожидает")])
async def test_inactive_driver_gets_a_clear_refusal(
    time_skipping_env: WorkflowEnvironment, task_queue: str, status: str, needle: str
) -> None:
    fakes = Fakes(parses={"order": FULL})
    fakes.drivers[DRIVER.chat_id] = DRIVER.model_copy(update={"status": status})
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("order"))
    assert result.outcome == "driver_disabled" and fakes.events == []
    assert needle in fakes.replies[0].text


async def test_chatter_gets_help_not_an_event(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("Ок, спасибо"))
    assert result.outcome == "not_an_order" and fakes.events == []
    assert "Перешлите мне текст заказа" in fakes.replies[0].text


async def test_sticker_gets_send_text(time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("", kind="unsupported"))
    assert result.outcome == "unsupported_message"
    assert "только текст" in fakes.replies[0].text


async def test_missing_time_asks_and_waits_for_the_answer(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"no time": NO_TIME, "завтра 9:30": FULL})
    async with worker(time_skipping_env.client, task_queue, fakes):
        upd = update("Внуково → Тверская 7 no time")
        handle = await time_skipping_env.client.start_workflow(
            MainWorkflow.run, upd, id=f"wf-{uuid.uuid4()}", task_queue=task_queue
        )
        # Let it reach the question; a signal before that would also be kept (buffered).
        async with asyncio.timeout(30):
            while not fakes.replies:
                await time_skipping_env.sleep(1)
        assert fakes.replies[0].step == "ask-1" and "время" in fakes.replies[0].text
        assert fakes.questions[DRIVER.chat_id] == handle.id
        await time_skipping_env.sleep(timedelta(hours=3))  # the driver answers hours later
        await handle.signal(MainWorkflow.driver_answer, DriverAnswer(text="завтра 9:30"))
        result = await handle.result()
    assert result.outcome == "event_created"
    assert len(fakes.events) == 1 and fakes.events[0].original_text.endswith("\nзавтра 9:30")
    assert DRIVER.chat_id not in fakes.questions


async def test_unanswered_question_gives_up_after_a_day(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"no time": NO_TIME})
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("Внуково → Тверская 7 no time"))
    assert result.outcome == "no_answer" and fakes.events == []
    assert "Не дождался ответа" in fakes.replies[-1].text
    assert DRIVER.chat_id not in fakes.questions


async def test_driver_can_cancel_instead_of_answering(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"no time": NO_TIME})
    async with worker(time_skipping_env.client, task_queue, fakes):
        handle = await time_skipping_env.client.start_workflow(
            MainWorkflow.run,
            update("Внуково → Тверская 7 no time"),
            id=f"wf-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        await handle.signal(MainWorkflow.driver_answer, DriverAnswer(text="Отмена"))
        result = await handle.result()
    assert result.outcome == "cancelled_by_driver" and fakes.events == []
    assert "отменён" in fakes.replies[-1].text


async def test_next_message_answers_the_open_question(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """The answer arrives as a new Telegram update: its flow hands it to the asking flow."""
    fakes = Fakes(
        parses={"no time": NO_TIME, "завтра 9:30": NO_TIME.model_copy(update={"pickup_address": None})}
    )
    fakes.parses["\nзавтра 9:30"] = FULL  # the merged text parses completely
    async with worker(time_skipping_env.client, task_queue, fakes):
        first = await time_skipping_env.client.start_workflow(
            MainWorkflow.run,
            update("Внуково → Тверская 7 no time"),
            id=f"wf-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        async with asyncio.timeout(30):
            while DRIVER.chat_id not in fakes.questions:
                await time_skipping_env.sleep(1)
        second = await run_main(time_skipping_env, task_queue, update("завтра 9:30"))
        assert second.outcome == "answer_forwarded"
        result = await first.result()
    assert result.outcome == "event_created" and len(fakes.events) == 1


async def test_calendar_not_shared_tells_the_driver_and_completes(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"order": FULL})
    fakes.calendar_failures.append(ApplicationError("not found", type="CalendarNotFound", non_retryable=True))
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("order"))
    assert result.outcome == "calendar_failed" and fakes.events == []
    assert (
        "не найден или не открыт" in fakes.replies[-1].text and DRIVER.calendar_id in fakes.replies[-1].text
    )
    failed = [a for a in fakes.audit if a.action == "calendar_failed" and a.step == "calendar"]
    assert failed and failed[0].details["error"] == "CalendarNotFound"


async def test_transient_calendar_errors_are_retried(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"order": FULL})
    fakes.calendar_failures += [ApplicationError("503", type="CalendarUnavailable")] * 3
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("order"))
    assert result.outcome == "event_created"
    assert len(fakes.events) == 1 and fakes.calendar_failures == []


def press(data: str, chat_id: int = DRIVER.chat_id) -> TelegramUpdateReceived:
    return update("✅ Заказ в календаре", chat_id=chat_id, kind="callback").model_copy(
        update={"callback_data": data, "callback_query_id": "cq-1"}
    )


async def test_cancel_button_cancels_own_order(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    fakes.orders["o1"] = OrderRef(
        tenant_id="acme",
        order_id="o1",
        chat_id=DRIVER.chat_id,
        status="in_calendar",
        calendar_id="c",
        event_id="o1",
    )
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, press("cancel:o1"))
    assert result.outcome == "order_cancelled"
    assert fakes.cancelled == ["o1"] and fakes.orders["o1"].status == "cancelled"
    assert fakes.answers[0].text == "Заказ отменён" and "Заказ отменён" in fakes.edits[0].text
    assert fakes.edits[0].buttons is None and fakes.replies == []


async def test_button_for_someone_elses_order_is_denied(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    fakes.orders["o2"] = OrderRef(
        tenant_id="other", order_id="o2", chat_id=99, status="in_calendar", calendar_id="c", event_id="o2"
    )
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, press("cancel:o2"))
        stale = await run_main(time_skipping_env, task_queue, press("confirm-v0:whatever"))
    assert result.outcome == "callback_denied" and fakes.cancelled == []
    assert fakes.answers[0].show_alert and "не ваш" in fakes.answers[0].text
    assert stale.outcome == "button_unknown"
