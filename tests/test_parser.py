"""Unit tests of the rule-based order parser, one family of features at a time."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from parsing.bench import bench_parse
from parsing.orders import default_currency_for_region, default_region_for_zone, parse_order
from schemas.order import ParsedOrder, ParseRequest

# Saturday 2026-11-21 10:00 in Moscow, the moment most test messages "arrive".
NOW = "2026-11-21T10:00:00+03:00"
CORPUS = Path(__file__).resolve().parent / "corpus" / "orders.jsonl"


def parse(
    text: str,
    now: str = NOW,
    tz: str = "Europe/Moscow",
    region: str | None = None,
    currency: str | None = None,
) -> ParsedOrder:
    return parse_order(text, datetime.fromisoformat(now), tz, region=region, currency=currency)


def at(text: str, now: str = NOW, tz: str = "Europe/Moscow", region: str | None = None) -> str | None:
    order = parse(text + ", Арбат 1 → Внуково, 1000р", now, tz, region)
    return order.pickup_at.isoformat() if order.pickup_at else None


# ---- dates and times ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("23.11 в 10:00", "2026-11-23T10:00:00+03:00"),
        ("23.11.2026 в 10:00", "2026-11-23T10:00:00+03:00"),
        ("25.11.26 в 10:00", "2026-11-25T10:00:00+03:00"),
        ("28.11.2026г. в 9:00", "2026-11-28T09:00:00+03:00"),
        ("24/11 в 10:00", "2026-11-24T10:00:00+03:00"),
        ("1 декабря в 12:00", "2026-12-01T12:00:00+03:00"),
        ("25 НОЯБРЯ 04:00", "2026-11-25T04:00:00+03:00"),
        ("03.01 в 11:00", "2027-01-03T11:00:00+03:00"),  # no year: the next one, in January
        ("21.11 в 23:59", "2026-11-21T23:59:00+03:00"),
        ("сегодня в 18:40", "2026-11-21T18:40:00+03:00"),
        ("завтра 14:20", "2026-11-22T14:20:00+03:00"),
        ("послезавтра в 6:00", "2026-11-23T06:00:00+03:00"),
        ("в понедельник в 9 утра", "2026-11-23T09:00:00+03:00"),
        ("во вторник в 7 утра", "2026-11-24T07:00:00+03:00"),
        ("в субботу 28-го в 6 утра", "2026-11-28T06:00:00+03:00"),
        ("на 28-е, 8:00", "2026-11-28T08:00:00+03:00"),
        ("пн 8:00", "2026-11-23T08:00:00+03:00"),
        ("в субботу в 19:45", "2026-11-21T19:45:00+03:00"),  # today is Saturday and 19:45 is ahead
        ("в субботу в 9:00", "2026-11-28T09:00:00+03:00"),  # 9:00 has passed: next Saturday
        ("Вечером в субботу, в 19:45", "2026-11-21T19:45:00+03:00"),
        ("через 2 часа", "2026-11-21T12:00:00+03:00"),
        ("через 30 минут", "2026-11-21T10:30:00+03:00"),
        ("через полчаса", "2026-11-21T10:30:00+03:00"),
        ("через 1,5 часа", "2026-11-21T11:30:00+03:00"),
        ("завтра в 07.40", "2026-11-22T07:40:00+03:00"),  # 40 cannot be a month: a time
        ("07.12 в 9:20", "2026-12-07T09:20:00+03:00"),  # a date, the time is elsewhere
        ("сегодня в 12.10", "2026-11-21T12:10:00+03:00"),  # "в" + a day word: a time
        ("завтра в 10-30", "2026-11-22T10:30:00+03:00"),
        ("в 9 вечера", "2026-11-21T21:00:00+03:00"),
        ("в пятницу 3:15 ночи", "2026-11-27T03:15:00+03:00"),
        ("в воскресенье в 5 дня", "2026-11-22T17:00:00+03:00"),
        ("3 декабря в полдень", "2026-12-03T12:00:00+03:00"),
        ("30 ноября в полночь", "2026-11-30T00:00:00+03:00"),
        ("завтра 18ч", "2026-11-22T18:00:00+03:00"),
        ("в 23 часа сегодня", "2026-11-21T23:00:00+03:00"),
        ("на 26.11 к 9:15", "2026-11-26T09:15:00+03:00"),
        ("в 21:30", "2026-11-21T21:30:00+03:00"),  # a time alone: today while it is ahead
        ("в 9:00", "2026-11-22T09:00:00+03:00"),  # ... and tomorrow once it has passed
        ("в полночь", "2026-11-22T00:00:00+03:00"),
        ("сегодня вечером в 8", "2026-11-21T20:00:00+03:00"),
        ("сегодня в 8", "2026-11-21T20:00:00+03:00"),  # 8:00 has passed: "today at 8" is the evening
        ("Сейчас", "2026-11-21T10:00:00+03:00"),
    ],
)
def test_russian_dates_and_times(phrase: str, expected: str) -> None:
    assert at(phrase) == expected


@pytest.mark.parametrize(
    ("phrase", "region", "expected"),
    [
        ("Nov 28 at 6:45am", "US", "2026-11-28T06:45:00-08:00"),
        ("Dec 1st 5:20 pm", "US", "2026-12-01T17:20:00-08:00"),
        ("28 Nov 2026, 17:45", "US", "2026-11-28T17:45:00-08:00"),
        ("November 28, 10:30 am", "US", "2026-11-28T10:30:00-08:00"),
        ("12/02 8:30 PM", "US", "2026-12-02T20:30:00-08:00"),  # month first in the US
        ("today 3pm", "US", "2026-11-21T15:00:00-08:00"),
        ("tomorrow noon", "US", "2026-11-22T12:00:00-08:00"),
        ("tmrw 6am", "US", "2026-11-22T06:00:00-08:00"),
        ("Nov 24 at midnight", "US", "2026-11-24T00:00:00-08:00"),
        ("Monday 5:20 pm", "US", "2026-11-23T17:20:00-08:00"),
        ("on Friday 11pm", "US", "2026-11-27T23:00:00-08:00"),
        ("in 45 minutes", "US", "2026-11-21T10:45:00-08:00"),
        ("in 2 hours", "US", "2026-11-21T12:00:00-08:00"),
    ],
)
def test_english_dates_and_times(phrase: str, region: str, expected: str) -> None:
    order = parse(
        phrase + " from Hilton to SFO, $80", "2026-11-21T10:00:00-08:00", "America/Los_Angeles", region
    )
    assert order.pickup_at is not None and order.pickup_at.isoformat() == expected


def test_day_first_outside_the_us() -> None:
    order = parse(
        "12/02 at 14:00 Heathrow T4 → Reading, £90", "2026-12-20T20:15:00+00:00", "Europe/London", "GB"
    )
    assert order.pickup_at is not None and order.pickup_at.isoformat() == "2027-02-12T14:00:00+00:00"


def test_year_rollover_and_late_evening() -> None:
    late = "2026-12-31T23:20:00+03:00"
    assert at("в 00:40", late) == "2027-01-01T00:40:00+03:00"
    assert at("через 1,5 часа", late) == "2027-01-01T00:50:00+03:00"
    assert at("завтра в 15:00", late) == "2027-01-01T15:00:00+03:00"
    assert at("сегодня ночью в 2:30", "2026-07-14T22:45:00+03:00") == "2026-07-15T02:30:00+03:00"


def test_pickup_is_in_the_drivers_zone_with_dst() -> None:
    # New York switches to summer time on 2027-03-14: the offset follows the pickup date, not `now`.
    order = parse(
        "Transfer on 3/16 at 9am from JFK to Manhattan, $95",
        "2027-03-10T07:30:00-05:00",
        "America/New_York",
        "US",
    )
    assert order.pickup_at is not None and order.pickup_at.isoformat() == "2027-03-16T09:00:00-04:00"
    # `now` given in another offset is read in the driver's zone.
    utc = parse("сегодня в 18:40 Павелецкий вокзал - Домодедово, 1900", "2026-11-21T07:00:00+00:00")
    assert utc.pickup_at is not None and utc.pickup_at.isoformat() == "2026-11-21T18:40:00+03:00"
    # A naive `now` is taken as wall time in the zone.
    naive = parse_order("в 21:30 Арбат → Внуково, 800р", datetime(2026, 11, 21, 10, 0), "Europe/Moscow")
    assert naive.pickup_at is not None and naive.pickup_at.isoformat() == "2026-11-21T21:30:00+03:00"


def test_pickup_time_wins_over_arrival_time() -> None:
    order = parse(
        "26.11 рейс SU 1321 прилет в 08:40, встретить в Шереметьево B, подача к 09:10, отвезти в Химки, 1300 р"
    )
    assert order.pickup_at is not None and order.pickup_at.isoformat() == "2026-11-26T09:10:00+03:00"
    assert order.ambiguous == []


def test_two_dates_are_ambiguous() -> None:
    order = parse("23.11 в 16:00 или 24.11 в 10:00, Внуково → Калуга, 6000")
    assert "pickup_at" in order.ambiguous
    assert order.missing_fields() == ["pickup_at"]


def test_return_leg_is_not_the_pickup() -> None:
    order = parse("25.11 в 10:00 Внуково → Тула, обратно 28.11 в 18:00, 9000р")
    assert order.pickup_at is not None and order.pickup_at.isoformat() == "2026-11-25T10:00:00+03:00"
    assert order.ambiguous == []


# ---- prices -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "amount", "currency"),
    [
        ("2500₽", 2500, "RUB"),
        ("2 500 руб", 2500, "RUB"),
        ("2500р", 2500, "RUB"),
        ("2 100 ₽", 2100, "RUB"),
        ("5к", 5000, "RUB"),
        ("7к", 7000, "RUB"),
        ("5 тыс", 5000, "RUB"),
        ("$85", 85, "USD"),
        ("€95", 95, "EUR"),
        ("£120", 120, "GBP"),
        ("USD 95", 95, "USD"),
        ("95 USD", 95, "USD"),
        ("2600 rub", 2600, "RUB"),
        ("1500 тг", 1500, "KZT"),
        ("3500₸", 3500, "KZT"),
        ("900 грн", 900, "UAH"),
        ("1500 TL", 1500, "TRY"),
        ("AED 150", 150, "AED"),
        ("цена 2000", 2000, "RUB"),
        ("стоимость 3000", 3000, "RUB"),
        ("оплата 2500 наличными", 2500, "RUB"),
        ("price 95", 95, "RUB"),
        ("fare 95", 95, "RUB"),
    ],
)
def test_prices(price: str, amount: float, currency: str) -> None:
    order = parse(f"завтра 14:20 Шереметьево B → Долгопрудный, {price}, 3 пасс")
    assert (order.price_amount, order.price_currency) == (amount, currency)


def test_bare_price_and_defaults() -> None:
    trailing = parse("сегодня в 9 вечера от Савёловского вокзала до Лобни, 1700")
    assert (trailing.price_amount, trailing.price_currency) == (1700, "RUB")
    tenant = parse("завтра 10:00 Шереметьево → Москва-Сити, цена 60", currency="USD")
    assert (tenant.price_amount, tenant.price_currency) == (60, "USD")
    almaty = parse("12.09 в 14:15 Алматы → Капчагай, цена 15000", "2026-09-04T13:00:00+05:00", "Asia/Almaty")
    assert (almaty.price_amount, almaty.price_currency) == (15000, "KZT")
    minsk = parse("завтра в 6:00 Минск → аэропорт, 70 руб", "2026-12-28T12:00:00+03:00", "Europe/Minsk")
    assert minsk.price_currency == "BYN"


def test_numbers_that_are_not_prices() -> None:
    order = parse(
        "24.11 в 8:00 Зеленоград, корп. 1106 → Шереметьево B, рейс SU 1525, 3 пасс, Ольга 89035556677"
    )
    assert order.price_amount is None
    house = parse("завтра в 10:00 Внуково → Ленинский проспект, 123")
    assert house.price_amount is None and house.dropoff_address == "Ленинский проспект, 123"
    decimal = parse(
        "Tomorrow 9:00 Orly → Paris, 12.50 EUR", "2026-11-21T10:00:00+01:00", "Europe/Paris", "FR"
    )
    assert (decimal.price_amount, decimal.pickup_at.hour if decimal.pickup_at else None) == (12.5, 9)


# ---- phones and names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "region", "e164"),
    [
        ("+7 (916) 123-45-67", "RU", "+79161234567"),
        ("8-916-123-45-67", "RU", "+79161234567"),
        ("89161234567", "RU", "+79161234567"),
        ("8 (911) 765-43-21", "RU", "+79117654321"),
        ("9161234567", "RU", "+79161234567"),
        ("+44 7700 900123", "GB", "+447700900123"),
        ("07700 900123", "GB", "+447700900123"),
        ("+1 650 555 0188", "US", "+16505550188"),
        ("(650) 555-0188", "US", "+16505550188"),
        ("650.555.0188", "US", "+16505550188"),
        ("+33 7 61 23 45 67", "FR", "+33761234567"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("067 123 45 67", "UA", "+380671234567"),
        ("8 029 765 43 21", "BY", "+375297654321"),
        ("87017776655", "KZ", "+77017776655"),
        ("050 123 4567", "AE", "+971501234567"),
    ],
)
def test_phones(phone: str, region: str, e164: str) -> None:
    order = parse(f"завтра 14:20 Шереметьево → Химки, 1800р, тел {phone}", region=region)
    assert order.client_phone == e164


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Клиент: Роман +7 903 765-43-21", "Роман"),
        ("Пассажир: Кирилл, +7 (985) 765-00-11", "Кирилл"),
        ("👤 Глеб +7 (915) 222-33-44", "Глеб"),
        ("Name: Robert Chen", "Robert Chen"),
        ("Client: Maria Lopez, +1 (650) 555-0111", "Maria Lopez"),
        ("Света 89161112233", "Света"),
        ("Артём 8 (911) 765-43-21", "Артём"),
        ("Anna +1 650 555 0188", "Anna"),
        ("тел 9161234567 Оксана", "Оксана"),
        ("тел. +7 921 000 11 22 (Андрей)", "Андрей"),
        ("👤 Клиент: Иван", "Иван"),
    ],
)
def test_names(text: str, name: str) -> None:
    order = parse(f"завтра 14:20 Шереметьево → Химки, 1800р, {text}")
    assert order.client_name == name
    assert order.dropoff_address == "Химки"


def test_place_before_phone_is_not_a_name() -> None:
    order = parse("завтра 14:20 Шереметьево → Химки, 1800р, SFO, +79161234567")
    assert order.client_name is None


def test_sign_is_a_note() -> None:
    order = parse(
        "на 26.11 к 9:15 встретить в Шереметьево D рейс SU 1731, табличка Козлов, отвезти в Красногорск"
    )
    assert order.notes is not None and "табличка Козлов" in order.notes
    assert order.pickup_address == "Шереметьево D" and order.dropoff_address == "Красногорск"


# ---- routes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pickup", "dropoff"),
    [
        ("Откуда: Внуково, рейс SU 1103\nКуда: ул. Остоженка 25", "Внуково", "ул. Остоженка 25"),
        (
            "Адрес подачи: Зеленоград, корп. 2011. Адрес назначения: Шереметьево C.",
            "Зеленоград, корп. 2011",
            "Шереметьево C",
        ),
        (
            "Подача: Курский вокзал\nНазначение: Балашиха, ул. Советская 5",
            "Курский вокзал",
            "Балашиха, ул. Советская 5",
        ),
        ("Откуда - Сокол, Куда - Шереметьево", "Сокол", "Шереметьево"),
        ("Забрать: Тверская 5\nОтвезти: Шереметьево B", "Тверская 5", "Шереметьево B"),
        ("Meet & greet at JFK T4, drive to 15 Central Park West", "JFK T4", "15 Central Park West"),
        ("From: The Savoy, Strand\nTo: Heathrow Terminal 2", "The Savoy, Strand", "Heathrow Terminal 2"),
        ("📍 Мичуринский пр-т 20 → Внуково", "Мичуринский пр-т 20", "Внуково"),
        ("🅰 ул. Удальцова 3\n🅱 Внуково", "ул. Удальцова 3", "Внуково"),
        ("Шереметьево B -> Долгопрудный", "Шереметьево B", "Долгопрудный"),
        ("Курский вокзал — Внуково", "Курский вокзал", "Внуково"),
        ("Казанский вокзал – Люберцы", "Казанский вокзал", "Люберцы"),
        ("Ростов-на-Дону - Таганрог", "Ростов-на-Дону", "Таганрог"),
        ("Санкт-Петербург, Невский пр. 28 → Пулково", "Санкт-Петербург, Невский пр. 28", "Пулково"),
        ("Внуково - Москва-Сити, башня Федерация", "Внуково", "Москва-Сити, башня Федерация"),
        ("из Реутова в Домодедово", "Реутова", "Домодедово"),
        ("от Савёловского вокзала до Лобни", "Савёловского вокзала", "Лобни"),
        ("с курского вокзала на шереметьево", "курского вокзала", "шереметьево"),
        (
            "забрать с Ленинградского вокзала, отвезти на Мосфильмовскую 8",
            "Ленинградского вокзала",
            "Мосфильмовскую 8",
        ),
        ("встретить в Шереметьево D, табличка Козлов, отвезти в Красногорск", "Шереметьево D", "Красногорск"),
        ("Отвезти в Шереметьево из Митино, ул. Барышиха 20", "Митино, ул. Барышиха 20", "Шереметьево"),
        (
            "from SFO International Terminal to Palo Alto, University Ave 300",
            "SFO International Terminal",
            "Palo Alto, University Ave 300",
        ),
        ("pickup at Westin St. Francis to SFO", "Westin St. Francis", "SFO"),
        ("King's Cross Station to Stansted Airport", "King's Cross Station", "Stansted Airport"),
        ("Внуково (рейс DP 405) → Москва, ул. Профсоюзная 56", "Внуково", "Москва, ул. Профсоюзная 56"),
    ],
)
def test_routes(text: str, pickup: str, dropoff: str) -> None:
    order = parse(f"завтра в 10:00 {text}, 1500р")
    assert (order.pickup_address, order.dropoff_address) == (pickup, dropoff)


def test_route_before_the_date_and_card_layout() -> None:
    order = parse("Ярославль, ул. Свободы 10 → Москва, Шереметьево, 3 декабря 3:00 ночи, 9 тыс")
    assert (order.pickup_address, order.dropoff_address) == (
        "Ярославль, ул. Свободы 10",
        "Москва, Шереметьево",
    )
    card = parse(
        "🚗 Заказ\n📅 Завтра\n⏰ 17:30\n📍 Откуда: Внуково\n🏁 Куда: Серпухов\n👥 3\n💰 4500\n📞 +79998887766"
    )
    assert (card.pickup_address, card.dropoff_address, card.passengers, card.price_amount) == (
        "Внуково",
        "Серпухов",
        3,
        4500,
    )


# ---- passengers, flights, notes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count"),
    [("3 пасс", 3), ("2 пассажира", 2), ("Пассажиров: 1", 1), ("4 pax", 4), ("2 passengers", 2), ("2 adults", 2),
     ("3 чел", 3), ("Нас трое", 3), ("2 взрослых + 1 ребенок", 3)],
)  # fmt: skip
def test_passengers(text: str, count: int) -> None:
    assert parse(f"завтра 14:20 Шереметьево → Химки, 1800р, {text}").passengers == count


@pytest.mark.parametrize(
    ("text", "flight"),
    [("рейс SU 1103", "SU1103"), ("SU-1103", "SU1103"), ("UA 837", "UA837"), ("flight BA 2490", "BA2490"),
     ("S7 1012", "S71012"), ("U6 263", "U6263"), ("DP 405", "DP405"), ("рейс ЮТ-454", "UT454"), ("✈️ SU 1525", "SU1525")],
)  # fmt: skip
def test_flights(text: str, flight: str) -> None:
    assert parse(f"завтра 14:20 Шереметьево → Химки, 1800р, {text}").flight_number == flight


@pytest.mark.parametrize("text", ["Зеленоград, корп. 2011 → Шереметьево B 12", "Palo Alto, CA 94301 → SFO"])
def test_not_flights(text: str) -> None:
    assert parse(f"завтра 14:20 {text}, 1800р").flight_number is None


def test_notes() -> None:
    order = parse(
        "в субботу в 10 утра Сокол → Внуково, 1800р, 2 пасс, детское кресло, 2 чемодана, оплата картой"
    )
    assert order.notes == "детское кресло; 2 чемодана; оплата картой"
    cash = parse(
        "Tomorrow 7am Hilton to JFK, $80, cash, child seat", "2026-11-21T10:00:00-05:00", "America/New_York"
    )
    assert cash.notes == "cash; child seat"


# ---- orders and chatter -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Привет, можешь завтра позвонить?", "Ок, понял, спасибо", "thanks!", "where are you?", "перезвони мне",
     "Ок, принял, буду завтра в 7", "Напомни завтра в 9 про оплату", "Сколько будет стоить завтра из Химок в Шереметьево?",
     "Буду через 10 минут", "Can you pick me up tomorrow? I'll send details later", ""],
)  # fmt: skip
def test_chatter_is_not_an_order(text: str) -> None:
    order = parse(text)
    assert order.is_order is False
    assert order.pickup_at is None and order.pickup_address is None and order.price_amount is None


def test_order_without_time_still_counts_and_asks() -> None:
    order = parse("Шереметьево → Химки, 1500р, Анна +79161234567")
    assert order.is_order is True and order.pickup_at is None
    assert order.missing_fields() == ["pickup_at"]


def test_full_public_style_order() -> None:
    order = parse(
        "Заказ 22.11 в 08:15\nОткуда: Внуково, рейс SU 1103\nКуда: ул. Остоженка 25\nКлиент: Роман +7 903 765-43-21\nЦена: 2700 ₽"
    )
    assert order.to_flat_json() == {
        "pickup_at": "2026-11-22T08:15:00+03:00",
        "pickup_address": "Внуково",
        "dropoff_address": "ул. Остоженка 25",
        "price_amount": 2700,
        "price_currency": "RUB",
        "client_name": "Роман",
        "client_phone": "+79037654321",
        "flight_number": "SU1103",
        "passengers": None,
        "notes": None,
        "is_order": True,
    }
    assert order.missing_fields() == []


# ---- regions, purity, throughput ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "region", "currency"),
    [("Europe/Moscow", "RU", "RUB"), ("Asia/Yekaterinburg", "RU", "RUB"), ("America/Los_Angeles", "US", "USD"),
     ("America/New_York", "US", "USD"), ("America/Toronto", "CA", "CAD"), ("Europe/London", "GB", "GBP"),
     ("Europe/Paris", "FR", "EUR"), ("Europe/Berlin", "DE", "EUR"), ("Europe/Madrid", "ES", "EUR"),
     ("Asia/Almaty", "KZ", "KZT"), ("Europe/Kyiv", "UA", "UAH"), ("Europe/Minsk", "BY", "BYN"),
     ("Europe/Istanbul", "TR", "TRY"), ("Asia/Dubai", "AE", "AED"), ("Asia/Tokyo", "JP", "JPY")],
)  # fmt: skip
def test_region_and_currency_defaults(zone: str, region: str, currency: str) -> None:
    assert default_region_for_zone(zone) == region
    assert default_currency_for_region(region) == currency


def test_unknown_zone_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        parse("завтра в 10:00 Арбат → Внуково", tz="Mars/Olympus")


def _requests() -> list[ParseRequest]:
    cases = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        ParseRequest(**{k: c[k] for k in ("text", "now", "tz", "region", "currency") if k in c})
        for c in cases
    ]


def test_deterministic_and_thread_safe() -> None:
    requests = _requests()

    def run(req: ParseRequest) -> dict[str, object]:
        return parse_order(req.text, req.now, req.tz, region=req.region, currency=req.currency).to_flat_json()

    sequential = [run(r) for r in requests]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(run, requests))
    assert parallel == sequential == [run(r) for r in requests]


def test_bench_parse_reports_its_counts() -> None:
    requests = _requests()[:20]
    result = bench_parse(requests, min_seconds=0.01)
    assert set(result) == {"messages", "seconds", "messages_per_s"}
    assert result["messages"] >= len(requests) and result["messages"] % len(requests) == 0
    assert result["messages_per_s"] == pytest.approx(result["messages"] / result["seconds"])
