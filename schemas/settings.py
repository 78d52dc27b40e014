"""/settings: what a driver can change, the choices the card offers, and the workflow's input.

Callback data (≤ 64 bytes, from the client, so validated like any input):
  set:m                   the main card
  set:o:<field>           a field's choices
  set:v:<field>:<value>   save a value
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field

SETTINGS_PREFIX = "set:"
SETTINGS_COMMAND = "/settings"

# The fields of the card, in the order shown: short code → DriverSettings attribute (or "time_zone").
FIELDS: dict[str, str] = {
    "tz": "time_zone",
    "rem": "reminder_lead_minutes",
    "dur": "event_duration_minutes",
    "buf": "buffer_minutes",
    "trv": "travel_minutes",
    "ag": "agenda_time",
    "sc": "agenda_scope",
    "lang": "language",
}
# Names a driver may type after /settings (e.g. "/settings tz Asia/Tbilisi").
FIELD_ALIASES: dict[str, str] = {
    "tz": "tz", "timezone": "tz", "zone": "tz", "пояс": "tz",
    "reminder": "rem", "rem": "rem", "напоминание": "rem",
    "duration": "dur", "dur": "dur", "длительность": "dur",
    "buffer": "buf", "buf": "buf", "запас": "buf",
    "travel": "trv", "trv": "trv", "дорога": "trv",
    "agenda": "ag", "ag": "ag", "сводка": "ag",
    "scope": "sc", "sc": "sc",
    "lang": "lang", "language": "lang", "язык": "lang",
}  # fmt: skip

# Common zones of our drivers (Russia west to east), then a few international ones.
TIME_ZONES: tuple[str, ...] = (
    "Europe/Kaliningrad", "Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg", "Asia/Omsk",
    "Asia/Novosibirsk", "Asia/Krasnoyarsk", "Asia/Irkutsk", "Asia/Vladivostok",
    "Europe/Minsk", "Asia/Almaty", "Asia/Tbilisi", "Asia/Dubai", "Europe/Istanbul", "Europe/Berlin",
    "Europe/London",
)  # fmt: skip
MINUTE_CHOICES: dict[str, tuple[int, ...]] = {
    "rem": (0, 15, 30, 60, 90, 120),
    "dur": (30, 45, 60, 90, 120, 180),
    "buf": (0, 15, 30, 45, 60),
    "trv": (0, 15, 30, 45, 60, 90),
}
AGENDA_TIMES: tuple[str, ...] = ("off", "06:00", "07:00", "08:00", "09:00")
MAX_MINUTES = 24 * 60
_HHMM = re.compile(r"^([01]?\d|2[0-3])[:.]([0-5]\d)$")


class SettingsError(ValueError):
    """A value a field does not accept (a typo, or forged callback data)."""


@functools.cache
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones() if "/" in name}


def valid_time_zone(name: str) -> str | None:
    """The canonical IANA name ("asia/tbilisi" → "Asia/Tbilisi"), else None. Canonical matters: the
    Temporal server reads the Schedule's zone case-sensitively."""
    canonical = _zone_names().get(name.strip().lower())
    if canonical is None:
        return None
    try:
        ZoneInfo(canonical)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return canonical


def parse_value(field: str, raw: str) -> dict[str, Any]:
    """The changes (DriverSettings keys, plus "time_zone" for the whitelist column) one value makes.
    Raises SettingsError for anything the field does not accept."""
    raw = raw.strip()
    if field == "tz":
        tz = valid_time_zone(raw)
        if tz is None:
            raise SettingsError(raw)
        return {"time_zone": tz}
    if field in MINUTE_CHOICES:
        value = raw.lower().removesuffix("min").removesuffix("мин").strip()
        if field == "dur" and value in ("default", "по умолчанию", "-"):
            return {"event_duration_minutes": None}
        if value in ("off", "выкл", "0") and field != "dur":
            return {FIELDS[field]: 0}
        if not value.isdigit() or not (5 if field == "dur" else 0) <= int(value) <= MAX_MINUTES:
            raise SettingsError(raw)
        return {FIELDS[field]: int(value)}
    if field == "ag":
        if raw.lower() in ("off", "выкл", "нет", "no"):
            return {"agenda_enabled": False}
        m = _HHMM.match(raw)
        if m is None:
            raise SettingsError(raw)
        return {"agenda_enabled": True, "agenda_time": f"{int(m.group(1)):02d}:{m.group(2)}"}
    if field == "sc":
        if raw not in ("ours", "all"):
            raise SettingsError(raw)
        return {"agenda_scope": raw}
    if field == "lang":
        if raw.lower() not in ("ru", "en"):
            raise SettingsError(raw)
        return {"language": raw.lower()}
    raise SettingsError(field)


class SettingsInput(BaseModel):
    """SettingsWorkflow's input: a /settings command (text) or a press on the card (callback_data)."""

    tenant_id: str
    chat_id: int
    text: str = ""
    callback_data: str | None = None
    callback_query_id: str | None = None
    # The command to answer, or the card that was pressed (edited in place).
    message_id: int | None = None
    reply_task_queue: str | None = None
    # The language when the driver chose none in /settings (their Telegram app's); None: Russian.
    language: str | None = None


class SettingsResult(BaseModel):
    action: Literal["card", "menu", "saved", "invalid", "skipped"] = "card"
    changed: dict[str, Any] = Field(default_factory=dict)
    message_id: int | None = None


class SaveSettingsInput(BaseModel):
    """One change of a driver's settings, written with its audit row (once per workflow step)."""

    tenant_id: str
    chat_id: int
    workflow_id: str
    step: str
    changes: dict[str, Any]
