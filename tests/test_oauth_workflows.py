"""MainWorkflow's OAuth steps (#6 phase 4) on the time-skipping server with the shared fake activities:
/connect answers with one URL button, and a revoked grant pauses the order (kept whole) instead of
failing it."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from schemas.oauth import DisconnectGrantResult
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


async def test_disconnect_says_what_happened_to_the_grant(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """/disconnect: revoked (and where orders go now), nothing to disconnect, or Google did not answer."""
    cases = [
        (DisconnectGrantResult(had_grant=True, google="revoked"), "🔌", "oauth_disconnected"),
        (DisconnectGrantResult(had_grant=False), "отключать нечего", "oauth_not_connected"),
        (DisconnectGrantResult(configured=False), "не настроено", "oauth_not_configured"),
        (ApplicationError("revoke endpoint down", type="GoogleUnavailable", non_retryable=True),
         "/disconnect ещё раз", "oauth_disconnect_failed"),
    ]  # fmt: skip
    for outcome, says, action in cases:
        fakes = Fakes(disconnect=outcome)
        async with worker(time_skipping_env.client, task_queue, fakes):
            result = await run_main(time_skipping_env, task_queue, update("/disconnect", kind="command"))
        assert result.outcome == "command"
        assert [(d.tenant_id, d.chat_id) for d in fakes.disconnected] == [(DRIVER.tenant_id, DRIVER.chat_id)]
        (reply,) = fakes.replies
        assert says in reply.text, reply.text
        if action == "oauth_disconnected":
            assert DRIVER.calendar_id in reply.text and "/connect" in reply.text
        assert action in [a.action for a in fakes.audit]
