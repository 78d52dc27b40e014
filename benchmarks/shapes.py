"""`python -m benchmarks.shapes`: the candidate shapes of the order path, on the real activities.

One dev server, one PostgreSQL and the emulators (in their own process) for the whole run; then each
shape in turn pushes the same orders through the same activities (whitelist, parse, Calendar write
through google-api-python-client, reply through the outbox and aiogram, audit and order rows), a closed
loop of `--window` orders in flight. It prints, per shape, orders/s and CPU ms per order of the bench
process (worker + client), the dev server and PostgreSQL. Shapes are in `benchmarks.shape_workflows`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.calendar import CalendarActivities, CalendarService
from activities.parsing import ParseActivities
from activities.store import StoreActivities
from activities.telegram import TelegramActivities
from autodispatch import admin, db
from autodispatch.embedded import EmbeddedPostgres, EmbeddedTemporal, free_port
from benchmarks.load import EmulatorProcess, Emulators, order_texts
from benchmarks.shape_workflows import (
    SHAPE_WORKFLOWS,
    ShapeCalendar,
    ShapeChatOfCalendar,
    ShapeOrder,
    ShapePerChat,
    ShapePerOrder,
    ShapeToday,
)
from benchmarks.stats import CpuMeter
from bot.dispatcher import make_bot
from schemas.store import FinishStepInput
from workers.worker import workflow_runner

SHAPES = ("today", "per-order", "per-chat", "chat+calendar")
TOKEN = "7100000009:bench-shapes-bot-token"


class Completions:
    """The orders whose rows are written (the last step of every shape)."""

    def __init__(self, store: StoreActivities) -> None:
        self.store = store
        self.waiting: dict[str, asyncio.Future[None]] = {}

    @activity.defn(name="finish_step")
    async def finish_step(self, req: FinishStepInput) -> int:
        written = await self.store.finish_step(req)
        if req.order is not None and (done := self.waiting.pop(req.order.order_id, None)) and not done.done():
            done.set_result(None)
        return written


async def run_shape(
    shape: str,
    client: Client,
    task_queue: str,
    drivers: list[tuple[str, int, str]],
    completions: Completions,
    texts: list[str],
    *,
    orders: int,
    window: int,
) -> tuple[int, float]:
    from workflows.ids import order_id_for

    slots = asyncio.Semaphore(window)
    message_ids = itertools.count(int(time.time() * 1000) % 10**9)

    async def one(i: int) -> None:
        tenant, chat, _ = drivers[i % len(drivers)]
        order = ShapeOrder(
            chat_id=chat, message_id=next(message_ids), text=texts[i % len(texts)],
            received_at=datetime.now(UTC), reply_task_queue=f"{task_queue}-outbound",
        )  # fmt: skip
        done = completions.waiting[order_id_for(tenant, chat, order.message_id)] = asyncio.Future()
        if shape == "today":
            await client.start_workflow(
                ShapeToday.run, order, id=f"shape-{uuid.uuid4()}", task_queue=task_queue
            )
        elif shape == "per-order":
            await client.start_workflow(
                ShapePerOrder.run, order, id=f"shape-{uuid.uuid4()}", task_queue=task_queue
            )
        else:
            kind = ShapePerChat if shape == "per-chat" else ShapeChatOfCalendar
            await client.start_workflow(
                kind.run, id=f"shape-{shape}-{chat}", task_queue=task_queue,  # type: ignore[attr-defined]
                start_signal="order", start_signal_args=[order],
            )  # fmt: skip
        await asyncio.wait_for(done, timeout=300)

    async def guarded(i: int) -> None:
        async with slots:
            await one(i)

    started = time.monotonic()
    await asyncio.gather(*(guarded(i) for i in range(orders)))
    return orders, time.monotonic() - started


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    data = Path(tempfile.mkdtemp(prefix="autodispatch-shapes-"))
    os.chmod(data, 0o755)
    temporal = EmbeddedTemporal(data / "temporal", port=free_port(), ui_port=free_port(), headless=True)
    postgres = EmbeddedPostgres(data / "pg", port=free_port())
    emulators = EmulatorProcess(data, sys.executable)
    results: list[dict[str, Any]] = []
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=16)
    temporal.start()
    postgres.start()
    emulators.start()
    try:
        await db.migrate(postgres.owner_dsn)
        pool = await db.create_pool(postgres.app_dsn, system_dsn=postgres.system_dsn, max_size=20)
        client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
        bot = make_bot(TOKEN, emulators.telegram)
        async with aiohttp.ClientSession() as http:
            emu = Emulators(http, emulators.telegram, emulators.google)
            drivers = []
            for t in range(args.tenants):
                for d in range(args.drivers):
                    tenant, chat = f"shape-t{t}", 5_000_000 + t * 1000 + d
                    calendar = f"{tenant}-d{d}@bench.calendar.local"
                    await emu.create_calendar(calendar)
                    await emu.user_sends(TOKEN, chat, "/start")
                    await admin.add_driver(
                        pool, tenant=tenant, chat_id=chat, calendar_id=calendar, name=f"D{d}"
                    )
                    drivers.append((tenant, chat, calendar))
        store = StoreActivities(pool)
        completions = Completions(store)
        telegram = TelegramActivities(bot, pool)
        calendar = CalendarActivities(CalendarService(emulators.google + "/calendar/v3/"), 60)
        activities = [
            store.lookup_driver, ParseActivities().parse_order, calendar.create_event,
            telegram.send_reply, completions.finish_step,
        ]  # fmt: skip
        texts = order_texts()
        meter = CpuMeter(
            pids={
                "app": os.getpid(),
                "temporal": temporal.process.proc.pid,  # type: ignore[union-attr]
                "postgres": postgres.process.proc.pid,  # type: ignore[union-attr]
            }
        )
        for shape in args.shapes:
            task_queue = f"shapes-{uuid.uuid4().hex[:8]}"
            worker = Worker(
                client, task_queue=task_queue, workflows=list(SHAPE_WORKFLOWS), activities=activities,
                activity_executor=executor, workflow_runner=workflow_runner(args.sandbox),
                max_concurrent_workflow_tasks=8, max_concurrent_local_activities=8, max_concurrent_activities=16,
                max_cached_workflows=2000,
            )  # fmt: skip
            outbound = Worker(client, task_queue=f"{task_queue}-outbound", activities=[telegram.send_reply])
            async with worker, outbound:
                if shape == "chat+calendar":
                    for _, _, cal in drivers:
                        await client.start_workflow(
                            ShapeCalendar.run, id=f"shape-calendar-{cal}", task_queue=task_queue
                        )
                # Warm-up: imports, caches, the first workflow tasks of each long-lived workflow.
                await run_shape(
                    shape,
                    client,
                    task_queue,
                    drivers,
                    completions,
                    texts,
                    orders=len(drivers),
                    window=args.window,
                )
                before = meter.snapshot()
                n, wall = await run_shape(
                    shape,
                    client,
                    task_queue,
                    drivers,
                    completions,
                    texts,
                    orders=args.orders,
                    window=args.window,
                )
                cpu = CpuMeter.delta(before, meter.snapshot())
            per = {k: round(v * 1000 / n, 1) for k, v in cpu.items() if k != "machine"}
            results.append(
                {
                    "shape": shape, "orders": n, "orders_per_s": round(n / wall, 1),
                    "cpu_ms_per_order": round(sum(per.values()), 1), "cpu_ms_per_order_by_process": per,
                    "other_programs_cores_busy": round(CpuMeter.others(cpu) / wall, 2),
                }
            )  # fmt: skip
            print(json.dumps(results[-1], ensure_ascii=False), flush=True)
        await bot.session.close()
        await pool.close()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        emulators.stop()
        postgres.stop()
        temporal.stop()
    return results


def cli() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.shapes", description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"comma list of {', '.join(SHAPES)}")
    p.add_argument("--orders", type=int, default=300)
    p.add_argument("--window", type=int, default=50, help="orders in flight at most")
    p.add_argument("--tenants", type=int, default=4)
    p.add_argument("--drivers", type=int, default=10, help="drivers per tenant")
    p.add_argument("--sandbox", choices=["strict", "passthrough"], default="passthrough")
    args = p.parse_args()
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = set(args.shapes) - set(SHAPES)
    if unknown:
        raise SystemExit(f"unknown shape {', '.join(sorted(unknown))}; one of {', '.join(SHAPES)}")
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
