"""Seeded generator of Telegram updates as Telegram's webhook delivers them: texts in many scripts and
emoji up to Telegram's length limits, order-like texts with noise, commands, stickers, photos, edits of
messages the bot never saw, forged button data, replies, forwards, and messages from groups and channels.

The same seed gives the same updates, so a failure names the seed and the index to reproduce it.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT = 4096  # UTF-16 code units (Telegram's limit for a message)
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes

_ALPHABETS = [
    string.ascii_letters + string.digits + string.punctuation + " ",
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ ",
    "0123456789:.,-–—→/+₽€$ ",
    "😀🚕🚖✈️🛬🏁❤️👍🏽👨‍👩‍👧🇷🇺🇬🇧🔥⏰✅❌✏️",
    "漢字かなカナ한국어中文",
    "العربيةעברית",
    "\u0301\u0308\u200b\u200c\u200d\u2060\ufeff\u202e\u00a0",  # combining marks, zero-width, RTL override
    "\n\t\r \x0b\x1f\x7f\x00",  # U+0000 too: JSON carries it, PostgreSQL cannot store it
    "٠١٢٣٤٥٦٧٨٩०१२३४५६७८९",  # digits of other scripts
]
_PLACES = ["Внуково", "Шереметьево B", "Домодедово", "Курский вокзал", "Тверская 7", "Химки", "ул. Ленина, д. 5",
           "Пулково", "Москва-Сити", "Долгопрудный"]  # fmt: skip
_DAYS = ["завтра", "сегодня", "послезавтра", "12.07", "в пятницу", "31 декабря", ""]


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def clip_utf16(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-16 units (never splitting a character)."""
    out, used = [], 0
    for ch in text:
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            break
        out.append(ch)
    return "".join(out)


@dataclass
class Generated:
    """One update and what it is meant to exercise."""

    update: dict[str, Any]
    kind: str  # what the edge should call it: text, command, unsupported, photo, callback, or "none"
    chat_id: int
    from_driver: bool = False
    driver_order: bool = False  # a fresh order message of a whitelisted driver: must be answered once
    tags: list[str] = field(default_factory=list)


class UpdateFuzzer:
    def __init__(self, seed: int, drivers: list[int] | None = None, first_update_id: int = 1) -> None:
        self.rng = random.Random(seed)
        self.drivers = drivers or []
        self.next_update_id = first_update_id
        self.next_message_id = 1_000
        self.date = 1_795_000_000

    # -- texts ---------------------------------------------------------------------------------
    def noise(self, limit: int) -> str:
        r = self.rng
        # Mostly what drivers write; a few up to Telegram's limit (the parser's cost grows with length).
        low, high = r.choices([(0, 40), (0, 300), (300, 1200), (1200, limit)], weights=[40, 42, 13, 5])[0]
        size = r.randint(min(low, limit), min(high, limit))
        parts, used = [], 0
        while used < size:
            alphabet = r.choice(_ALPHABETS)
            chunk = "".join(r.choice(alphabet) for _ in range(r.randint(1, 30)))
            parts.append(chunk)
            used += utf16_len(chunk)
        return clip_utf16("".join(parts), min(size, limit))

    def order_text(self) -> str:
        r = self.rng
        a, b = r.sample(_PLACES, 2)
        text = f"{r.choice(_DAYS)} {r.randint(0, 23)}:{r.choice(['00', '15', '30', '45'])} {a} {r.choice(['→', '-', '—'])} {b}"
        if r.random() < 0.8:
            text += f", {r.randint(5, 99) * 100}{r.choice(['₽', 'р', ' руб'])}"
        if r.random() < 0.5:
            text += f", Анна +7 9{r.randint(10, 99)} {r.randint(100, 999)}-{r.randint(10, 99)}-{r.randint(10, 99)}"
        if r.random() < 0.3:
            text += f", рейс SU{r.randint(100, 2999)}"
        return text

    def text(self, limit: int = MAX_TEXT) -> tuple[str, bool]:
        """(text, order-like)."""
        r = self.rng
        roll = r.random()
        if roll < 0.35:
            order = self.order_text()
            if r.random() < 0.3:
                order = f"{self.noise(200)}\n{order}\n{self.noise(200)}"
            return clip_utf16(order, limit), True
        if roll < 0.45:  # several orders in one message
            blocks = "\n\n".join(self.order_text() for _ in range(r.randint(2, 6)))
            return clip_utf16(blocks, limit), True
        if roll < 0.46:  # at the limit exactly
            filler = self.noise(limit) or "x"
            while utf16_len(filler) < limit:
                filler += filler
            return clip_utf16(filler, limit), False
        return self.noise(limit), False

    # -- updates -------------------------------------------------------------------------------
    def _chat(self) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """(chat, from, from a driver)."""
        r = self.rng
        roll = r.random()
        if self.drivers and roll < 0.5:
            chat_id = r.choice(self.drivers)
            user = {"id": chat_id, "is_bot": False, "first_name": "Ivan", "language_code": "ru"}
            return {"id": chat_id, "type": "private", "first_name": "Ivan"}, user, True
        user_id = r.randint(10**8, 2**40)
        user = {"id": user_id, "is_bot": False, "first_name": self.noise(64) or "X",
                "language_code": r.choice(["ru", "en", "uk", "zz", None])}  # fmt: skip
        user = {k: v for k, v in user.items() if v is not None}
        if roll < 0.8:
            return {"id": user_id, "type": "private", "first_name": user["first_name"]}, user, False
        group = -r.randint(10**9, 10**12)
        kind = r.choice(["group", "supergroup"])
        # A driver writing in a group the bot is in: not their private chat, so not their whitelist row.
        if self.drivers and r.random() < 0.3:
            driver = r.choice(self.drivers)
            user = {"id": driver, "is_bot": False, "first_name": "Ivan", "language_code": "ru"}
        return {"id": group, "type": kind, "title": self.noise(128) or "group"}, user, False

    def _message(self, chat: dict[str, Any], sender: dict[str, Any]) -> dict[str, Any]:
        self.next_message_id += 1
        self.date += self.rng.randint(0, 5)
        return {"message_id": self.next_message_id, "date": self.date, "chat": chat, "from": sender}

    def next(self) -> Generated:
        r = self.rng
        update_id = self.next_update_id
        self.next_update_id += 1
        chat, sender, from_driver = self._chat()
        chat_id = int(chat["id"])
        msg = self._message(chat, sender)
        roll = r.random()
        tags: list[str] = []
        if roll < 0.55:
            text, order_like = self.text()
            if not text.strip():
                text = text + "."
            msg["text"] = text
            if r.random() < 0.1:
                msg["reply_to_message"] = self._message(chat, sender) | {"text": self.noise(100) or "?"}
                tags.append("reply")
            if r.random() < 0.1:
                msg["forward_origin"] = {"type": "hidden_user", "sender_user_name": self.noise(64) or "X",
                                         "date": self.date - 100}  # fmt: skip
                tags.append("forward")
            kind = _kind_of_text(text)
            fresh = from_driver and kind == "text" and "reply" not in tags and chat["type"] == "private"
            return Generated({"update_id": update_id, "message": msg}, kind, chat_id, from_driver,
                             fresh and order_like, tags)  # fmt: skip
        if roll < 0.62:
            msg["text"] = r.choice(["/start", "/help", "/today", "/tomorrow", "/week", "/settings", "/unknown",
                                    "/start " + self.noise(64), "/today@some_other_bot", "/"])  # fmt: skip
            return Generated({"update_id": update_id, "message": msg}, _kind_of_text(msg["text"]), chat_id,
                             from_driver, tags=["command"])  # fmt: skip
        if roll < 0.72:  # an edit of a message the bot never saw
            msg["message_id"] = r.randint(1, 2**31 - 1)
            msg["edit_date"] = self.date
            msg["text"] = self.text()[0] or "."
            return Generated({"update_id": update_id, "edited_message": msg}, "text",
                             chat_id, from_driver, tags=["edit_unknown"])  # fmt: skip
        if roll < 0.82:  # a button press with forged data, on a message that may not exist
            data = self._callback_data()
            query: dict[str, Any] = {"id": str(r.randint(1, 2**62)), "from": sender, "chat_instance": str(r.randint(1, 2**62)),
                                     "data": data}  # fmt: skip
            if r.random() < 0.9:
                query["message"] = msg | {
                    "text": self.noise(200) or "card",
                    "from": {"id": 1, "is_bot": True, "first_name": "bot"},
                }
            return Generated({"update_id": update_id, "callback_query": query}, "callback",
                             chat_id if "message" in query else int(sender["id"]), from_driver, tags=["forged_callback"])  # fmt: skip
        if roll < 0.9:
            what = r.choice(["sticker", "voice", "location", "contact"])
            msg |= _media(what, self.rng)
            return Generated(
                {"update_id": update_id, "message": msg}, "unsupported", chat_id, from_driver, tags=[what]
            )
        if roll < 0.95:
            msg["photo"] = [{"file_id": f"AgAC{r.randint(1, 2**40)}", "file_unique_id": f"u{r.randint(1, 2**40)}",
                             "width": 90, "height": 60, "file_size": 1000}]  # fmt: skip
            if r.random() < 0.5:
                msg["caption"] = self.text(MAX_CAPTION)[0] or "."
            return Generated(
                {"update_id": update_id, "message": msg}, "photo", chat_id, from_driver, tags=["photo"]
            )
        # A channel post: not a type the bot asks for, and no handler for it.
        post = {"message_id": msg["message_id"], "date": self.date, "text": self.noise(200) or ".",
                "chat": {"id": -r.randint(10**12, 2 * 10**12), "type": "channel", "title": "news"}}  # fmt: skip
        return Generated(
            {"update_id": update_id, "channel_post": post}, "none", int(post["chat"]["id"]), tags=["channel"]
        )

    def _callback_data(self) -> str:
        r = self.rng
        forged = [
            f"cancel:{r.randbytes(8).hex()}", f"ok:{r.randint(0, 10**12)}", "cancel:", "field::", ":",
            f"field:{r.choice(['pickup_at', 'price_amount', 'nope'])}:{r.randbytes(6).hex()}",
            f"set:{self.noise(20)}", f"edit:{'x' * 59}", "back:../../etc/passwd", "'; DROP TABLE orders; --",
        ]  # fmt: skip
        data = r.choice(forged) if r.random() < 0.7 else self.noise(64)
        # Telegram carries at most 64 bytes of callback data.
        while len(data.encode()) > MAX_CALLBACK_DATA or not data:
            data = data[:-1] if data else "x"
        return data

    def take(self, n: int) -> list[Generated]:
        return [self.next() for _ in range(n)]


def _kind_of_text(text: str) -> str:
    from bot.handlers.commands import COMMANDS

    """What the edge's routers make of a text: a command of ours (addressed to no other bot), else text."""
    first = text.split(maxsplit=1)[0] if text.strip() else ""  # as aiogram's Command filter reads it
    name, _, mention = first[1:].partition("@") if first.startswith("/") else ("", "", "")
    return "command" if name in (*COMMANDS, "subscribe") and not mention else "text"


def _media(what: str, r: random.Random) -> dict[str, Any]:
    if what == "sticker":
        return {"sticker": {"file_id": f"CAAC{r.randint(1, 2**40)}", "file_unique_id": "s", "type": "regular",
                            "width": 512, "height": 512, "is_animated": False, "is_video": False}}  # fmt: skip
    if what == "voice":
        return {
            "voice": {
                "file_id": f"AwAC{r.randint(1, 2**40)}",
                "file_unique_id": "v",
                "duration": r.randint(1, 60),
            }
        }
    if what == "location":
        return {"location": {"latitude": r.uniform(-90, 90), "longitude": r.uniform(-180, 180)}}
    return {"contact": {"phone_number": f"+7{r.randint(10**9, 10**10 - 1)}", "first_name": "Анна"}}
