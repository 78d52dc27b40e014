"""Known airports and stations by their full name in the calendar event's location."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.calendar import event_body
from parsing.places import navigation_name
from schemas.calendar import CreateEventInput
from schemas.order import ParsedOrder


@pytest.mark.parametrize(
    ("address", "location"),
    [
        ("SVO терм. B", "Шереметьево, терминал B"),
        ("Шереметьево С", "Шереметьево, терминал C"),  # a Cyrillic С after the name is the terminal
        ("а/п Внуково", "Аэропорт Внуково"),
        ("аэропорт NQZ", "Международный аэропорт Астана"),
        ("KBP terminal D", "Boryspil International Airport, Terminal D"),
        ("аеропорт Бориспіль", "Міжнародний аеропорт «Бориспіль»"),
        ("JFK T4", "John F. Kennedy International Airport, Terminal 4"),
        ("Gatwick North Terminal", "Gatwick Airport, North Terminal"),
        ("DWC", "Al Maktoum International Airport"),
        ("Павелецкого вокзала", "Павелецкий вокзал"),
    ],
)
def test_a_known_airport_or_station_gets_its_full_name(address: str, location: str) -> None:
    assert navigation_name(address) == location


@pytest.mark.parametrize(
    "address",
    [
        "Тверская 12",
        "ЖК у Внуково, корп. 3",  # more than the airport: the driver's words stay
        "Tashkent City, Navoi 5",
        "Isle of Man",  # "MAN" only as a code written in capitals
        "Курский вокзал, выход к метро",
    ],
)
def test_other_addresses_stay_as_written(address: str) -> None:
    assert navigation_name(address) == address


def test_the_events_location_is_the_full_name() -> None:
    order = ParsedOrder(
        pickup_at=datetime(2026, 12, 4, 5, 40, tzinfo=UTC),
        pickup_address="SVO терм. B",
        dropoff_address="Тверская 12",
        is_order=True,
    )
    req = CreateEventInput(
        calendar_id="c@group.calendar.google.com",
        event_id="e1",
        time_zone="Europe/Moscow",
        order_id="o1",
        tenant_id="acme",
        chat_id=42,
        order=order,
        original_text="SVO терм. B → Тверская 12",
    )
    body = event_body(req)
    assert body["location"] == "Шереметьево, терминал B"
    assert "SVO" in body["summary"]  # the card and summary keep the driver's words
