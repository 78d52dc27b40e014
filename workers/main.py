"""`autodispatch worker [--tenant ID]`: a worker process joining a running stack."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from activities.calendar import CalendarService
from autodispatch import db
from autodispatch.embedded import die_with_parent
from autodispatch.runtime import calendar_root, dsns, telegram_endpoint
from autodispatch.settings import Settings, SettingsError
from autodispatch.stack import connect_with_retry
from autodispatch.temporal import sdk_metrics_address
from bot.dispatcher import make_bot
from bot.server import add_metrics_route
from workers.day import start_agenda_reconciler
from workers.retention import start_retention_schedule
from workers.worker import build_workers

log = logging.getLogger(__name__)


async def serve_metrics(settings: Settings) -> web.AppRunner | None:
    """GET /metrics of this worker process (its activities count the orders), for Prometheus."""
    if settings.worker_metrics_port is None:
        return None
    app = web.Application()
    add_metrics_route(app, sdk_metrics_address)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.http_host, settings.worker_metrics_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise SettingsError(f"configuration error: AUTODISPATCH_WORKER_METRICS_PORT: {exc}") from exc
    return runner


async def run_worker(
    settings: Settings,
    task_queue: str,
    *,
    dedicated: bool = False,
    serve_outbound: bool | None = None,
    ready: Callable[[], object] | None = None,
) -> None:
    token, api_base = telegram_endpoint(settings)
    calendar = CalendarService.from_settings(calendar_root(settings), settings.google_service_account_file)
    urls = dsns(settings)
    pool = await db.create_pool(urls.app_login(), system_dsn=urls.system, max_size=20)
    try:
        await db.check_app_role(pool)
    except db.RoleError as exc:
        await pool.close()
        raise SettingsError(str(exc)) from None
    bot = make_bot(token, api_base)
    client = await connect_with_retry(settings)
    # A dedicated tenant's worker serves only its own queue; Telegram's outbound queue stays with the
    # shared worker: the send budget is the bot's, whoever sends.
    outbound = not dedicated if serve_outbound is None else serve_outbound
    workers = build_workers(
        client, task_queue, pool=pool, bot=bot, calendar=calendar, settings=settings,
        serve_outbound=outbound,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics = await serve_metrics(settings)
    print(f"worker polling task queue {task_queue!r}", flush=True)
    if metrics is not None:
        print(f"metrics: http://{settings.http_host}:{settings.worker_metrics_port}/metrics", flush=True)
    running = asyncio.create_task(workers.run())
    if ready is not None:
        ready()
    fleet = None
    if outbound:  # morning agendas: the shared worker keeps every driver's Schedule in line
        await start_agenda_reconciler(client, task_queue)
        await start_retention_schedule(client, task_queue)
        # The tenants' own bots' outbound queues (docs/bots.md), each with its own budget.
        from autodispatch.fleet import BotFleet

        fleet = BotFleet(
            pool=pool, client=client, settings=settings, api_base=api_base, listen_dsn=urls.app_login(),
            default_bot_id=bot.id,
        )  # fmt: skip
        await fleet.start()
    try:
        await asyncio.wait([running, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if fleet is not None:
            await fleet.stop()
        await workers.shutdown()
        if metrics is not None:
            await metrics.cleanup()
        await bot.session.close()
        await pool.close()


def worker_process(values: dict[str, Any], task_queue: str, ready: Any = None) -> None:
    """One more worker process of `autodispatch up --workers N` (Python runs one core per process).

    It serves the flow queue only: the bot's outbound queue stays with the stack's own worker, whose
    pacer holds each chat's interval (pacing is per process)."""
    die_with_parent()
    # The stack's own process serves the worker metrics port, if one is set.
    settings = Settings(_env_file=None, **{**values, "worker_metrics_port": None})
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_worker(settings, task_queue, serve_outbound=False, ready=ready.set if ready else None)
        )
