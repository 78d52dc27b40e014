"""One `autodispatch bench` invocation: the stack once, then the scenarios, each durable then baseline."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from autodispatch import admin, db
from autodispatch.codec import new_key_spec
from autodispatch.embedded import free_port
from autodispatch.oauth import generate_key
from autodispatch.settings import Settings
from benchmarks.load import (
    DriverRef,
    EmulatorProcess,
    Emulators,
    Order,
    ReplyTracker,
    collect,
    order_texts,
    push,
    settle,
)
from benchmarks.progress import Progress, note
from benchmarks.stats import CpuMeter, cdf_points, per_second, summary_ms, sustained_rate

log = logging.getLogger(__name__)

SCENARIOS = ("max", "steady", "noisy-neighbour", "bots", "strangers", "parse")
STACK_TOKEN = "7100000001:bench-durable-bot-token"
BASELINE_TOKEN = "7100000002:bench-baseline-bot-token"
# The targets on the reference 2-core machine; reported next to the numbers, never asserted.
TARGETS = {
    "max": "≥ 0.5 × the baseline, ≤ 50 ms CPU per order, 0 lost, 0 duplicated",
    "steady": "p50 ≤ 250 ms, p99 ≤ 1 s webhook → reply, 0 lost, 0 duplicated, 0 × 429",
    "noisy-neighbour": "quiet tenant's p99 ≤ 2 × its p99 alone",
    "bots": "throughput across bots; the quiet bots' p99 during one bot's flood ≤ 2 × alone, 0 × 429",
    "strangers": "a driver's p99 while 1,000 strangers write at once ≤ 2 × alone, 0 lost, 0 duplicated",
    "parse": "≥ 2,000 messages/s on one core",
}


@dataclass
class BenchOptions:
    scenarios: list[str]
    orders: int | None = None
    mode: str = "webhook"
    tenants: int = 4
    drivers: int = 25
    window: int = 100
    rate: float = 30.0
    duration: float = 60.0
    quiet_orders: int = 20
    flood_orders: int = 2000
    baseline: bool = True
    profile: bool = False
    progress: bool = True
    results_dir: Path = Path("bench/results")
    benchmarks_md: Path | None = Path("BENCHMARKS.md")
    command: str = ""
    keep_data: bool = False
    stall_s: float = 60.0
    workers: int = 1
    # The app's own Telegram send budget (outbound queue rate limit, per-chat pacing): Telegram's
    # 30/s and 1/s by default; `max` alone lifts it ("cap off"), see cli.py.
    send_budget: float = 30.0
    send_budget_per_chat: float = 1.0


@dataclass
class Phase:
    """One stream of orders through one entry point, measured."""

    label: str
    orders: list[Order]
    cpu: dict[str, float]
    wall_s: float
    telegram: dict[str, int] = field(default_factory=dict)
    handler_errors: int = 0

    def stats(self, system: tuple[str, ...]) -> dict[str, Any]:
        ok = [o for o in self.orders if o.error is None and o.enqueued_ts is not None]
        replied = [o for o in ok if o.replies]
        reply_lat = [min(o.replies) - o.enqueued_ts for o in replied]  # type: ignore[operator]
        event_lat = [min(o.events) - o.enqueued_ts for o in ok if o.events]  # type: ignore[operator]
        ack_lat = [o.delivered_ts - o.enqueued_ts for o in ok if o.delivered_ts]  # type: ignore[operator]
        start = min((o.enqueued_ts for o in ok), default=0.0)  # type: ignore[type-var]
        firsts = [min(o.replies) for o in replied]
        span = (max(firsts) - start) if firsts else 0.0
        series = per_second(firsts, start)
        cpu_s = sum(v for k, v in self.cpu.items() if k in system or k.split("-", 1)[0] in system)
        others = CpuMeter.others(self.cpu)
        submit_errors = sum(1 for o in self.orders if o.error is not None)
        out: dict[str, Any] = {
            "orders": len(self.orders),
            "completed": len(replied),
            "duration_s": round(span, 2),
            "throughput_per_s": round(len(replied) / span, 2) if span > 0 else None,
            "sustained_10s_per_s": sustained_rate(series),
            **summary_ms(reply_lat),
            **summary_ms(event_lat, "event_"),
            **summary_ms(ack_lat, "ack_"),
            "lost": sum(1 for o in ok if not o.replies or not o.events) + submit_errors,
            "duplicated": sum(1 for o in ok if len(o.replies) > 1 or len(o.events) > 1),
            "lost_replies": sum(1 for o in ok if not o.replies),
            "lost_events": sum(1 for o in ok if not o.events),
            "duplicated_replies": sum(1 for o in ok if len(o.replies) > 1),
            "duplicated_events": sum(1 for o in ok if len(o.events) > 1),
            "rate_limited": self.telegram.get("too_many_requests", 0),
            "errors": submit_errors + self.telegram.get("webhook_errors", 0) + self.handler_errors,
            "error_detail": {
                "submit": submit_errors,
                "webhook_non_2xx": self.telegram.get("webhook_errors", 0),
                "baseline_handler": self.handler_errors,
                "bot_api_errors": self.telegram.get("errors", 0),
            },  # fmt: skip
            "cpu_ms_per_order": round(cpu_s * 1000 / len(replied), 2) if replied else None,
            "cpu_s": {k: v for k, v in self.cpu.items() if k != "machine"},
            "cpu_ms_per_order_by_process": {
                k: round(v * 1000 / len(replied), 2) for k, v in self.cpu.items() if k != "machine"
            }
            if replied
            else {},
            "other_programs_cores_busy": round(others / self.wall_s, 2) if self.wall_s else None,
            "cpu_cores_busy": {k: round(v / self.wall_s, 2) for k, v in self.cpu.items() if k != "machine"}
            if self.wall_s
            else {},
            "cdf": cdf_points(reply_lat),
            "per_second": series,
        }
        return out


class Bench:
    """The stack on embedded defaults (free ports, a temporary data dir) plus the baseline next to it."""

    def __init__(self, opts: BenchOptions) -> None:
        self.opts = opts
        self.texts = order_texts()
        self._chat_ids = itertools.count(2_000_000_001)
        self.secret = secrets.token_urlsafe(24)
        self.data_dir: Path | None = None
        self.stack: Any = None
        self.emu_proc: EmulatorProcess | None = None
        self.emu: Emulators | None = None
        self.http: aiohttp.ClientSession | None = None
        self.trackers: dict[str, ReplyTracker] = {}
        self.cpu = CpuMeter()
        self.baseline: Any = None
        self._baseline_pool: Any = None
        self._baseline_bot: Any = None
        self._baseline_runner: web.AppRunner | None = None
        self.settings: Settings | None = None
        self._profiling = False

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        from activities.calendar import CalendarService
        from autodispatch.stack import Stack
        from benchmarks.baseline import BASELINE_PATH, BaselineBot
        from bot.dispatcher import make_bot

        self.data_dir = Path(tempfile.mkdtemp(prefix="autodispatch-bench-"))
        os.chmod(self.data_dir, 0o755)  # the embedded postgres system user must traverse it
        self.emu_proc = EmulatorProcess(self.data_dir / "run", sys.executable)
        self.emu_proc.start()
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.emu = Emulators(self.http, self.emu_proc.telegram, self.emu_proc.google)
        self.settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            telegram_bot_token=STACK_TOKEN, telegram_api_base=self.emu.telegram,
            telegram_mode=self.opts.mode, telegram_webhook_secret=self.secret, telegram_webhook_url=None,
            google_api_endpoint=self.emu.google, google_service_account_file=None,
            database_url=None, app_database_url=None, temporal_address=None, temporal_api_key=None,
            temporal_tls=False, temporal_namespace="default", temporal_task_queue="autodispatch",
            temporal_grpc_port=free_port(), temporal_ui_port=free_port(), postgres_port=free_port(),
            data_dir=self.data_dir, http_host="127.0.0.1", http_port=free_port(), log_level="WARNING",
            sandbox_telegram_port=free_port(), sandbox_google_port=free_port(),
            payload_keys=new_key_spec("bench"),  # the cost of sealing payloads is part of the numbers
            oauth_token_keys=generate_key(),  # the tenants' own bots' tokens (scenario bots)
            telegram_messages_per_second=self.opts.send_budget,
            telegram_per_chat_interval=1.0 / self.opts.send_budget_per_chat if self.opts.send_budget_per_chat else 0.0,
        )  # fmt: skip
        # Default durability (fsync on): the numbers are those of `autodispatch up`.
        self.stack = Stack(self.settings, announce=False, workers=self.opts.workers)
        await self.stack.start()
        assert self.stack.temporal and self.stack.postgres
        self.cpu.pids = {
            "app": os.getpid(),
            "temporal": self.stack.temporal.process.proc.pid,
            "postgres": self.stack.postgres.process.proc.pid,
            "emulators": self.emu_proc.pid,
        }
        for proc in self.stack.worker_processes:  # `--workers N`: the others count as the app too
            assert proc.pid is not None and proc.name is not None
            self.cpu.pids[f"app-{proc.name}"] = proc.pid
        if self.opts.baseline:
            self._baseline_pool = await db.create_pool(
                self.stack.app_dsn, system_dsn=self.stack.system_dsn, max_size=20
            )
            self._baseline_bot = make_bot(BASELINE_TOKEN, self.emu.telegram)
            calendar = CalendarService(self.emu.google + "/calendar/v3/")
            self.baseline = BaselineBot(self._baseline_pool, self._baseline_bot, calendar, self.secret)
            app = web.Application()
            self.baseline.routes(app)
            self._baseline_runner = web.AppRunner(app, access_log=None)
            await self._baseline_runner.setup()
            port = free_port()
            await web.TCPSite(self._baseline_runner, "127.0.0.1", port).start()
            await self.emu.set_webhook(BASELINE_TOKEN, f"http://127.0.0.1:{port}{BASELINE_PATH}", self.secret)
        for token in (STACK_TOKEN, BASELINE_TOKEN) if self.opts.baseline else (STACK_TOKEN,):
            self.trackers[token] = ReplyTracker(self.emu, token)
            self.trackers[token].start()

    async def stop(self) -> None:
        for tracker in self.trackers.values():
            await tracker.stop()
        if self._baseline_runner is not None:
            await self._baseline_runner.cleanup()
        if self.baseline is not None:
            self.baseline.close()
        if self._baseline_bot is not None:
            await self._baseline_bot.session.close()
        if self._baseline_pool is not None:
            await self._baseline_pool.close()
        if self.stack is not None:
            await self.stack.stop()
        if self.http is not None:
            await self.http.close()
        if self.emu_proc is not None:
            self.emu_proc.stop()
        if self.data_dir is not None and not self.opts.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- building blocks --------------------------------------------------------------------------
    async def fleet(self, name: str, tenants: int, drivers: int) -> list[DriverRef]:
        """`tenants` tenants with `drivers` drivers each, each driver with a calendar in the emulator."""
        assert self.emu and self.stack and self.stack.pool
        refs: list[DriverRef] = []
        for t in range(tenants):
            tenant = f"{name}-t{t}"
            for d in range(drivers):
                ref = DriverRef(tenant, next(self._chat_ids), f"{tenant}-d{d}@bench.calendar.local")
                await self.emu.create_calendar(ref.calendar_id)
                await admin.add_driver(self.stack.pool, tenant=tenant, chat_id=ref.chat_id,
                                       calendar_id=ref.calendar_id, name=f"Driver {d}")  # fmt: skip
                refs.append(ref)
        return refs

    async def telegram_counters(self) -> dict[str, int]:
        assert self.emu
        s = await self.emu.telegram_stats()
        return {k: int(s.get(k, 0)) for k in ("too_many_requests", "webhook_errors", "errors")}

    @contextlib.asynccontextmanager
    async def measured(self, label: str) -> AsyncIterator[dict[str, Any]]:
        """CPU and Telegram counters around a stretch of work; optionally a pyinstrument profile."""
        box: dict[str, Any] = {}
        profiler = None
        if self.opts.profile and not self._profiling:  # one profiler at a time (noisy runs streams at once)
            self._profiling = True
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.002, async_mode="disabled")
            profiler.start()
        tg0, cpu0, t0 = await self.telegram_counters(), self.cpu.snapshot(), time.monotonic()
        base_errors0 = self.baseline.errors if self.baseline else 0
        try:
            yield box
        finally:
            box["wall_s"] = time.monotonic() - t0
            box["cpu"] = CpuMeter.delta(cpu0, self.cpu.snapshot())
            tg1 = await self.telegram_counters()
            box["telegram"] = {k: tg1[k] - tg0[k] for k in tg0}
            box["handler_errors"] = (self.baseline.errors if self.baseline else 0) - base_errors0
            if profiler is not None:
                profiler.stop()
                self._profiling = False
                path = self.opts.results_dir / f"profile-{label.replace(' ', '-')}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
                note(f"profile written to {path}", self.opts.progress)

    async def history_sample(self, orders: list[Order], n: int = 20) -> dict[str, Any]:
        """Temporal's share of the latency, from the histories of `n` orders spread over the run."""
        from benchmarks.history import breakdown
        from schemas.telegram import main_workflow_id

        done = [o for o in orders if o.replies and o.update_id]
        if not done or self.stack is None or self.stack.client is None:
            return {}
        step = max(1, len(done) // n)
        bot_id = int(STACK_TOKEN.split(":")[0])
        ids = [main_workflow_id(bot_id, o.update_id) for o in done[::step][:n]]
        try:
            return await breakdown(self.stack.client, ids)
        except Exception as exc:  # a diagnostic: never fail the run for it
            log.warning("history breakdown failed: %s", exc)
            return {}

    async def run_stream(self, label: str, token: str, drivers: list[DriverRef], **push_kw: Any) -> Phase:
        """Push one stream of orders, wait until they are all answered (or stalled), collect."""
        assert self.emu
        tracker = self.trackers[token]
        total = push_kw.get("count")
        seconds = push_kw.get("duration") or (
            total / push_kw["rate"] if total and push_kw.get("rate") else None
        )
        async with self.measured(label) as box:
            with Progress(label, total=total, seconds=seconds, enabled=self.opts.progress) as bar:
                orders = await push(self.emu, tracker, drivers, self.texts, progress=bar,
                                    stall_s=self.opts.stall_s, **push_kw)  # fmt: skip
                bar.total = len(orders)
                await settle(tracker, orders, stall_s=self.opts.stall_s)
        await collect(self.emu, tracker, orders)
        return Phase(label, orders, box["cpu"], box["wall_s"], box["telegram"], box["handler_errors"])


DURABLE = ("app", "temporal", "postgres")
BASELINE = ("app", "postgres")


def _merge(durable: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(durable)
    if base is None:
        out.update(
            baseline_throughput_per_s=None, baseline=None, ratio_throughput=None, ratio_cpu_per_order=None
        )
        return out
    out["baseline_throughput_per_s"] = base["throughput_per_s"]
    out["baseline"] = base
    bt, dt = base.get("throughput_per_s"), durable.get("throughput_per_s")
    bc, dc = base.get("cpu_ms_per_order"), durable.get("cpu_ms_per_order")
    out["ratio_throughput"] = round(dt / bt, 3) if dt and bt else None
    out["ratio_cpu_per_order"] = round(dc / bc, 3) if dc and bc else None
    return out


async def scenario_max(b: Bench) -> dict[str, Any]:
    o = b.opts
    count, duration = (o.orders, None) if o.orders else (None, o.duration)
    fleet = await b.fleet("max", o.tenants, o.drivers)
    phase = await b.run_stream(
        "max durable", STACK_TOKEN, fleet, count=count, duration=duration, window=o.window
    )
    d, d_orders = phase.stats(DURABLE), phase.orders
    base = None
    if o.baseline:
        bfleet = await b.fleet("max-base", o.tenants, o.drivers)
        base = (await b.run_stream("max baseline", BASELINE_TOKEN, bfleet, count=d["orders"],
                                   window=o.window)).stats(BASELINE)  # fmt: skip
    out = _merge(d, base)
    out["window"] = o.window
    out["temporal_breakdown"] = await b.history_sample(d_orders)
    ok = (out["sustained_10s_per_s"] or 0) >= 100 and out["lost"] == 0 and out["duplicated"] == 0
    out["target_met"] = ok and (out["duration_s"] or 0) >= 60
    return out


async def scenario_steady(b: Bench) -> dict[str, Any]:
    o = b.opts
    assert b.emu
    count = o.orders or int(o.rate * o.duration)
    # Telegram's limits: 30 messages/s per bot, 1 message/s per chat (burst of one).
    await b.emu.configure_telegram(rate_limits=True, per_bot_per_s=30, per_chat_per_s=1)
    try:
        fleet = await b.fleet("steady", o.tenants, o.drivers)
        d = (await b.run_stream("steady durable", STACK_TOKEN, fleet, count=count, rate=o.rate)).stats(
            DURABLE
        )
        base = None
        if o.baseline:
            bfleet = await b.fleet("steady-base", o.tenants, o.drivers)
            base = (await b.run_stream("steady baseline", BASELINE_TOKEN, bfleet, count=count,
                                       rate=o.rate)).stats(BASELINE)  # fmt: skip
    finally:
        await b.emu.configure_telegram(rate_limits=False)
    out = _merge(d, base)
    out["rate_per_s"] = o.rate
    out["target_met"] = (
        (out["p50_ms"] or 1e9) <= 60 and (out["p99_ms"] or 1e9) <= 200 and out["rate_limited"] == 0
        and out["lost"] == 0 and out["duplicated"] == 0
    )  # fmt: skip
    return out


async def _noisy(b: Bench, token: str, prefix: str, system: tuple[str, ...]) -> dict[str, Any]:
    o = b.opts
    flood_n = o.orders or o.flood_orders
    quiet_n = max(5, min(o.quiet_orders, flood_n // 4)) if o.orders else o.quiet_orders
    # Several drivers: one order a second from one chat would sit exactly at Telegram's 1 msg/s per chat.
    quiet = await b.fleet(f"{prefix}-quiet", 1, o.drivers)
    noisy = await b.fleet(f"{prefix}-flood", 1, o.drivers)
    alone = await b.run_stream(f"{prefix} quiet alone", token, quiet, count=quiet_n, rate=1.0)
    stop = asyncio.Event()

    async def quiet_during() -> Phase:
        return await b.run_stream(f"{prefix} quiet in flood", token, quiet, rate=1.0, stop=stop)

    async def flood() -> Phase:
        try:
            return await b.run_stream(f"{prefix} flood", token, noisy, count=flood_n)
        finally:
            stop.set()

    # The quiet tenant keeps its one order a second for as long as the flood is being worked off.
    b.opts.progress, progress = False, b.opts.progress
    try:
        with Progress(f"{prefix} flood + quiet", total=flood_n, enabled=progress) as bar:
            watcher = asyncio.create_task(_mirror(bar, b.trackers[token], flood_n))
            flood_phase, quiet_phase = await asyncio.gather(flood(), quiet_during())
            watcher.cancel()
    finally:
        b.opts.progress = progress
    a, q, f = alone.stats(system), quiet_phase.stats(system), flood_phase.stats(system)
    if token == STACK_TOKEN:  # where the quiet tenant's orders waited during the flood
        q["temporal_breakdown"] = await b.history_sample(quiet_phase.orders)
        a["temporal_breakdown"] = await b.history_sample(alone.orders)
    ratio = round(q["p99_ms"] / a["p99_ms"], 2) if q["p99_ms"] and a["p99_ms"] else None
    return {
        "orders": f["orders"] + q["orders"] + a["orders"],
        "throughput_per_s": f["throughput_per_s"],
        **{k: q[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
        "lost": a["lost"] + q["lost"] + f["lost"],
        "duplicated": a["duplicated"] + q["duplicated"] + f["duplicated"],
        "rate_limited": a["rate_limited"] + f["rate_limited"],
        "errors": a["errors"] + f["errors"],
        "quiet_alone_p99_ms": a["p99_ms"],
        "quiet_in_flood_p99_ms": q["p99_ms"],
        "quiet_p99_ratio": ratio,
        "cpu_ms_per_order": f["cpu_ms_per_order"],
        "cpu_ms_per_order_by_process": f["cpu_ms_per_order_by_process"],
        "cpu_s": f["cpu_s"],
        "cpu_cores_busy": f["cpu_cores_busy"],
        "other_programs_cores_busy": f["other_programs_cores_busy"],
        "quiet_alone": a,
        "quiet_in_flood": q,
        "flood": f,
        "cdf": q["cdf"],
        "per_second": f["per_second"],
    }


async def _mirror(bar: Progress, tracker: ReplyTracker, total: int) -> None:
    start = len(tracker.seen)
    while True:
        bar.done = min(total, len(tracker.seen) - start)
        bar.sent = bar.done
        await asyncio.sleep(0.2)


async def scenario_noisy(b: Bench) -> dict[str, Any]:
    d = await _noisy(b, STACK_TOKEN, "noisy", DURABLE)
    base = await _noisy(b, BASELINE_TOKEN, "noisy-base", BASELINE) if b.opts.baseline else None
    out = _merge(d, base)
    out["flood_orders"] = d["flood"]["orders"]
    out["target_met"] = bool(out["quiet_p99_ratio"] is not None and out["quiet_p99_ratio"] <= 2.0
                             and out["lost"] == 0 and out["duplicated"] == 0)  # fmt: skip
    return out


async def _own_bots(b: Bench, count: int) -> list[tuple[str, list[DriverRef]]]:
    """`count` tenants, each with its own bot registered while the stack runs: (token, its drivers)."""
    from autodispatch import bots

    assert b.stack and b.stack.pool and b.stack.fleet and b.emu and b.settings
    out = []
    for n in range(count):
        drivers = await b.fleet(f"bots-{n}", 1, b.opts.drivers)
        token = f"{7_200_000_001 + n}:bench-tenant-bot-{n}"
        row = await bots.add_bot(b.stack.pool, b.settings, drivers[0].tenant_id, token, api_base=b.emu.telegram,
                                 source="cli", actor="bench")  # fmt: skip
        deadline = time.monotonic() + 60
        while b.stack.fleet.lookup(row["bot_id"]) is None:  # the stack picks it up (no restart)
            if time.monotonic() > deadline:
                raise RuntimeError(f"bot {row['bot_id']} not served after 60 s")
            await asyncio.sleep(0.1)
        b.trackers[token] = ReplyTracker(b.emu, token)
        b.trackers[token].start()
        out.append((token, drivers))
    return out


async def _streams(b: Bench, label: str, streams: list[tuple[str, list[DriverRef], dict[str, Any]]]) -> Phase:
    """Several bots' streams at once, measured together; each stream's phase is kept in `.parts`."""
    progress, b.opts.progress = b.opts.progress, False
    note(f"{label} …", progress)
    try:
        async with b.measured(label) as box:
            parts = await asyncio.gather(
                *(
                    b.run_stream(f"{label} {i}", token, drivers, **kw)
                    for i, (token, drivers, kw) in enumerate(streams)
                )
            )
    finally:
        b.opts.progress = progress
    phase = Phase(label, [o for p in parts for o in p.orders], box["cpu"], box["wall_s"], box["telegram"])
    phase.parts = list(parts)  # type: ignore[attr-defined]
    return phase


async def scenario_strangers(b: Bench) -> dict[str, Any]:
    """A driver at one order a second alone, then while `--orders` (1,000) unknown chats write to the bot
    at once: the stranger gate (bot/strangers.py) must keep the driver's latency and bound the work."""
    o = b.opts
    assert b.emu
    n = o.orders or 1000
    driver = await b.fleet("strangers-driver", 1, o.drivers)
    quiet_n = max(5, o.quiet_orders)
    alone = await b.run_stream("driver alone", STACK_TOKEN, driver, count=quiet_n, rate=1.0)
    first_stranger = 8_800_000_000 + random.randrange(100_000_000)
    http = asyncio.Semaphore(32)
    stop = asyncio.Event()

    async def stranger(i: int) -> None:
        async with http:
            await b.emu.user_sends(STACK_TOKEN, first_stranger + i, "здравствуйте, сколько до Шереметьево?")

    async def flood() -> float:
        t0 = time.monotonic()
        try:
            await asyncio.gather(*(stranger(i) for i in range(n)))
            # Telegram delivers them one by one: the driver keeps writing while they are worked off.
            async with asyncio.timeout(600):
                # The count lives in the emulator's process: there is no event to wait on.
                while await b.emu.webhook_pending(STACK_TOKEN):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            return time.monotonic() - t0
        finally:
            stop.set()

    flood_s, during = await asyncio.gather(
        flood(), b.run_stream("driver among strangers", STACK_TOKEN, driver, rate=1.0, stop=stop)
    )
    a, q = alone.stats(DURABLE), during.stats(DURABLE)
    ratio = round(q["p99_ms"] / a["p99_ms"], 2) if q["p99_ms"] and a["p99_ms"] else None
    out: dict[str, Any] = {
        **q,
        "orders": a["orders"] + q["orders"],
        "strangers": n,
        "strangers_delivered_s": round(flood_s, 2),
        "quiet_alone_p99_ms": a["p99_ms"],
        "quiet_in_flood_p99_ms": q["p99_ms"],
        "quiet_p99_ratio": ratio,
        "lost": a["lost"] + q["lost"],
        "duplicated": a["duplicated"] + q["duplicated"],
        "quiet_alone": a,
        "quiet_in_flood": q,
        "baseline_throughput_per_s": None,
    }
    out["target_met"] = bool(
        ratio is not None and ratio <= 2.0 and out["lost"] == 0 and out["duplicated"] == 0
    )
    return out


async def scenario_bots(b: Bench) -> dict[str, Any]:
    """Four tenants with their own bots (`--tenants`), Telegram's limits per bot in the emulator: all
    bots at once (throughput across bots), then the quiet bots alone and during one bot's flood."""
    o = b.opts
    assert b.emu
    n = max(2, o.tenants)
    total = o.orders or int(o.rate * o.duration)
    flood_n = o.orders or o.flood_orders
    quiet_n = max(5, min(o.quiet_orders, flood_n // 4))
    per_bot = max(1.0, o.rate / n)  # the offered load, spread over the bots
    await b.emu.configure_telegram(rate_limits=True, per_bot_per_s=o.send_budget, per_chat_per_s=1)
    try:
        fleet = await _own_bots(b, n)
        together = await _streams(
            b, "bots together", [(t, d, {"count": max(1, total // n), "rate": per_bot}) for t, d in fleet]
        )
        # The quiet bots together at one order a second (the noisy-neighbour scenario's quiet tenant),
        # well below what the machine sustains: what is measured is the flood's effect, not overload.
        quiet = fleet[1:]
        quiet_rate, quiet_each = 1.0 / len(quiet), max(3, quiet_n // len(quiet))
        alone = await _streams(
            b, "quiet bots alone", [(t, d, {"count": quiet_each, "rate": quiet_rate}) for t, d in quiet]
        )
        stop = asyncio.Event()

        async def flood() -> Phase:
            try:
                return await _streams(b, "one bot floods", [(fleet[0][0], fleet[0][1], {"count": flood_n})])
            finally:
                stop.set()

        flooding, during = await asyncio.gather(
            flood(),
            _streams(
                b, "quiet bots in flood", [(t, d, {"rate": quiet_rate, "stop": stop}) for t, d in quiet]
            ),
        )
    finally:
        await b.emu.configure_telegram(rate_limits=False)
    t, a, q, f = (p.stats(DURABLE) for p in (together, alone, during, flooding))
    ratio = round(q["p99_ms"] / a["p99_ms"], 2) if q["p99_ms"] and a["p99_ms"] else None
    phases = (together, alone, during, flooding)
    out: dict[str, Any] = {
        **t,
        "bots": n,
        "offered_per_bot_per_s": per_bot,
        "quiet_bots_per_s": 1.0,
        "per_bot_throughput_per_s": [p.stats(DURABLE)["throughput_per_s"] for p in together.parts],  # type: ignore[attr-defined]
        "quiet_alone_p99_ms": a["p99_ms"],
        "quiet_in_flood_p99_ms": q["p99_ms"],
        "quiet_p99_ratio": ratio,
        "flood_orders": f["orders"],
        "flood_throughput_per_s": f["throughput_per_s"],
        "lost": sum(p.stats(DURABLE)["lost"] for p in phases),
        "duplicated": sum(p.stats(DURABLE)["duplicated"] for p in phases),
        "rate_limited": t["rate_limited"] + a["rate_limited"] + max(q["rate_limited"], f["rate_limited"]),
        "quiet_alone": a,
        "quiet_in_flood": q,
        "flood": f,
        "baseline_throughput_per_s": None,
    }
    out["target_met"] = bool(
        ratio is not None and ratio <= 2.0 and out["lost"] == 0 and out["duplicated"] == 0
        and out["rate_limited"] == 0
    )  # fmt: skip
    return out


def scenario_parse(opts: BenchOptions) -> dict[str, Any]:
    """The parser alone, one thread pinned to one core, over the test corpus (or generated orders)."""
    from parsing.orders import parse_order
    from schemas.order import ParseRequest

    corpus = Path(__file__).resolve().parents[1] / "tests" / "corpus" / "orders.jsonl"
    if corpus.exists():
        reqs = [
            ParseRequest.model_validate(json.loads(line)) for line in corpus.read_text().splitlines() if line
        ]
    else:
        now = datetime.now(UTC)
        reqs = [ParseRequest(text=t, now=now) for t in order_texts()]
    pinned = False
    if hasattr(os, "sched_setaffinity"):
        before = os.sched_getaffinity(0)
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {min(before)})
            pinned = True
    target_n = opts.orders or 0
    lat: list[float] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    with contextlib.suppress(KeyboardInterrupt):
        while time.perf_counter() - t0 < 3.0 or len(lat) < target_n:
            for r in reqs:
                s = time.perf_counter()
                parse_order(r.text, r.now, r.tz, region=r.region, currency=r.currency)
                lat.append(time.perf_counter() - s)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if pinned:
        os.sched_setaffinity(0, before)
    rate = len(lat) / wall
    return {
        "orders": len(lat),
        "throughput_per_s": round(rate, 1),
        **summary_ms(lat),
        "lost": 0, "duplicated": 0, "rate_limited": 0, "errors": 0,
        "baseline_throughput_per_s": None,
        "cpu_ms_per_order": round(cpu * 1000 / len(lat), 3),
        "corpus_messages": len(reqs),
        "pinned_to_one_core": pinned,
        "cdf": cdf_points(lat),
        "target_met": rate >= 2000,
    }  # fmt: skip


async def run(opts: BenchOptions) -> dict[str, Any]:
    from benchmarks.stats import machine

    started = datetime.now(UTC).isoformat(timespec="seconds")
    results: dict[str, dict[str, Any]] = {}
    if "parse" in opts.scenarios:
        note("parse: parser throughput on one core …", opts.progress)
        results["parse"] = scenario_parse(opts)
    live = [s for s in opts.scenarios if s != "parse"]
    if live:
        bench = Bench(opts)
        note(f"starting the stack (embedded Temporal + PostgreSQL, emulators, {opts.mode}) …", opts.progress)
        try:
            await bench.start()
            for name in live:
                fn = {"max": scenario_max, "steady": scenario_steady, "noisy-neighbour": scenario_noisy,
                      "bots": scenario_bots, "strangers": scenario_strangers}[name]  # fmt: skip
                results[name] = await fn(bench)
        finally:
            await bench.stop()
    info = machine()
    for name, res in results.items():
        if name != "parse":
            res.update(
                send_budget_per_s=opts.send_budget, send_budget_per_chat_per_s=opts.send_budget_per_chat
            )
        res.update(scenario=name, mode=opts.mode if name != "parse" else None, target=TARGETS[name],
                   machine=info, command=opts.command, started_at=started)  # fmt: skip
    return {name: results[name] for name in opts.scenarios if name in results}
