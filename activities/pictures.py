"""The picture step: an order screenshot fetched from Telegram (getFile) and read with Tesseract.

OCR takes a CPU core for about a third of a second per screenshot (BENCHMARKS.md): it runs on a thread
(Tesseract itself in a child process, killed on its timeout), never on the event loop, and at most one
per core at a time so a burst of pictures queues here instead of starving the order path."""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.telegram import telegram_failure
from autodispatch.bots import BotDirectory
from parsing import ocr
from schemas.telegram import PictureRead, ReadPictureInput

log = logging.getLogger(__name__)

MAX_PICTURE_BYTES = 20 * 1024**2  # the Bot API serves no bigger file


class PictureActivities:
    def __init__(
        self,
        bot: Bot,
        timeout_s: float = ocr.DEFAULT_TIMEOUT_S,
        parallel: int | None = None,
        bots: BotDirectory | None = None,
    ) -> None:
        self.bot = bot
        self.bots = bots  # tenants' own bots: a picture is fetched with the bot it was sent to
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(parallel or os.cpu_count() or 1)

    @activity.defn(name="read_picture")
    async def read_picture(self, req: ReadPictureInput) -> PictureRead:
        found = await asyncio.to_thread(ocr.availability)  # runs `tesseract --list-langs` once per process
        if not found.ok:
            log.warning("order screenshot not read: %s", found.message)
            return PictureRead(status="unavailable", message=found.message)
        bot = self.bot
        if self.bots is not None and req.bot_id is not None and req.bot_id != self.bot.id:
            bot = await self.bots.get(req.bot_id) or self.bot
        try:
            file = await bot.get_file(req.file_id)
            if file.file_size and file.file_size > MAX_PICTURE_BYTES or not file.file_path:
                return PictureRead(status="unreadable", message="the picture is too big to download")
            downloaded = await bot.download_file(file.file_path)
        except TelegramAPIError as exc:
            raise telegram_failure(exc) or exc from None
        except aiohttp.ClientResponseError as exc:
            if 400 <= exc.status < 500:  # the file is gone (or never was): asking again will not help
                raise ApplicationError(
                    f"Telegram did not serve the picture: {exc.status} {exc.message}",
                    type="TelegramBadRequest",
                    non_retryable=True,
                ) from None
            raise  # 5xx: retried with backoff
        data = downloaded.read() if downloaded is not None else b""
        async with self._slots:
            try:
                picture = await asyncio.to_thread(ocr.read_picture, data, self.timeout_s)
            except ocr.OcrUnavailable as exc:
                return PictureRead(status="unavailable", message=str(exc))
            except ocr.PictureUnreadable as exc:
                return PictureRead(status="unreadable", message=str(exc))
            except ocr.OcrTimeout as exc:
                return PictureRead(status="timeout", message=str(exc))
        return PictureRead(
            status="ok", text=picture.text, width=picture.width, height=picture.height,
            seconds=round(picture.seconds, 3),
        )  # fmt: skip
