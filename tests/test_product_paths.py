"""The product's own processes as an operator starts them, each joined to a running stack (real Temporal
dev server, embedded PostgreSQL, the emulators): `worker --tenant`, `bot`, `migrate`, `replay --workflow-id`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from autodispatch import db
from autodispatch.embedded import EmbeddedTemporal, free_port
from autodispatch.settings import Settings
from tests.conftest import Outside, Postgres, stack_settings
from tests.test_e2e import events_of, finished, new_driver, running, send, spawn_cli

pytestmark = pytest.mark.e2e


@contextmanager
def process(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Stopped with SIGTERM at the end (killed if it does not stop); its output printed if the test fails."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            print(proc.stdout.read().decode(errors="replace")[-3000:])


def cli(settings: Settings, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODISPATCH_")}
    env.update(
        AUTODISPATCH_TEMPORAL_ADDRESS=str(settings.temporal_address),
        AUTODISPATCH_DATA_DIR=str(settings.data_dir),
    )
    for name, secret in (
        ("DATABASE_URL", settings.database_url),
        ("APP_DATABASE_URL", settings.app_database_url),
        ("PAYLOAD_KEYS", settings.payload_keys),  # the flows' payloads are sealed with the session's key
    ):
        if secret is not None:
            env[f"AUTODISPATCH_{name}"] = secret.get_secret_value()
    env.update(env_extra)
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "autodispatch", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_worker_for_a_dedicated_tenant_runs_as_its_own_process(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings) as stack:  # the shared worker runs too: it must not take the order
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        queue = f"tenant-{tenant}"
        async with db.system_tx(stack.pool) as conn:  # type: ignore[arg-type]
            await conn.execute(
                "UPDATE tenants SET dedicated = true, task_queue = $2 WHERE tenant_id = $1", tenant, queue
            )
        with process(spawn_cli(settings, tmp_path, "worker", "--tenant", tenant)):
            sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
            result = await finished(stack, sent["update_id"], timeout=120)
        assert result.outcome == "event_created"
        assert len(await events_of(outside, calendar_id)) == 1
        assert stack.client is not None and stack.bot is not None
        main = await stack.client.get_workflow_handle(f"tg-{stack.bot.id}-{sent['update_id']}").describe()
        child = await stack.client.get_workflow_handle(f"calendar-{result.order_id}").describe()
        assert main.task_queue == queue and child.task_queue == queue


async def test_bot_process_joins_a_stack_that_runs_only_the_worker(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    bot_port = free_port()
    async with running(settings, run_bot=False) as stack:
        chat_id, calendar_id, _ = await new_driver(stack, outside)
        edge = spawn_cli(
            settings, tmp_path, "bot", AUTODISPATCH_TELEGRAM_MODE="webhook", AUTODISPATCH_HTTP_PORT=str(bot_port),
            AUTODISPATCH_TELEGRAM_WEBHOOK_SECRET=settings.telegram_webhook_secret.get_secret_value(),  # type: ignore[union-attr]
        )  # fmt: skip
        with process(edge):
            token = settings.telegram_bot_token.get_secret_value()  # type: ignore[union-attr]
            await until_webhook(outside, token, bot_port)
            sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
            result = await finished(stack, sent["update_id"], timeout=120)
        assert result.outcome == "event_created"
        assert len(await events_of(outside, calendar_id)) == 1
        assert edge.returncode == 0  # SIGTERM ends it cleanly


async def until_webhook(outside: Outside, token: str, port: int) -> None:
    """The bot process registered its webhook with Telegram (the emulator)."""
    from tests.conftest import until

    await until(lambda: f":{port}/" in (outside.telegram.webhook_info(token).get("url") or ""), 60)


async def test_migrate_builds_an_empty_database_and_a_second_run_changes_nothing(
    tmp_path: Path, postgres: Postgres
) -> None:
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(postgres.owner_dsn)
    try:
        await owner.execute(f'CREATE DATABASE "{name}"')
        dsn = postgres.owner_dsn.rsplit("/", 1)[0] + f"/{name}"
        settings = Settings(_env_file=None, database_url=dsn, data_dir=tmp_path)  # type: ignore[arg-type]
        outputs, first = [], None
        for run in range(2):
            res = cli(settings, "migrate")
            assert res.returncode == 0, res.stdout + res.stderr
            outputs.append(res.stdout)
            conn = await asyncpg.connect(dsn)
            try:
                versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
                tables = {
                    r["tablename"]
                    for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                }
            finally:
                await conn.close()
            first = first if run else versions
        assert outputs == ["database schema is up to date\n"] * 2
        shipped = sorted(p.stem for p in (Path(db.__file__).parent / "migrations").glob("*.sql"))
        assert sorted(map(str, versions)) == sorted(map(str, first)) and len(versions) == len(shipped)
        assert {"tenants", "drivers", "orders", "audit_log", "outbox"} <= tables
    finally:
        await owner.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await owner.close()


async def test_replay_by_workflow_id_fetches_the_history_from_temporal(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings) as stack:
        chat_id, _, _ = await new_driver(stack, outside)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        result = await finished(stack, sent["update_id"])
        assert stack.bot is not None
        ran = cli(settings, "replay", "--workflow-id", f"tg-{stack.bot.id}-{sent['update_id']}")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "replays cleanly" in ran.stdout
        child = cli(settings, "replay", f"calendar-{result.order_id}")  # the id may come positionally too
        assert child.returncode == 0 and "replays cleanly" in child.stdout, child.stdout + child.stderr
        missing = cli(settings, "replay", "--workflow-id", f"tg-{stack.bot.id}-no-such-update")
        assert missing.returncode == 1
        assert "no-such-update" in missing.stderr and "Traceback" not in missing.stderr, missing.stderr
