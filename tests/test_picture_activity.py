"""read_picture in an ActivityEnvironment against the Telegram emulator: the real aiogram client
fetches the picture with getFile and Tesseract reads it; a bad file id is a permanent failure, a bad
picture and a machine without Tesseract are answers, not failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.pictures import PictureActivities
from emulators.screenshots import render_png
from emulators.telegram import TelegramEmulator
from parsing import ocr
from schemas.telegram import ReadPictureInput

TOKEN = "424242:PictureBotToken_abcdef"
CHAT = 777001


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[TelegramEmulator, Bot]]:
    emulator = TelegramEmulator()
    base = await emulator.start()
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(base)))
    yield emulator, bot
    await bot.session.close()
    await emulator.stop()


def largest_photo(emulator: TelegramEmulator, **kw: object) -> str:
    sent = emulator.user_sends(TOKEN, CHAT, None, **kw)
    (update,) = [u for u in emulator.updates(TOKEN) if u["update_id"] == sent["update_id"]]
    message = update["update"]["message"]
    return message["photo"][-1]["file_id"] if "photo" in message else message["document"]["file_id"]


def request(file_id: str) -> ReadPictureInput:
    return ReadPictureInput(file_id=file_id, chat_id=CHAT, workflow_id="wf-picture")


async def test_a_photo_is_fetched_and_read(telegram: tuple[TelegramEmulator, Bot]) -> None:
    emulator, bot = telegram
    file_id = largest_photo(emulator, photo=render_png("завтра 9:30 Внуково → Тверская 7, 2500 руб", "card"))
    read = await ActivityEnvironment().run(PictureActivities(bot).read_picture, request(file_id))
    assert read.status == "ok" and "Внуково" in read.text and "Тверская 7" in read.text
    assert read.width == 800 and read.seconds is not None
    assert emulator.stats()["methods"]["getFile"] == 1 and emulator.stats()["methods"]["file_download"] == 1


async def test_an_unknown_file_is_a_permanent_failure(telegram: tuple[TelegramEmulator, Bot]) -> None:
    _, bot = telegram
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(PictureActivities(bot).read_picture, request("AgACmissing"))
    assert failure.value.non_retryable and failure.value.type == "TelegramBadRequest"


async def test_a_file_that_is_no_picture_is_reported_unreadable(
    telegram: tuple[TelegramEmulator, Bot],
) -> None:
    emulator, bot = telegram
    file_id = largest_photo(
        emulator, document={"data": b"GIF89a broken", "file_name": "x.gif", "mime_type": "image/gif"}
    )
    read = await ActivityEnvironment().run(PictureActivities(bot).read_picture, request(file_id))
    assert read.status == "unreadable" and "not a picture" in (read.message or "")


async def test_a_slow_picture_is_stopped_by_the_timeout(telegram: tuple[TelegramEmulator, Bot]) -> None:
    emulator, bot = telegram
    file_id = largest_photo(emulator, photo=render_png("завтра 9:30 Внуково → Тверская 7", "chat", scale=3))
    read = await ActivityEnvironment().run(
        PictureActivities(bot, timeout_s=0.01).read_picture, request(file_id)
    )
    assert read.status == "timeout"


async def test_without_tesseract_the_answer_says_so(
    telegram: tuple[TelegramEmulator, Bot], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator, bot = telegram
    file_id = largest_photo(emulator, photo=True)
    monkeypatch.setenv("PATH", "/nonexistent")
    ocr.availability.cache_clear()
    try:
        read = await ActivityEnvironment().run(PictureActivities(bot).read_picture, request(file_id))
    finally:
        monkeypatch.undo()
        ocr.availability.cache_clear()
    assert read.status == "unavailable" and "apt-get install" in (read.message or "")
    assert emulator.stats()["methods"].get("getFile", 0) == 0  # nothing fetched that cannot be read
