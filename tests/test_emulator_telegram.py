"""The Telegram emulator, exercised through the real aiogram client and the control API."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import TelegramMethod
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    ReplyParameters,
)
from aiohttp import web
from PIL import Image

from emulators.telegram import TelegramEmulator

TOKEN = "123456:ABCdefGHIjklMNOpqr_stu-vwx"
CHAT = 555001


@pytest.fixture
async def emu() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator(webhook_retry_min=0.01, webhook_retry_max=0.05)
    await emulator.start()
    yield emulator
    await emulator.stop()


def make_bot(base_url: str, token: str = TOKEN) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))


@pytest.fixture
async def bot(emu: TelegramEmulator) -> AsyncIterator[Bot]:
    assert emu.base_url
    b = make_bot(emu.base_url)
    yield b
    await b.session.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class SendNothing(TelegramMethod[bool]):
    """A method the Bot API does not have: Telegram answers 404 Not Found."""

    __returning__ = bool
    __api_method__ = "sendNothing"


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d) for t, d in pairs]]
    )


async def test_get_me_and_health(emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot
    assert me.username == "bot123456_bot"
    async with http.get(f"{emu.base_url}/healthz") as resp:
        assert resp.status == 200


async def test_send_message_records_sent_log(
    emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession
) -> None:
    first = emu.user_sends(TOKEN, CHAT, "hello")
    msg = await bot.send_message(
        CHAT,
        "Order <b>accepted</b>",
        parse_mode="HTML",
        reply_markup=keyboard(("OK", "ok:1"), ("Cancel", "cancel:1")),
        reply_parameters=ReplyParameters(message_id=first["message_id"]),
        disable_notification=True,
    )
    assert isinstance(msg, Message)
    assert msg.message_id == first["message_id"] + 1  # one counter per private chat
    assert msg.chat.id == CHAT
    assert msg.from_user is not None and msg.from_user.id == 123456
    assert msg.text == "Order accepted"
    assert msg.entities is not None and msg.entities[0].type == "bold"
    assert (msg.entities[0].offset, msg.entities[0].length) == (6, 8)
    assert msg.reply_to_message is not None and msg.reply_to_message.text == "hello"
    assert msg.reply_markup is not None
    assert msg.reply_markup.inline_keyboard[0][1].callback_data == "cancel:1"

    async with http.get(f"{emu.base_url}/_emulator/bots/{TOKEN}/sent", params={"chat_id": CHAT}) as resp:
        log = await resp.json()
    assert len(log) == 1
    entry = log[0]
    assert entry["method"] == "sendMessage"
    assert entry["message_id"] == msg.message_id
    assert entry["text"] == "Order accepted"
    assert entry["raw_text"] == "Order <b>accepted</b>"
    assert entry["reply_to_message_id"] == first["message_id"]
    assert entry["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "ok:1"
    assert entry["disable_notification"] is True
    assert isinstance(entry["ts"], float)
    assert emu.sent(TOKEN, CHAT) == log
    assert emu.sent(TOKEN, 999) == []


async def test_send_errors_match_telegram(emu: TelegramEmulator, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.send_message(777, "nobody here")
    emu.user_sends(TOKEN, CHAT, "hi")
    with pytest.raises(TelegramBadRequest, match="can't parse entities: Unsupported start tag"):
        await bot.send_message(CHAT, "price < 100", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="Character '.' is reserved"):
        await bot.send_message(CHAT, "Done.", parse_mode="MarkdownV2")
    ok = await bot.send_message(CHAT, "*Done*\\.", parse_mode="MarkdownV2")
    assert ok.text == "Done."
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(CHAT, "x", reply_markup=keyboard(("Long", "x" * 65)))
    emu.set_blocked(TOKEN, CHAT)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(CHAT, "are you there?")


async def test_message_length_limit(emu: TelegramEmulator, bot: Bot) -> None:
    emu.user_sends(TOKEN, CHAT, "hi")
    ok = await bot.send_message(CHAT, "я" * 4096)
    assert ok.text is not None and len(ok.text) == 4096
    with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
        await bot.send_message(CHAT, "я" * 4097)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(CHAT, "   ")


async def test_edit_and_delete(emu: TelegramEmulator, bot: Bot) -> None:
    emu.user_sends(TOKEN, CHAT, "hi")
    msg = await bot.send_message(CHAT, "Pending", reply_markup=keyboard(("OK", "ok")))
    edited = await bot.edit_message_text(
        text="Confirmed", chat_id=CHAT, message_id=msg.message_id, reply_markup=keyboard(("Undo", "undo"))
    )
    assert isinstance(edited, Message)
    assert edited.text == "Confirmed"
    assert edited.edit_date is not None
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            text="Confirmed", chat_id=CHAT, message_id=msg.message_id, reply_markup=keyboard(("Undo", "undo"))
        )
    # Same text, different keyboard: a modification.
    await bot.edit_message_reply_markup(chat_id=CHAT, message_id=msg.message_id, reply_markup=None)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=CHAT, message_id=msg.message_id, reply_markup=None)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="x", chat_id=CHAT, message_id=9999)
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text(text="x", chat_id=CHAT, message_id=1)
    assert await bot.delete_message(CHAT, msg.message_id) is True
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, msg.message_id)

    log = emu.sent(TOKEN, CHAT)
    assert [e["method"] for e in log] == [
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
    ]
    original = log[0]
    assert original["deleted"] is True
    assert [e["method"] for e in original["edits"]] == ["editMessageText", "editMessageReplyMarkup"]
    assert original["edits"][0]["text"] == "Confirmed"
    assert original["edits"][1]["reply_markup"] is None


async def test_multipart_urlencoded_and_json_bodies(
    emu: TelegramEmulator, http: aiohttp.ClientSession
) -> None:
    emu.user_sends(TOKEN, CHAT, "hi")
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    url = f"{emu.base_url}/bot{TOKEN}/sendMessage"

    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("chat_id", str(CHAT))
    form.add_field("text", "123")  # numeric-looking text must stay a string
    form.add_field("reply_markup", json.dumps(markup))
    form.add_field("disable_notification", "true")
    async with http.post(url, data=form) as resp:
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["ok"] is True
    assert body["result"]["text"] == "123"
    assert body["result"]["reply_markup"] == markup

    async with http.post(url, data={"chat_id": str(CHAT), "text": "urlencoded"}) as resp:
        assert (await resp.json())["result"]["text"] == "urlencoded"
    async with http.post(url, json={"chat_id": CHAT, "text": "json", "reply_markup": markup}) as resp:
        assert (await resp.json())["result"]["reply_markup"] == markup
    async with http.get(url, params={"chat_id": str(CHAT), "text": "query"}) as resp:
        assert (await resp.json())["result"]["text"] == "query"
    async with http.post(f"{emu.base_url}/bot{TOKEN}/noSuchMethod") as resp:
        assert resp.status == 404
        assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert [e["text"] for e in emu.sent(TOKEN, CHAT)] == ["123", "urlencoded", "json", "query"]


async def test_get_updates_long_poll_and_offset(
    emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.05)
    assert not poll.done()  # nothing queued yet: the request is parked
    async with http.post(
        f"{emu.base_url}/_emulator/bots/{TOKEN}/messages",
        json={
            "chat_id": CHAT,
            "text": "Order #1: Moscow -> Tver",
            "from": {"id": CHAT, "first_name": "Ivan", "username": "ivan_driver", "language_code": "ru"},
            "forwarded_from_name": "Dispatcher Anna",
        },
    ) as resp:
        created = await resp.json()
    updates = await asyncio.wait_for(poll, 5)
    assert [u.update_id for u in updates] == [created["update_id"]]
    message = updates[0].message
    assert message is not None
    assert message.text == "Order #1: Moscow -> Tver"
    assert message.from_user is not None and message.from_user.username == "ivan_driver"
    assert message.chat.type == "private"
    assert message.forward_origin is not None and message.forward_origin.type == "hidden_user"

    # Not confirmed yet: offered again.
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [created["update_id"]]
    # The offset confirms and forgets it.
    assert await bot.get_updates(offset=created["update_id"] + 1, timeout=0) == []
    emu.user_sends(TOKEN, CHAT, caption="photo of the order", photo=True)
    emu.user_sends(TOKEN, CHAT, sticker=True)
    emu.user_sends(TOKEN, CHAT, voice=True)
    batch = await bot.get_updates(offset=created["update_id"] + 1, timeout=1)
    assert len(batch) == 3
    assert batch[0].message is not None and batch[0].message.photo and batch[0].message.caption
    assert batch[1].message is not None and batch[1].message.sticker is not None
    assert batch[2].message is not None and batch[2].message.voice is not None
    assert len(await bot.get_updates(offset=batch[-1].update_id + 1, limit=1, timeout=0)) == 0

    async with http.get(f"{emu.base_url}/_emulator/bots/{TOKEN}/updates") as resp:
        records = await resp.json()
    assert records[0]["attempts"] == 2
    assert records[0]["pending"] is False
    assert records[0]["delivered_ts"] >= records[0]["enqueued_ts"]
    assert emu.stats()["updates_enqueued"] == 4


async def test_second_poller_conflicts_first(emu: TelegramEmulator, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(bot.get_updates(timeout=10))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, 5)
    emu.user_sends(TOKEN, CHAT, "wake")
    assert len(await asyncio.wait_for(second, 5)) == 1


async def test_dispatcher_polling_end_to_end(emu: TelegramEmulator, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(f"got: {message.text}")

    polling = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False))
    try:
        emu.user_sends(TOKEN, CHAT, "first")
        emu.user_sends(TOKEN, CHAT, "second")
        sent = await emu.wait_for_sent(TOKEN, CHAT, 2, timeout=10, method="sendMessage")
        assert sorted(e["text"] for e in sent) == ["got: first", "got: second"]
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)


async def eventually(predicate: Any, limit: float = 5.0) -> None:
    """Poll emulator state that changes right after a webhook receiver has answered."""
    for _ in range(int(limit / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    assert predicate()


class Receiver:
    """A webhook endpoint that fails the first `fail_first` requests."""

    def __init__(self, fail_first: int = 0, reply: dict[str, Any] | None = None) -> None:
        self.fail_first = fail_first
        self.reply = reply
        self.requests: list[tuple[dict[str, Any], str | None, int]] = []
        self.got = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        status = 500 if len(self.requests) < self.fail_first else 200
        self.requests.append((body, request.headers.get("X-Telegram-Bot-Api-Secret-Token"), status))
        self.got.set()
        if status == 200 and self.reply is not None:
            return web.json_response(self.reply)
        return web.json_response({}, status=status)

    def successes(self) -> list[dict[str, Any]]:
        return [body for body, _secret, status in self.requests if status == 200]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self.url

    async def wait(self, predicate: Any, limit: float = 5.0) -> None:
        async with asyncio.timeout(limit):
            while not predicate():
                self.got.clear()
                await self.got.wait()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


async def test_webhook_delivery_retry_and_redelivery(
    emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession
) -> None:
    receiver = Receiver(fail_first=1)
    url = await receiver.start()
    try:
        assert await bot.set_webhook(url, secret_token="s3cr3t_Token", max_connections=5)
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        sent = emu.user_sends(TOKEN, CHAT, "via webhook")
        await receiver.wait(lambda: len(receiver.successes()) == 1)
        # The receiver sees the request before the emulator reads the answer: wait for the emulator too.
        await eventually(lambda: not emu.updates(TOKEN)[0]["pending"])
        assert [status for _b, _s, status in receiver.requests] == [500, 200]
        body, secret, _status = receiver.requests[1]
        assert secret == "s3cr3t_Token"
        assert body["update_id"] == sent["update_id"]
        assert body["message"]["text"] == "via webhook"

        info = await bot.get_webhook_info()
        assert info.url == url
        assert info.pending_update_count == 0
        assert info.max_connections == 5
        assert info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
        record = emu.updates(TOKEN)[0]
        assert record["attempts"] == 2
        assert record["pending"] is False

        async with http.post(f"{emu.base_url}/_emulator/bots/{TOKEN}/redeliver/{sent['update_id']}") as resp:
            assert resp.status == 200
        await receiver.wait(lambda: len(receiver.successes()) == 2)
        await eventually(lambda: not emu.updates(TOKEN)[0]["pending"])
        assert receiver.successes()[1]["update_id"] == sent["update_id"]
        assert emu.updates(TOKEN)[0]["attempts"] == 3
        stats = emu.stats()
        assert stats["webhook_errors"] == 1
        assert stats["redeliveries"] == 1
        assert stats["updates_delivered"] == 2

        assert await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""
    finally:
        await receiver.stop()


async def test_webhook_in_order_with_one_connection(emu: TelegramEmulator, bot: Bot) -> None:
    receiver = Receiver(fail_first=2)
    url = await receiver.start()
    try:
        for i in range(6):
            emu.user_sends(TOKEN, CHAT, f"m{i}")
        await bot.set_webhook(url, max_connections=1)
        await receiver.wait(lambda: len(receiver.successes()) == 6)
        await eventually(lambda: all(not r["pending"] for r in emu.updates(TOKEN)))
        assert [b["message"]["text"] for b in receiver.successes()] == [f"m{i}" for i in range(6)]
        # Exactly once per success, and nothing left pending.
        assert len({b["update_id"] for b in receiver.successes()}) == 6
        assert all(not r["pending"] for r in emu.updates(TOKEN))
    finally:
        await receiver.stop()


async def test_webhook_reply_executes_method(emu: TelegramEmulator, bot: Bot) -> None:
    receiver = Receiver(reply={"method": "sendMessage", "chat_id": CHAT, "text": "pong"})
    url = await receiver.start()
    try:
        emu.user_sends(TOKEN, CHAT, "ping")
        await bot.set_webhook(url)
        sent = await emu.wait_for_sent(TOKEN, CHAT, 1)
        assert sent[0]["text"] == "pong"
    finally:
        await receiver.stop()


async def test_rate_limits_raise_retry_after(
    emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession
) -> None:
    emu.user_sends(TOKEN, CHAT, "hi")
    emu.user_sends(TOKEN, CHAT + 1, "hi")
    async with http.post(
        f"{emu.base_url}/_emulator/config",
        json={"rate_limits": True, "per_bot_per_s": 30, "per_chat_per_s": 1},
    ) as resp:
        assert (await resp.json())["rate_limits"] is True
    await bot.send_message(CHAT, "one")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(CHAT, "two")
    assert caught.value.retry_after >= 1
    assert f"Too Many Requests: retry after {caught.value.retry_after}" in str(caught.value)
    await bot.send_message(CHAT + 1, "other chat is not limited")
    # Per-bot window: a bot limited to 1/s cannot send to a third chat either.
    emu.configure(per_bot_per_s=2)
    emu.user_sends(TOKEN, CHAT + 2, "hi")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(CHAT + 2, "bot limit")
    async with http.get(f"{emu.base_url}/_emulator/stats") as resp:
        stats = await resp.json()
    assert stats["too_many_requests"] == 2
    assert stats["methods"]["sendMessage"] == 4
    assert len(emu.sent(TOKEN)) == 2


async def test_failure_injection(emu: TelegramEmulator, bot: Bot) -> None:
    emu.user_sends(TOKEN, CHAT, "hi")
    emu.configure(fail_rate=1.0, seed=7)
    with pytest.raises(TelegramServerError):
        await bot.send_message(CHAT, "lost")
    assert emu.sent(TOKEN) == []  # failed before doing anything
    assert (await bot.get_me()).id == 123456  # reads are not failed
    emu.configure(fail_rate=0.0)
    await bot.send_message(CHAT, "delivered")
    assert emu.stats()["injected_failures"] == 1
    assert [e["text"] for e in emu.sent(TOKEN)] == ["delivered"]


async def test_token_validation(emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession) -> None:
    assert emu.base_url
    await bot.get_me()
    emu.revoke_token(TOKEN)
    with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
        await bot.get_me()
    # aiogram refuses malformed tokens itself, so put one on the wire directly.
    async with http.get(f"{emu.base_url}/botnot-a-token/getMe") as resp:
        assert resp.status == 404
        assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    other = make_bot(emu.base_url, "987654:ZYXwvuTSRqpo")
    try:
        assert (await other.get_me()).id == 987654
        with pytest.raises(TelegramNotFound):
            await other(SendNothing())
    finally:
        await other.session.close()


async def test_callback_query_roundtrip(emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession) -> None:
    emu.user_sends(TOKEN, CHAT, "hi")
    msg = await bot.send_message(CHAT, "Accept order?", reply_markup=keyboard(("Yes", "accept:42")))
    async with http.post(
        f"{emu.base_url}/_emulator/bots/{TOKEN}/callbacks",
        json={"chat_id": CHAT, "message_id": msg.message_id, "data": "accept:42"},
    ) as resp:
        created = await resp.json()
    updates = await bot.get_updates(timeout=1)
    query = updates[-1].callback_query
    assert query is not None
    assert query.id == created["callback_query_id"]
    assert query.data == "accept:42"
    assert query.message is not None and query.message.message_id == msg.message_id
    assert await bot.answer_callback_query(query.id, text="Accepted")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)
    answers = [e for e in emu.sent(TOKEN, CHAT) if e["method"] == "answerCallbackQuery"]
    assert answers[0]["callback_query_id"] == query.id
    assert answers[0]["text"] == "Accepted"

    async with http.post(
        f"{emu.base_url}/_emulator/bots/{TOKEN}/edits",
        json={"chat_id": CHAT, "message_id": 1, "text": "hi (edited)"},
    ) as resp:
        edit = await resp.json()
    updates = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=1)
    assert updates[0].update_id == edit["update_id"]
    assert updates[0].edited_message is not None and updates[0].edited_message.text == "hi (edited)"


async def test_commands_chat_action_get_chat(emu: TelegramEmulator, bot: Bot) -> None:
    emu.user_sends(TOKEN, CHAT, "hi", from_user={"id": CHAT, "first_name": "Ivan", "username": "ivan"})
    await bot.set_my_commands([BotCommand(command="start", description="Start")])
    await bot.set_my_commands(
        [BotCommand(command="orders", description="Мои заказы")],
        scope=BotCommandScopeChat(chat_id=CHAT),
        language_code="ru",
    )
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    ru = await bot.get_my_commands(scope=BotCommandScopeChat(chat_id=CHAT), language_code="ru")
    assert [c.description for c in ru] == ["Мои заказы"]
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == []
    assert await bot.send_chat_action(CHAT, "typing")
    chat = await bot.get_chat(CHAT)
    assert chat.username == "ivan"
    assert (await bot.get_chat("@ivan")).id == CHAT
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_chat(404404)


async def test_invoice_and_pre_checkout(emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession) -> None:
    emu.user_sends(TOKEN, CHAT, "/subscribe")
    invoice_msg = await bot.send_invoice(
        CHAT,
        title="Pro plan",
        description="One month",
        payload="sub:555001:2025-01",
        currency="XTR",
        prices=[LabeledPrice(label="Month", amount=250)],
    )
    assert invoice_msg.invoice is not None and invoice_msg.invoice.total_amount == 250
    pcq = {
        "id": "pcq-1",
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ivan"},
        "currency": "XTR",
        "total_amount": 250,
        "invoice_payload": "sub:555001:2025-01",
    }
    async with http.post(
        f"{emu.base_url}/_emulator/bots/{TOKEN}/updates", json={"update": {"pre_checkout_query": pcq}}
    ) as resp:
        raw = await resp.json()
    updates = await bot.get_updates(timeout=1)
    assert updates[-1].update_id == raw["update_id"]
    assert updates[-1].pre_checkout_query is not None
    assert await bot.answer_pre_checkout_query("pcq-1", ok=True)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_pre_checkout_query("pcq-1", ok=True)
    methods = [e["method"] for e in emu.sent(TOKEN, CHAT)]
    assert methods == ["sendInvoice", "answerPreCheckoutQuery"]
    assert emu.sent(TOKEN, CHAT)[0]["payload"] == "sub:555001:2025-01"


async def test_reset_clears_everything(emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession) -> None:
    emu.user_sends(TOKEN, CHAT, "hi")
    await bot.send_message(CHAT, "x")
    async with http.post(f"{emu.base_url}/_emulator/reset") as resp:
        assert resp.status == 200
    assert emu.sent(TOKEN) == []
    assert emu.updates(TOKEN) == []
    assert emu.stats()["methods"] == {}
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(CHAT, "x")


async def test_photo_and_image_document_are_fetched_with_get_file(
    emu: TelegramEmulator, bot: Bot, http: aiohttp.ClientSession
) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (1024, 700), "#dcf8c6").save(picture, format="PNG")
    png = picture.getvalue()
    async with http.post(
        f"{emu.base_url}/_emulator/bots/{TOKEN}/messages",
        json={"chat_id": CHAT, "caption": "заказ", "photo_base64": base64.b64encode(png).decode()},
    ) as resp:
        assert resp.status == 200, await resp.text()
    emu.user_sends(TOKEN, CHAT, document={"data": png, "file_name": "order.png", "mime_type": "image/png"})
    photo_msg, doc_msg = [u.message for u in await bot.get_updates(timeout=1)]
    assert photo_msg is not None and photo_msg.photo and photo_msg.caption == "заказ"
    thumb, full = photo_msg.photo
    assert (full.width, full.height) == (1024, 700) and max(thumb.width, thumb.height) == 90
    info = await bot.get_file(full.file_id)
    assert info.file_path and info.file_size == len(png)
    downloaded = await bot.download_file(info.file_path)
    assert downloaded is not None and downloaded.read() == png  # the bytes the user sent
    assert doc_msg is not None and doc_msg.document is not None
    assert doc_msg.document.mime_type == "image/png" and doc_msg.document.file_name == "order.png"
    doc_file = await bot.get_file(doc_msg.document.file_id)
    assert doc_file.file_path and doc_file.file_path.endswith(".png")

    with pytest.raises(TelegramBadRequest, match="wrong file_id"):
        await bot.get_file("AgACnope")
    async with http.get(f"{emu.base_url}/file/bot{TOKEN}/photos/none.jpg") as resp:
        assert resp.status == 404
    async with http.post(
        f"{emu.base_url}/_emulator/bots/{TOKEN}/messages", json={"chat_id": CHAT, "photo_base64": "%%%"}
    ) as resp:
        assert resp.status == 400 and "base64" in (await resp.json())["error"]
    with pytest.raises(ValueError, match="not a picture"):
        emu.user_sends(TOKEN, CHAT, photo=b"no picture")
    emu.revoke_token(TOKEN)
    async with http.get(f"{emu.base_url}/file/bot{TOKEN}/{info.file_path}") as resp:
        assert resp.status == 401


async def test_scripted_failures_refusals_and_early_retries(emu: TelegramEmulator, bot: Bot) -> None:
    emu.user_sends(TOKEN, CHAT, "hi")
    emu.user_sends(TOKEN, CHAT + 1, "hi")
    emu.fail_next(502, 1, chat_id=CHAT)
    emu.fail_next(429, 1, chat_id=CHAT, methods=["sendMessage"], retry_after=30)
    await bot.send_message(CHAT + 1, "another chat is not targeted")
    with pytest.raises(TelegramServerError):
        await bot.send_message(CHAT, "one")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(CHAT, "one")
    assert caught.value.retry_after == 30 and emu.pending_faults() == 0
    # The same request again before its retry_after is up: Telegram's 429 again, counted as early.
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(CHAT, "one")
    await bot.send_message(CHAT, "a different message is not a repeat")
    assert emu.stats()["early_retries"] == 1
    assert [r["code"] for r in emu.refused(TOKEN, CHAT)] == [502, 429, 429]
    assert emu.refused(TOKEN, CHAT)[1]["retry_after"] == 30
    emu.set_blocked(TOKEN, CHAT)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(CHAT, "blocked")
    assert emu.refused(TOKEN, CHAT)[-1]["code"] == 403
