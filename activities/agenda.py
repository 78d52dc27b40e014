"""Reading a driver's calendar for the agenda: one day or a week of events, reduced to agenda lines."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from temporalio import activity

from activities.calendar import CalendarService, google_errors
from autodispatch.texts import CURRENCY_SIGNS
from schemas.agenda import AgendaItem, ListEventsInput

_LEADING_TIME = re.compile(r"^\d{1,2}:\d{2}\s+")
# "Цена: 2 500 ₽" / "Price: $90" — the description line event_description writes (events written before
# the price was also stored as an extended property).
_PRICE_LINE = re.compile(r"^(?:Цена|Price):\s*(.+?)\s*$", re.MULTILINE)
_SIGN_TO_CODE = {sign: code for code, sign in CURRENCY_SIGNS.items()}
_MONEY = re.compile(r"^(?P<pre>[^\d\s.,-]*)\s*(?P<num>\d[\d\s\u00a0\u202f]*(?:[.,]\d+)?)\s*(?P<post>\S*)$")


def price_from_text(text: str) -> tuple[float | None, str | None]:
    """(amount, currency) from a formatted price such as "2 500 ₽", "$90" or "1 500 KZT"."""
    m = _MONEY.match(text.strip())
    if m is None:
        return None, None
    number = re.sub(r"[\s\u00a0\u202f]", "", m.group("num")).replace(",", ".")
    try:
        amount = float(number)
    except ValueError:
        return None, None
    mark = m.group("pre") or m.group("post")
    currency = _SIGN_TO_CODE.get(mark) or (mark.upper() if re.fullmatch(r"[A-Za-z]{3}", mark) else None)
    return amount, currency


def agenda_item(event: dict[str, Any], time_zone: str) -> AgendaItem | None:
    """An agenda line's data from a Calendar event; None for a cancelled one."""
    if event.get("status") == "cancelled":
        return None
    private = (event.get("extendedProperties") or {}).get("private") or {}
    ours = private.get("autodispatch") == "1"
    start = event.get("start") or {}
    if start.get("dateTime"):
        at = datetime.fromisoformat(str(start["dateTime"]).replace("Z", "+00:00"))
        all_day = False
    elif start.get("date"):
        at = datetime.combine(date.fromisoformat(start["date"]), time(0), tzinfo=ZoneInfo(time_zone))
        all_day = True
    else:
        return None
    title = str(event.get("summary") or "").strip()
    if ours:
        title = _LEADING_TIME.sub("", title)  # our summary starts with the time the line shows anyway
    amount: float | None = None
    currency: str | None = None
    if ours and private.get("price_amount"):
        try:
            amount = float(private["price_amount"])
        except ValueError:
            amount = None
        currency = private.get("price_currency") or None
    elif ours:
        found = _PRICE_LINE.search(str(event.get("description") or ""))
        if found:
            amount, currency = price_from_text(found.group(1))
    return AgendaItem(
        event_id=str(event.get("id", "")), start=at, all_day=all_day, title=title,
        price_amount=amount, price_currency=currency, ours=ours,
    )  # fmt: skip


class AgendaActivities:
    def __init__(self, calendar: CalendarService) -> None:
        self.calendar = calendar

    @activity.defn(name="list_agenda_events")
    def list_agenda_events(self, req: ListEventsInput) -> list[AgendaItem]:
        """The calendar's events between time_min and time_max in start order (recurring ones expanded),
        only ours or all of them. Synchronous google-api-python-client: runs on the worker's threads."""
        events = self.calendar.service.events()
        query: dict[str, Any] = {
            "calendarId": req.calendar_id,
            "timeMin": req.time_min.isoformat(),
            "timeMax": req.time_max.isoformat(),
            "timeZone": req.time_zone,
            "singleEvents": True,
            "orderBy": "startTime",
            "maxResults": 250,
        }
        if req.only_ours:
            query["privateExtendedProperty"] = "autodispatch=1"
        items: list[AgendaItem] = []
        with google_errors(req.calendar_id):
            page_token: str | None = None
            while len(items) < req.max_items:
                page = self.calendar.execute(events.list(**query, pageToken=page_token), req)
                for event in page.get("items", []):
                    item = agenda_item(event, req.time_zone)
                    if item is not None:
                        items.append(item)
                page_token = page.get("nextPageToken")
                if not page_token:
                    break
        return items[: req.max_items]
