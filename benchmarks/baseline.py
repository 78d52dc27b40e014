"""The baseline: what a plain bot would do, with none of the guarantees.

An aiohttp webhook handler in the bench process that calls the real activity methods inline, in the
workflow's order (whitelist → parse → calendar insert in a thread → reply through the outbox → audit
rows and the order row), and answers Telegram only when done. No Temporal: a crash mid-way loses the
order or sends twice, a slow calendar holds the webhook, nothing retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
from typing import Any

import asyncpg
from aiogram import Bot
from aiogram.types import Update
from aiohttp import web

from activities.calendar import CalendarActivities, CalendarService
from activities.parsing import ParseActivities
from activities.store import StoreActivities
from activities.telegram import TelegramActivities
from autodispatch import texts
from bot.server import SECRET_HEADER
from schemas.audit import AuditEntry
from schemas.calendar import CreateEventInput
from schemas.driver import LookupDriverInput
from schemas.store import FinishStepInput, OrderRecord, ParseOrderInput
from schemas.telegram import SendReplyInput
from workflows.ids import order_id_for

log = logging.getLogger(__name__)
BASELINE_PATH = "/baseline/webhook"


class BaselineBot:
    def __init__(self, pool: asyncpg.Pool, bot: Bot, calendar: CalendarService, secret: str,
                 threads: int = 64) -> None:  # fmt: skip
        self.bot, self.secret = bot, secret
        self.store = StoreActivities(pool)
        self.telegram = TelegramActivities(bot, pool)
        self.calendar = CalendarActivities(calendar)
        self.parse = ParseActivities()
        # Same thread pool size as the worker's: googleapiclient is synchronous.
        self.executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="baseline-cal")
        self.errors = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post(BASELINE_PATH, self.webhook)

    async def webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return web.json_response({"error": "wrong secret"}, status=401)
        update = Update.model_validate(await request.json(), context={"bot": self.bot})
        try:
            await self.handle(update)
        except Exception as exc:  # no retries here: Telegram redelivers after the non-2xx answer
            self.errors += 1
            log.debug("baseline: update %s failed: %s", update.update_id, exc)
            return web.json_response({"error": "failed"}, status=500)
        return web.json_response({})

    async def handle(self, update: Update) -> None:
        msg = update.message
        if msg is None or not msg.text:
            return
        wf = f"baseline-{self.bot.id}-{update.update_id}"
        lang = texts.language_for(msg.from_user.language_code if msg.from_user else None)
        lookup = await self.store.lookup_driver(LookupDriverInput(chat_id=msg.chat.id))
        driver = lookup.driver
        if driver is None or driver.status != "active":
            raise RuntimeError(f"chat {msg.chat.id} is not an active driver")
        audit: list[AuditEntry] = []

        def record(step: str, action: str, order_id: str | None = None, **details: Any) -> None:
            audit.append(AuditEntry(tenant_id=driver.tenant_id, workflow_id=wf, step=step, action=action,
                                    chat_id=msg.chat.id, order_id=order_id, details=details))  # fmt: skip

        record("received", "update_received", kind="text", text=msg.text[:4096])
        record("whitelist", "driver_resolved", driver=driver.driver_name, status=driver.status)
        parsed = await self.parse.parse_order(
            ParseOrderInput(text=msg.text, now=msg.date, tz=driver.time_zone, region=driver.region,
                            currency=driver.currency)
        )  # fmt: skip
        order_id = order_id_for(driver.tenant_id, driver.chat_id, msg.message_id)
        record("parsed", "order_parsed", order_id, order=parsed.to_flat_json())
        event = await asyncio.get_running_loop().run_in_executor(
            self.executor,
            self.calendar.create_event,
            CreateEventInput(calendar_id=driver.calendar_id, event_id=order_id, time_zone=driver.time_zone,
                             order_id=order_id, tenant_id=driver.tenant_id, chat_id=driver.chat_id,
                             order=parsed, original_text=msg.text, language=lang),
        )  # fmt: skip
        record("calendar", "event_created", order_id, event_id=event.event_id, calendar_id=driver.calendar_id)
        sent = await self.telegram.send_reply(
            SendReplyInput(tenant_id=driver.tenant_id, workflow_id=wf, step="reply", chat_id=driver.chat_id,
                           text=texts.confirmation(parsed, driver.time_zone, lang, event.html_link),
                           reply_to_message_id=msg.message_id)
        )  # fmt: skip
        record("reply", "reply_sent", order_id, message_id=sent.message_id, already_sent=sent.already_sent)
        record("outcome", "event_created", order_id)
        await self.store.finish_step(
            FinishStepInput(
                audit=audit,
                order=OrderRecord(tenant_id=driver.tenant_id, order_id=order_id, chat_id=driver.chat_id,
                                  workflow_id=wf, status="in_calendar", order=parsed,
                                  calendar_id=driver.calendar_id, event_id=event.event_id,
                                  html_link=event.html_link, original_text=msg.text),
            )
        )  # fmt: skip

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
