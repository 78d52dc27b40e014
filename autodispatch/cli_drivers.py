"""Driver approval and calendar verification (`driver` subcommands), and the check `driver add` runs
before it activates a driver.

    autodispatch driver approve --chat-id C [--tenant T] [--no-verify] [--json]
    autodispatch driver verify (--chat-id C | --calendar-id CAL) [--tenant T] [--json]

`verify_before_add` raises AdminError with the precise reason (not found or not shared / shared
read-only / credentials / unreachable); every check is audited, whatever its outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from activities.calendar import CalendarService
from activities.verification import CalendarAccess, verify_calendar_access
from autodispatch.admin import AdminError, resolve_tenant
from autodispatch.db import SYSTEM_TENANT, system_tx
from autodispatch.settings import Settings, SettingsError

Handler = Callable[[argparse.Namespace, Settings], int]

NO_ENDPOINT = (
    "cannot verify the calendar: no Google Calendar is configured (AUTODISPATCH_GOOGLE_SERVICE_ACCOUNT_FILE "
    "or AUTODISPATCH_GOOGLE_API_ENDPOINT) and no sandbox from `autodispatch up` is running; configure it, "
    "start `autodispatch up`, or pass --no-verify to whitelist without checking"
)
# Statuses that say nothing about the calendar itself: the check could not be made.
_CHECK_NOT_MADE = {"unreachable", "unavailable"}


def calendar_service_for(settings: Settings) -> CalendarService:
    """The Calendar API the stack uses: the configured one, else the running sandbox's emulator."""
    from autodispatch.runtime import calendar_root

    try:
        root = calendar_root(settings)
    except SettingsError as exc:
        raise AdminError(NO_ENDPOINT) from exc
    return CalendarService.from_settings(root, settings.google_service_account_file)


async def check_calendar(
    settings: Settings, calendar_id: str, *, calendar: CalendarService | None = None
) -> CalendarAccess:
    """The probe, off the event loop (google-api-python-client is synchronous)."""
    service = calendar or calendar_service_for(settings)
    return await asyncio.to_thread(verify_calendar_access, service, calendar_id)


async def record_check(
    pool: asyncpg.Pool,
    access: CalendarAccess,
    *,
    context: str,
    tenant: str | None = None,
    chat_id: int | None = None,
) -> None:
    """An audit row for the check, under the tenant when it exists already (else `system`)."""
    async with system_tx(pool) as conn:
        row = await resolve_tenant(conn, tenant) if tenant else None
        tenant_id = row["tenant_id"] if row is not None else SYSTEM_TENANT
        await conn.execute(
            """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, outcome, details)
               VALUES ($1, 'admin', 'admin-' || gen_random_uuid()::text, $2, $3, $4, $5)""",
            tenant_id, "calendar_verified" if access.ok else "calendar_check_failed", chat_id,
            "ok" if access.ok else "refused",
            {"context": context, "tenant": tenant, **access.model_dump(exclude_none=True)},
        )  # fmt: skip


class CalendarCheckFailed(AdminError):
    """The calendar check refused the activation; `access` says why (the API answers 409 or 503 by it)."""

    def __init__(self, message: str, access: CalendarAccess) -> None:
        super().__init__(message)
        self.access = access

    @property
    def check_not_made(self) -> bool:
        """Google or the network failed: nothing is known about the calendar itself."""
        return self.access.status in _CHECK_NOT_MADE


def _refusal(access: CalendarAccess, what: str) -> AdminError:
    hint = " (pass --no-verify to skip the check)" if access.status in _CHECK_NOT_MADE else ""
    return CalendarCheckFailed(f"{what}: {access.message}{hint}", access)


async def verify_before_add(
    settings: Settings,
    calendar_id: str,
    *,
    pool: asyncpg.Pool | None = None,
    tenant: str | None = None,
    chat_id: int | None = None,
    calendar: CalendarService | None = None,
) -> CalendarAccess:
    """Check the calendar before a driver is whitelisted as active; raise AdminError with the precise
    reason if the bot cannot read it and write to it. With `pool`, the check is audited."""
    access = await check_calendar(settings, calendar_id, calendar=calendar)
    if pool is not None:
        await record_check(pool, access, context="driver_add", tenant=tenant, chat_id=chat_id)
    if not access.ok:
        raise _refusal(access, f"driver not added ({access.status})")
    return access


async def approve_driver(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    chat_id: int,
    tenant: str | None = None,
    verify: bool = True,
    calendar: CalendarService | None = None,
    source: str = "cli",
    actor: str | None = None,
) -> dict[str, Any]:
    """Activate a pending (or disabled) driver after checking their calendar. Idempotent: approving an
    active driver changes nothing. Returns the driver row plus `changed` and `calendar_check`. The CLI
    and the admin API (`source="api"`, with the caller as `actor`) both come through here."""
    async with system_tx(pool) as conn:
        row = await conn.fetchrow("SELECT * FROM drivers WHERE chat_id = $1", chat_id)
        if row is None:
            raise AdminError(f"no driver with chat id {chat_id}")
        if tenant:
            t = await resolve_tenant(conn, tenant)
            if t is None or t["tenant_id"] != row["tenant_id"]:
                raise AdminError(f"chat {chat_id} is not a driver of tenant {tenant!r}")
    if row["status"] == "active":
        return {**dict(row), "changed": False, "calendar_check": None}
    access: CalendarAccess | None = None
    if verify:
        access = await check_calendar(settings, row["calendar_id"], calendar=calendar)
        context = "driver_approve" if source == "cli" else "api_driver_approve"
        await record_check(pool, access, context=context, tenant=row["tenant_id"], chat_id=chat_id)
        if not access.ok:
            raise _refusal(access, f"driver chat {chat_id} was not approved ({access.status})")
    async with system_tx(pool) as conn:
        # Only from the status we checked: a concurrent change (another admin) is not overwritten.
        updated = await conn.fetchrow(
            # The pending "your access is open" message, in the same transaction as the approval: the
            # worker sends it (DriverApprovedWorkflow) even if Temporal cannot be reached right now.
            """UPDATE drivers SET status = 'active', updated_at = now(), access_notice = gen_random_uuid()::text
                WHERE tenant_id = $1 AND chat_id = $2 AND status = $3 RETURNING *""",
            row["tenant_id"], chat_id, row["status"],
        )  # fmt: skip
        if updated is None:
            raise AdminError(f"driver chat {chat_id} changed while being approved; run the command again")
        # Like every admin action: workflow id 'admin' from the CLI, 'api' from the API.
        door = "api" if source == "api" else "admin"
        await conn.execute(
            """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, details)
               VALUES ($1, $4, $4 || '-' || gen_random_uuid()::text, 'driver_approved', $2, $3)""",
            row["tenant_id"], chat_id,
            {"chat_id": chat_id, "from": row["status"], "calendar_id": row["calendar_id"],
             "calendar_check": access.status if access else "skipped",
             **({"actor": actor} if actor else {})},
            door,
        )  # fmt: skip
    return {**dict(updated), "changed": True, "calendar_check": access.status if access else "skipped"}


async def verify_driver_calendar(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    chat_id: int | None = None,
    calendar_id: str | None = None,
    tenant: str | None = None,
    calendar: CalendarService | None = None,
) -> CalendarAccess:
    """Check a whitelisted driver's calendar (by chat) or any calendar id; audited either way."""
    if chat_id is not None:
        async with system_tx(pool) as conn:
            row = await conn.fetchrow(
                "SELECT tenant_id, calendar_id FROM drivers WHERE chat_id = $1", chat_id
            )
        if row is None:
            raise AdminError(f"no driver with chat id {chat_id}")
        calendar_id, tenant = row["calendar_id"], row["tenant_id"]
    if not calendar_id:
        raise AdminError("give --chat-id of a driver or a --calendar-id to check")
    access = await check_calendar(settings, calendar_id, calendar=calendar)
    await record_check(pool, access, context="driver_verify", tenant=tenant, chat_id=chat_id)
    return access


# -- the commands -------------------------------------------------------------------------
def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str))


def _run(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[int]]) -> int:
    from autodispatch.runtime import admin_pool

    async def go() -> int:
        async with admin_pool(settings) as pool:
            return await work(pool)

    try:
        return asyncio.run(go())
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_approve(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch.agenda_sync import request_agenda_sync

    async def work(pool: asyncpg.Pool) -> int:
        row = await approve_driver(
            pool, settings, chat_id=args.chat_id, tenant=args.tenant, verify=args.verify
        )
        if row["changed"]:
            # The morning agenda, and the driver's "access open" message, without waiting for the reconciler.
            await request_agenda_sync(settings, row["tenant_id"], row["chat_id"])
        if args.json:
            _print_json(row)
        elif not row["changed"]:
            print(f"driver chat {args.chat_id} is already active")
        else:
            checked = "calendar checked" if row["calendar_check"] == "ok" else "calendar NOT checked"
            print(
                f"driver {row['driver_name']!r} (chat {args.chat_id}) of tenant {row['tenant_id']!r} is now "
                f"active ({checked}: {row['calendar_id']})"
            )
        return 0

    return _run(settings, work)


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    async def work(pool: asyncpg.Pool) -> int:
        access = await verify_driver_calendar(
            pool, settings, chat_id=args.chat_id, calendar_id=args.calendar_id, tenant=args.tenant
        )
        if args.json:
            _print_json(access.model_dump())
        elif access.ok:
            print(access.message)
        else:
            print(f"error: {access.message}", file=sys.stderr)
        return 0 if access.ok else 1

    return _run(settings, work)


def add_verify_flag(parser: argparse.ArgumentParser) -> None:
    """`--verify/--no-verify` (default: verify) for commands that activate a driver."""
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check that the bot can read and write the calendar first (default: yes); `driver add "
        "--no-verify` also vouches that the calendar is the driver's (audited as "
        "calendar_ownership_vouched) instead of the driver proving it with a code",
    )


def add_driver_subcommands(driver_subparsers: Any) -> dict[str, Handler]:
    """Registers `approve` and `verify` under the `driver` group. Each parser also sets
    `driver_handler`, so the group's dispatcher can call `args.driver_handler(args, settings)`."""
    approve = driver_subparsers.add_parser(
        "approve", help="activate a pending driver after checking the calendar"
    )
    approve.add_argument("--chat-id", type=int, required=True)
    approve.add_argument("--tenant")
    add_verify_flag(approve)
    approve.add_argument("--json", action="store_true")
    approve.set_defaults(driver_handler=cmd_approve)

    verify = driver_subparsers.add_parser(
        "verify", help="check that the bot can read and write a driver's calendar (nothing is left behind)"
    )
    target = verify.add_mutually_exclusive_group(required=True)
    target.add_argument("--chat-id", type=int, help="a whitelisted driver's chat")
    target.add_argument("--calendar-id", help="any calendar id, e.g. before `driver add`")
    verify.add_argument("--tenant", help="audit under this tenant (with --calendar-id)")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(driver_handler=cmd_verify)
    return {"approve": cmd_approve, "verify": cmd_verify}
