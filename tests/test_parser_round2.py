"""The parser on the messages drivers get across the region: flight origins, several times, quote requests,
prices in local words, transliterated Russian and Ukrainian, counted people, titles, the small hours."""

from __future__ import annotations

from datetime import datetime

import pytest

from parsing.orders import parse_order
from schemas.order import ParsedOrder

# Thursday 2026-12-03, 10:00 local time.
NOW = "2026-12-03T10:00:00"
ZONES = {
    "RU": "Europe/Moscow",
    "KZ": "Asia/Almaty",
    "UZ": "Asia/Tashkent",
    "UA": "Europe/Kyiv",
    "BY": "Europe/Minsk",
    "GB": "Europe/London",
    "AE": "Asia/Dubai",
    "US": "America/New_York",
}


def parse(text: str, region: str = "RU", now: str = NOW) -> ParsedOrder:
    return parse_order(text, datetime.fromisoformat(now), ZONES[region], region=region)


def local(order: ParsedOrder) -> str | None:
    return order.pickup_at.strftime("%Y-%m-%d %H:%M") if order.pickup_at else None


# ---- where the client flies or rides from is not the pickup ------------------------------------------


@pytest.mark.parametrize(
    ("text", "region", "pickup"),
    [
        ("Домодедово, рейс S7 1042 из Иркутска, в 12:30, до Люблино, 1500р", "RU", "Домодедово"),
        (
            "прилёт из Екатеринбурга в 16:00, Шереметьево B, отвезти на Сретенку 10, 2000р",
            "RU",
            "Шереметьево B",
        ),
        ("Киевский вокзал, поезд из Брянска в 7:40, на Мосфильмовскую 8, 900р", "RU", "Киевский вокзал"),
        ("Stansted, FR 2211 from Porto at 17:05, to Camden, 9 Parkway, £80", "GB", "Stansted"),
        ("DXB T2, flight from Muscat at 9:15 pm, to Deira City Centre, 95 AED", "AE", "DXB T2"),
    ],
)
def test_the_flights_origin_is_not_the_pickup(text: str, region: str, pickup: str) -> None:
    order = parse(text, region)
    assert order.pickup_address is not None and pickup.lower() in order.pickup_address.lower()


# ---- several times: the car is wanted at the pickup time, not at the landing --------------------------


@pytest.mark.parametrize(
    ("text", "region", "when"),
    [
        ("Внуково, посадка 13:05, машина на 13:35, в Бутово, 1400р", "RU", "2026-12-03 13:35"),
        ("Пулково, прилёт 18:10, подать к 18:40, на Невский 100, 1200р", "RU", "2026-12-03 18:40"),
        ("Heathrow T3, lands 7:50 pm, collect 8:20 pm, to Ealing, £60", "GB", "2026-12-03 20:20"),
        ("JFK T1, arrives 4:05 pm, car at 4:40 pm, to SoHo, $90", "US", "2026-12-03 16:40"),
        ("Бориспіль, приліт о 11:20, зустріти о 11:50, на Печерськ, 800 грн", "UA", "2026-12-03 11:50"),
    ],
)
def test_pickup_time_not_the_arrival(text: str, region: str, when: str) -> None:
    assert local(parse(text, region)) == when


# ---- the small hours said the evening before ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "region", "when"),
    [
        ("сегодня ночью в 2:10 с Арбата 5 в Шереметьево, 1500р", "RU", "2026-12-04 02:10"),
        ("tonight at 00:30 from the Hilton Bankside to Heathrow, £90", "GB", "2026-12-04 00:30"),
        ("tonight at 2 am from Penn Station to JFK, $70", "US", "2026-12-04 02:00"),
        ("сьогодні вночі о 1:40 з Оболоні на Позняки, 500 грн", "UA", "2026-12-04 01:40"),
        ("сегодня в 5 с Арбата 5 в Шереметьево, 1500р", "RU", "2026-12-03 17:00"),  # a plain 5 is 5 pm
    ],
)
def test_small_hours_of_tonight_are_tomorrow(text: str, region: str, when: str) -> None:
    assert local(parse(text, region)) == when


def test_new_year_dates() -> None:
    order = parse("03.01 в 9:30 Внуково → Тверская 4, 1600р", now="2026-12-31T15:00:00")
    assert local(order) == "2027-01-03 09:30"
    order = parse("в 0:20 с Никольской 10 на Профсоюзную 3, 2500р", now="2026-12-31T22:00:00")
    assert local(order) == "2027-01-01 00:20"


# ---- quote requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("нужна машина в субботу к 9:00 с Маросейки 3 во Внуково, трое, по цене подскажете?", "RU"),
        ("Сколько возьмёте завтра на 7:00 от Сокола до Шереметьево?", "RU"),
        ("Could you take us Friday at 6 am from 10 Downing St to Heathrow T5? What would it cost?", "GB"),
        ("Потрібна машина завтра на 9:00 від вул. Франка 5 до вокзалу, скільки буде коштувати?", "UA"),
    ],
)
def test_a_quote_request_with_time_and_route_is_an_order_without_price(text: str, region: str) -> None:
    order = parse(text, region)
    assert order.is_order and order.pickup_at is not None
    assert order.pickup_address and order.dropoff_address
    assert order.price_amount is None


def test_a_bare_price_question_stays_a_question() -> None:
    assert not parse("Сколько будет стоить завтра до Внуково?").is_order
    assert not parse("How much from LHR to Oxford?", "GB").is_order


# ---- prices without a sign, and local words -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "region", "amount", "currency"),
    [
        ("завтра 8:00 Арбат 5 → Внуково, 1900 нал", "RU", 1900, "RUB"),
        ("завтра 8:00 Арбат 5 → Внуково, 2700 безнал", "RU", 2700, "RUB"),
        ("завтра 8:00 Арбат 5 → Внуково, 1450 наличными", "RU", 1450, "RUB"),
        ("завтра 8:00 Абая 10 → аэропорт, 3000 тенге", "KZ", 3000, "KZT"),
        ("завтра 8:00 Чиланзар → аэропорт, 95 000 сум", "UZ", 95000, "UZS"),
        ("tomorrow 8:00 Chilanzar to TAS, 150000 som", "UZ", 150000, "UZS"),
        ("завтра о 8:00 вул. Франка 5 → вокзал, 350 гривень", "UA", 350, "UAH"),
        ("завтра 8:00 Немига → MSQ, 65 rub", "BY", 65, "BYN"),
        ("tomorrow 8:00 Marina to DXB, 140 dhs", "AE", 140, "AED"),
        ("tomorrow 8:00 Soho to Heathrow, 55 cash", "GB", 55, "GBP"),
        ("segodnya v 8 vechera iz JFK v Brooklyn, 60 dollarov", "US", 60, "USD"),
    ],
)
def test_prices_in_the_drivers_words(text: str, region: str, amount: float, currency: str) -> None:
    order = parse(text, region)
    assert (order.price_amount, order.price_currency) == (amount, currency)


# ---- Russian in Latin letters -------------------------------------------------------------------------


def test_transliterated_russian() -> None:
    order = parse("zavtra v 6 utra iz Khimok v Sheremetyevo, 2 cheloveka, 1800 rub")
    assert local(order) == "2026-12-04 06:00"
    assert order.pickup_address == "Khimok" and order.dropoff_address == "Sheremetyevo"
    assert order.passengers == 2 and order.price_amount == 1800


def test_english_is_not_read_as_transliteration() -> None:
    order = parse("Can you do 9:00 tomorrow from Soho to Heathrow, £60?", "GB")
    assert order.pickup_address == "Soho" and local(order) == "2026-12-04 09:00"


# ---- people: counted in words, named after a title -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "region", "count"),
    [
        ("завтра 9:00 Арбат 5 → Внуково, 1500р, трое", "RU", 3),
        ("завтра 9:00 Арбат 5 → Внуково, 1500р, Пассажиров: четверо", "RU", 4),
        ("завтра 9:00 Арбат 5 → Внуково, 1500р, 3 взрослых и ребёнок", "RU", 4),
        ("завтра о 9:00 вул. Франка 5 → вокзал, 300 грн, 2 пасажири", "UA", 2),
        ("завтра о 9:00 вул. Франка 5 → вокзал, 300 грн, двоє", "UA", 2),
        ("tomorrow 9:00 Marina to DXB, 100 AED, family of 5", "AE", 5),
        ("tomorrow 9:00 Soho to Heathrow, £60, two passengers", "GB", 2),
    ],
)
def test_people_counted_in_words(text: str, region: str, count: int) -> None:
    assert parse(text, region).passengers == count


@pytest.mark.parametrize(
    ("text", "region", "name"),
    [
        ("tomorrow 9:00 Savoy to Heathrow, £60, Mr Whitfield", "GB", "Mr Whitfield"),
        ("Pick up Mrs. O'Neill at the Hilton at 18:00 today, to Luton, £70", "GB", "Mrs. O'Neill"),
        ("DXB T1 at 10:30 pm, to Marina, 120 AED, Mr Al Hashimi +971 50 765 4321", "AE", "Mr Al Hashimi"),
        ("завтра 9:00 Арбат 5 → Внуково, 1500р, г-н Воронцов", "RU", "г-н Воронцов"),
        ("завтра 9:00 Арбат 5 → Внуково, 1500р, Клиент Mr. Evans", "RU", "Mr. Evans"),
        ("завтра 9:00 Арбат 5 → Внуково, 1500р, Зинаида Петровна 8 916 555 44 33", "RU", "Зинаида Петровна"),
    ],
)
def test_names_after_titles_and_with_patronymics(text: str, region: str, name: str) -> None:
    assert parse(text, region).client_name == name


# ---- Ukrainian; airport codes as places; the drop-off after the times ------------------------------------


def test_ukrainian_order() -> None:
    order = parse("у неділю о 6:45 з вул. Володимирська 40 до аеропорту Бориспіль, 850 грн, 3 пасажири", "UA")
    assert local(order) == "2026-12-06 06:45"
    assert order.pickup_address == "вул. Володимирська 40"
    assert order.dropoff_address == "аеропорту Бориспіль"
    assert (order.price_amount, order.price_currency, order.passengers) == (850, "UAH", 3)


@pytest.mark.parametrize(
    ("text", "region", "pickup", "dropoff"),
    [
        (
            "Аэропорт KZN, рейс SU 1254 из Москвы, в 14:10, до ул. Баумана 20, 800р",
            "RU",
            "Аэропорт KZN",
            "Баумана",
        ),
        ("FRU, прилёт 03:20, машина к 03:50, в центр, ул. Киевская 77, 1500 сом", "RU", "FRU", "Киевская"),
        (
            "JFK Terminal 4, B6 1 from Fort Lauderdale at 9:40 pm, pick up 10:10 pm, 88 Wall St, $80",
            "US",
            "JFK",
            "Wall",
        ),
    ],
)
def test_airport_code_is_the_pickup_and_the_place_after_the_times_the_dropoff(
    text: str, region: str, pickup: str, dropoff: str
) -> None:
    order = parse(text, region)
    assert order.pickup_address is not None and pickup in order.pickup_address
    assert order.dropoff_address is not None and dropoff in order.dropoff_address


def test_russian_from_and_to_labels() -> None:
    order = parse("Заказ на завтра\nВремя: 07:20\nОт: Беляево, Профсоюзная 104\nДо: Домодедово\nЦена: 1600")
    assert order.pickup_address == "Беляево, Профсоюзная 104" and order.dropoff_address == "Домодедово"


def test_a_bare_hour_after_a_day_part() -> None:
    order = parse("сегодня вечером в 7 у ТЦ Авиапарк, едем во Внуково, 1900 руб")
    assert local(order) == "2026-12-03 19:00" and order.pickup_address and "Авиапарк" in order.pickup_address


def test_of_us_counts_people_and_a_transliterated_order_word() -> None:
    assert parse("tonight 10pm from Soho to Heathrow, £50, 4 of us", "GB").passengers == 4
    order = parse("Zakaz: zavtra v 5:40 iz Butovo v Vnukovo, 1300 rub")
    assert order.pickup_address == "Butovo" and local(order) == "2026-12-04 05:40"


def test_the_night_from_one_day_to_the_next_is_the_later_day() -> None:
    order = parse("в ночь с субботы на воскресенье в 1:30 с Арбата 5 в Шереметьево, 1500р")
    assert local(order) == "2026-12-06 01:30"


def test_where_the_plane_lands_is_the_pickup() -> None:
    order = parse(
        "UA 88 from Denver lands at EWR Terminal C at 6:10 pm, pickup 6:40 pm, to Hoboken, $60", "US"
    )
    assert order.pickup_address == "EWR Terminal C" and local(order) == "2026-12-03 18:40"


def test_a_city_before_a_colon_is_a_header() -> None:
    order = parse("Ташкент: TAS, встречать в 9:40, до Юнусабада, 90 000 сум", "UZ")
    assert order.pickup_address == "TAS"
    assert local(order) == "2026-12-04 09:40"  # 9:40 has passed today


def test_a_streets_dr_is_not_a_doctor() -> None:
    order = parse("tomorrow 9am from 55 Sunset Dr Palo Alto to SFO, $80", "US")
    assert order.client_name is None and order.pickup_address == "55 Sunset Dr Palo Alto"


def test_dotted_time_with_am_pm_and_a_child_added_with_a_plus() -> None:
    order = parse("job for tomorrow: 6.40am from 3 Elm Row to Gatwick North, £50", "GB")
    assert local(order) == "2026-12-04 06:40"
    assert parse("завтра 9:00 Арбат 5 → Внуково, 1500р, 2 пассажира + ребёнок").passengers == 3
    assert parse("segodnya noch'yu v 3:10 s Arbata 5 v Vnukovo, 1500 rub").pickup_at is not None
    assert local(parse("segodnya noch'yu v 3:10 s Arbata 5 v Vnukovo, 1500 rub")) == "2026-12-04 03:10"
