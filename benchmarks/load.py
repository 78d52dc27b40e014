"""The users' side: the project's emulators in their own process, orders pushed through Telegram's queue.

Orders enter as user messages in the Telegram emulator (`POST /_emulator/bots/{token}/messages`), which
delivers them like Telegram does: webhook POSTs with the secret header (or getUpdates in polling mode).
The latency clock starts at the emulator's `enqueued_ts` (Telegram has the message), which is no later
than "webhook received", so the numbers are conservative by the delivery hop. Replies are matched by
(chat, reply_to_message_id) in the emulator's sent log; events by the order id Google stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp

from autodispatch.embedded import ManagedProcess, _wait_port, free_port
from benchmarks.progress import Progress
from parsing.orders import parse_order


class EmulatorProcess:
    """`python -m emulators` on free ports: Telegram and Google outside the process under test,
    so their CPU neither competes for the worker's event loop nor skews the timestamps they record."""

    def __init__(self, run_dir: Path, python: str) -> None:
        self.telegram_port, self.google_port = free_port(), free_port()
        argv = [python, "-m", "emulators", "--telegram-port", str(self.telegram_port),
                "--google-port", str(self.google_port), "--log-level", "ERROR",
                "--allow-anonymous"]  # fmt: skip  # the benchmark measures the flow, not the token exchange
        self.process = ManagedProcess("emulators", argv, run_dir, marker=str(self.telegram_port))

    @property
    def telegram(self) -> str:
        return f"http://127.0.0.1:{self.telegram_port}"

    @property
    def google(self) -> str:
        return f"http://127.0.0.1:{self.google_port}"

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def start(self) -> None:
        self.process.start()
        _wait_port(self.process, "127.0.0.1", self.telegram_port, 30)
        _wait_port(self.process, "127.0.0.1", self.google_port, 30)

    def stop(self) -> None:
        self.process.stop()


class Emulators:
    """The emulators' control APIs over HTTP."""

    def __init__(self, http: aiohttp.ClientSession, telegram: str, google: str) -> None:
        self.http, self.telegram, self.google = http, telegram, google

    async def _json(self, method: str, url: str, body: Any = None) -> Any:
        async with self.http.request(method, url, json=body) as r:
            data = await r.json(content_type=None)
            if r.status >= 400:
                raise RuntimeError(f"{method} {url}: {r.status} {data}")
            return data

    async def configure_telegram(self, **options: Any) -> dict[str, Any]:
        return await self._json("POST", f"{self.telegram}/_emulator/config", options)

    async def telegram_stats(self) -> dict[str, Any]:
        return await self._json("GET", f"{self.telegram}/_emulator/stats")

    async def google_stats(self) -> dict[str, Any]:
        return await self._json("GET", f"{self.google}/_emulator/stats")

    async def user_sends(self, token: str, chat_id: int, text: str) -> dict[str, Any]:
        sender = {"id": chat_id, "first_name": "Bench", "last_name": str(chat_id), "language_code": "ru"}
        return await self._json(
            "POST", f"{self.telegram}/_emulator/bots/{token}/messages",
            {"chat_id": chat_id, "text": text, "from": sender},
        )  # fmt: skip

    async def webhook_pending(self, token: str) -> int:
        """Updates Telegram still holds for the bot's webhook (getWebhookInfo)."""
        info = await self._json("GET", f"{self.telegram}/bot{token}/getWebhookInfo")
        return int(info["result"].get("pending_update_count", 0))

    async def sent(self, token: str, since: float | None = None) -> list[dict[str, Any]]:
        query = f"?since={since!r}" if since is not None else ""
        return await self._json("GET", f"{self.telegram}/_emulator/bots/{token}/sent{query}")

    async def updates(self, token: str) -> list[dict[str, Any]]:
        return await self._json("GET", f"{self.telegram}/_emulator/bots/{token}/updates")

    async def set_webhook(self, token: str, url: str, secret: str) -> None:
        async with self.http.post(
            f"{self.telegram}/bot{token}/setWebhook",
            data={"url": url, "secret_token": secret, "drop_pending_updates": "false"},
        ) as r:
            body = await r.json(content_type=None)
            if not body.get("ok"):
                raise RuntimeError(f"setWebhook: {body}")

    async def create_calendar(self, calendar_id: str) -> None:
        await self._json(
            "POST", f"{self.google}/_emulator/calendars",
            {"calendar_id": calendar_id, "owner": "driver@bench.local", "time_zone": "Europe/Moscow"},
        )  # fmt: skip

    async def events(self, calendar_id: str) -> list[dict[str, Any]]:
        return await self._json("GET", f"{self.google}/_emulator/calendars/{quote(calendar_id)}/events")


# -- orders ---------------------------------------------------------------------------------------
_ROUTES = [
    ("Внуково", "Тверская {n}"), ("Шереметьево D", "Ленинский проспект {n}"),
    ("Домодедово", "ул. Арбат {n}"), ("Курский вокзал", "Профсоюзная {n}"),
    ("Павелецкий вокзал", "проспект Мира {n}"), ("Казанский вокзал", "Внуково"),
]  # fmt: skip
_FORMS = [
    "завтра {h}:{m:02d} {a} → {b}, {p}₽",
    "завтра в {h}:{m:02d} {a} - {b}, {p} руб",
    "Заказ на завтра {h}:{m:02d}\nОткуда: {a}\nКуда: {b}\nЦена: {p}р",
]


def order_texts(count: int = 120) -> list[str]:
    """Varied, complete orders (time and pickup present), checked with the real parser so that every
    one reaches the calendar instead of a question."""
    now = datetime.now(ZoneInfo("Europe/Moscow"))
    texts: list[str] = []
    for i in range(count * 2):
        a, b = _ROUTES[i % len(_ROUTES)]
        text = _FORMS[i % len(_FORMS)].format(
            h=7 + i % 14, m=(i * 7) % 60, a=a, b=b.format(n=1 + i % 40), p=1200 + (i % 30) * 50
        )
        parsed = parse_order(text, now, "Europe/Moscow")
        if not parsed.missing_fields() and parsed.pickup_at is not None:
            texts.append(text)
        if len(texts) >= count:
            break
    if not texts:
        raise RuntimeError("the parser completes none of the benchmark's order texts")
    return texts


@dataclass(frozen=True)
class DriverRef:
    tenant_id: str
    chat_id: int
    calendar_id: str


@dataclass
class Order:
    driver: DriverRef
    text: str
    t_submit: float
    message_id: int = 0
    update_id: int = 0
    enqueued_ts: float | None = None
    delivered_ts: float | None = None
    replies: list[float] = field(default_factory=list)
    events: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.driver.chat_id, self.message_id)


class ReplyTracker:
    """Follows one bot's sent log and wakes whoever waits for a (chat, reply_to) reply."""

    def __init__(self, emu: Emulators, token: str, interval: float = 0.1) -> None:
        self.emu, self.token, self.interval = emu, token, interval
        self.seen: dict[tuple[int, int], list[float]] = {}
        self._seqs: set[int] = set()
        self._waiters: dict[tuple[int, int], Callable[[], None]] = {}
        self._last_ts: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    def watch(self, key: tuple[int, int], on_reply: Callable[[], None]) -> None:
        if key in self.seen:
            on_reply()
        else:
            self._waiters[key] = on_reply

    async def poll_once(self) -> None:
        # Overlap a second: entries are time-stamped when recorded, concurrent sends may land out of order.
        since = None if self._last_ts is None else self._last_ts - 1.0
        entries = await self.emu.sent(self.token, since)
        fresh = False
        for e in entries:
            if e["seq"] in self._seqs or e.get("method") != "sendMessage":
                continue
            self._seqs.add(e["seq"])
            self._last_ts = max(self._last_ts or 0.0, e["ts"])
            if e.get("reply_to_message_id") is None:
                continue
            key = (int(e["chat_id"]), int(e["reply_to_message_id"]))
            self.seen.setdefault(key, []).append(float(e["ts"]))
            fresh = True
            waiter = self._waiters.pop(key, None)
            if waiter is not None:
                waiter()
        if fresh:
            self.changed.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, RuntimeError):
                await self.poll_once()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"tracker-{self.token[:10]}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def push(
    emu: Emulators,
    tracker: ReplyTracker,
    drivers: list[DriverRef],
    texts: list[str],
    *,
    count: int | None = None,
    duration: float | None = None,
    rate: float | None = None,
    window: int | None = None,
    stop: asyncio.Event | None = None,
    progress: Progress | None = None,
    http_concurrency: int = 32,
    stall_s: float = 60.0,
) -> list[Order]:
    """Send orders round-robin over `drivers`: at `rate` per second (open loop), or keeping at most
    `window` orders without a reply (closed loop: the most the system sustains without a backlog),
    or as fast as the emulator takes them (neither). Ends after `count` orders, `duration` seconds or
    when `stop` is set, whichever comes first."""
    assert count is not None or duration is not None or stop is not None
    orders: list[Order] = []
    in_flight = asyncio.Semaphore(window) if window else None
    http = asyncio.Semaphore(http_concurrency)
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    cycle: Iterator[tuple[DriverRef, str]] = zip(
        itertools.cycle(drivers), itertools.cycle(texts), strict=False
    )

    def done_one() -> None:
        if in_flight is not None:
            in_flight.release()
        if progress is not None:
            progress.done += 1

    async def send(order: Order) -> None:
        try:
            async with http:
                order.t_submit = time.time()
                res = await emu.user_sends(tracker.token, order.driver.chat_id, order.text)
        except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
            order.error = f"{type(exc).__name__}: {exc}"  # the bench's own failure: counted, not waited for
            done_one()
            return
        order.message_id, order.update_id = int(res["message_id"]), int(res["update_id"])
        tracker.watch(order.key, done_one)

    for i in itertools.count():
        if count is not None and i >= count:
            break
        if duration is not None and loop.time() - t0 >= duration:
            break
        if stop is not None and stop.is_set():
            break
        if rate:
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                if stop is None:
                    await asyncio.sleep(delay)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
        if in_flight is not None:
            # A lost order never frees its slot: give up waiting at the deadline or after a long stall.
            limit = stall_s if duration is None else max(0.0, duration - (loop.time() - t0))
            try:
                await asyncio.wait_for(in_flight.acquire(), limit)
            except TimeoutError:
                break
        driver, text = next(cycle)
        order = Order(driver=driver, text=text, t_submit=0.0)
        orders.append(order)
        if progress is not None:
            progress.sent += 1
        tasks.append(asyncio.create_task(send(order)))
        if rate is None and in_flight is None:
            await asyncio.sleep(0)  # a burst, but let the sends run
    await asyncio.gather(*tasks)
    return orders


async def settle(
    tracker: ReplyTracker, orders: list[Order], *, stall_s: float = 60.0, grace_s: float = 1.0
) -> None:
    """Wait until every order has a reply, or nothing new arrived for `stall_s` (the rest are lost)."""
    keys = {o.key for o in orders if o.error is None}
    while True:
        missing = [k for k in keys if k not in tracker.seen]
        if not missing:
            break
        tracker.changed.clear()
        try:
            await asyncio.wait_for(tracker.changed.wait(), stall_s)
        except TimeoutError:
            break
    await asyncio.sleep(grace_s)  # a late duplicate would show up now
    await tracker.poll_once()


async def collect(emu: Emulators, tracker: ReplyTracker, orders: list[Order]) -> None:
    """Fill in each order's Telegram timestamps, replies and calendar events (by order id)."""
    from workflows.ids import order_id_for

    by_update = {u["update_id"]: u for u in await emu.updates(tracker.token)}
    for o in orders:
        u = by_update.get(o.update_id)
        if u is not None:
            o.enqueued_ts, o.delivered_ts = u["enqueued_ts"], u["delivered_ts"]
        o.replies = list(tracker.seen.get(o.key, []))
    calendars = sorted({o.driver.calendar_id for o in orders})
    stored: dict[str, list[float]] = {}
    for events in await asyncio.gather(*(emu.events(c) for c in calendars)):
        for ev in events:
            oid = ((ev.get("extendedProperties") or {}).get("private") or {}).get("order_id")
            if oid:
                stored.setdefault(oid, []).append(float(ev["_stored_ts"]))
    for o in orders:
        o.events = stored.get(order_id_for(o.driver.tenant_id, o.driver.chat_id, o.message_id), [])
