"""A message the parser cannot finish in time stops in a child process and gets a clear answer."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.parsing import ParseActivities, ParserProcess, read_message
from schemas.order import PARSE_TIMEOUT_ERROR, ParsedMessage
from schemas.store import ParseOrderInput
from tests.test_workflows import FULL, Fakes, run_main, update
from workers.worker import WORKFLOWS

ORDER = "завтра 9:30 Внуково → Тверская 7, 2500₽, Иван +7 916 123-45-67"


def request(text: str) -> ParseOrderInput:
    return ParseOrderInput(text=text, now=datetime(2026, 11, 21, 7, 0, tzinfo=UTC), tz="Europe/Moscow")


def long_message(blocks: int = 40) -> str:
    return "\n\n".join(
        f"{10 + i % 12}:{i % 6}0 Внуково → Тверская {i + 1}, {1000 + i}₽" for i in range(blocks)
    )


async def test_a_long_message_parses_in_the_child_process_exactly_as_inline() -> None:
    text = long_message()
    assert len(text) > 600
    parse = ParseActivities(ParserProcess(time_limit=60))
    try:
        in_child: ParsedMessage = await ActivityEnvironment().run(parse.parse_message, request(text))
    finally:
        parse.long_texts.close()
    assert in_child == read_message(request(text))
    assert in_child.order.is_order


async def test_a_parse_over_its_limit_is_stopped_and_the_next_one_works() -> None:
    parse = ParseActivities(ParserProcess(time_limit=0.001), inline_limit=0)
    try:
        with pytest.raises(ApplicationError) as raised:
            await ActivityEnvironment().run(parse.parse_message, request(long_message(200)))
        assert raised.value.type == PARSE_TIMEOUT_ERROR and raised.value.non_retryable
        parse.long_texts.time_limit = 60
        started = time.monotonic()
        short = await ActivityEnvironment().run(parse.parse_order, request(ORDER))
    finally:
        parse.long_texts.close()
    assert short.is_order and short.pickup_address == "Внуково"
    assert time.monotonic() - started < 60


async def test_an_unreadable_message_gets_its_answer_and_an_audit_row(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"order": FULL})
    activities = [
        a for a in fakes.activities() if activity._Definition.must_from_callable(a).name != "parse_message"
    ]

    @activity.defn(name="parse_message")
    async def parse_message(req: ParseOrderInput) -> ParsedMessage:
        raise ApplicationError("parsing took longer than 3.0s", type=PARSE_TIMEOUT_ERROR, non_retryable=True)

    async with Worker(
        time_skipping_env.client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[*activities, parse_message],
        workflow_failure_exception_types=[Exception],
    ):
        result = await run_main(time_skipping_env, task_queue, update(f"order {uuid.uuid4()}"))
    assert result.outcome == "parse_failed" and fakes.events == []
    assert len(fakes.replies) == 1 and "Не получилось прочитать этот заказ" in fakes.replies[0].text
    failed = [a for a in fakes.audit if a.step == "parse"]
    assert len(failed) == 1 and failed[0].action == "parse_failed" and failed[0].outcome == "error"
    assert failed[0].details["error"] == PARSE_TIMEOUT_ERROR
    assert (fakes.audit[-1].step, fakes.audit[-1].action) == ("outcome", "parse_failed")
