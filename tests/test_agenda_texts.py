"""The agenda and settings texts: pure functions, no servers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from activities.agenda import agenda_item, price_from_text
from autodispatch import texts
from schemas.agenda import AgendaItem, day_window
from schemas.driver import DriverSettings
from schemas.settings import SettingsError, parse_value

MSK = "Europe/Moscow"


def item(hh_utc: int, mm: int = 0, *, day: int = 22, amount: float | None = None, cur: str | None = "RUB",
         title: str = "Внуково → Тверская 7") -> AgendaItem:  # fmt: skip
    return AgendaItem(
        event_id=f"e{day}{hh_utc}{mm}", start=datetime(2026, 11, day, hh_utc, mm, tzinfo=UTC), title=title,
        price_amount=amount, price_currency=cur if amount is not None else None, ours=True,
    )  # fmt: skip


def today(items: list[AgendaItem], lang: str = "ru", tz: str = MSK, first: date = date(2026, 11, 22)) -> str:
    return texts.agenda_text(items, lang=lang, kind="today", time_zone=tz, first_day=first, days=1)


def test_day_lists_orders_in_time_order_with_prices_and_a_total() -> None:
    text = today([item(11, amount=1800, title="Шереметьево → Химки"), item(6, 30, amount=2500)])
    lines = text.splitlines()
    assert lines[0] == "📅 Сегодня, вс 22.11"
    assert lines[1] == "09:30 Внуково → Тверская 7 · 2 500 ₽"
    assert lines[2] == "14:00 Шереметьево → Химки · 1 800 ₽"
    assert lines[3] == "Итого: 2 заказа · 4 300 ₽"


def test_mixed_currencies_are_summed_per_currency_never_together() -> None:
    text = today(
        [
            item(6, amount=2500),
            item(7, amount=90, cur="USD"),
            item(8, amount=1500),
            item(9, amount=10, cur="USD"),
        ]
    )
    assert text.splitlines()[-1] == "Итого: 4 заказа · 4 000 ₽ + $100"
    assert texts.money_totals([item(6, amount=2500), item(7, amount=90, cur="USD")]) == {
        "RUB": 2500,
        "USD": 90,
    }


def test_orders_without_price_count_but_add_nothing() -> None:
    text = today([item(6, amount=None), item(7, amount=1000)])
    assert "09:00 Внуково → Тверская 7\n" in text
    assert text.splitlines()[-1] == "Итого: 2 заказа · 1 000 ₽"
    assert today([item(6)]).splitlines()[-1] == "Итого: 1 заказ"


def test_an_order_at_23_30_moscow_belongs_to_that_moscow_day() -> None:
    late = item(20, 30, amount=3000)  # 23:30 in Moscow, 20:30 UTC
    after_midnight = item(21, 30, amount=500)  # 00:30 Moscow of the next day, still the 22nd in UTC
    text = today([late, after_midnight])
    assert "23:30 Внуково → Тверская 7 · 3 000 ₽" in text and "00:30" not in text
    assert text.splitlines()[-1] == "Итого: 1 заказ · 3 000 ₽"
    tomorrow = texts.agenda_text(
        [late, after_midnight],
        lang="ru",
        kind="tomorrow",
        time_zone=MSK,
        first_day=date(2026, 11, 23),
        days=1,
    )
    assert "00:30" in tomorrow and "23:30" not in tomorrow
    # The window the calendar is asked for is the Moscow day, in UTC 21:00 → 21:00.
    first, start, end = day_window(datetime(2026, 11, 22, 20, 45, tzinfo=UTC), MSK, 0, 1)
    assert first == date(2026, 11, 22)  # 23:45 in Moscow: still the 22nd
    assert start.astimezone(UTC) == datetime(2026, 11, 21, 21, 0, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    first, _, _ = day_window(datetime(2026, 11, 22, 21, 15, tzinfo=UTC), MSK, 0, 1)
    assert first == date(2026, 11, 23)  # 00:15 in Moscow is already the 23rd


def test_a_dst_day_is_23_hours_long() -> None:
    _, start, end = day_window(datetime(2026, 3, 29, 12, 0, tzinfo=UTC), "Europe/Berlin", 0, 1)
    # Same-zone datetimes subtract as wall time; the calendar gets the offsets (+01:00 → +02:00).
    assert (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() == 23 * 3600


def test_empty_day_says_so_in_the_drivers_language() -> None:
    assert today([]) == "📅 Сегодня, вс 22.11\nЗаказов нет."
    assert today([], lang="en") == "📅 Today, Sun 22.11\nNo orders."


def test_week_has_every_day_with_its_own_total_and_a_week_total() -> None:
    items = [
        item(6, amount=2500, day=22),
        item(7, amount=90, cur="USD", day=24),
        item(9, amount=1000, day=24),
    ]
    text = texts.agenda_text(
        items, lang="en", kind="week", time_zone=MSK, first_day=date(2026, 11, 22), days=7
    )
    blocks = text.split("\n\n")
    assert blocks[0] == "📅 Week 22.11 – 28.11"
    assert blocks[1] == "Sun 22.11\n09:00 Внуково → Тверская 7 · 2 500 ₽\nTotal: 1 order · 2 500 ₽"
    assert blocks[2] == "Mon 23.11\nNo orders."
    assert blocks[3].splitlines()[-1] == "Total: 2 orders · $90 + 1 000 ₽"
    assert len(blocks) == 9 and blocks[-1] == "Week total: 3 orders · 3 500 ₽ + $90"


def test_a_huge_week_fits_telegrams_limit_and_keeps_every_total() -> None:
    items = [
        item(h % 24, m, day=22 + d, amount=1000, title="Аэропорт Шереметьево терминал B → " + "очень длинный адрес " * 5)
        for d in range(7) for h in range(24) for m in (0, 30)
    ]  # fmt: skip
    text = texts.agenda_text(
        items, lang="ru", kind="week", time_zone="UTC", first_day=date(2026, 11, 22), days=7
    )
    assert len(text) <= texts.MAX_TELEGRAM_TEXT
    assert text.count("Итого: 48 заказов · 48 000 ₽") == 7
    assert "… и ещё" in text and text.endswith("За неделю: 336 заказов · 336 000 ₽")


def test_all_day_and_foreign_events() -> None:
    event = {"id": "x", "summary": "Отпуск", "start": {"date": "2026-11-22"}, "end": {"date": "2026-11-23"}}
    got = agenda_item(event, MSK)
    assert got is not None and got.all_day and not got.ours and got.price_amount is None
    assert today([got]).splitlines()[1] == "весь день Отпуск"
    assert agenda_item({**event, "status": "cancelled"}, MSK) is None


def test_price_from_extended_properties_or_from_the_description_of_older_events() -> None:
    base = {
        "id": "o1", "summary": "09:30 Внуково → Тверская 7",
        "start": {"dateTime": "2026-11-22T09:30:00+03:00"},
        "extendedProperties": {"private": {"autodispatch": "1", "price_amount": "2500.0", "price_currency": "RUB"}},
    }  # fmt: skip
    got = agenda_item(base, MSK)
    assert got and got.ours and got.title == "Внуково → Тверская 7"
    assert (got.price_amount, got.price_currency) == (2500.0, "RUB")
    older = {
        **base,
        "extendedProperties": {"private": {"autodispatch": "1"}},
        "description": "Цена: 2 500 ₽\nКлиент: Анна",
    }
    got = agenda_item(older, MSK)
    assert got and (got.price_amount, got.price_currency) == (2500.0, "RUB")
    assert price_from_text("$90") == (90.0, "USD")
    assert price_from_text("1 500,5 KZT") == (1500.5, "KZT")
    assert price_from_text("€1 200") == (1200.0, "EUR")
    assert price_from_text("договорная") == (None, None)


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("tz", "asia/tbilisi", {"time_zone": "Asia/Tbilisi"}),  # typed by hand: stored canonical
        ("tz", "Asia/Tbilisi", {"time_zone": "Asia/Tbilisi"}),
        ("tz", "europe/moscow", {"time_zone": "Europe/Moscow"}),
        ("ag", "6:45", {"agenda_enabled": True, "agenda_time": "06:45"}),
        ("ag", "off", {"agenda_enabled": False}),
        ("ag", "25:00", None),
        ("rem", "0", {"reminder_lead_minutes": 0}),
        ("rem", "45", {"reminder_lead_minutes": 45}),
        ("dur", "default", {"event_duration_minutes": None}),
        ("dur", "0", None),
        ("buf", "-5", None),
        ("sc", "all", {"agenda_scope": "all"}),
        ("sc", "everything", None),
        ("lang", "EN", {"language": "en"}),
        ("lang", "de", None),
        ("tz", "Mars/Olympus", None),
    ],
)
def test_setting_values_are_validated(field: str, raw: str, expected: dict | None) -> None:
    if expected is None:
        with pytest.raises(SettingsError):
            parse_value(field, raw)
    else:
        assert parse_value(field, raw) == expected


def test_settings_card_shows_every_value_and_fits_callback_data_limits() -> None:
    s = DriverSettings(language="en", agenda_enabled=False, reminder_lead_minutes=30, agenda_scope="all")
    text, rows = texts.settings_card("en", "Asia/Vladivostok", s)
    assert "🌍 Time zone: Asia/Vladivostok" in text and "☀️ Morning agenda: off" in text
    assert "⏰ Reminder: 30 min before" in text and "📋 Show: all calendar events" in text
    datas = [b["callback_data"] for row in rows for b in row]
    for field in ("tz", "rem", "dur", "buf", "trv", "ag", "sc", "lang"):
        assert f"set:o:{field}" in datas
        _, choices = texts.settings_choices("en", field, "Asia/Vladivostok", s)
        for b in (b for row in choices for b in row):
            assert len(b["callback_data"].encode()) <= 64
    _, choices = texts.settings_choices("en", "tz", "Asia/Vladivostok", s)
    marked = [b for row in choices for b in row if b["text"].startswith("• ")]
    assert [b["callback_data"] for b in marked] == ["set:v:tz:Asia/Vladivostok"]


def test_plural_forms() -> None:
    assert [texts.plural("ru", "agenda_orders", n) for n in (1, 2, 5, 11, 21, 22, 112)] == [
        "1 заказ", "2 заказа", "5 заказов", "11 заказов", "21 заказ", "22 заказа", "112 заказов",
    ]  # fmt: skip
    assert texts.plural("en", "agenda_orders", 1) == "1 order"
