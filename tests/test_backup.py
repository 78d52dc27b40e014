"""`autodispatch backup` mid-day while the stack runs, `autodispatch restore` into a fresh data dir, and
the stack started there carries the day on: the open order's workflow with its reminder, its card's
buttons, a question still waiting for the driver's answer, the whitelist and the audit log."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus

from autodispatch import admin
from autodispatch.backup import BackupError, backup, restore
from autodispatch.embedded import EmbeddedTemporal, free_port
from autodispatch.settings import Settings
from schemas.lifecycle import order_workflow_id
from tests.conftest import PAYLOAD_KEYS, Outside, Postgres, stack_settings, until
from tests.test_e2e import finished, new_driver, replies, running, send, token_of
from tests.test_e2e_orders import button, card_of
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.e2e


def embedded(
    data_dir: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside, **kw: object
) -> Settings:
    """A stack of its own under `data_dir`: embedded PostgreSQL and Temporal dev server, the session's
    emulated Telegram and Google."""
    return stack_settings(
        data_dir, postgres, temporal_dev, outside, database_url=None, app_database_url=None, temporal_address=None,
        postgres_port=free_port(), temporal_grpc_port=free_port(), temporal_ui_port=free_port(), **kw,
    )  # fmt: skip


async def cli(settings: Settings, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODISPATCH_")}
    env.update(
        AUTODISPATCH_DATA_DIR=str(settings.data_dir), AUTODISPATCH_POSTGRES_PORT=str(settings.postgres_port),
        AUTODISPATCH_PAYLOAD_KEYS=PAYLOAD_KEYS, AUTODISPATCH_LOG_LEVEL="WARNING",
    )  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autodispatch", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode()


async def test_a_backup_taken_mid_day_restores_into_a_fresh_data_dir_and_the_day_carries_on(
    session_dir: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    root = session_dir / f"backup-{uuid.uuid4().hex[:8]}"  # readable by the postgres system user
    first = embedded(root / "data", postgres, temporal_dev, outside)
    backup_dir = root / "backup"
    async with running(first, durable_postgres=False) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        token = token_of(stack)
        order = await finished(
            stack, send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")["update_id"]
        )
        assert order.outcome == "event_created"
        (card,) = replies(outside, stack, chat_id)
        question = send(outside, stack, chat_id, "Внуково → Химки, 1800₽")  # no time: the bot asks for it
        await outside.telegram.wait_for_sent(token, chat_id, 2, timeout=60, method="sendMessage")
        assert stack.client is not None
        before = await stack.client.get_workflow_handle(order_workflow_id(order.order_id)).query(
            OrderWorkflow.order_state
        )
        assert before.reminder_at is not None

        await cli(first, "backup", str(backup_dir))  # while everything runs
    assert {p.name for p in backup_dir.iterdir()} >= {"app.dump", "roles.sql", "temporal.db", "manifest.json"}

    restored = embedded(
        root / "restored", postgres, temporal_dev, outside, telegram_bot_token=first.telegram_bot_token,
        telegram_webhook_secret=first.telegram_webhook_secret, temporal_task_queue=first.temporal_task_queue,
    )  # fmt: skip
    await cli(restored, "restore", str(backup_dir))
    async with running(restored, durable_postgres=False) as stack:
        assert stack.client is not None and stack.pool is not None
        # The whitelist and the audit log came back.
        (driver,) = await admin.list_drivers(stack.pool, tenant=tenant)
        assert driver["calendar_id"] == calendar_id
        assert "event_created" in [r["action"] for r in await admin.read_audit(stack.pool, tenant=tenant)]

        # The open order's workflow runs on, its reminder still ahead.
        handle = stack.client.get_workflow_handle(order_workflow_id(order.order_id))
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        after = await handle.query(OrderWorkflow.order_state)
        assert after.reminder_at == before.reminder_at and after.status == before.status

        # The question asked before the backup takes the driver's answer now.
        answer = send(outside, stack, chat_id, "завтра в 11:40")
        assert (await finished(stack, answer["update_id"])).outcome == "answer_forwarded"
        assert (await finished(stack, question["update_id"])).outcome == "event_created"

        # The card's buttons still work: ✅ confirms the order and its card changes in place.
        press = outside.telegram.user_clicks(
            token_of(stack), chat_id, card["message_id"], button(card, "ok:")
        )
        assert (await finished(stack, press["update_id"])).outcome == "button_forwarded"

        async def confirmed() -> list[dict]:
            return [
                r
                for r in await admin.read_audit(stack.pool, tenant=tenant)
                if r["action"] == "order_confirmed"
            ]  # type: ignore[arg-type]

        await until(confirmed, 60, "the confirmation audited")
        assert (await handle.query(OrderWorkflow.order_state)).status == "confirmed"
        assert "✅" in card_of(outside, stack, chat_id, card["message_id"])["text"]

    # A restore never overwrites a stack, and a backup never mixes with an older one: one line each.
    with pytest.raises(BackupError, match="already holds a stack"):
        restore(restored, backup_dir)
    with pytest.raises(BackupError, match="not empty"):
        backup(restored, backup_dir)
