"""The optional LLM fallback: the activity against a local OpenAI-compatible endpoint, and the
main flow filling only what the rules could not resolve."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.llm import LlmActivities
from emulators.llm import LlmEmulator
from schemas.order import ParsedOrder
from schemas.store import ParseOrderInput
from tests.test_workflows import FULL, NO_TIME, Fakes, update
from workers.worker import WORKFLOWS
from workflows.main import MainWorkflow

REQ = ParseOrderInput(
    text="к рейсу утром Внуково → Тверская 7", now=datetime(2026, 11, 21, 7, tzinfo=UTC), tz="Europe/Moscow"
)


@pytest_asyncio.fixture
async def llm() -> AsyncIterator[LlmEmulator]:
    emu = LlmEmulator(api_key="sk-test")
    await emu.start()
    yield emu
    await emu.stop()


async def test_off_by_default_asks_nothing() -> None:
    assert await ActivityEnvironment().run(LlmActivities(None).parse_with_llm, REQ) is None


async def test_answer_is_validated_by_the_parser_schema(llm: LlmEmulator) -> None:
    llm.answer_when(
        "Тверская", {"pickup_at": "2026-11-22T06:30:00", "pickup_address": "Внуково", "is_order": True}
    )
    acts = LlmActivities(llm.base_url, "sk-test", "test-model")
    got = await ActivityEnvironment().run(acts.parse_with_llm, REQ)
    assert got is not None and got.pickup_address == "Внуково"
    # A naive time from the model is read in the driver's zone.
    assert got.pickup_at is not None and got.pickup_at.isoformat() == "2026-11-22T06:30:00+03:00"
    sent = llm.requests[-1]
    assert sent["model"] == "test-model" and "Europe/Moscow" in sent["messages"][-1]["content"]


async def test_unusable_answers_are_ignored(llm: LlmEmulator) -> None:
    acts = LlmActivities(llm.base_url, "sk-test")
    llm.answer_when("Тверская", "this is not json")
    assert await ActivityEnvironment().run(acts.parse_with_llm, REQ) is None
    llm.rules.clear()
    llm.answer_when("Тверская", {"pickup_at": "tomorrow-ish", "is_order": True})
    assert await ActivityEnvironment().run(acts.parse_with_llm, REQ) is None


async def test_a_wrong_key_is_permanent_and_an_outage_is_retryable(llm: LlmEmulator) -> None:
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(LlmActivities(llm.base_url, "sk-wrong").parse_with_llm, REQ)
    assert err.value.type == "LlmRejected" and err.value.non_retryable
    llm.fail_next.append(503)
    with pytest.raises(Exception) as outage:
        await ActivityEnvironment().run(LlmActivities(llm.base_url, "sk-test").parse_with_llm, REQ)
    assert not isinstance(outage.value, ApplicationError)  # plain error: the retry policy applies


async def test_main_flow_fills_only_the_gaps_from_the_llm(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"no time": NO_TIME.model_copy(update={"price_amount": 999.0})})
    asked: list[ParseOrderInput] = []

    @activity.defn(name="parse_with_llm")
    async def parse_with_llm(req: ParseOrderInput) -> ParsedOrder | None:
        asked.append(req)
        # The model also claims another price: rule-found values must win.
        return FULL.model_copy(update={"price_amount": 1.0})

    acts = [a for a in fakes.activities() if a.__name__ != "parse_with_llm"] + [parse_with_llm]
    async with Worker(
        time_skipping_env.client, task_queue=task_queue, workflows=list(WORKFLOWS), activities=acts
    ):
        result = await time_skipping_env.client.execute_workflow(
            MainWorkflow.run,
            update("Внуково → Тверская 7 no time"),
            id=f"wf-{uuid.uuid4()}",
            task_queue=task_queue,
        )
    assert result.outcome == "event_created" and len(asked) == 1
    (event,) = fakes.events
    assert event.order.pickup_at == FULL.pickup_at and event.order.price_amount == 999.0
    assert [a.details["fields"] for a in fakes.audit if a.action == "llm_filled"] == [["pickup_at"]]


async def test_without_the_llm_the_driver_is_asked(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"no time": NO_TIME})

    @activity.defn(name="parse_with_llm")
    async def parse_with_llm(req: ParseOrderInput) -> ParsedOrder | None:
        return None  # the fallback is off

    async with Worker(
        time_skipping_env.client, task_queue=task_queue, workflows=list(WORKFLOWS),
        activities=[*(a for a in fakes.activities() if a.__name__ != "parse_with_llm"), parse_with_llm],
    ):  # fmt: skip
        handle = await time_skipping_env.client.start_workflow(
            MainWorkflow.run,
            update("Внуково → Тверская 7 no time"),
            id=f"wf-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        async with asyncio.timeout(30):
            while not fakes.replies:
                await time_skipping_env.sleep(1)
        assert fakes.replies[0].step == "ask-1"
        await handle.terminate("test done")
