"""Phase 1: the calendar is checked before a driver is activated. The probe runs as a service account
against the Google emulator (google-api-python-client + google-auth, nothing mocked): usable, not
shared, shared read-only, bad credentials, unreachable; and it leaves nothing behind."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from activities.calendar import CalendarService
from activities.verification import CalendarAccess, verify_calendar_access
from autodispatch import admin
from autodispatch.admin import AdminError
from autodispatch.cli_drivers import NO_ENDPOINT, add_driver_subcommands, verify_before_add
from autodispatch.embedded import free_port
from autodispatch.settings import Settings
from tests.conftest import Outside, Postgres, unique_chat_id


def service_account(outside: Outside) -> tuple[dict[str, Any], str]:
    email = f"ad-{uuid.uuid4().hex[:8]}@sandbox.iam.gserviceaccount.com"
    return outside.google.create_service_account(email=email), email


def new_calendar(outside: Outside, shares: dict[str, str | None] | None = None) -> str:
    calendar_id = f"cal-{uuid.uuid4().hex[:12]}@group.calendar.google.com"
    outside.google.create_calendar(calendar_id, owner="driver@example.com", shares=shares)
    return calendar_id


async def check(service: CalendarService, calendar_id: str) -> CalendarAccess:
    # The client is synchronous; the emulator serves on this loop, so the probe runs in a thread.
    return await asyncio.to_thread(verify_calendar_access, service, calendar_id)


def visible_events(outside: Outside, calendar_id: str) -> list[dict[str, Any]]:
    return [e for e in outside.google.events(calendar_id) if e["status"] != "cancelled"]


async def test_shared_for_writing_is_ok_and_the_probe_leaves_nothing(outside: Outside) -> None:
    info, email = service_account(outside)
    calendar_id = new_calendar(outside, {email: "writer"})
    service = CalendarService(outside.google.calendar_api_root, service_account_info=info)
    access = await check(service, calendar_id)
    assert access.ok and access.status == "ok" and access.access_role == "writer"
    assert access.account == email and email in access.message and access.leftover_event_id is None
    # The probe was really written (as the service account) and deleted again.
    (probe,) = outside.google.events(calendar_id)
    assert probe["status"] == "cancelled" and probe["creator"] == {"email": email}
    assert visible_events(outside, calendar_id) == []
    listed = await asyncio.to_thread(
        lambda: service.execute(service.service.events().list(calendarId=calendar_id))
    )
    assert listed["items"] == []


async def test_an_unproved_calendar_is_only_read_never_written(outside: Outside) -> None:
    """Onboarding checks a calendar nobody has proved is the driver's: metadata only, no probe event."""
    info, email = service_account(outside)
    service = CalendarService(outside.google.calendar_api_root, service_account_info=info)
    writable, read_only, unshared = (
        new_calendar(outside, {email: "writer"}), new_calendar(outside, {email: "reader"}), new_calendar(outside),
    )  # fmt: skip
    verdicts = [
        await asyncio.to_thread(verify_calendar_access, service, c, write_probe=False)
        for c in (writable, read_only, unshared)
    ]
    assert [v.status for v in verdicts] == ["ok", "read_only", "not_found_or_not_shared"]
    for calendar_id in (writable, read_only, unshared):
        assert outside.google.events(calendar_id) == [], "nothing may be written into an unproved calendar"


async def test_not_shared_and_missing_calendars_say_what_to_share(outside: Outside) -> None:
    info, email = service_account(outside)
    service = CalendarService(outside.google.calendar_api_root, service_account_info=info)
    unshared = new_calendar(outside, {"someone-else@example.com": "writer"})
    for calendar_id in (unshared, f"nope-{uuid.uuid4().hex[:6]}@group.calendar.google.com"):
        access = await check(service, calendar_id)
        assert access.status == "not_found_or_not_shared"
        assert email in access.message and "Make changes to events" in access.message
    assert outside.google.events(unshared) == []


@pytest.mark.parametrize("role", ["reader", "freeBusyReader"])
async def test_read_only_share_is_refused_with_the_fix(outside: Outside, role: str) -> None:
    info, email = service_account(outside)
    calendar_id = new_calendar(outside, {email: role})
    service = CalendarService(outside.google.calendar_api_root, service_account_info=info)
    access = await check(service, calendar_id)
    assert access.status == "read_only" and access.access_role == role
    assert "read-only" in access.message and "Make changes to events" in access.message
    assert outside.google.events(calendar_id) == []


async def test_bad_credentials_and_unreachable_endpoint(outside: Outside) -> None:
    info, email = service_account(outside)
    other, _ = service_account(outside)
    calendar_id = new_calendar(outside, {email: "writer"})
    forged = {**info, "private_key": other["private_key"]}  # signed with a key Google does not know
    access = await check(
        CalendarService(outside.google.calendar_api_root, service_account_info=forged), calendar_id
    )
    assert access.status == "auth_failed" and "AUTODISPATCH_GOOGLE_SERVICE_ACCOUNT_FILE" in access.message
    nowhere = CalendarService(f"http://127.0.0.1:{free_port()}/calendar/v3/", timeout_seconds=5)
    access = await check(nowhere, calendar_id)
    assert access.status == "unreachable" and "cannot reach" in access.message
    assert outside.google.events(calendar_id) == []


async def test_outage_is_reported_as_transient_and_changes_nothing(outside: Outside) -> None:
    info, email = service_account(outside)
    calendar_id = new_calendar(outside, {email: "writer"})
    service = CalendarService(outside.google.calendar_api_root, service_account_info=info)
    outside.google.configure(fail_rate=1.0, fail_statuses=[503], fail_methods=["events.insert"])
    try:
        access = await check(service, calendar_id)
    finally:
        outside.google.configure(fail_rate=0.0, fail_statuses=[500, 503], fail_methods=None)
    assert access.status == "unavailable" and "try again" in access.message
    assert outside.google.events(calendar_id) == []
    # The insert is done but its answer is lost (503 after the write): the probe is still removed.
    outside.google.configure(fail_after_write_rate=1.0, fail_methods=["events.insert"])
    try:
        access = await check(service, calendar_id)
    finally:
        outside.google.configure(fail_after_write_rate=0.0, fail_methods=None)
    assert access.status == "unavailable"
    (probe,) = outside.google.events(calendar_id)
    assert probe["status"] == "cancelled"


async def test_a_probe_that_cannot_be_deleted_is_named(outside: Outside) -> None:
    calendar_id = new_calendar(outside, shares={outside.service_account: "writer"})
    assert outside.service_account_file is not None
    service = CalendarService(
        outside.google.calendar_api_root,
        service_account_info=json.loads(outside.service_account_file.read_text()),
    )
    outside.google.configure(fail_rate=1.0, fail_statuses=[401], fail_methods=["events.delete"])
    try:
        access = await check(service, calendar_id)
    finally:
        outside.google.configure(fail_rate=0.0, fail_statuses=[500, 503], fail_methods=None)
    assert access.ok and access.leftover_event_id
    assert access.leftover_event_id in access.message and "delete it by hand" in access.message
    assert [e["id"] for e in visible_events(outside, calendar_id)] == [access.leftover_event_id]


# -- the admin side: verify_before_add and the `driver approve|verify` commands ---------------------
def settings_for(tmp_path: Path, postgres: Postgres, outside: Outside | None, info: dict | None) -> Settings:
    values: dict[str, Any] = {
        "database_url": postgres.owner_dsn,
        "app_database_url": postgres.app_dsn,
        "data_dir": tmp_path,
    }
    if outside is not None:
        values["google_api_endpoint"] = outside.google.base_url
    if info is not None:
        key = tmp_path / "sa.json"
        key.write_text(json.dumps(info))
        values["google_service_account_file"] = key
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def audit_actions(postgres: Postgres, tenant: str) -> list[str]:
    return [r["action"] for r in await admin.read_audit(postgres.pool, tenant=tenant)]


async def test_verify_before_add_refuses_with_the_reason_and_audits(
    tmp_path: Path, postgres: Postgres, outside: Outside
) -> None:
    info, email = service_account(outside)
    settings = settings_for(tmp_path, postgres, outside, info)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    await admin.add_driver(postgres.pool, tenant=tenant, chat_id=unique_chat_id(), calendar_id="c", name="x")
    chat = unique_chat_id()
    unshared = new_calendar(outside)
    with pytest.raises(AdminError) as refused:
        await verify_before_add(settings, unshared, pool=postgres.pool, tenant=tenant, chat_id=chat)
    assert "not_found_or_not_shared" in str(refused.value) and email in str(refused.value)
    shared = new_calendar(outside, {email: "writer"})
    access = await verify_before_add(settings, shared, pool=postgres.pool, tenant=tenant, chat_id=chat)
    assert access.ok
    assert (await audit_actions(postgres, tenant))[-2:] == ["calendar_check_failed", "calendar_verified"]

    # Neither Google nor a sandbox: a clear refusal that names the way out.
    bare = settings_for(tmp_path / "bare", postgres, None, None)
    with pytest.raises(AdminError) as no_endpoint:
        await verify_before_add(bare, shared)
    assert str(no_endpoint.value) == NO_ENDPOINT and "--no-verify" in NO_ENDPOINT
    # A sandbox that is gone: unreachable, with the same way out.
    gone = settings_for(tmp_path / "gone", postgres, None, None)
    (tmp_path / "gone" / "run").mkdir(parents=True)
    (tmp_path / "gone" / "run" / "sandbox.json").write_text(
        json.dumps({"google": f"http://127.0.0.1:{free_port()}"})
    )
    with pytest.raises(AdminError) as unreachable:
        await verify_before_add(gone, shared)
    assert "cannot reach" in str(unreachable.value) and "--no-verify" in str(unreachable.value)


def driver_cli() -> argparse.ArgumentParser:
    """The `driver` group as cli.py builds it, with this module's subcommands added."""
    parser = argparse.ArgumentParser(prog="autodispatch")
    sub = parser.add_subparsers(dest="command", required=True)
    driver = sub.add_parser("driver")
    handlers = add_driver_subcommands(driver.add_subparsers(dest="driver_cmd", required=True))
    assert set(handlers) == {"approve", "verify"}
    return parser


async def run_cli(settings: Settings, *argv: str) -> int:
    args = driver_cli().parse_args(["driver", *argv])
    # The command runs its own event loop (asyncio.run), as from a shell; the emulator serves on ours.
    return await asyncio.to_thread(args.driver_handler, args, settings)


async def test_driver_approve_and_verify_commands(
    tmp_path: Path, postgres: Postgres, outside: Outside, capsys: pytest.CaptureFixture[str]
) -> None:
    info, email = service_account(outside)
    settings = settings_for(tmp_path, postgres, outside, info)
    calendar_id = new_calendar(outside)
    tenant, chat = f"t-{uuid.uuid4().hex[:8]}", unique_chat_id()
    await admin.add_driver(
        postgres.pool, tenant=tenant, chat_id=chat, calendar_id=calendar_id, name="Ivan", status="pending"
    )

    async def status() -> str:
        (row,) = await admin.list_drivers(postgres.pool, tenant=tenant)
        return row["status"]

    capsys.readouterr()
    assert await run_cli(settings, "approve", "--chat-id", str(chat)) == 1
    err = capsys.readouterr().err
    assert f"driver chat {chat} was not approved (not_found_or_not_shared)" in err and email in err
    assert await status() == "pending"

    outside.google.share_calendar(calendar_id, email, "reader")
    assert await run_cli(settings, "verify", "--chat-id", str(chat)) == 1
    assert "read-only" in capsys.readouterr().err
    assert await run_cli(settings, "approve", "--chat-id", str(chat), "--tenant", tenant) == 1
    assert "(read_only)" in capsys.readouterr().err and await status() == "pending"

    outside.google.share_calendar(calendar_id, email, "writer")
    assert await run_cli(settings, "verify", "--chat-id", str(chat), "--json") == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    assert await run_cli(settings, "approve", "--chat-id", str(chat)) == 0
    assert "is now active (calendar checked" in capsys.readouterr().out and await status() == "active"
    assert await run_cli(settings, "approve", "--chat-id", str(chat)) == 0
    assert "already active" in capsys.readouterr().out
    assert visible_events(outside, calendar_id) == []

    assert await audit_actions(postgres, tenant) == [
        "driver_added",
        "calendar_ownership_vouched",  # added by the owner's own hand (admin.add_driver)
        "calendar_check_failed",  # approve: not shared
        "calendar_check_failed",  # verify: read-only
        "calendar_check_failed",  # approve: read-only
        "calendar_verified",  # verify
        "calendar_verified",  # approve
        "driver_approved",
    ]

    # --no-verify approves without the check (and the audit row says so); bad input is one clear line.
    other = unique_chat_id()
    await admin.add_driver(
        postgres.pool, tenant=tenant, chat_id=other, calendar_id="x@y", name="P", status="pending"
    )
    assert await run_cli(settings, "approve", "--chat-id", str(other), "--no-verify", "--json") == 0
    assert json.loads(capsys.readouterr().out)["calendar_check"] == "skipped"
    assert await run_cli(settings, "approve", "--chat-id", str(unique_chat_id())) == 1
    assert "no driver with chat id" in capsys.readouterr().err
    assert await run_cli(settings, "approve", "--chat-id", str(chat), "--tenant", "someone-else") == 1
    assert "is not a driver of tenant 'someone-else'" in capsys.readouterr().err
