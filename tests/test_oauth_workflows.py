"""MainWorkflow's OAuth steps (#6 phase 4) on the time-skipping server with the shared fake activities:
/connect answers with one URL button, and a revoked grant pauses the order (kept whole) instead of
failing it."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from tests.test_workflows import DRIVER, FULL, Fakes, run_main, update, worker


async def test_connect_replies_with_one_url_button(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("/connect", kind="command"))
    assert result.outcome == "command"
    (reply,) = fakes.replies
    assert reply.buttons == [
        [
            {
                "text": "🔗 Подключить Google Календарь",
                "url": f"https://accounts.test/auth?chat={DRIVER.chat_id}",
            }
        ]
    ]
    assert "10 минут" in reply.text
    sent = [a for a in fakes.audit if a.action == "connect_link_sent"]
    assert sent and sent[0].details["nonce"] == "nonce-1"


async def test_a_revoked_grant_pauses_the_order_and_asks_to_reconnect(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes(parses={"order": FULL})
    fakes.calendar_failures.append(
        ApplicationError("invalid_grant", type="CalendarGrantRevoked", non_retryable=True)
    )
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, update("order"))
    assert result.outcome == "calendar_paused" and fakes.events == []
    (paused,) = fakes.paused
    assert paused.order_id == result.order_id and paused.calendar.order == FULL
    assert paused.calendar.calendar_id == DRIVER.calendar_id and paused.calendar.order_id == result.order_id
    assert "/connect" in fakes.replies[-1].text
    actions = [a.action for a in fakes.audit]
    assert "calendar_paused" in actions and "calendar_failed" not in actions
