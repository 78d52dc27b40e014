"""Failure paths through the real stack: what the driver sees and what the audit log says when Telegram
refuses (a blocked chat, a 429 storm, 5xx), when Google answers 5xx to an update, a cancel or a listing,
and when PostgreSQL stops in the middle of a burst. The emulators answer the scripted failures (their
`fail_next`); everything of ours runs as in production."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import pytest

from autodispatch import admin, db
from autodispatch.embedded import EmbeddedPostgres, EmbeddedTemporal, free_port
from autodispatch.stack import Stack
from schemas.telegram import main_workflow_id
from tests.conftest import Outside, Postgres, stack_settings, until
from tests.test_e2e import events_of, finished, new_driver, replies, running, send, token_of
from tests.test_e2e_orders import button, card_of

pytestmark = pytest.mark.e2e

ORDER = "завтра 9:30 Внуково → Тверская 7, 2500₽"


async def audit_of(stack: Stack, tenant: str, update_id: int) -> list[dict]:
    assert stack.pool is not None and stack.bot is not None
    return await admin.read_audit(
        stack.pool, tenant=tenant, workflow_id=main_workflow_id(stack.bot.id, update_id)
    )


async def tenant_audit(stack: Stack, tenant: str, action: str) -> list[dict]:
    assert stack.pool is not None
    return [r for r in await admin.read_audit(stack.pool, tenant=tenant) if r["action"] == action]


def refusals(outside: Outside, stack: Stack, chat_id: int, method: str) -> list[dict]:
    return [r for r in outside.telegram.refused(token_of(stack), chat_id) if r["method"] == method]


async def test_a_driver_who_blocked_the_bot_keeps_the_event_and_the_failed_reply_is_audited(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        sent = send(outside, stack, chat_id, ORDER)
        # Blocked right after writing (no await in between: before the update is even delivered).
        outside.telegram.set_blocked(token_of(stack), chat_id)
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "event_created" and result.reply_message_id is None
        assert len(await events_of(outside, calendar_id)) == 1  # the order is in the calendar all the same
        assert replies(outside, stack, chat_id) == []
        # 403 is permanent: asked once, never retried.
        (refused,) = refusals(outside, stack, chat_id, "sendMessage")
        assert refused["code"] == 403
        audit = await audit_of(stack, tenant, sent["update_id"])
        failed = [r for r in audit if r["action"] == "reply_failed"]
        assert len(failed) == 1 and failed[0]["outcome"] == "error"
        assert failed[0]["details"]["error"] == "TelegramForbidden" and failed[0]["step"] == "reply:failed"
        assert audit[-1]["step"] == "outcome" and audit[-1]["action"] == "event_created"
        assert "reply_sent" not in [r["action"] for r in audit]


async def test_a_message_with_a_nul_character_is_stored_and_answered_not_redelivered_forever(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково\x00 → Тверская 7, 2500₽")
        assert (await finished(stack, sent["update_id"])).outcome == "event_created"
        (event,) = await events_of(outside, calendar_id)
        assert "\x00" not in event["description"] and "Внуково → Тверская 7" in event["description"]
        assert len(replies(outside, stack, chat_id)) == 1
        update = next(
            u for u in outside.telegram.updates(token_of(stack)) if u["update_id"] == sent["update_id"]
        )
        assert update["attempts"] == 1 and update["last_error"] is None  # stored on the first delivery


async def test_a_429_storm_is_waited_out_as_telegram_says_and_every_order_answered_once(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    # Our own pacing off (it would keep the storm away): Telegram's limits are the emulator's, far lower.
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside, telegram_messages_per_second=1000.0)
    async with running(settings) as stack:
        drivers = [await new_driver(stack, outside) for _ in range(3)]
        before = outside.telegram.stats()
        outside.telegram.configure(rate_limits=True, per_bot_per_s=4, per_chat_per_s=1)
        try:
            sent = [
                (chat_id, tenant, send(outside, stack, chat_id, f"завтра {9 + i}:00 Внуково → Тверская {i + 1}, 1500₽"))
                for i in range(4)
                for chat_id, _, tenant in drivers
            ]  # fmt: skip
            results = await asyncio.gather(*(finished(stack, s["update_id"]) for _, _, s in sent))
        finally:
            outside.telegram.configure(rate_limits=False)
        after = outside.telegram.stats()
        assert [r.outcome for r in results] == ["event_created"] * len(sent)
        assert after["too_many_requests"] > before["too_many_requests"], "the storm happened"
        # Every 429 named its retry_after; no request came back before it was up.
        assert after["early_retries"] == before["early_retries"]
        storm = [r for chat_id, _, _ in drivers for r in refusals(outside, stack, chat_id, "sendMessage")]
        assert storm and all(r["code"] == 429 and r["retry_after"] >= 1 for r in storm)
        for chat_id, calendar_id, tenant in drivers:
            mine = [s for c, _, s in sent if c == chat_id]
            assert len(await events_of(outside, calendar_id)) == 4
            answered = Counter(m["reply_to_message_id"] for m in replies(outside, stack, chat_id))
            assert answered == Counter({s["message_id"]: 1 for s in mine})
            for s in mine:
                actions = [r["action"] for r in await audit_of(stack, tenant, s["update_id"])]
                assert actions.count("reply_sent") == 1 and "reply_failed" not in actions


async def test_telegram_5xx_on_the_reply_is_retried_into_one_reply(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        outside.telegram.fail_next(502, 2, chat_id=chat_id, methods=["sendMessage"])
        outside.telegram.fail_next(500, 1, chat_id=chat_id, methods=["sendMessage"])
        sent = send(outside, stack, chat_id, ORDER)
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "event_created"
        assert [r["code"] for r in refusals(outside, stack, chat_id, "sendMessage")] == [502, 502, 500]
        (reply,) = replies(outside, stack, chat_id)
        assert reply["reply_to_message_id"] == sent["message_id"] and "✅" in reply["text"]
        assert result.reply_message_id == reply["message_id"]
        audit = await audit_of(stack, tenant, sent["update_id"])
        (reply_row,) = [r for r in audit if r["action"] == "reply_sent"]
        assert reply_row["details"]["message_id"] == reply["message_id"]
        assert "reply_failed" not in [r["action"] for r in audit]
        assert len(await events_of(outside, calendar_id)) == 1


async def test_google_5xx_on_the_update_and_telegram_5xx_on_the_card_edit_change_the_order_once(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        token = token_of(stack)
        sent = send(outside, stack, chat_id, ORDER)
        order = await finished(stack, sent["update_id"])
        (card,) = replies(outside, stack, chat_id)
        outside.google.fail_next("events.patch", 2, 503, calendar_id=calendar_id)
        outside.telegram.fail_next(500, 2, chat_id=chat_id, methods=["editMessageText"])
        edit = outside.telegram.user_edits(
            token, chat_id, sent["message_id"], "завтра 10:15 Внуково → Тверская 9, 2700₽"
        )
        assert (await finished(stack, edit["update_id"])).outcome == "order_change_forwarded"

        changed = await until(lambda: tenant_audit(stack, tenant, "order_changed"), 90, "the change")
        assert len(changed) == 1 and changed[0]["order_id"] == order.order_id
        (event,) = await events_of(outside, calendar_id)
        assert (
            event["id"] == order.order_id and "10:15" in event["summary"] and "Тверская 9" in event["summary"]
        )
        assert outside.google.pending_faults() == 0  # both 503s were answered, and retried past
        assert "10:15" in card_of(outside, stack, chat_id, card["message_id"])["text"]
        assert [r["code"] for r in refusals(outside, stack, chat_id, "editMessageText")] == [500, 500]
        assert len(replies(outside, stack, chat_id)) == 1  # the card changed in place
        actions = [r["action"] for r in await admin.read_audit(stack.pool, tenant=tenant)]  # type: ignore[arg-type]
        assert "change_failed" not in actions and "card_edit_failed" not in actions


async def test_google_5xx_on_the_cancel_still_cancels_once_and_says_so(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        token = token_of(stack)
        order = await finished(stack, send(outside, stack, chat_id, ORDER)["update_id"])
        (card,) = replies(outside, stack, chat_id)
        outside.google.fail_next("events.delete", 3, 500, calendar_id=calendar_id)
        press = outside.telegram.user_clicks(token, chat_id, card["message_id"], button(card, "cancel:"))
        assert (await finished(stack, press["update_id"])).outcome == "button_forwarded"

        cancelled = await until(lambda: tenant_audit(stack, tenant, "order_cancelled"), 90, "the cancel")
        assert len(cancelled) == 1 and cancelled[0]["order_id"] == order.order_id
        assert cancelled[0]["details"]["was_there"] is True
        (event,) = await events_of(outside, calendar_id)
        assert event["status"] == "cancelled" and outside.google.pending_faults() == 0
        assert "отменён" in card_of(outside, stack, chat_id, card["message_id"])["text"]
        answers = [m for m in outside.telegram.sent(token, chat_id) if m["method"] == "answerCallbackQuery"]
        assert len(answers) == 1 and "отменён" in str(answers[0])
        assert await tenant_audit(stack, tenant, "cancel_failed") == []


async def test_google_5xx_on_the_conflict_listing_still_writes_the_order_once(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        outside.google.fail_next("events.list", 3, 503, calendar_id=calendar_id)
        sent = send(outside, stack, chat_id, ORDER)
        result = await finished(stack, sent["update_id"])
        assert result.outcome == "event_created"
        assert (
            outside.google.pending_faults() == 0
        )  # the listing was asked, failed three times, then answered
        (event,) = await events_of(outside, calendar_id)
        assert event["id"] == result.order_id
        (reply,) = replies(outside, stack, chat_id)
        assert "✅" in reply["text"] and reply["reply_to_message_id"] == sent["message_id"]
        steps = [r["step"] for r in await audit_of(stack, tenant, sent["update_id"])]
        assert steps == ["received", "whitelist", "parsed", "calendar", "reply", "outcome"]


async def test_postgres_stopped_and_restarted_mid_burst_loses_and_duplicates_nothing(
    session_dir: Path, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    """A dedicated PostgreSQL (the session's serves every other test): stopped while a burst is in flight
    and updates keep coming, then started again. Telegram keeps what the edge could not store; the
    activities' retries carry every flow over the gap."""
    data = session_dir / f"pg-outage-{uuid.uuid4().hex[:8]}"
    server = EmbeddedPostgres(data, port=free_port(), durable=False)
    server.start()
    try:
        pg = Postgres(server.owner_dsn, server.app_dsn, None)  # type: ignore[arg-type]
        settings = stack_settings(data, pg, temporal_dev, outside)
        async with running(settings) as stack:
            drivers = [await new_driver(stack, outside) for _ in range(2)]
            calendars = [c for _, c, _ in drivers]

            def burst(n: int, hour: int) -> list[tuple[int, str, dict]]:
                return [
                    (chat_id, tenant, send(outside, stack, chat_id, f"завтра {hour}:{i:02d} Внуково → Тверская {i + 1}, 1500₽"))
                    for i in range(n)
                    for chat_id, _, tenant in drivers
                ]  # fmt: skip

            sent = burst(6, 10)
            await until(
                lambda: _written(outside, calendars, at_least=2), 60, "a few events written before the stop"
            )
            await asyncio.to_thread(server.stop)
            errors_before = outside.telegram.stats()["webhook_errors"]
            sent += burst(2, 12)  # arriving while the database is down
            # The edge refused to acknowledge what it could not store: Telegram has to deliver it again.
            await until(
                lambda: outside.telegram.stats()["webhook_errors"] > errors_before, 60, "a refused delivery"
            )
            await asyncio.to_thread(server.start)

            results = await asyncio.gather(
                *(finished(stack, s["update_id"], timeout=180) for _, _, s in sent)
            )
            assert [r.outcome for r in results] == ["event_created"] * len(sent)
            for chat_id, calendar_id, tenant in drivers:
                mine = [s for c, _, s in sent if c == chat_id]
                events = await events_of(outside, calendar_id)
                assert len(events) == len(mine) == len({e["id"] for e in events})
                answered = Counter(m["reply_to_message_id"] for m in replies(outside, stack, chat_id))
                assert answered == Counter({s["message_id"]: 1 for s in mine})
                for s in mine:
                    steps = [r["step"] for r in await audit_of(stack, tenant, s["update_id"])]
                    assert steps == ["received", "whitelist", "parsed", "calendar", "reply", "outcome"], steps
            assert stack.pool is not None
            async with db.system_tx(stack.pool) as conn:
                orders = await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE tenant_id = ANY($1::text[])",
                    [t for _, _, t in drivers],
                )
            assert orders == len(sent)
    finally:
        await asyncio.to_thread(server.stop)


async def _written(outside: Outside, calendars: list[str], at_least: int) -> bool:
    return sum([len(await events_of(outside, c)) for c in calendars]) >= at_least
