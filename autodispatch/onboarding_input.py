"""What a new driver types during onboarding, understood: a calendar id in any of the forms Google shows
it, and an invite code (bare, or inside the bot's deep link). Pure: the OnboardingWorkflow imports it.

A calendar id is an e-mail-like string (`ivan@gmail.com` for a main calendar,
`c_…@group.calendar.google.com` for another one). Drivers find it, or something containing it, in:

* Settings → Integrate calendar → Calendar ID: the id itself;
* the browser's address bar on the calendar's settings page:
  `https://calendar.google.com/calendar/u/0/r/settings/calendar/<base64 of the id>`;
* the embed code or public URL: `https://calendar.google.com/calendar/embed?src=<id>&ctz=…`;
* the share link: `https://calendar.google.com/calendar/u/0?cid=<base64 of the id>`;
* the iCal address: `https://calendar.google.com/calendar/ical/<id>/public/basic.ics`.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import parse_qs, unquote, urlsplit

# Google's ids: one '@', something with a dot after it; holiday calendars carry '#' and '.' before it.
_CALENDAR_ID = re.compile(r"^[A-Za-z0-9._%+#\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$")
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_EMAIL_LIKE = re.compile(r"[A-Za-z0-9._%+#\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# Telegram deep-link payloads (`?start=`) are 1-64 characters of A-Z a-z 0-9 _ -.
_INVITE_CODE = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
_TRAILING = ".,;:!?)]}>\"'»“”"
_LEADING = "([{<\"'«“”"


def _clean(token: str) -> str:
    return token.strip().lstrip(_LEADING).rstrip(_TRAILING)


def _valid_id(candidate: str | None) -> str | None:
    if not candidate:
        return None
    candidate = _clean(candidate)
    return candidate if _CALENDAR_ID.match(candidate) else None


def _b64_id(segment: str) -> str | None:
    """Google writes the id base64-encoded (standard or URL-safe alphabet, padding dropped)."""
    raw = unquote(segment).strip().replace("+", "-").replace("/", "_")
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return _valid_id(decoded)


def _from_url(url: str) -> str | None:
    parts = urlsplit(_clean(url))
    if "google." not in parts.netloc.lower():
        return None
    query = parse_qs(parts.query)
    for value in query.get("src", []):  # embed and public URLs: the id itself
        if found := _valid_id(unquote(value)):
            return found
    for value in query.get("cid", []):  # share links: base64
        if found := _b64_id(value) or _valid_id(unquote(value)):
            return found
    segments = [s for s in parts.path.split("/") if s]
    for i, segment in enumerate(segments):
        if segment == "calendar" and i > 0 and segments[i - 1] == "settings" and i + 1 < len(segments):
            return _b64_id(segments[i + 1]) or _valid_id(unquote(segments[i + 1]))
        if segment == "ical" and i + 1 < len(segments):
            return _valid_id(unquote(segments[i + 1]))
    return None


def parse_calendar_reference(text: str) -> str | None:
    """The calendar id in what the driver sent (an id, an e-mail, or one of Google's calendar URLs), or
    None if there is none. The first URL that names a calendar wins, then the first e-mail-like word."""
    for url in _URL.findall(text):
        if found := _from_url(url):
            return found
    without_urls = _URL.sub(" ", text)
    for match in _EMAIL_LIKE.finditer(without_urls):
        if found := _valid_id(match.group(0)):
            return found
    return None


def parse_invite_code(text: str) -> str | None:
    """An invite code: the payload of `/start <code>`, a bare code, or the deep link itself
    (`https://t.me/<bot>?start=<code>`)."""
    text = text.strip()
    for url in _URL.findall(text):
        for value in parse_qs(urlsplit(_clean(url)).query).get("start", []):
            if _INVITE_CODE.match(value):
                return value
    word = _clean(text)
    return word if _INVITE_CODE.match(word) else None


def start_payload(text: str) -> str | None:
    """`/start abc` → 'abc'; `/start` → None (Telegram sends the deep link's payload this way)."""
    parts = text.strip().split(maxsplit=1)
    return parts[1].strip() or None if len(parts) > 1 else None
