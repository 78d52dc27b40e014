"""Session fixtures: each real server starts once per test session, never per test."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from autodispatch import admin, db
from autodispatch.codec import build_data_converter, new_key_spec, parse_keys
from autodispatch.embedded import EmbeddedPostgres, EmbeddedTemporal, free_port, temporal_test_server_path
from autodispatch.settings import Settings
from autodispatch.temporal import register_search_attributes
from emulators.google import GoogleEmulator
from emulators.telegram import TelegramEmulator
from schemas.driver import Driver

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# One payload key per session: every client the tests build seals payloads as production does.
PAYLOAD_KEYS = new_key_spec("test")
DATA_CONVERTER = build_data_converter(parse_keys(PAYLOAD_KEYS))


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="autodispatch-tests-"))
    os.chmod(path, 0o755)  # the embedded postgres system user must traverse it
    yield path
    shutil.rmtree(path, ignore_errors=True)


class StartedWorkflows(Interceptor):
    """Every workflow started through the client (the test server cannot list them)."""

    def __init__(self) -> None:
        self.handles: list[WorkflowHandle] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _RememberStarts(next, self.handles)


class _RememberStarts(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, handles: list[WorkflowHandle]) -> None:
        super().__init__(next)
        self._handles = handles

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle:
        handle = await super().start_workflow(input)
        self._handles.append(handle)
        return handle


async def end_started_workflows(started: StartedWorkflows) -> list[str]:
    """Terminate what is still running of `started` (its children go with it); the ids ended."""
    ended = []
    for handle in started.handles:
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("the test that started it has ended")
                ended.append(handle.id)
        except RPCError:  # gone already, or never really started
            continue
    started.handles.clear()
    return ended


# One time-skipping server per test module (starting one takes seconds). Its clock is shared: a workflow
# a test leaves running (an order waiting for its pickup, a dialogue waiting a day) would wake on a queue
# nobody polls any more and stop the clock for every later test, so each test's teardown terminates what
# that test started.
@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def time_skipping_server() -> AsyncIterator[tuple[WorkflowEnvironment, StartedWorkflows]]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server_path(), data_converter=DATA_CONVERTER
    )
    started = StartedWorkflows()
    config = env.client.config()
    env._client = Client(**{**config, "interceptors": [*config["interceptors"], started]})  # type: ignore[attr-defined]
    await register_search_attributes(env.client)
    try:
        yield env, started
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def time_skipping_env(
    time_skipping_server: tuple[WorkflowEnvironment, StartedWorkflows],
) -> AsyncIterator[WorkflowEnvironment]:
    env, started = time_skipping_server
    started.handles.clear()
    try:
        yield env
    finally:
        await end_started_workflows(started)


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"


@dataclass
class Postgres:
    owner_dsn: str
    app_dsn: str
    pool: asyncpg.Pool


@pytest_asyncio.fixture(scope="session")
async def postgres(session_dir: Path) -> AsyncIterator[Postgres]:
    """Embedded PostgreSQL, migrated, with a pool as the application role (RLS applies)."""
    server = EmbeddedPostgres(session_dir / "pg", port=free_port(), durable=False)
    server.start()
    try:
        await db.migrate(server.owner_dsn)
        pool = await db.create_pool(server.app_dsn, system_dsn=server.system_dsn, max_size=20)
        try:
            yield Postgres(server.owner_dsn, server.app_dsn, pool)
        finally:
            await pool.close()
    finally:
        server.stop()


def unique_chat_id() -> int:
    return 10**9 + uuid.uuid4().int % 10**9


async def add_driver(pool: asyncpg.Pool, calendar_id: str, tenant: str | None = None, **kw: object) -> Driver:
    """A fresh tenant and driver per test: tests never see each other's rows."""
    tenant = tenant or f"t-{uuid.uuid4().hex[:10]}"
    row = await admin.add_driver(
        pool, tenant=tenant, chat_id=int(kw.pop("chat_id", unique_chat_id())), calendar_id=calendar_id,
        name=str(kw.pop("name", "Test Driver")), time_zone=str(kw.pop("time_zone", "Europe/Moscow")),
    )  # fmt: skip
    return Driver(
        **{k: row[k] for k in ("tenant_id", "chat_id", "driver_name", "calendar_id", "time_zone", "status")}
    )


@pytest_asyncio.fixture(scope="session")
async def temporal_dev(session_dir: Path) -> AsyncIterator[EmbeddedTemporal]:
    """The real Temporal dev server (SQLite file, search attributes, fairness), once per session."""
    server = EmbeddedTemporal(session_dir / "temporal", port=free_port(), headless=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Outside:
    """The emulated outside world: Telegram's Bot API and Google's Calendar + OAuth. Google refuses calls
    without credentials, as Google does: the stacks sign in as `service_account` (its key file), whom a
    driver's calendar must be shared with."""

    telegram: TelegramEmulator
    google: GoogleEmulator
    service_account: str = ""
    service_account_file: Path | None = None


@pytest_asyncio.fixture(scope="session")
async def outside(session_dir: Path) -> AsyncIterator[Outside]:
    telegram = TelegramEmulator()
    google = GoogleEmulator()
    await telegram.start()
    await google.start()
    key = google.create_service_account(email="autodispatch-tests@sandbox.iam.gserviceaccount.com")
    key_file = session_dir / "service-account.json"
    key_file.write_text(json.dumps(key))
    try:
        yield Outside(telegram, google, key["client_email"], key_file)
    finally:
        await telegram.stop()
        await google.stop()


async def until(check, timeout: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """The first truthy value of `check()` (sync or async), polled; a TimeoutError after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.2)


def new_bot_token() -> str:
    return f"{7 * 10**9 + uuid.uuid4().int % 10**9}:{uuid.uuid4().hex}"


def stack_settings(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "temporal_address": temporal_dev.address,
        "database_url": postgres.owner_dsn,
        "app_database_url": postgres.app_dsn,
        "telegram_bot_token": new_bot_token(),
        "telegram_api_base": outside.telegram.base_url,
        "telegram_mode": "webhook",
        "telegram_webhook_secret": uuid.uuid4().hex,
        "google_api_endpoint": outside.google.base_url,
        "google_service_account_file": outside.service_account_file,
        "http_port": free_port(),
        "temporal_task_queue": f"tq-{uuid.uuid4()}",
        "data_dir": tmp_path,
        # Per-chat pacing is tested on its own (test_tenancy); elsewhere it would only slow bursts down.
        "telegram_per_chat_interval": 0.0,
        "payload_keys": PAYLOAD_KEYS,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


# A test still running after this long is probably stuck: its asyncio tasks' stacks go to stderr (and so
# into the test's report), which pytest-timeout's thread dump cannot show.
STUCK_AFTER = 150.0


def _dump_tasks(test: str) -> None:
    import sys

    print(f"\n=== {test} still running after {STUCK_AFTER:.0f} s: its asyncio tasks ===", file=sys.stderr)
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def report_stuck_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    watch = asyncio.get_running_loop().call_later(STUCK_AFTER, _dump_tasks, request.node.nodeid)
    yield
    watch.cancel()
