"""Local emulator of the Telegram Bot API (the subset Auto-Dispatcher uses).

Spoken to by the real aiogram client over HTTP: ``AiohttpSession(api=TelegramAPIServer.from_base(url))``.
The emulator also plays the users' side (messages, edits, button presses, raw updates) through Python
methods and a JSON control API under ``/_emulator/...`` so that tests, the sandbox and benchmarks in
other processes can drive it. All state lives in memory on one event loop: every mutation happens in a
synchronous stretch of code between awaits, which is what keeps it consistent without locks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import email.parser
import email.policy
import html
import io
import json
import logging
import math
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from emulators._http import control_error, json_object

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"^(\d+):([A-Za-z0-9_-]{10,})$")
MAX_TEXT_LEN = 4096
MAX_DOWNLOAD = 20 * 1024**2  # getFile serves files up to 20 MB (Bot API)

# Methods that produce something in a chat: the ones Telegram rate-limits and the ones failure
# injection targets (failing a read like getUpdates would only test aiogram's polling loop).
SENDING_METHODS = frozenset({"sendmessage", "editmessagetext", "editmessagereplymarkup", "sendinvoice"})

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_WEBHOOK_CONFLICT = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
_POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Update types Telegram sends when allowed_updates is not specified.
_DEFAULT_EXCLUDED_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


class TelegramError(Exception):
    """An error answer of the Bot API; converted into Telegram's JSON error format."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> TelegramError:
    return TelegramError(400, f"Bad Request: {description}")


def _u16(text: str) -> int:
    """Length in UTF-16 code units: Telegram measures texts and entity offsets in them."""
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------------------------------
# Parameter decoding. aiogram sends every field as a form string (nested objects as JSON strings);
# other clients send JSON bodies with native types. Decoding is per field so that a text like "123"
# stays a string.


def _p_str(params: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _bad(f"{name} is empty")
        return None
    if isinstance(value, (dict, list)):
        raise _bad(f'field "{name}" must be of type String')
    return str(value)


def _p_int(params: dict[str, Any], name: str, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _bad(f"{name} is empty")
        return None
    if isinstance(value, bool):
        raise _bad(f'field "{name}" must be of type Integer')
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise _bad(f'field "{name}" must be of type Integer') from None


def _p_bool(params: dict[str, Any], name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise _bad(f'field "{name}" must be of type Boolean')


def _p_json(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            if name == "reply_markup":
                raise _bad("can't parse reply keyboard markup JSON object") from None
            raise _bad(f"can't parse {name} JSON object") from None
    return value


def _p_chat_id(params: dict[str, Any], name: str = "chat_id") -> int | str:
    value = params.get(name)
    if value is None or value == "":
        raise _bad(f"{name} is empty")
    if isinstance(value, bool):
        raise _bad("chat not found")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.startswith("@"):
        return text
    raise _bad("chat not found")


# --------------------------------------------------------------------------------------------------
# Formatting: HTML and MarkdownV2 (and legacy Markdown) are parsed into plain text + entities the way
# Telegram does, including its "can't parse entities" errors, which real bots do hit with unescaped
# user text.

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|lt|gt|amp|quot);")
_ATTR_RE = re.compile(r"""([a-zA-Z][a-zA-Z0-9_-]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


def _parse_attrs(text: str) -> dict[str, str]:
    return {
        m.group(1).lower(): html.unescape(m.group(2) or m.group(3) or m.group(4) or "")
        for m in _ATTR_RE.finditer(text)
    }


def _entity_error(message: str) -> TelegramError:
    return _bad(f"can't parse entities: {message}")


def _parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, str, int, dict[str, Any]]] = []
    entities: list[dict[str, Any]] = []

    def boff(idx: int) -> int:
        return len(src[:idx].encode())

    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "<":
            # Same order of checks as Telegram's parser: tag name first, then the closing '>'.
            closing = src.startswith("/", i + 1)
            k = i + 2 if closing else i + 1
            while k < n and not src[k].isspace() and src[k] != ">":
                k += 1
            name = src[(i + 2 if closing else i + 1) : k].lower()
            j = src.find(">", k)
            if closing:
                if j < 0 or src[k:j].strip():
                    raise _entity_error(f"Unclosed end tag at byte offset {boff(i)}")
                if not stack:
                    raise _entity_error(f"Unexpected end tag at byte offset {boff(i)}")
                if stack[-1][0] != name:
                    raise _entity_error(
                        f'Unmatched end tag at byte offset {boff(i)}, expected "</{stack[-1][0]}>", found "</{name}>"'
                    )
                _tag, etype, start, extra = stack.pop()
                if etype and pos16 > start:
                    entities.append({"type": etype, "offset": start, "length": pos16 - start, **extra})
            else:
                if k >= n:
                    raise _entity_error(f"Unclosed start tag at byte offset {boff(i)}")
                if name not in _HTML_TAGS:
                    raise _entity_error(f'Unsupported start tag "{name}" at byte offset {boff(i)}')
                if j < 0:
                    raise _entity_error(f"Unclosed start tag at byte offset {boff(i)}")
                attrs = _parse_attrs(src[k:j])
                etype = _HTML_TAGS[name]
                extra: dict[str, Any] = {}
                if name == "span" and attrs.get("class") != "tg-spoiler":
                    raise _entity_error(f'Tag "span" must have class "tg-spoiler" at byte offset {boff(i)}')
                if name == "a":
                    href = attrs.get("href", "")
                    if href.startswith("tg://user?id="):
                        etype, extra = "text_mention", {"user": {"id": int(href.split("=", 1)[1] or 0)}}
                    elif href:
                        extra = {"url": href}
                    else:
                        etype = ""  # Telegram ignores <a> without a link
                if name == "blockquote" and "expandable" in attrs:
                    etype = "expandable_blockquote"
                if name == "tg-emoji":
                    extra = {"custom_emoji_id": attrs.get("emoji-id", "")}
                if name == "code" and stack and stack[-1][0] == "pre":
                    # <pre><code class="language-x"> is one pre entity with a language.
                    lang = attrs.get("class", "")
                    if lang.startswith("language-"):
                        stack[-1][3]["language"] = lang[len("language-") :]
                    etype = ""
                stack.append((name, etype, pos16, extra))
            i = j + 1
            continue
        if c == "&":
            m = _HTML_ENTITY_RE.match(src, i)
            if m:
                ch = html.unescape(m.group(0))
                i = m.end()
            else:
                ch = "&"
                i += 1
        else:
            ch = c
            i += 1
        out.append(ch)
        pos16 += _u16(ch)
    if stack:
        raise _entity_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out), entities


_MD_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
}


def _parse_markdown(src: str, v2: bool) -> tuple[str, list[dict[str, Any]]]:
    """MarkdownV2 (strict escaping) or legacy Markdown (*bold* _italic_ `code` ```pre``` [t](url))."""
    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, str, int, int]] = []  # marker, type, start offset (utf-16), byte offset
    entities: list[dict[str, Any]] = []

    def boff(idx: int) -> int:
        return len(src[:idx].encode())

    def emit(text: str) -> None:
        nonlocal pos16
        out.append(text)
        pos16 += _u16(text)

    def toggle(marker: str, etype: str, idx: int) -> None:
        if stack and stack[-1][0] == marker:
            _m, _t, start, _b = stack.pop()
            if pos16 > start:
                entities.append({"type": etype, "offset": start, "length": pos16 - start})
        else:
            stack.append((marker, etype, pos16, boff(idx)))

    i, n = 0, len(src)
    quote_start: int | None = None
    pre_lang = ""
    at_line_start = True
    while i < n:
        c = src[i]
        in_code = bool(stack) and stack[-1][1] in ("code", "pre")
        if c == "\\" and (v2 or (i + 1 < n and src[i + 1] in "_*`[")):
            if i + 1 < n and (not v2 or 0 < ord(src[i + 1]) <= 126):
                emit(src[i + 1])
                i += 2
                at_line_start = False
                continue
            raise _entity_error("Character '\\' is reserved and must be escaped with the preceding '\\'")
        if src.startswith("```", i) and (not in_code or stack[-1][0] == "```"):
            if in_code:
                _m, _t, start, _b = stack.pop()
                if pos16 > start:
                    entity: dict[str, Any] = {"type": "pre", "offset": start, "length": pos16 - start}
                    if pre_lang:
                        entity["language"] = pre_lang
                    entities.append(entity)
                i += 3
                continue
            # ```lang\n opens a pre block with a language; the first line is not part of the text.
            nl = src.find("\n", i + 3)
            first_line = src[i + 3 : nl] if nl >= 0 else ""
            pre_lang = first_line.strip() if first_line.strip() and " " not in first_line.strip() else ""
            stack.append(("```", "pre", pos16, boff(i)))
            i = nl + 1 if pre_lang else i + 3
            continue
        if c == "`" and (not in_code or stack[-1][0] == "`"):
            toggle("`", "code", i)
            i += 1
            continue
        if in_code:
            emit(c)
            i += 1
            continue
        if v2 and c == "\n" and quote_start is not None:
            entities.append({"type": "blockquote", "offset": quote_start, "length": pos16 - quote_start})
            quote_start = None
        if v2 and c == ">" and at_line_start:
            quote_start = pos16
            i += 1
            at_line_start = False
            continue
        at_line_start = c == "\n"
        if v2 and src.startswith("||", i):
            toggle("||", "spoiler", i)
            i += 2
            continue
        if v2 and src.startswith("__", i):
            toggle("__", "underline", i)
            i += 2
            continue
        if c in "*_" or (v2 and c == "~"):
            toggle(c, {"*": "bold", "_": "italic", "~": "strikethrough"}[c], i)
            i += 1
            continue
        if c == "[":
            stack.append(("[", "text_link", pos16, boff(i)))
            i += 1
            continue
        if c == "]" and stack and stack[-1][0] == "[":
            if not src.startswith("(", i + 1):
                raise _entity_error(f"Can't find end of TextUrl entity at byte offset {stack[-1][3]}")
            close = src.find(")", i + 2)
            if close < 0:
                raise _entity_error(f"Can't find end of TextUrl entity at byte offset {stack[-1][3]}")
            url = src[i + 2 : close].replace("\\)", ")").replace("\\\\", "\\")
            _m, _t, start, _b = stack.pop()
            if pos16 > start:
                entities.append({"type": "text_link", "offset": start, "length": pos16 - start, "url": url})
            i = close + 1
            continue
        if v2 and c in _MD_RESERVED:
            raise _entity_error(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        emit(c)
        i += 1
    if quote_start is not None and pos16 > quote_start:
        entities.append({"type": "blockquote", "offset": quote_start, "length": pos16 - quote_start})
    if stack:
        _m, etype, _s, byte_offset = stack[-1]
        if v2:
            raise _entity_error(f"Can't find end of {_MD_NAMES[etype]} entity at byte offset {byte_offset}")
        raise _entity_error(f"Can't find end of the entity starting at byte offset {byte_offset}")
    return "".join(out), entities


def format_text(text: str, parse_mode: str | None, entities: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """Plain text + entities for a message text, trimmed the way Telegram trims it."""
    mode = (parse_mode or "").strip().lower()
    if mode == "html":
        plain, ents = _parse_html(text)
    elif mode == "markdownv2":
        plain, ents = _parse_markdown(text, v2=True)
    elif mode == "markdown":
        plain, ents = _parse_markdown(text, v2=False)
    elif mode == "":
        plain, ents = text, list(entities or [])
    else:
        raise _bad(f"unsupported parse_mode {parse_mode!r}")
    # Telegram strips surrounding whitespace from texts and shifts entities accordingly.
    lead = _u16(plain) - _u16(plain.lstrip())
    stripped = plain.strip()
    total = _u16(stripped)
    result = []
    for ent in ents:
        start = max(0, ent["offset"] - lead)
        end = min(total, ent["offset"] + ent["length"] - lead)
        if end > start:
            result.append({**ent, "offset": start, "length": end - start})
    result.sort(key=lambda e: (e["offset"], -e["length"]))
    return stripped, result


def _validate_reply_markup(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
        actions = ("callback_data", "url", "switch_inline_query", "switch_inline_query_current_chat", "pay")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise _bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                    )
                if not any(
                    k in button for k in (*actions, "web_app", "login_url", "callback_game", "copy_text")
                ):
                    raise _bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                    )
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise _bad("BUTTON_DATA_INVALID")
        # An empty inline keyboard is how clients remove one; Telegram then omits reply_markup.
        if not any(rows):
            return None
    return markup


# --------------------------------------------------------------------------------------------------
# State


@dataclass
class _Update:
    update_id: int
    update: dict[str, Any]
    type: str
    enqueued_ts: float
    delivered_ts: float | None = None
    attempts: int = 0
    pending: bool = True
    force_offer: bool = False  # redelivered in polling mode: offered even below the client's offset
    failures: int = 0  # consecutive webhook failures, drives the backoff
    not_before: float = 0.0  # loop time before which the webhook must not retry it
    redeliveries: int = 0
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "update_id": self.update_id,
            "type": self.type,
            "update": copy.deepcopy(self.update),
            "enqueued_ts": self.enqueued_ts,
            "delivered_ts": self.delivered_ts,
            "attempts": self.attempts,
            "pending": self.pending,
            "redeliveries": self.redeliveries,
            "last_error": self.last_error,
        }


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class _File:
    """A file a user sent: getFile gives its path, /file/bot<token>/<path> its bytes."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes


@dataclass
class _Bot:
    token: str
    bot_id: int
    username: str
    first_name: str
    revoked: bool = False
    next_update_id: int = 1
    updates: dict[int, _Update] = field(default_factory=dict)
    pending: dict[int, _Update] = field(default_factory=dict)
    chats: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    next_message_id: dict[int, int] = field(default_factory=dict)
    first_message_id: int = 1
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    sent_by_message: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    commands: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    pre_checkouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, _File] = field(default_factory=dict)  # by file_id
    webhook: _Webhook | None = None
    webhook_task: asyncio.Task[None] | None = None
    webhook_wake: asyncio.Event = field(default_factory=asyncio.Event)
    poll_signal: asyncio.Event = field(default_factory=asyncio.Event)
    poll_generation: int = 0
    allowed_updates: list[str] | None = None
    rate_window: deque[float] = field(default_factory=deque)
    chat_buckets: dict[int | str, tuple[float, float]] = field(default_factory=dict)
    # Every error answer of a Bot API call: method, chat, code, description, retry_after, time.
    refused: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    # A 429's flood wait per request (method, chat, text): until when a repeat of it is too early.
    flood_waits: dict[tuple[str, int | str | None, str], float] = field(default_factory=dict)

    def user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.first_name, "username": self.username}


@dataclass
class TelegramConfig:
    rate_limits: bool = False
    per_bot_per_s: float = 30.0
    per_chat_per_s: float = 1.0
    fail_rate: float = 0.0
    fail_statuses: tuple[int, ...] = (500, 502)
    seed: int | None = None
    webhook_retry_min: float = 0.05
    webhook_retry_max: float = 1.0
    webhook_timeout: float = 10.0


@dataclass
class _Fault:
    """A scripted answer: the next `count` matching sends fail with `code`, whatever the rates say."""

    code: int
    count: int
    chat_id: int | None = None
    methods: frozenset[str] = SENDING_METHODS
    retry_after: int | None = None

    def matches(self, method: str, chat_id: int | str | None) -> bool:
        return method in self.methods and (self.chat_id is None or self.chat_id == chat_id)

    def error(self) -> TelegramError:
        if self.code == 429:
            after = self.retry_after or 1
            return TelegramError(429, f"Too Many Requests: retry after {after}", retry_after=after)
        if self.code == 403:
            return TelegramError(403, "Forbidden: bot was blocked by the user")
        return TelegramError(self.code, "Internal Server Error" if self.code == 500 else "Bad Gateway")


async def _wait_until(
    predicate: Callable[[], bool], signal: Callable[[], asyncio.Event], limit_s: float
) -> None:
    """Wait until predicate() holds, re-checking whenever the current signal event fires."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal().wait(), remaining)


def _blank_picture() -> bytes:
    """A white 800x600 PNG: the photo of a test that only cares that a photo was sent."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (800, 600), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def _update_type(update: dict[str, Any]) -> str:
    for key in update:
        if key != "update_id":
            return key
    return "unknown"


class TelegramEmulator:
    """In-memory Telegram Bot API server plus the users' side of the conversation."""

    def __init__(
        self,
        *,
        webhook_retry_min: float = 0.05,
        webhook_retry_max: float = 1.0,
        webhook_timeout: float = 10.0,
        seed: int | None = None,
        first_id: int = 1,
    ) -> None:
        # Where update and message ids start. Telegram never reuses them for a bot; an emulator that
        # restarts against a persistent Temporal must not either (sandbox passes a clock-based start).
        self.first_id = first_id
        self.config = TelegramConfig(
            webhook_retry_min=webhook_retry_min,
            webhook_retry_max=webhook_retry_max,
            webhook_timeout=webhook_timeout,
            seed=seed,
        )
        self._rng = random.Random(seed)
        self._bots: dict[str, _Bot] = {}
        self._faults: list[_Fault] = []
        self._stats: Counter[str] = Counter()
        self._method_calls: Counter[str] = Counter()
        self._sent_signal = asyncio.Event()
        self._sent_seq = 0
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.base_url: str | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._closing = False
        # No access log (benchmarks), and a short shutdown grace: long polls are woken on stop().
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        self.base_url = f"http://{shown}:{bound_port}"
        log.info("telegram emulator listening on %s (%s)", self.base_url, bound_host)
        return self.base_url

    async def stop(self) -> None:
        self._closing = True
        await self._stop_all_webhooks()
        for bot in self._bots.values():
            self._signal_pollers(bot)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TelegramEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=50 * 1024**2)
        r = app.router
        r.add_get("/healthz", self._h_health)
        r.add_post("/_emulator/config", self._h_config)
        r.add_get("/_emulator/config", self._h_get_config)
        r.add_get("/_emulator/stats", self._h_stats)
        r.add_post("/_emulator/reset", self._h_reset)
        r.add_get("/_emulator/bots", self._h_bots)
        r.add_post("/_emulator/bots/{token}/messages", self._h_user_message)
        r.add_post("/_emulator/bots/{token}/edits", self._h_user_edit)
        r.add_post("/_emulator/bots/{token}/callbacks", self._h_user_callback)
        r.add_post("/_emulator/bots/{token}/updates", self._h_raw_update)
        r.add_get("/_emulator/bots/{token}/updates", self._h_list_updates)
        r.add_post("/_emulator/bots/{token}/redeliver/{update_id}", self._h_redeliver)
        r.add_get("/_emulator/bots/{token}/sent", self._h_sent)
        r.add_post("/_emulator/bots/{token}/revoke", self._h_revoke)
        r.add_post("/_emulator/bots/{token}/chats", self._h_add_chat)
        r.add_post("/_emulator/bots/{token}/chats/{chat_id}/block", self._h_block)
        r.add_get("/_emulator/bots/{token}/commands", self._h_commands)
        r.add_get("/file/bot{token}/{path:.+}", self._h_file)
        r.add_route("GET", "/bot{token}/{method}", self._h_api)
        r.add_route("POST", "/bot{token}/{method}", self._h_api)
        return app

    # ------------------------------------------------------------------ Python control API

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change rate limits / failure injection / webhook retry timings; returns the new config."""
        for key, value in options.items():
            if not hasattr(self.config, key):
                raise ValueError(f"unknown telegram emulator option {key!r}")
            if key == "fail_statuses":
                value = tuple(int(v) for v in value)
            setattr(self.config, key, value)
        if "seed" in options:
            self._rng = random.Random(options["seed"])
        return self.get_config()

    def get_config(self) -> dict[str, Any]:
        cfg = dict(self.config.__dict__)
        cfg["fail_statuses"] = list(cfg["fail_statuses"])
        return cfg

    def stats(self) -> dict[str, Any]:
        return {
            "methods": dict(self._method_calls),
            "too_many_requests": self._stats["too_many_requests"],
            "injected_failures": self._stats["injected_failures"],
            "updates_enqueued": self._stats["updates_enqueued"],
            "updates_delivered": self._stats["updates_delivered"],
            "redeliveries": self._stats["redeliveries"],
            "webhook_errors": self._stats["webhook_errors"],
            "errors": self._stats["errors"],
            # Repeats of a request within the flood wait its 429 named: a client not honouring retry_after.
            "early_retries": self._stats["early_retries"],
            "bots": len(self._bots),
        }

    async def reset(self) -> None:
        """Forget every bot, update, message and counter; config back to defaults (keeps retry timings)."""
        await self._stop_all_webhooks()
        old = list(self._bots.values())
        self._bots.clear()
        for bot in old:
            self._signal_pollers(bot)
        keep = (self.config.webhook_retry_min, self.config.webhook_retry_max, self.config.webhook_timeout)
        self.config = TelegramConfig(
            webhook_retry_min=keep[0], webhook_retry_max=keep[1], webhook_timeout=keep[2]
        )
        self._rng = random.Random(None)
        self._faults.clear()
        self._stats.clear()
        self._method_calls.clear()

    def bot(self, token: str) -> dict[str, Any]:
        """Register (if new) and describe the bot behind a token."""
        bot = self._bot(token)
        return {**bot.user(), "token": bot.token, "revoked": bot.revoked, "webhook": self.webhook_info(token)}

    def revoke_token(self, token: str) -> None:
        """From now on the Bot API answers 401 Unauthorized for this token (as after /revoke in BotFather)."""
        bot = self._bot(token)
        bot.revoked = True
        bot.webhook = None
        bot.webhook_wake.set()
        self._signal_pollers(bot)  # a long poll in progress ends now; the next one gets the 401

    def add_chat(self, token: str, chat_id: int, **user: Any) -> dict[str, Any]:
        """Make a private chat known to the bot without a message (as if the user pressed Start earlier)."""
        bot = self._bot(token)
        sender = self._default_user(chat_id, user or None)
        return self._remember_chat(bot, chat_id, sender)

    def set_blocked(self, token: str, chat_id: int, blocked: bool = True) -> None:
        """The user blocks the bot: sending to them answers 403 Forbidden: bot was blocked by the user."""
        bot = self._bot(token)
        if blocked:
            bot.blocked.add(int(chat_id))
        else:
            bot.blocked.discard(int(chat_id))

    def fail_next(
        self,
        code: int,
        count: int = 1,
        *,
        chat_id: int | None = None,
        methods: list[str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next `count` sends (sendMessage, edits, invoices; or `methods`), to `chat_id` if given,
        answer `code`: 500/502 (Telegram's outage), 429 with `retry_after`, 403 (blocked)."""
        names = frozenset(m.lower() for m in methods) if methods else SENDING_METHODS
        self._faults.append(_Fault(int(code), int(count), chat_id, names, retry_after))

    def pending_faults(self) -> int:
        """Scripted failures not yet answered."""
        return sum(f.count for f in self._faults)

    def refused(self, token: str, chat_id: int | None = None) -> list[dict[str, Any]]:
        """The bot's calls that got an error answer (a 403, 429, 5xx...), in order."""
        return [dict(r) for r in self._bot(token).refused if chat_id is None or r["chat_id"] == chat_id]

    def user_sends(self, token: str, chat_id: int, text: str | None = None, **kw: Any) -> dict[str, Any]:
        """A user writes to the bot. Keywords: from_user (or "from"), caption, photo, document, sticker, voice,
        forward_origin, forwarded_from_name, reply_to_message_id, entities. Returns update_id and message_id.

        `photo` is the picture's bytes (True: a blank 800x600 one); the bot fetches it with getFile as from
        Telegram. `document` is {"data": bytes, "file_name", "mime_type"}: a file sent without compression."""
        bot = self._bot(token)
        chat_id = int(chat_id)
        known = {
            "from_user",
            "from",
            "caption",
            "photo",
            "document",
            "sticker",
            "voice",
            "forward_origin",
            "forwarded_from_name",
            "reply_to_message_id",
            "entities",
        }
        unknown = set(kw) - known
        if unknown:
            raise ValueError(f"unknown user message fields: {sorted(unknown)}")
        given_from = kw.get("from_user") or kw.get("from")
        if chat_id < 0 and not given_from:
            raise ValueError("a message in a group chat needs an explicit sender (from)")
        sender = self._default_user(chat_id, given_from)
        chat = self._remember_chat(bot, chat_id, sender)
        now = time.time()
        message: dict[str, Any] = {
            "message_id": self._next_message_id(bot, chat_id),
            "from": sender,
            "chat": chat,
            "date": int(now),
        }
        if text is not None:
            message["text"] = text
            if kw.get("entities"):
                message["entities"] = kw["entities"]
        if kw.get("photo"):
            message["photo"] = self._photo_sizes(bot, kw["photo"])
        if kw.get("document"):
            message["document"] = self._document(bot, kw["document"])
        if kw.get("sticker"):
            uid = secrets.token_hex(6)
            message["sticker"] = {
                "file_id": f"CAAC{uid}",
                "file_unique_id": f"AgAD{uid}",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "👍",
            }
        if kw.get("voice"):
            uid = secrets.token_hex(6)
            message["voice"] = {
                "file_id": f"AwAC{uid}",
                "file_unique_id": f"AgAD{uid}",
                "duration": 3,
                "mime_type": "audio/ogg",
            }
        if kw.get("caption") is not None:
            message["caption"] = kw["caption"]
        origin = kw.get("forward_origin")
        if origin is None and kw.get("forwarded_from_name"):
            origin = {"type": "hidden_user", "sender_user_name": kw["forwarded_from_name"]}
        if origin is not None:
            origin = dict(origin)
            origin.setdefault("type", "hidden_user")
            origin.setdefault("date", int(now) - 60)
            message["forward_origin"] = origin
        reply_to = kw.get("reply_to_message_id")
        if reply_to is not None:
            target = bot.messages.get((chat_id, int(reply_to)))
            if target is None:
                raise ValueError(f"message {reply_to} not found in chat {chat_id}")
            message["reply_to_message"] = self._without_reply(target)
        bot.messages[(chat_id, message["message_id"])] = message
        update_id = self._enqueue(bot, {"message": copy.deepcopy(message)})
        return {"update_id": update_id, "message_id": message["message_id"]}

    def user_edits(self, token: str, chat_id: int, message_id: int, text: str) -> dict[str, Any]:
        """A user edits one of their messages: an edited_message update."""
        bot = self._bot(token)
        message = bot.messages.get((int(chat_id), int(message_id)))
        if message is None or message.get("from", {}).get("is_bot"):
            raise ValueError(f"no user message {message_id} in chat {chat_id}")
        message["text"] = text
        message["edit_date"] = int(time.time())
        update_id = self._enqueue(bot, {"edited_message": copy.deepcopy(message)})
        return {"update_id": update_id, "message_id": int(message_id)}

    def user_clicks(
        self,
        token: str,
        chat_id: int,
        message_id: int,
        data: str,
        from_user: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user presses an inline button of a bot message: a callback_query update."""
        bot = self._bot(token)
        chat_id = int(chat_id)
        message = bot.messages.get((chat_id, int(message_id)))
        if message is None:
            raise ValueError(f"message {message_id} not found in chat {chat_id}")
        if not message.get("from", {}).get("is_bot"):
            raise ValueError(f"message {message_id} in chat {chat_id} was not sent by the bot")
        sender = self._default_user(chat_id, from_user or bot.chats.get(chat_id))
        query_id = str(self._rng.getrandbits(62) | (1 << 62))
        query = {
            "id": query_id,
            "from": sender,
            "message": copy.deepcopy(message),
            "chat_instance": str((chat_id * 2654435761 + bot.bot_id) % (1 << 62)),
            "data": data,
        }
        bot.callbacks[query_id] = {
            "chat_id": chat_id,
            "message_id": int(message_id),
            "data": data,
            "answered": False,
            "ts": time.time(),
        }
        update_id = self._enqueue(bot, {"callback_query": query})
        return {"update_id": update_id, "callback_query_id": query_id}

    def enqueue_update(self, token: str, update: dict[str, Any]) -> dict[str, Any]:
        """Enqueue a raw update (update_id assigned if missing), e.g. pre_checkout_query."""
        bot = self._bot(token)
        update = copy.deepcopy(update)
        for key in ("message", "edited_message"):
            msg = update.get(key)
            if isinstance(msg, dict) and isinstance(msg.get("chat"), dict) and "id" in msg["chat"]:
                chat_id = int(msg["chat"]["id"])
                if chat_id not in bot.chats:
                    bot.chats[chat_id] = msg["chat"]
                if "message_id" in msg:
                    bot.messages.setdefault((chat_id, int(msg["message_id"])), msg)
                    bot.next_message_id[chat_id] = max(
                        bot.next_message_id.get(chat_id, 1), int(msg["message_id"]) + 1
                    )
        pcq = update.get("pre_checkout_query")
        if isinstance(pcq, dict) and "id" in pcq:
            bot.pre_checkouts[str(pcq["id"])] = {"query": pcq, "answered": False}
        cbq = update.get("callback_query")
        if isinstance(cbq, dict) and "id" in cbq:
            bot.callbacks.setdefault(
                str(cbq["id"]), {"answered": False, "data": cbq.get("data"), "ts": time.time()}
            )
        update_id = self._enqueue(bot, update, update.pop("update_id", None))
        return {"update_id": update_id}

    def redeliver(self, token: str, update_id: int) -> dict[str, Any]:
        """Offer an update again under the same update_id, like Telegram after a lost acknowledgement."""
        bot = self._bot(token)
        rec = bot.updates.get(int(update_id))
        if rec is None:
            raise KeyError(f"update {update_id} not found")
        rec.pending = True
        rec.force_offer = True
        rec.failures = 0
        rec.not_before = 0.0
        rec.redeliveries += 1
        bot.pending[rec.update_id] = rec
        self._stats["redeliveries"] += 1
        self._kick(bot)
        return rec.to_json()

    def updates(self, token: str) -> list[dict[str, Any]]:
        """Every update ever enqueued for the bot, with delivery bookkeeping."""
        bot = self._bot(token)
        return [rec.to_json() for rec in sorted(bot.updates.values(), key=lambda r: r.update_id)]

    def sent(
        self, token: str, chat_id: int | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """What the bot did toward chats, in order (messages with their edits, deletions, answers...)."""
        bot = self._bot(token)
        out = []
        for entry in bot.sent:
            if chat_id is not None and entry.get("chat_id") != chat_id:
                continue
            if since is not None and entry["ts"] <= since:
                continue
            out.append(copy.deepcopy(entry))
        return out

    async def wait_for_sent(
        self,
        token: str,
        chat_id: int | None,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the helper's documented signature, mirrors wait_for
        method: str | None = None,
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` entries (of ``method`` if given) exist for the chat; return them."""

        def matching() -> list[dict[str, Any]]:
            return [e for e in self.sent(token, chat_id) if method is None or e["method"] == method]

        try:
            await _wait_until(lambda: len(matching()) >= count, lambda: self._sent_signal, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"expected {count} sent entries for chat {chat_id} (method={method}), got {len(matching())}: "
                f"{matching()!r}"
            ) from None
        return matching()

    def webhook_info(self, token: str) -> dict[str, Any]:
        bot = self._bot(token)
        info: dict[str, Any] = {
            "url": bot.webhook.url if bot.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.pending),
        }
        if bot.webhook:
            info["max_connections"] = bot.webhook.max_connections
            info["ip_address"] = "127.0.0.1"
            if bot.webhook.allowed_updates is not None:
                info["allowed_updates"] = bot.webhook.allowed_updates
            if bot.webhook.last_error_date is not None:
                info["last_error_date"] = bot.webhook.last_error_date
                info["last_error_message"] = bot.webhook.last_error_message
        return info

    # ------------------------------------------------------------------ internals: files

    def _store_file(self, bot: _Bot, prefix: str, folder: str, suffix: str, data: bytes) -> _File:
        uid = secrets.token_hex(8)
        stored = _File(
            file_id=f"{prefix}{uid}", file_unique_id=f"AQAD{uid[:10]}",
            file_path=f"{folder}/file_{len(bot.files)}{suffix}", data=data,
        )  # fmt: skip
        bot.files[stored.file_id] = stored
        return stored

    def _photo_sizes(self, bot: _Bot, photo: bytes | bool) -> list[dict[str, Any]]:
        """The PhotoSize list of a photo message: a 90-pixel thumbnail and the picture itself, largest last."""
        from PIL import Image  # only for photos: the emulator starts without it otherwise

        data = photo if isinstance(photo, bytes) else _blank_picture()
        try:
            with Image.open(io.BytesIO(data)) as picture:
                width, height = picture.size
                thumb = picture.convert("RGB")
                thumb.thumbnail((90, 90))
        except OSError as exc:
            raise ValueError(f"photo is not a picture: {exc}") from None
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG")
        sizes = []
        for blob, (w, h) in ((buffer.getvalue(), thumb.size), (data, (width, height))):
            stored = self._store_file(bot, "AgACAgIAAxkBAAI", "photos", ".jpg", blob)
            sizes.append({
                "file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "width": w, "height": h, "file_size": len(blob),
            })  # fmt: skip
        return sizes

    def _document(self, bot: _Bot, document: Any) -> dict[str, Any]:
        if not isinstance(document, dict) or not isinstance(document.get("data"), bytes):
            raise ValueError('document must be {"data": bytes, "file_name"?, "mime_type"?}')
        name = str(document.get("file_name") or "file")
        suffix = "." + name.rsplit(".", 1)[1] if "." in name else ""
        stored = self._store_file(bot, "BQACAgIAAxkBAAI", "documents", suffix, document["data"])
        return {
            "file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_name": name,
            "mime_type": str(document.get("mime_type") or "application/octet-stream"),
            "file_size": len(document["data"]),
        }  # fmt: skip

    # ------------------------------------------------------------------ internals: bots, chats, updates

    def _bot(self, token: str) -> _Bot:
        bot = self._bots.get(token)
        if bot is None:
            m = TOKEN_RE.match(token)
            if not m:
                raise ValueError(f"malformed bot token {token!r}")
            bot_id = int(m.group(1))
            bot = _Bot(
                token=token, bot_id=bot_id, username=f"bot{bot_id}_bot", first_name=f"Bot {bot_id}",
                next_update_id=self.first_id, first_message_id=self.first_id,
            )  # fmt: skip
            self._bots[token] = bot
        return bot

    @staticmethod
    def _default_user(chat_id: int, user: dict[str, Any] | None) -> dict[str, Any]:
        user = dict(user or {})
        user.pop("type", None)
        user.setdefault("id", chat_id)
        user["id"] = int(user["id"])
        user.setdefault("first_name", f"User {user['id']}")
        result: dict[str, Any] = {"id": user["id"], "is_bot": False, "first_name": user["first_name"]}
        for key in ("last_name", "username", "language_code", "is_premium"):
            if user.get(key) is not None:
                result[key] = user[key]
        return result

    @staticmethod
    def _remember_chat(bot: _Bot, chat_id: int, sender: dict[str, Any]) -> dict[str, Any]:
        if chat_id > 0:
            chat = {"id": chat_id, "type": "private", "first_name": sender["first_name"]}
            for key in ("last_name", "username"):
                if key in sender:
                    chat[key] = sender[key]
        else:
            chat = bot.chats.get(chat_id) or {
                "id": chat_id,
                "type": "supergroup",
                "title": f"Group {chat_id}",
            }
        bot.chats[chat_id] = chat
        return dict(chat)

    @staticmethod
    def _next_message_id(bot: _Bot, chat_id: int) -> int:
        # One counter per chat, shared by the user's and the bot's messages, as in private chats.
        mid = bot.next_message_id.get(chat_id, bot.first_message_id)
        bot.next_message_id[chat_id] = mid + 1
        return mid

    @staticmethod
    def _without_reply(message: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in message.items() if k != "reply_to_message"}

    def _enqueue(self, bot: _Bot, update: dict[str, Any], update_id: int | None = None) -> int:
        if update_id is None:
            update_id = bot.next_update_id
        update_id = int(update_id)
        if update_id in bot.updates:
            raise ValueError(f"update_id {update_id} already used")
        bot.next_update_id = max(bot.next_update_id, update_id + 1)
        body = {"update_id": update_id, **update}
        rec = _Update(update_id=update_id, update=body, type=_update_type(update), enqueued_ts=time.time())
        bot.updates[update_id] = rec
        bot.pending[update_id] = rec
        self._stats["updates_enqueued"] += 1
        self._kick(bot)
        return update_id

    def _kick(self, bot: _Bot) -> None:
        """Wake whoever consumes this bot's updates (webhook deliverer or long pollers)."""
        bot.webhook_wake.set()
        if bot.webhook is not None:
            self._ensure_webhook_task(bot)
        self._signal_pollers(bot)

    @staticmethod
    def _signal_pollers(bot: _Bot) -> None:
        # Swap-and-set: every waiter holds the event current when it looked, so none misses a wake-up.
        signal, bot.poll_signal = bot.poll_signal, asyncio.Event()
        signal.set()

    def _allowed(self, allowed: list[str] | None, rec: _Update) -> bool:
        if not allowed:
            return rec.type not in _DEFAULT_EXCLUDED_TYPES
        return rec.type in allowed

    def _record_sent(self, bot: _Bot, entry: dict[str, Any]) -> dict[str, Any]:
        self._sent_seq += 1
        entry = {"seq": self._sent_seq, "ts": time.time(), **entry}
        bot.sent.append(entry)
        signal, self._sent_signal = self._sent_signal, asyncio.Event()
        signal.set()
        return entry

    # ------------------------------------------------------------------ Bot API entry point

    async def _h_api(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        if not TOKEN_RE.match(token):
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        bot = self._bot(token)
        params: dict[str, Any] = {}
        try:
            if bot.revoked:
                raise TelegramError(401, "Unauthorized")
            params = await self._read_params(request)
            result, description = await self._call(bot, method, params)
        except TelegramError as err:
            self._stats["errors"] += 1
            self._refuse(bot, method, params, err)
            return web.json_response(err.to_json(), status=err.code)
        body: dict[str, Any] = {"ok": True, "result": result}
        if description:
            body["description"] = description
        return web.json_response(body)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method != "POST" or not request.body_exists:
            return params
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad("can't parse JSON encoded request") from None
            if not isinstance(body, dict):
                raise _bad("JSON object expected")
            params.update(body)
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = {"filename": value.filename, "size": len(value.file.read())}
                else:
                    params[key] = value
        return params

    async def _call(self, bot: _Bot, method: str, params: dict[str, Any]) -> tuple[Any, str | None]:
        handler = self._handlers().get(method.lower())
        if handler is None:
            raise TelegramError(404, "Not Found")
        name = method.lower()
        self._method_calls[handler.__name__.removeprefix("_m_")] += 1
        if name in SENDING_METHODS:
            self._check_flood_wait(bot, name, params)
            self._scripted_failure(name, params)
            self._maybe_inject_failure()
            self._check_rate(bot, params)
        return await handler(bot, params)

    @staticmethod
    def _chat_of(params: dict[str, Any]) -> int | str | None:
        try:
            return _p_chat_id(params)
        except TelegramError:
            return None

    @classmethod
    def _request_key(cls, method: str, params: dict[str, Any]) -> tuple[str, int | str | None, str]:
        return (method.lower(), cls._chat_of(params), str(params.get("text", "")))

    def _refuse(self, bot: _Bot, method: str, params: dict[str, Any], err: TelegramError) -> None:
        now = time.monotonic()
        bot.refused.append(
            {"method": method, "chat_id": self._chat_of(params), "code": err.code,
             "description": err.description, "retry_after": err.retry_after, "ts": time.time()}
        )  # fmt: skip
        if err.retry_after is not None:
            if len(bot.flood_waits) > 10_000:  # forget waits long over (a load test's storm)
                bot.flood_waits = {k: t for k, t in bot.flood_waits.items() if t > now}
            bot.flood_waits[self._request_key(method, params)] = now + err.retry_after

    def _check_flood_wait(self, bot: _Bot, method: str, params: dict[str, Any]) -> None:
        """Telegram answers a request repeated before its retry_after is up with another 429."""
        key = self._request_key(method, params)
        until = bot.flood_waits.pop(key, None)
        now = time.monotonic()
        if until is not None and now < until:
            self._stats["early_retries"] += 1
            self._too_many(max(1, math.ceil(until - now)))

    def _scripted_failure(self, method: str, params: dict[str, Any]) -> None:
        chat = self._chat_of(params)
        for fault in self._faults:
            if fault.matches(method, chat):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                self._stats["injected_failures"] += 1
                if fault.code == 429:
                    self._stats["too_many_requests"] += 1
                raise fault.error()

    def _maybe_inject_failure(self) -> None:
        cfg = self.config
        if cfg.fail_rate > 0 and self._rng.random() < cfg.fail_rate:
            self._stats["injected_failures"] += 1
            status = self._rng.choice(cfg.fail_statuses or (500,))
            raise TelegramError(status, "Internal Server Error" if status == 500 else "Bad Gateway")

    def _check_rate(self, bot: _Bot, params: dict[str, Any]) -> None:
        cfg = self.config
        if not cfg.rate_limits:
            return
        now = time.monotonic()
        window = bot.rate_window
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= cfg.per_bot_per_s:
            self._too_many(max(1, math.ceil(window[0] + 1.0 - now)))
        try:
            chat_key: int | str | None = _p_chat_id(params)
        except TelegramError:
            chat_key = None  # the method itself will report the bad chat_id
        if chat_key is not None and cfg.per_chat_per_s > 0:
            # Token bucket with capacity 1: one message, then one per 1/per_chat_per_s seconds.
            tokens, last = bot.chat_buckets.get(chat_key, (1.0, now))
            tokens = min(1.0, tokens + (now - last) * cfg.per_chat_per_s)
            if tokens < 1.0:
                bot.chat_buckets[chat_key] = (tokens, now)
                self._too_many(max(1, math.ceil((1.0 - tokens) / cfg.per_chat_per_s)))
            bot.chat_buckets[chat_key] = (tokens - 1.0, now)
        window.append(now)

    def _too_many(self, retry_after: int) -> None:
        self._stats["too_many_requests"] += 1
        raise TelegramError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)

    def _handlers(self) -> dict[str, Callable[[_Bot, dict[str, Any]], Awaitable[tuple[Any, str | None]]]]:
        return {
            "getme": self._m_getMe,
            "sendmessage": self._m_sendMessage,
            "editmessagetext": self._m_editMessageText,
            "editmessagereplymarkup": self._m_editMessageReplyMarkup,
            "deletemessage": self._m_deleteMessage,
            "answercallbackquery": self._m_answerCallbackQuery,
            "sendchataction": self._m_sendChatAction,
            "setmycommands": self._m_setMyCommands,
            "getmycommands": self._m_getMyCommands,
            "deletemycommands": self._m_deleteMyCommands,
            "getupdates": self._m_getUpdates,
            "setwebhook": self._m_setWebhook,
            "deletewebhook": self._m_deleteWebhook,
            "getwebhookinfo": self._m_getWebhookInfo,
            "sendinvoice": self._m_sendInvoice,
            "answerprecheckoutquery": self._m_answerPreCheckoutQuery,
            "getchat": self._m_getChat,
            "getfile": self._m_getFile,
            "logout": self._m_logOut,
            "close": self._m_close,
        }

    # ------------------------------------------------------------------ Bot API methods

    def _resolve_chat(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        chat_ref = _p_chat_id(params)
        if isinstance(chat_ref, str):
            for chat in bot.chats.values():
                if chat.get("username") and f"@{chat['username']}".lower() == chat_ref.lower():
                    return chat
            raise _bad("chat not found")
        chat = bot.chats.get(chat_ref)
        if chat is None:
            raise _bad("chat not found")
        if chat_ref in bot.blocked:
            raise TelegramError(403, "Forbidden: bot was blocked by the user")
        return chat

    async def _m_getMe(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return {
            **bot.user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }, None

    async def _m_logOut(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return True, None

    async def _m_close(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return True, None

    def _reply_target(self, bot: _Bot, chat_id: int, params: dict[str, Any]) -> dict[str, Any] | None:
        reply = _p_json(params, "reply_parameters")
        reply_id = _p_int(params, "reply_to_message_id")
        allow_missing = _p_bool(params, "allow_sending_without_reply")
        if isinstance(reply, dict) and reply.get("message_id") is not None:
            reply_id = int(reply["message_id"])
            allow_missing = bool(reply.get("allow_sending_without_reply", allow_missing))
        if reply_id is None:
            return None
        target = bot.messages.get((chat_id, reply_id))
        if target is None:
            if allow_missing:
                return None
            raise _bad("message to be replied not found")
        return target

    async def _m_sendMessage(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self._resolve_chat(bot, params)
        raw_text = params.get("text")
        if raw_text is None or (isinstance(raw_text, str) and raw_text == ""):
            raise _bad("message text is empty")
        raw_text = str(raw_text)
        parse_mode = _p_str(params, "parse_mode")
        text, entities = format_text(raw_text, parse_mode, _p_json(params, "entities"))
        if not text:
            raise _bad("message text is empty")
        if _u16(text) > MAX_TEXT_LEN:
            raise _bad("message is too long")
        markup = _validate_reply_markup(_p_json(params, "reply_markup"))
        target = self._reply_target(bot, chat["id"], params)
        link_preview = _p_json(params, "link_preview_options")
        message: dict[str, Any] = {
            "message_id": self._next_message_id(bot, chat["id"]),
            "from": bot.user(),
            "chat": dict(chat),
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if target is not None:
            message["reply_to_message"] = self._without_reply(target)
        if link_preview:
            message["link_preview_options"] = link_preview
        if markup is not None:
            message["reply_markup"] = markup
        bot.messages[(chat["id"], message["message_id"])] = message
        entry = self._record_sent(
            bot,
            {
                "method": "sendMessage",
                "chat_id": chat["id"],
                "message_id": message["message_id"],
                "text": text,
                "raw_text": raw_text,
                "parse_mode": parse_mode,
                "entities": entities,
                "reply_markup": markup,
                "reply_to_message_id": target["message_id"] if target else None,
                "link_preview_options": link_preview,
                "disable_notification": _p_bool(params, "disable_notification"),
                "edits": [],
                "deleted": False,
            },
        )
        bot.sent_by_message[(chat["id"], message["message_id"])] = entry
        return copy.deepcopy(message), None

    def _bot_message(
        self, bot: _Bot, params: dict[str, Any], not_found: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if params.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
        chat = self._resolve_chat(bot, params)
        message_id = _p_int(params, "message_id", required=True)
        message = bot.messages.get((chat["id"], message_id))  # type: ignore[arg-type]
        if message is None:
            raise _bad(not_found)
        if not message.get("from", {}).get("is_bot"):
            raise _bad("message can't be edited")
        return chat, message

    def _record_edit(
        self, bot: _Bot, method: str, chat_id: int, message: dict[str, Any], extra: dict[str, Any]
    ) -> None:
        entry = self._record_sent(
            bot,
            {
                "method": method,
                "chat_id": chat_id,
                "message_id": message["message_id"],
                "text": message.get("text"),
                "reply_markup": message.get("reply_markup"),
                **extra,
            },
        )
        original = bot.sent_by_message.get((chat_id, message["message_id"]))
        if original is not None:
            original["edits"].append(
                {k: entry[k] for k in ("method", "text", "reply_markup", "ts", "seq")} | extra
            )

    async def _m_editMessageText(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat, message = self._bot_message(bot, params, "message to edit not found")
        raw_text = params.get("text")
        if raw_text is None or raw_text == "":
            raise _bad("message text is empty")
        raw_text = str(raw_text)
        parse_mode = _p_str(params, "parse_mode")
        text, entities = format_text(raw_text, parse_mode, _p_json(params, "entities"))
        if not text:
            raise _bad("message text is empty")
        if _u16(text) > MAX_TEXT_LEN:
            raise _bad("message is too long")
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        markup = _validate_reply_markup(_p_json(params, "reply_markup"))
        if (
            message.get("text") == text
            and message.get("entities", []) == entities
            and message.get("reply_markup") == markup
        ):
            raise _bad(_NOT_MODIFIED[len("Bad Request: ") :])
        message["text"] = text
        if entities:
            message["entities"] = entities
        else:
            message.pop("entities", None)
        # Like Telegram: editMessageText without reply_markup removes the inline keyboard.
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        self._record_edit(bot, "editMessageText", chat["id"], message, {"parse_mode": parse_mode})
        return copy.deepcopy(message), None

    async def _m_editMessageReplyMarkup(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat, message = self._bot_message(bot, params, "message to edit not found")
        markup = _validate_reply_markup(_p_json(params, "reply_markup"))
        if message.get("reply_markup") == markup:
            raise _bad(_NOT_MODIFIED[len("Bad Request: ") :])
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        self._record_edit(bot, "editMessageReplyMarkup", chat["id"], message, {})
        return copy.deepcopy(message), None

    async def _m_deleteMessage(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self._resolve_chat(bot, params)
        message_id = _p_int(params, "message_id", required=True)
        key = (chat["id"], message_id)
        if bot.messages.pop(key, None) is None:  # type: ignore[arg-type]
            raise _bad("message to delete not found")
        entry = self._record_sent(
            bot, {"method": "deleteMessage", "chat_id": chat["id"], "message_id": message_id}
        )
        original = bot.sent_by_message.get(key)  # type: ignore[arg-type]
        if original is not None:
            original["deleted"] = True
            original["deleted_ts"] = entry["ts"]
        return True, None

    async def _m_answerCallbackQuery(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        query_id = _p_str(params, "callback_query_id", required=True)
        query = bot.callbacks.get(query_id)  # type: ignore[arg-type]
        if query is None or query["answered"]:
            raise _bad(_QUERY_TOO_OLD[len("Bad Request: ") :])
        query["answered"] = True
        entry = self._record_sent(
            bot,
            {
                "method": "answerCallbackQuery",
                "chat_id": query.get("chat_id"),
                "message_id": query.get("message_id"),
                "callback_query_id": query_id,
                "text": _p_str(params, "text"),
                "show_alert": _p_bool(params, "show_alert"),
                "url": _p_str(params, "url"),
            },
        )
        query["answered_ts"] = entry["ts"]
        return True, None

    async def _m_sendChatAction(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self._resolve_chat(bot, params)
        action = _p_str(params, "action", required=True)
        if action not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        self._record_sent(bot, {"method": "sendChatAction", "chat_id": chat["id"], "action": action})
        return True, None

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = _p_json(params, "scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise _bad("can't parse BotCommandScope JSON object")
        return json.dumps(scope, sort_keys=True), _p_str(params, "language_code") or ""

    async def _m_setMyCommands(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        commands = _p_json(params, "commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        clean = []
        for cmd in commands:
            if not isinstance(cmd, dict) or not re.fullmatch(r"[a-z0-9_]{1,32}", str(cmd.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(cmd.get("description", ""))) <= 256:
                raise _bad("command description must be non-empty")
            clean.append({"command": cmd["command"], "description": cmd["description"]})
        key = self._commands_key(params)
        if clean:
            bot.commands[key] = clean
        else:
            bot.commands.pop(key, None)
        return True, None

    async def _m_getMyCommands(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return copy.deepcopy(bot.commands.get(self._commands_key(params), [])), None

    async def _m_deleteMyCommands(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        bot.commands.pop(self._commands_key(params), None)
        return True, None

    async def _m_getUpdates(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        if bot.webhook is not None:
            raise TelegramError(409, _WEBHOOK_CONFLICT)
        offset = _p_int(params, "offset") or 0
        limit = max(1, min(100, _p_int(params, "limit") or 100))
        timeout = max(0, _p_int(params, "timeout") or 0)
        allowed = _p_json(params, "allowed_updates")
        if isinstance(allowed, list):
            bot.allowed_updates = allowed or None
        # A newer getUpdates supersedes the one waiting, as Telegram does (409 for the old one).
        bot.poll_generation += 1
        generation = bot.poll_generation
        self._signal_pollers(bot)
        self._confirm(bot, offset)

        def ready() -> bool:
            return (
                bool(self._offerable(bot, offset))
                or generation != bot.poll_generation
                or bot.webhook is not None
                or bot.revoked
                or self._closing
            )

        with contextlib.suppress(TimeoutError):
            await _wait_until(ready, lambda: bot.poll_signal, timeout)
        if generation != bot.poll_generation:
            raise TelegramError(409, _POLL_CONFLICT)
        if bot.revoked:
            raise TelegramError(401, "Unauthorized")
        if bot.webhook is not None or self._bots.get(bot.token) is not bot:
            return [], None
        now = time.time()
        out = []
        for rec in self._offerable(bot, offset)[:limit]:
            rec.attempts += 1
            rec.force_offer = False
            if rec.delivered_ts is None:
                rec.delivered_ts = now
            self._stats["updates_delivered"] += 1
            out.append(copy.deepcopy(rec.update))
        return out, None

    def _confirm(self, bot: _Bot, offset: int) -> None:
        if offset == 0:
            return
        ids = sorted(bot.pending)
        if offset < 0:
            # Negative offset: keep only the last |offset| updates.
            drop = ids[: max(0, len(ids) + offset)]
        else:
            drop = [uid for uid in ids if uid < offset and not bot.pending[uid].force_offer]
        for uid in drop:
            rec = bot.pending.pop(uid)
            rec.pending = False

    def _offerable(self, bot: _Bot, offset: int) -> list[_Update]:
        recs = sorted(bot.pending.values(), key=lambda r: (not r.force_offer, r.update_id))
        out = []
        for rec in recs:
            if not self._allowed(bot.allowed_updates, rec):
                # Not subscribed: Telegram drops such updates instead of keeping them queued.
                bot.pending.pop(rec.update_id, None)
                rec.pending = False
                rec.last_error = "filtered by allowed_updates"
                continue
            if rec.force_offer or offset <= 0 or rec.update_id >= offset:
                out.append(rec)
        return out

    async def _m_setWebhook(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        url = _p_str(params, "url") or ""
        if not url:
            return await self._m_deleteWebhook(bot, params)
        if not re.match(r"^https?://[^/\s]+", url):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        max_connections = _p_int(params, "max_connections") or 40
        if not 1 <= max_connections <= 100:
            raise _bad("bad webhook: max_connections must be between 1 and 100")
        secret = _p_str(params, "secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise _bad("secret token contains unallowed characters")
        allowed = _p_json(params, "allowed_updates")
        if _p_bool(params, "drop_pending_updates"):
            self._drop_pending(bot)
        previous = bot.webhook
        bot.webhook = _Webhook(
            url=url,
            secret_token=secret,
            max_connections=max_connections,
            allowed_updates=allowed if isinstance(allowed, list) and allowed else None,
        )
        if previous is not None and previous.url == url:
            bot.webhook.last_error_date = previous.last_error_date
            bot.webhook.last_error_message = previous.last_error_message
        bot.allowed_updates = bot.webhook.allowed_updates
        for rec in bot.pending.values():
            rec.not_before = 0.0
            rec.failures = 0
        self._kick(bot)
        same = previous is not None and previous.url == url
        return True, "Webhook is already set" if same else "Webhook was set"

    async def _m_deleteWebhook(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        if _p_bool(params, "drop_pending_updates"):
            self._drop_pending(bot)
        had = bot.webhook is not None
        bot.webhook = None
        bot.webhook_wake.set()
        self._signal_pollers(bot)
        return True, "Webhook was deleted" if had else "Webhook is already deleted"

    @staticmethod
    def _drop_pending(bot: _Bot) -> None:
        for rec in bot.pending.values():
            rec.pending = False
            rec.last_error = "dropped by drop_pending_updates"
        bot.pending.clear()

    async def _m_getWebhookInfo(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return self.webhook_info(bot.token), None

    async def _m_sendInvoice(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self._resolve_chat(bot, params)
        title = _p_str(params, "title", required=True) or ""
        description = _p_str(params, "description", required=True) or ""
        payload = _p_str(params, "payload", required=True) or ""
        currency = _p_str(params, "currency", required=True) or ""
        if not 1 <= len(title) <= 32:
            raise _bad("TITLE_INVALID")
        if not 1 <= len(description) <= 255:
            raise _bad("DESCRIPTION_INVALID")
        if len(payload.encode()) > 128:
            raise _bad("PAYLOAD_INVALID")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise _bad("CURRENCY_INVALID")
        prices = _p_json(params, "prices")
        if not isinstance(prices, list) or not prices:
            raise _bad("can't parse prices JSON object")
        try:
            total = sum(int(p["amount"]) for p in prices)
        except (KeyError, TypeError, ValueError):
            raise _bad("can't parse prices JSON object") from None
        if total <= 0:
            raise _bad("CURRENCY_TOTAL_AMOUNT_INVALID")
        markup = _validate_reply_markup(_p_json(params, "reply_markup"))
        invoice = {
            "title": title,
            "description": description,
            "start_parameter": _p_str(params, "start_parameter") or "",
            "currency": currency,
            "total_amount": total,
        }
        message: dict[str, Any] = {
            "message_id": self._next_message_id(bot, chat["id"]),
            "from": bot.user(),
            "chat": dict(chat),
            "date": int(time.time()),
            "invoice": invoice,
        }
        if markup is not None:
            message["reply_markup"] = markup
        bot.messages[(chat["id"], message["message_id"])] = message
        entry = self._record_sent(
            bot,
            {
                "method": "sendInvoice",
                "chat_id": chat["id"],
                "message_id": message["message_id"],
                "text": None,
                "reply_markup": markup,
                "reply_to_message_id": None,
                "invoice": invoice,
                "payload": payload,
                "prices": prices,
                "edits": [],
                "deleted": False,
            },
        )
        bot.sent_by_message[(chat["id"], message["message_id"])] = entry
        return copy.deepcopy(message), None

    async def _m_answerPreCheckoutQuery(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        query_id = _p_str(params, "pre_checkout_query_id", required=True)
        record = bot.pre_checkouts.get(query_id)  # type: ignore[arg-type]
        if record is None or record["answered"]:
            raise _bad(_QUERY_TOO_OLD[len("Bad Request: ") :])
        ok = _p_bool(params, "ok")
        error_message = _p_str(params, "error_message")
        if not ok and not error_message:
            raise _bad("ERROR_MESSAGE_EMPTY")
        record["answered"] = True
        self._record_sent(
            bot,
            {
                "method": "answerPreCheckoutQuery",
                "chat_id": record["query"].get("from", {}).get("id"),
                "pre_checkout_query_id": query_id,
                "ok": ok,
                "error_message": error_message,
            },
        )
        return True, None

    async def _m_getChat(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self._resolve_chat(bot, params)
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": True,
                "limited_gifts": True,
                "unique_gifts": True,
                "premium_subscription": True,
                "gifts_from_channels": True,
            },
        }, None

    async def _m_getFile(self, bot: _Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        file_id = _p_str(params, "file_id", required=True)
        stored = bot.files.get(file_id or "")
        if stored is None:
            raise _bad("wrong file_id or the file is temporarily unavailable")
        if len(stored.data) > MAX_DOWNLOAD:
            raise _bad("file is too big")
        return {
            "file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data), "file_path": stored.file_path,
        }, None  # fmt: skip

    async def _h_file(self, request: web.Request) -> web.Response:
        """A file's bytes at https://api.telegram.org/file/bot<token>/<file_path>, as getFile named it."""
        token, path = request.match_info["token"], request.match_info["path"]
        bot = self._bots.get(token)
        if bot is None or bot.revoked:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        for stored in bot.files.values():
            if stored.file_path == path and len(stored.data) <= MAX_DOWNLOAD:
                self._method_calls["file_download"] += 1
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    # ------------------------------------------------------------------ webhook delivery

    def _ensure_webhook_task(self, bot: _Bot) -> None:
        if bot.webhook_task is None or bot.webhook_task.done():
            bot.webhook_task = asyncio.get_running_loop().create_task(self._webhook_loop(bot))

    async def _stop_all_webhooks(self) -> None:
        tasks = []
        for bot in self._bots.values():
            if bot.webhook_task is not None:
                bot.webhook_task.cancel()
                tasks.append(bot.webhook_task)
                bot.webhook_task = None
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._client

    async def _webhook_loop(self, bot: _Bot) -> None:
        """Deliver pending updates in update_id order. Only the first max_connections pending updates
        are ever in flight, so an update can overtake at most max_connections - 1 earlier ones, and a
        failing update holds back the ones behind it, as Telegram's queue does."""
        in_flight: dict[int, asyncio.Task[None]] = {}
        loop = asyncio.get_running_loop()
        try:
            while bot.webhook is not None and not bot.revoked and self._bots.get(bot.token) is bot:
                bot.webhook_wake.clear()
                webhook = bot.webhook
                now = loop.time()
                wake_at: float | None = None
                window: list[_Update] = []
                for uid in sorted(bot.pending):
                    rec = bot.pending[uid]
                    if not self._allowed(webhook.allowed_updates, rec):
                        bot.pending.pop(uid)
                        rec.pending = False
                        rec.last_error = "filtered by allowed_updates"
                        continue
                    window.append(rec)
                    if len(window) >= webhook.max_connections:
                        break
                for rec in window:
                    if rec.update_id in in_flight:
                        continue
                    if rec.not_before > now:
                        wake_at = rec.not_before if wake_at is None else min(wake_at, rec.not_before)
                        continue
                    task = loop.create_task(self._deliver(bot, webhook, rec))
                    in_flight[rec.update_id] = task
                    task.add_done_callback(lambda _t, uid=rec.update_id: self._delivered(bot, in_flight, uid))
                timeout = None if wake_at is None else max(0.0, wake_at - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bot.webhook_wake.wait(), timeout)
        finally:
            for task in in_flight.values():
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight.values(), return_exceptions=True)

    @staticmethod
    def _delivered(bot: _Bot, in_flight: dict[int, asyncio.Task[None]], update_id: int) -> None:
        in_flight.pop(update_id, None)
        bot.webhook_wake.set()

    async def _deliver(self, bot: _Bot, webhook: _Webhook, rec: _Update) -> None:
        headers = {"Content-Type": "application/json"}
        if webhook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = webhook.secret_token
        rec.attempts += 1
        error: str | None = None
        reply: tuple[str, bytes] | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=self.config.webhook_timeout)
            async with self._http().post(
                webhook.url, data=json.dumps(rec.update), headers=headers, timeout=timeout
            ) as resp:
                body = await resp.read()
                if 200 <= resp.status < 300:
                    reply = (resp.headers.get("Content-Type", ""), body)
                else:
                    error = f"Wrong response from the webhook: {resp.status} {resp.reason or ''}".rstrip()
        except TimeoutError:
            error = "Read timeout expired"
        except aiohttp.ClientConnectorError:
            error = "Connection refused"
        except aiohttp.ClientError as exc:
            error = f"Connection error: {type(exc).__name__}"
        if error is not None:
            rec.failures += 1
            rec.last_error = error
            backoff = min(
                self.config.webhook_retry_max, self.config.webhook_retry_min * 2 ** (rec.failures - 1)
            )
            rec.not_before = asyncio.get_running_loop().time() + backoff
            webhook.last_error_date = int(time.time())
            webhook.last_error_message = error
            self._stats["webhook_errors"] += 1
            return
        rec.failures = 0
        rec.force_offer = False
        rec.pending = False
        bot.pending.pop(rec.update_id, None)
        if rec.delivered_ts is None:
            rec.delivered_ts = time.time()
        self._stats["updates_delivered"] += 1
        if reply is not None and reply[1].strip():
            await self._webhook_reply(bot, *reply)

    async def _webhook_reply(self, bot: _Bot, content_type: str, body: bytes) -> None:
        """A webhook may answer with a method call in its body; Telegram executes it."""
        params: dict[str, Any] = {}
        ctype = content_type.split(";")[0].strip().lower()
        try:
            if ctype == "application/json":
                data = json.loads(body)
                params = data if isinstance(data, dict) else {}
            elif ctype == "application/x-www-form-urlencoded":
                params = dict(parse_qsl(body.decode()))
            elif ctype.startswith("multipart/"):
                msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
                )
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if name:
                        params[str(name)] = part.get_payload(decode=True).decode()
        except (ValueError, UnicodeDecodeError):
            return
        method = params.pop("method", None)
        if not method:
            return
        try:
            await self._call(bot, str(method), params)
        except TelegramError as err:
            log.info("webhook reply %s failed: %s", method, err.description)
            self._stats["errors"] += 1

    # ------------------------------------------------------------------ control API (HTTP)

    def _control_bot(self, request: web.Request) -> _Bot:
        token = request.match_info["token"]
        try:
            return self._bot(token)
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": str(exc)}), content_type="application/json"
            ) from None

    async def _h_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "service": "telegram"})

    async def _h_config(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        try:
            return web.json_response(self.configure(**body))
        except (ValueError, TypeError) as exc:
            return control_error(400, str(exc))

    async def _h_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.get_config())

    async def _h_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _h_reset(self, request: web.Request) -> web.Response:
        await self.reset()
        return web.json_response({"ok": True})

    async def _h_bots(self, request: web.Request) -> web.Response:
        return web.json_response([self.bot(token) for token in list(self._bots)])

    async def _h_user_message(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        body = await json_object(request)
        if "chat_id" not in body and "from" not in body:
            return control_error(400, "chat_id is required")
        chat_id = body.pop("chat_id", None)
        if chat_id is None:
            chat_id = body["from"]["id"]
        text = body.pop("text", None)
        try:
            # Pictures travel base64-encoded in the control API's JSON.
            if "photo_base64" in body:
                body["photo"] = base64.b64decode(body.pop("photo_base64"), validate=True)
            if isinstance(body.get("document"), dict) and "data_base64" in body["document"]:
                document = dict(body["document"])
                document["data"] = base64.b64decode(document.pop("data_base64"), validate=True)
                body["document"] = document
            return web.json_response(self.user_sends(bot.token, int(chat_id), text, **body))
        except binascii.Error as exc:
            return control_error(400, f"bad base64: {exc}")
        except (ValueError, TypeError, KeyError) as exc:
            return control_error(400, str(exc))

    async def _h_user_edit(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        body = await json_object(request)
        try:
            return web.json_response(
                self.user_edits(bot.token, int(body["chat_id"]), int(body["message_id"]), str(body["text"]))
            )
        except (ValueError, TypeError, KeyError) as exc:
            return control_error(400, str(exc))

    async def _h_user_callback(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        body = await json_object(request)
        try:
            result = self.user_clicks(
                bot.token, int(body["chat_id"]), int(body["message_id"]), str(body["data"]), body.get("from")
            )
        except (ValueError, TypeError, KeyError) as exc:
            return control_error(400, str(exc))
        return web.json_response(result)

    async def _h_raw_update(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        body = await json_object(request)
        update = body.get("update")
        if not isinstance(update, dict) or not update:
            return control_error(400, "update must be a non-empty object")
        try:
            return web.json_response(self.enqueue_update(bot.token, update))
        except ValueError as exc:
            return control_error(409, str(exc))

    async def _h_list_updates(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        return web.json_response(self.updates(bot.token))

    async def _h_redeliver(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        try:
            return web.json_response(self.redeliver(bot.token, int(request.match_info["update_id"])))
        except (KeyError, ValueError) as exc:
            return control_error(404, str(exc))

    async def _h_sent(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        try:
            chat_id = int(request.query["chat_id"]) if request.query.get("chat_id") else None
            since = float(request.query["since"]) if request.query.get("since") else None
        except ValueError:
            return control_error(400, "chat_id must be an integer and since a number")
        return web.json_response(self.sent(bot.token, chat_id, since))

    async def _h_revoke(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        self.revoke_token(bot.token)
        return web.json_response({"ok": True})

    async def _h_add_chat(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        body = await json_object(request)
        try:
            chat_id = int(body.pop("chat_id"))
            return web.json_response(self.add_chat(bot.token, chat_id, **body))
        except (ValueError, TypeError, KeyError) as exc:
            return control_error(400, str(exc))

    async def _h_block(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        body = await json_object(request)
        try:
            chat_id = int(request.match_info["chat_id"])
        except ValueError:
            return control_error(400, "chat_id must be an integer")
        self.set_blocked(bot.token, chat_id, bool(body.get("blocked", True)))
        return web.json_response({"ok": True})

    async def _h_commands(self, request: web.Request) -> web.Response:
        bot = self._control_bot(request)
        return web.json_response(
            [
                {"scope": json.loads(scope), "language_code": lang, "commands": cmds}
                for (scope, lang), cmds in bot.commands.items()
            ]
        )
