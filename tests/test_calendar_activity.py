"""The Calendar activity with google-api-python-client over HTTP against the Google emulator, authorised
as a service account (a real RSA-signed JWT exchanged at the emulator's token endpoint)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.calendar import CalendarActivities, CalendarService
from schemas.calendar import CreateEventInput
from schemas.order import ParsedOrder
from tests.conftest import Outside
from workflows.ids import order_id_for

ORDER = ParsedOrder(
    pickup_at=datetime(2026, 11, 22, 5, 40, tzinfo=UTC), pickup_address="Мичуринский пр-т 20",
    dropoff_address="Внуково", price_amount=1900, price_currency="RUB", client_name="Глеб",
    client_phone="+79152223344", flight_number="SU1103", passengers=2, is_order=True,
)  # fmt: skip


@pytest.fixture
def service_account(outside: Outside) -> dict:
    return outside.google.create_service_account(
        email=f"bot-{uuid.uuid4().hex[:6]}@sandbox.iam.gserviceaccount.com"
    )


def request(calendar_id: str, **kw: object) -> CreateEventInput:
    order_id = order_id_for("acme", 42, uuid.uuid4().int % 10**6)
    return CreateEventInput(
        calendar_id=calendar_id, event_id=order_id, time_zone="Europe/Moscow", order_id=order_id,
        tenant_id="acme", chat_id=42, order=ORDER, original_text="29.11 05:40 …", **kw,
    )  # fmt: skip


async def run_in_thread(fn, req: CreateEventInput):  # noqa: ANN001
    """Sync activities run on the worker's thread pool; here too, so the in-loop emulator can answer."""
    return await asyncio.to_thread(ActivityEnvironment().run, fn, req)


def activities(outside: Outside, sa: dict, duration: int = 60) -> CalendarActivities:
    return CalendarActivities(
        CalendarService(outside.google.calendar_api_root, service_account_info=sa),
        default_duration_minutes=duration,
    )


async def test_event_is_written_as_the_driver_sees_it(outside: Outside, service_account: dict) -> None:
    cal = f"c-{uuid.uuid4().hex[:8]}@group.calendar.google.com"
    outside.google.create_calendar(
        cal, owner="d@example.com", shares={service_account["client_email"]: "writer"}
    )
    req = request(cal)
    got = await run_in_thread(activities(outside, service_account, duration=90).create_event, req)
    assert got.created and got.event_id == req.event_id and got.html_link
    (event,) = outside.google.events(cal)
    assert event["summary"] == "08:40 Мичуринский пр-т 20 → Внуково"
    assert event["location"] == "Мичуринский пр-т 20"
    for needle in ("1 900 ₽", "Глеб", "+79152223344", "SU1103", "Пассажиров: 2", "29.11 05:40"):
        assert needle in event["description"]
    assert event["start"] == {"dateTime": "2026-11-22T05:40:00+00:00", "timeZone": "Europe/Moscow"}
    assert event["end"]["dateTime"] == "2026-11-22T07:10:00+00:00"  # the configured 90 minutes
    assert event["extendedProperties"]["private"]["order_id"] == req.order_id


async def test_a_repeated_insert_is_already_done(outside: Outside, service_account: dict) -> None:
    cal = f"c-{uuid.uuid4().hex[:8]}@group.calendar.google.com"
    outside.google.create_calendar(
        cal, owner="d@example.com", shares={service_account["client_email"]: "writer"}
    )
    acts, req = activities(outside, service_account), request(cal)
    first = await run_in_thread(acts.create_event, req)
    again = await run_in_thread(acts.create_event, req)
    assert first.created and not again.created and again.event_id == first.event_id
    assert len(outside.google.events(cal)) == 1


@pytest.mark.parametrize(
    ("share", "error_type"),
    [(None, "CalendarNotFound"), ("reader", "CalendarReadOnly")],
)
async def test_not_shared_or_read_only_is_permanent(
    outside: Outside, service_account: dict, share: str | None, error_type: str
) -> None:
    cal = f"c-{uuid.uuid4().hex[:8]}@group.calendar.google.com"
    shares = {service_account["client_email"]: share} if share else {}
    outside.google.create_calendar(cal, owner="d@example.com", shares=shares)
    with pytest.raises(ApplicationError) as err:
        await run_in_thread(activities(outside, service_account).create_event, request(cal))
    assert err.value.type == error_type and err.value.non_retryable


@pytest.mark.parametrize("status", [503, 429, "403rateLimitExceeded"])
async def test_outages_and_rate_limits_are_retryable(
    outside: Outside, service_account: dict, status: object
) -> None:
    cal = f"c-{uuid.uuid4().hex[:8]}@group.calendar.google.com"
    outside.google.create_calendar(
        cal, owner="d@example.com", shares={service_account["client_email"]: "writer"}
    )
    outside.google.configure(fail_rate=1.0, fail_statuses=[status], fail_methods=["events.insert"])
    try:
        with pytest.raises(ApplicationError) as err:
            await run_in_thread(activities(outside, service_account).create_event, request(cal))
    finally:
        outside.google.configure(fail_rate=0.0, fail_statuses=[500, 503], fail_methods=[])
    assert err.value.type in ("CalendarUnavailable", "CalendarRateLimited") and not err.value.non_retryable


async def test_a_revoked_key_is_permanent(outside: Outside) -> None:
    sa = outside.google.create_service_account(
        email=f"gone-{uuid.uuid4().hex[:6]}@sandbox.iam.gserviceaccount.com"
    )
    sa = {**sa, "client_email": "unknown@sandbox.iam.gserviceaccount.com"}  # the key no longer exists
    with pytest.raises(ApplicationError) as err:
        await run_in_thread(activities(outside, sa).create_event, request("any@example.com"))
    assert err.value.type == "CalendarAuthFailed" and err.value.non_retryable
