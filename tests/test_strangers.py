"""Strangers and floods: what a chat nobody whitelisted may cost (bot/strangers.py), and retention.

The flood goes through the real stack (emulated Telegram → aiogram → the edge → inbox → Temporal): 1,000
strangers write at once while a driver sends an order; the order is answered and the strangers cause a
bounded number of workflows, replies and audit rows. No timing is asserted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.retention import RetentionActivities
from autodispatch.db import SYSTEM_TENANT, system_tx
from autodispatch.embedded import EmbeddedTemporal
from bot.strangers import MAX_DENIAL_ROWS, DenialTally, StrangerGate, StrangerPolicy, TokenBucket
from schemas.retention import RetentionInput
from schemas.telegram import TelegramUpdateReceived
from tests.conftest import Outside, Postgres, stack_settings, unique_chat_id, until
from tests.test_e2e import finished, new_driver, replies, running, send, token_of
from workflows.retention import RetentionWorkflow

ORDER = "завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 916 123-45-67"


def update(
    chat_id: int, text: str = "hello", *, kind: str = "text", chat_type: str = "private"
) -> TelegramUpdateReceived:
    return TelegramUpdateReceived(
        bot_id=1, update_id=int(uuid.uuid4().int % 10**12), chat_id=chat_id, text=text, kind=kind,  # type: ignore[arg-type]
        received_at=datetime.now(UTC), chat_type=chat_type,
    )  # fmt: skip


def test_a_token_bucket_gives_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(capacity=3, per_second=0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(102.0) and not bucket.take(102.0)  # one token every 2 s


async def test_the_gate_answers_a_stranger_once_keeps_a_dialogue_and_refuses_groups(
    postgres: Postgres,
) -> None:
    tally = DenialTally(postgres.pool, window_seconds=3600)
    gate = StrangerGate(postgres.pool, StrangerPolicy(chat_burst=100, global_burst=100), tally)
    stranger, newcomer, group = unique_chat_id(), unique_chat_id(), -unique_chat_id()

    assert await gate.admit(update(stranger), tenant_id=None)
    assert not await gate.admit(update(stranger, "again"), tenant_id=None)  # answered lately: from memory
    # Another edge process (no memory of it) asks the table, which says the same.
    other = StrangerGate(postgres.pool, gate.policy, tally)
    assert not await other.admit(update(stranger, "and again"), tenant_id=None)

    # A /start always passes, and the onboarding dialogue it opens stays reachable.
    assert await gate.admit(update(newcomer, "/start"), tenant_id=None)
    assert await gate.admit(update(newcomer, "/start abc", kind="command"), tenant_id=None)
    for text in ("my-calendar@gmail.com", "отмена", "ещё"):
        assert await gate.admit(update(newcomer, text), tenant_id=None)
        assert await other.admit(update(newcomer, text), tenant_id=None)

    # Groups: an unknown one never; a whitelisted one only where its tenant enabled groups.
    assert not await gate.admit(update(group, chat_type="supergroup"), tenant_id=None)
    assert not await gate.admit(update(group, chat_type="group"), tenant_id="fleet")
    assert await gate.admit(update(group, chat_type="group"), tenant_id="fleet", allow_groups=True)
    # A whitelisted private chat meets no bucket at all.
    strict = StrangerGate(postgres.pool, StrangerPolicy(chat_burst=1, global_burst=1), tally)
    assert all([await strict.admit(update(stranger, f"order {i}"), tenant_id="fleet") for i in range(20)])

    assert await tally.flush(everything=True) == 2  # the stranger's chat and the group's
    async with system_tx(postgres.pool) as conn:
        rows = await conn.fetch(
            "SELECT * FROM audit_log WHERE action = 'denials_aggregated' AND chat_id = ANY($1::bigint[])",
            [stranger, group],
        )
    by_chat = {r["chat_id"]: r for r in rows}
    assert by_chat[stranger]["details"]["count"] == 2
    assert by_chat[stranger]["details"]["reasons"] == {"answered_recently": 2}
    assert by_chat[group]["details"]["reasons"] == {"not_private": 1, "group_not_enabled": 1}
    assert by_chat[group]["tenant_id"] == SYSTEM_TENANT  # filed under the first denial's tenant


async def test_a_thousand_strangers_cost_bounded_work_while_a_driver_is_answered(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    burst = 20
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside).model_copy(
        update={"stranger_global_burst": burst, "stranger_global_per_second": 0.001}
    )
    async with running(settings) as stack:
        assert stack.pool is not None and stack.client is not None and stack.strangers is not None
        chat_id, _calendar_id, _tenant = await new_driver(stack, outside)
        since = datetime.now(UTC) - timedelta(seconds=1)
        strangers = [unique_chat_id() for _ in range(1000)]
        groups = [-unique_chat_id() for _ in range(20)]
        flood = [send(outside, stack, s, "привет, сколько стоит?") for s in strangers[:500]]
        order = send(outside, stack, chat_id, ORDER)
        flood += [send(outside, stack, s, "/start") for s in strangers[500:]]
        flood += [send(outside, stack, g, "всем привет") for g in groups]
        # The first admitted stranger writes again and again: answered once.
        flood += [send(outside, stack, strangers[0], f"ну ответь {i}") for i in range(5)]

        result = await finished(stack, order["update_id"])
        assert result.outcome == "event_created"
        (card,) = replies(outside, stack, chat_id)
        assert "Внуково → Тверская 7" in card["text"]

        # Every stranger's update was acknowledged to Telegram (refused ones too): nothing piles up.
        ids = {u["update_id"] for u in flood}

        def all_acknowledged() -> bool:
            return not any(
                u["pending"] for u in outside.telegram.updates(token_of(stack)) if u["update_id"] in ids
            )

        await until(all_acknowledged, 60)
        admitted = stack.strangers.admitted
        assert 1 <= admitted <= burst + 1
        # Bounded work: the flows the strangers started, their replies and their audit rows.
        started = await stack.client.count_workflows(
            f'WorkflowType = "MainWorkflow" AND StartTime >= "{since.isoformat()}"'
        )
        assert started.count <= admitted + 1  # the driver's own
        answered = [
            m for m in outside.telegram.sent(token_of(stack)) if m.get("chat_id") in set(strangers + groups)
        ]
        assert len([m for m in answered if m["method"] == "sendMessage"]) <= admitted
        assert len(replies(outside, stack, strangers[0])) <= 1
        assert stack.denials is not None
        await stack.denials.flush(everything=True)
        async with system_tx(stack.pool) as conn:
            rows = await conn.fetch(
                "SELECT chat_id, action, details FROM audit_log WHERE chat_id = ANY($1::bigint[]) AND at >= $2",
                strangers + groups, since,
            )  # fmt: skip
            # Beyond MAX_DENIAL_ROWS chats per flush, the rest are summed into one overflow row.
            overflow = await conn.fetch(
                "SELECT details FROM audit_log WHERE action = 'denials_aggregated' AND chat_id IS NULL AND at >= $1",
                since,
            )
        denied = [r for r in rows if r["action"] == "denials_aggregated"]
        # One row per denied chat (with its count), a handful per admitted flow: never one per message.
        assert len({r["chat_id"] for r in denied}) == len(denied) <= MAX_DENIAL_ROWS
        counted = sum(r["details"]["count"] for r in denied) + sum(r["details"]["count"] for r in overflow)
        assert counted == len(flood) - admitted
        assert len(rows) - len(denied) <= 8 * admitted


async def test_retention_deletes_old_audit_and_sent_replies_only(postgres: Postgres, tmp_path: Path) -> None:
    from autodispatch.settings import Settings

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with system_tx(postgres.pool) as conn:
        await conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)", tenant)
        for age, step in ((500, "old"), (10, "new")):
            await conn.execute(
                """INSERT INTO audit_log (tenant_id, workflow_id, step, action, at)
                   VALUES ($1, 'wf', $2, 'x', now() - make_interval(days => $3))""",
                tenant, step, age,
            )  # fmt: skip
        for age, step, status in (
            (40, "old-sent", "sent"),
            (40, "old-pending", "pending"),
            (1, "new", "sent"),
        ):
            await conn.execute(
                """INSERT INTO outbox (tenant_id, workflow_id, step, chat_id, text, status, created_at)
                   VALUES ($1, 'wf', $2, 1, 't', $3, now() - make_interval(days => $4))""",
                tenant, step, status, age,
            )  # fmt: skip
    settings = Settings(_env_file=None, audit_retention_days=400, outbox_retention_days=30, data_dir=tmp_path)  # type: ignore[call-arg]
    acts = RetentionActivities(postgres.pool, settings)
    result = await ActivityEnvironment().run(acts.apply_retention, RetentionInput(batch=1))
    assert result.audit_deleted >= 1 and result.outbox_deleted >= 1 and result.done
    async with system_tx(postgres.pool) as conn:
        audit = {
            r["step"] for r in await conn.fetch("SELECT step FROM audit_log WHERE tenant_id = $1", tenant)
        }
        outbox = {r["step"] for r in await conn.fetch("SELECT step FROM outbox WHERE tenant_id = $1", tenant)}
    assert audit == {"new"} and outbox == {"old-pending", "new"}  # an unsent reply is never deleted
    # The app role cannot be talked into wiping the log: the purge keeps at least a day.
    with pytest.raises(Exception, match="at least one day"):
        async with system_tx(postgres.pool) as conn:
            await conn.fetchval("SELECT app_purge_audit(0, 10)")


async def test_the_retention_workflow_applies_the_settings(
    postgres: Postgres, time_skipping_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    from autodispatch.settings import Settings

    settings = Settings(_env_file=None, audit_retention_days=0, outbox_retention_days=3650, data_dir=tmp_path)  # type: ignore[call-arg]
    async with Worker(
        time_skipping_env.client, task_queue=task_queue, workflows=[RetentionWorkflow],
        activities=[RetentionActivities(postgres.pool, settings).apply_retention],
    ):  # fmt: skip
        result = await time_skipping_env.client.execute_workflow(
            RetentionWorkflow.run, RetentionInput(), id=f"retention-{uuid.uuid4()}", task_queue=task_queue
        )
    # 0 keeps the audit log forever; nothing sent is ten years old.
    assert (result.audit_days, result.audit_deleted, result.outbox_deleted, result.done) == (0, 0, 0, True)
