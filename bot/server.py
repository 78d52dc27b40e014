"""The aiohttp server: Telegram's webhook, /healthz and /metrics (the admin API and codec server mount
here too)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

import aiohttp
from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

from autodispatch import metrics, tracing
from bot.dead_letters import DeadLetters, FailureCounts, describe, is_transient
from schemas.telegram import id_out_of_range

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class Health:
    """Component name → up. /healthz answers 200 only when every registered component is up."""

    def __init__(self) -> None:
        self.components: dict[str, bool] = {}

    def set(self, name: str, up: bool) -> None:
        self.components[name] = up

    @property
    def ok(self) -> bool:
        return bool(self.components) and all(self.components.values())


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class WebhookIntake:
    """What every webhook route does with a body: check the secret, read the update, hand it to the
    dispatcher. An update that keeps failing for reasons of its own (not a service away) is set aside in
    `dead` after its attempts and acknowledged; without `dead`, 503 every time."""

    def __init__(self, dp: Dispatcher, dead: DeadLetters | None = None) -> None:
        self.dp = dp
        self.dead = dead
        self.failures = FailureCounts()

    async def accept(self, request: web.Request, bot: Bot, secret: str) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("webhook call with a wrong or missing secret token from %s", request.remote)
            return _error(401, "wrong or missing X-Telegram-Bot-Api-Secret-Token")
        try:
            raw = await request.json()
            problem = id_out_of_range(raw)
            if problem is not None:
                raise ValueError(problem)
            update = Update.model_validate(raw, context={"bot": bot})
        except (ValueError, ValidationError) as exc:
            return _error(400, f"not a Telegram update: {exc}")
        try:
            await self.dp.feed_update(bot, update)
        except Exception as exc:
            dead, key = self.dead, (bot.id, update.update_id)
            attempts = 0 if dead is None or is_transient(exc) else self.failures.add(key)
            if dead is not None and attempts >= dead.max_attempts:
                try:
                    await dead.bury_update("webhook", bot.id, raw, attempts, describe(exc))
                    self.failures.forget(key)
                    return web.json_response({"dead_letter": True})
                except Exception:
                    log.exception("update %s could not be set aside", update.update_id)
            # Not acknowledged: Telegram delivers the update again later, nothing is lost.
            log.exception("update %s not handed over; answering 503 so Telegram retries", update.update_id)
            return _error(503, "temporarily unable to accept the update")
        return web.json_response({})


def add_webhook_route(app: web.Application, *, intake: WebhookIntake, bot: Bot, secret: str) -> None:
    """POST /telegram/webhook: the default bot."""

    async def webhook(request: web.Request) -> web.Response:
        return await intake.accept(request, bot, secret)

    app.router.add_post(WEBHOOK_PATH, webhook)


def add_fleet_webhook_route(
    app: web.Application, *, intake: WebhookIntake, served: Callable[[int], tuple[Bot, str] | None]
) -> None:
    """POST /telegram/webhook/<bot id>: the tenants' own bots, each with its own secret. `served` gives
    the bot and its secret while this process serves it; a bot not (or no longer) served is 404."""

    async def webhook(request: web.Request) -> web.Response:
        raw = request.match_info["bot_id"]
        found = served(int(raw)) if raw.isdigit() else None
        if found is None:
            return _error(404, f"no bot {raw} is served here")
        return await intake.accept(request, *found)

    app.router.add_post(WEBHOOK_PATH + "/{bot_id}", webhook)


def add_health_route(app: web.Application, health: Health) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(
            {"ok": health.ok, "components": health.components}, status=200 if health.ok else 503
        )

    app.router.add_get("/healthz", healthz)


def add_metrics_route(app: web.Application, sdk_metrics: Callable[[], str | None] = lambda: None) -> None:
    """GET /metrics: ours (autodispatch/metrics.py) then the Temporal SDK's (its loopback exporter), one
    scrape target for Prometheus. Tenant ids only, no personal data."""
    from prometheus_client import CONTENT_TYPE_LATEST

    async def scrape(_: web.Request) -> web.Response:
        body = metrics.exposition()
        address = sdk_metrics()
        if address:
            try:
                timeout = aiohttp.ClientTimeout(total=2)
                async with aiohttp.ClientSession(timeout=timeout) as http:
                    async with http.get(f"http://{address}/metrics") as r:
                        body += b"\n" + await r.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("Temporal SDK metrics at %s not readable: %s", address, exc)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", scrape)


@web.middleware
async def traced(request: web.Request, handler: Callable) -> web.StreamResponse:
    """A SERVER span per request, the parent of the workflow a webhook update starts."""
    if not tracing.enabled():
        return await handler(request)
    from opentelemetry.trace import SpanKind

    route = request.match_info.route.resource
    name = f"{request.method} {route.canonical if route is not None else request.path}"
    with tracing.tracer().start_as_current_span(name, kind=SpanKind.SERVER) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        return response
