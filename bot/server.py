"""The aiohttp server: Telegram's webhook and /healthz (the admin API mounts here too)."""

from __future__ import annotations

import hmac
import logging

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

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


def add_webhook_route(app: web.Application, *, dp: Dispatcher, bot: Bot, secret: str) -> None:
    async def webhook(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("webhook call with a wrong or missing secret token from %s", request.remote)
            return _error(401, "wrong or missing X-Telegram-Bot-Api-Secret-Token")
        try:
            update = Update.model_validate(await request.json(), context={"bot": bot})
        except (ValueError, ValidationError) as exc:
            return _error(400, f"not a Telegram update: {exc}")
        try:
            await dp.feed_update(bot, update)
        except Exception:
            # Not acknowledged: Telegram delivers the update again later, nothing is lost.
            log.exception("update %s not handed over; answering 503 so Telegram retries", update.update_id)
            return _error(503, "temporarily unable to accept the update")
        return web.json_response({})

    app.router.add_post(WEBHOOK_PATH, webhook)


def add_health_route(app: web.Application, health: Health) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(
            {"ok": health.ok, "components": health.components}, status=200 if health.ok else 503
        )

    app.router.add_get("/healthz", healthz)
