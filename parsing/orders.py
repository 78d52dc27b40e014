"""Order text → ParsedOrder: the rule-based parser (pure, deterministic, no I/O).

Extractors run in a fixed order over one `Doc`, each claiming the text it understood, so the next one
cannot misread it: phones (long digit runs) → flight numbers → dates/times → passengers → prices →
notes → names → addresses (whatever free text is left between the claimed pieces).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parsing.dates import extract_pickup
from parsing.details import claim_flight_origins, extract_flight, extract_notes, extract_passengers
from parsing.money import extract_price
from parsing.names import extract_name
from parsing.phones import find_phones
from parsing.regions import default_currency_for_region, default_region_for_zone
from parsing.routes import extract_route
from parsing.text import Doc, normalize
from parsing.translit import latin_russian
from schemas.order import ParsedOrder

MAX_TEXT = 4096

# A request for a quote, not an order (when the message names no price of its own).
_PRICE_QUESTION = re.compile(
    r"сколько\s+(?:будет\s+)?(?:сто|возьм)|сколько\s+будет|какая\s+(?:цена|стоимость)|почём|почем\b|"
    r"по\s+цене|цену\s+скаж|скільки\s+(?:буде\s+)?(?:кошт|кошту)|яка\s+ціна|how\s+much|"
    r"what(?:'s|\s+is|\s+would)\s+(?:the\s+|it\s+)?(?:price|fare|cost)|quote\s+(?:for|me)"
)

__all__ = ["default_currency_for_region", "default_region_for_zone", "parse_order", "zone_for"]


@lru_cache(maxsize=256)
def zone_for(tz: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; ValueError for a name tzdata does not know."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {tz!r}") from exc


def parse_order(
    text: str, now: datetime, tz: str, region: str | None = None, currency: str | None = None
) -> ParsedOrder:
    """Understand one forwarded order text; chatter comes back as `ParsedOrder(is_order=False)`."""
    parsed = parse_fields(text, now, tz, region, currency)
    return parsed if parsed.is_order else ParsedOrder(is_order=False)


def parse_fields(
    text: str, now: datetime, tz: str, region: str | None = None, currency: str | None = None
) -> ParsedOrder:
    """Every field the text names, order or not ("перенос на 10:30, +7 916 …" changes an order).

    `now` is when the message arrived (a naive value is read in `tz`); `pickup_at` comes back aware, in `tz`.
    `region` (ISO country) drives phone and numeric-date formats, `currency` the currency of bare prices;
    both default from the zone.
    """
    zone = zone_for(tz)
    if now.tzinfo is None:
        now = now.replace(tzinfo=zone)
    region = (region or default_region_for_zone(tz)).upper()
    currency = (currency or default_currency_for_region(region)).upper()

    # Telegram messages are at most 4096 characters; anything longer is not one order, and the cap keeps
    # the per-message cost bounded (every claim copies the text).
    doc = Doc(latin_russian(normalize(text[:MAX_TEXT])))
    phones = find_phones(doc, region)
    flight_spans: list[tuple[int, int]] = []
    flight = extract_flight(doc, flight_spans)
    claim_flight_origins(doc, flight_spans)
    when = extract_pickup(doc, now, zone, region)
    passengers = extract_passengers(doc)
    price = extract_price(doc, region, currency)
    notes, sign_name = extract_notes(doc)
    name = extract_name(doc, phones)
    route = extract_route(doc)

    has_place = route.pickup is not None or route.dropoff is not None
    # An order says when plus where or how much; a full route with a price/phone/flight is an order
    # that forgot the time (the bot then asks for it). "Можешь завтра позвонить?" has a time only.
    is_order = (when.has_signal and (has_place or price is not None)) or (
        route.explicit
        and route.pickup is not None
        and route.dropoff is not None
        and (price is not None or bool(phones) or flight is not None)
    )
    if price is None and _PRICE_QUESTION.search(doc.text_low):
        # "Сколько будет стоить завтра до Шереметьево?" only asks; a request that names the time and both ends
        # ("нужна машина к 6 утра с Профсоюзной в Домодедово, по цене подскажете?") is an order without a price.
        is_order = is_order and when.at is not None and route.pickup is not None and route.dropoff is not None
    return ParsedOrder(
        pickup_at=when.at,
        pickup_address=route.pickup,
        dropoff_address=route.dropoff,
        price_amount=price.amount if price else None,
        price_currency=price.currency if price else None,
        client_name=name or sign_name,
        client_phone=phones[0].e164 if phones else None,
        flight_number=flight,
        passengers=passengers,
        notes=notes,
        is_order=is_order,
        ambiguous=["pickup_at"] if when.ambiguous else [],
        date_stated=when.dated,
    )
