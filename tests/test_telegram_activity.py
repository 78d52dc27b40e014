"""The Telegram send activity: outbox exactly-once, error classification, and the send pacer."""

from __future__ import annotations

import uuid

import pytest
from aiogram import Bot
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.telegram import SendPacer, TelegramActivities
from bot.dispatcher import make_bot
from schemas.telegram import SendReplyInput
from tests.conftest import Outside, Postgres, add_driver, new_bot_token


def test_pacer_spaces_the_bots_sends_and_each_chats() -> None:
    pacer = SendPacer(per_second=5, per_chat_interval=1.0)
    slots = [pacer.reserve(chat_id=i, now=0.0) for i in range(10)]
    # Ten different chats at once: spaced so no one-second window holds more than five.
    assert all(sum(1 for s in slots if t <= s < t + 1.0) <= 5 for t in slots)
    again = pacer.reserve(chat_id=0, now=0.0)
    assert again >= slots[0] + 1.0  # the same chat waits its second
    free = SendPacer()
    assert [free.reserve(chat_id=1, now=3.0) for _ in range(3)] == [3.0, 3.0, 3.0]


async def _bot(outside: Outside) -> Bot:
    return make_bot(new_bot_token(), outside.telegram.base_url)


async def test_reply_goes_out_once_per_step(postgres: Postgres, outside: Outside) -> None:
    bot = await _bot(outside)
    driver = await add_driver(postgres.pool, "c@example.com")
    outside.telegram.add_chat(bot.token, driver.chat_id)
    acts = TelegramActivities(bot, postgres.pool)
    req = SendReplyInput(
        tenant_id=driver.tenant_id,
        workflow_id=f"wf-{uuid.uuid4()}",
        step="reply",
        chat_id=driver.chat_id,
        text="hi",
    )
    env = ActivityEnvironment()
    first = await env.run(acts.send_reply, req)
    second = await env.run(acts.send_reply, req)  # a retry, a worker restart, an operator's reset
    assert not first.already_sent and second.already_sent and second.message_id == first.message_id
    assert [m["text"] for m in outside.telegram.sent(bot.token, driver.chat_id)] == ["hi"]
    long = await env.run(acts.send_reply, req.model_copy(update={"step": "long", "text": "x" * 5000}))
    assert long.message_id and len(outside.telegram.sent(bot.token, driver.chat_id)[-1]["text"]) == 4096
    await bot.session.close()


async def test_permanent_telegram_failures_are_not_retried(postgres: Postgres, outside: Outside) -> None:
    bot = await _bot(outside)
    driver = await add_driver(postgres.pool, "c@example.com")
    outside.telegram.add_chat(bot.token, driver.chat_id)
    outside.telegram.set_blocked(bot.token, driver.chat_id)
    acts = TelegramActivities(bot, postgres.pool)
    req = SendReplyInput(
        tenant_id=driver.tenant_id,
        workflow_id=f"wf-{uuid.uuid4()}",
        step="reply",
        chat_id=driver.chat_id,
        text="hi",
    )
    with pytest.raises(ApplicationError) as blocked:
        await ActivityEnvironment().run(acts.send_reply, req)
    assert blocked.value.type == "TelegramForbidden" and blocked.value.non_retryable
    outside.telegram.revoke_token(bot.token)
    with pytest.raises(ApplicationError) as revoked:
        await ActivityEnvironment().run(acts.send_reply, req.model_copy(update={"step": "again"}))
    assert revoked.value.type == "TelegramUnauthorized" and revoked.value.non_retryable
    await bot.session.close()


async def test_rate_limit_is_retried_after_telegrams_delay(postgres: Postgres, outside: Outside) -> None:
    bot = await _bot(outside)
    driver = await add_driver(postgres.pool, "c@example.com")
    outside.telegram.add_chat(bot.token, driver.chat_id)
    acts = TelegramActivities(bot, postgres.pool)
    req = SendReplyInput(
        tenant_id=driver.tenant_id,
        workflow_id=f"wf-{uuid.uuid4()}",
        step="a",
        chat_id=driver.chat_id,
        text="1",
    )
    outside.telegram.configure(rate_limits=True, per_chat_per_s=1)
    try:
        await ActivityEnvironment().run(acts.send_reply, req)
        with pytest.raises(ApplicationError) as limited:
            await ActivityEnvironment().run(acts.send_reply, req.model_copy(update={"step": "b"}))
    finally:
        outside.telegram.configure(rate_limits=False)
    assert limited.value.type == "TelegramRetryAfter" and not limited.value.non_retryable
    assert limited.value.next_retry_delay is not None and limited.value.next_retry_delay.total_seconds() >= 1
    await bot.session.close()
