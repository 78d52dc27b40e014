"""The Telegram send activity: outbox exactly-once, error classification, and the send pacer."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
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


async def test_pacer_holds_the_limits_at_telegrams_end_whatever_the_network_delay() -> None:
    """Telegram counts a message when it arrives, anywhere between our send's start and its answer. With
    arrivals delayed at random (as on a busy machine), no chat gets two arrivals closer than its
    interval and no one-second window holds more than the budget, measured at the receiving end."""
    rng = random.Random(7)
    pacer = SendPacer(per_second=20, per_chat_interval=0.2)
    arrivals: list[tuple[int, float]] = []

    async def send(chat_id: int) -> None:
        await pacer.wait(chat_id)
        async with pacer.sending(chat_id):
            await asyncio.sleep(rng.uniform(0, 0.15))  # in a socket, in the other side's queue
            arrivals.append((chat_id, time.monotonic()))
            await asyncio.sleep(rng.uniform(0, 0.02))  # the answer on its way back

    await asyncio.gather(*(send(i % 6) for i in range(30)))
    times = sorted(t for _, t in arrivals)
    assert len(times) == 30
    assert max(sum(1 for u in times if t - 1.0 < u <= t) for t in times) <= 20
    for chat in range(6):
        own = sorted(t for c, t in arrivals if c == chat)
        assert min(b - a for a, b in itertools.pairwise(own)) >= 0.2


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
