"""Proof that a driver controls the calendar their whitelist row names.

Sharing a calendar with the service account makes it reachable, not the driver's: any fleet's calendar
shared with us could be named by anyone who onboards. So a row's calendar is used only once the row
carries a proof for that very calendar id (migration 0011_a; every change of calendar_id drops it):

- the row's one-time code (`calendar_code`) in the calendar's description, read back with
  `calendars.get` as the service account: only someone who can edit the calendar can put it there;
- the driver's own Google account (their /connect grant) is the calendar: its primary calendar's id is
  the account's e-mail;
- the system owner vouching for it (`driver add --no-verify`, audited), or a row from before proofs.

The check runs when the driver's chat is looked up (their next message after putting the code in), so
no flow needs a step of its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import asyncpg
import google.auth.exceptions
import httplib2
from googleapiclient.errors import HttpError

from activities.calendar import CalendarService
from autodispatch.db import tenant_tx

log = logging.getLogger(__name__)

Proof = Literal["description", "oauth"]
READ_TIMEOUT = 4.0  # seconds for calendars.get


def read_description(calendar: CalendarService, calendar_id: str) -> str | None:
    """The calendar's description as the service account sees it; None if it cannot be read now
    (not shared, Google failing): unproven this time, asked again on the driver's next message.
    Synchronous (google-api-python-client): run it in a thread."""
    try:
        meta = calendar.execute(calendar.service.calendars().get(calendarId=calendar_id))
    except (HttpError, OSError, httplib2.HttpLib2Error, google.auth.exceptions.GoogleAuthError) as exc:
        log.info("calendar %s: description not readable (%s)", calendar_id, exc)
        return None
    return str(meta.get("description") or "")


def code_in(description: str | None, code: str | None) -> bool:
    return bool(code) and description is not None and code.upper() in description.upper()  # type: ignore[union-attr]


class CalendarOwnership:
    """Looks for a proof of an unproven row and records it (with its audit row) when found."""

    def __init__(self, pool: asyncpg.Pool, calendar: CalendarService) -> None:
        self.pool = pool
        self.calendar = calendar

    async def find_proof(
        self, tenant_id: str, chat_id: int, calendar_id: str, code: str | None
    ) -> Proof | None:
        async with tenant_tx(self.pool, tenant_id) as conn:
            account = await conn.fetchval(
                """SELECT account_email FROM oauth_grants
                    WHERE tenant_id = $1 AND chat_id = $2 AND status = 'active'""",
                tenant_id, chat_id,
            )  # fmt: skip
        if account and account.strip().lower() == calendar_id.strip().lower():
            return "oauth"
        try:
            # Inside the whitelist lookup (a local activity of 10 s): a slow Google means "not yet".
            description = await asyncio.wait_for(
                asyncio.to_thread(read_description, self.calendar, calendar_id), timeout=READ_TIMEOUT
            )
        except TimeoutError:
            return None
        return "description" if code_in(description, code) else None

    async def record(
        self, conn: asyncpg.Connection, tenant_id: str, chat_id: int, calendar_id: str, proof: Proof
    ) -> bool:
        """On `conn` (the system context): the row proven for this calendar id, if it still names it."""
        done = await conn.fetchval(
            """UPDATE drivers SET calendar_proof = $4, calendar_proven_id = calendar_id,
                      calendar_proven_at = now(), updated_at = now()
                WHERE tenant_id = $1 AND chat_id = $2 AND calendar_id = $3 AND calendar_proof IS NULL
            RETURNING true""",
            tenant_id, chat_id, calendar_id, proof,
        )  # fmt: skip
        if not done:
            return False
        others = await conn.fetch(
            """SELECT tenant_id, chat_id FROM drivers WHERE calendar_id = $1 AND status = 'active'
                  AND calendar_proof IS NOT NULL AND NOT (tenant_id = $2 AND chat_id = $3)""",
            calendar_id, tenant_id, chat_id,
        )  # fmt: skip
        await conn.execute(
            """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, details)
               VALUES ($1, 'whitelist', 'proof-' || gen_random_uuid()::text, 'calendar_ownership_proven', $2, $3)""",
            tenant_id, chat_id,
            {"calendar_id": calendar_id, "proof": proof, "shared_with": len(others)},
        )  # fmt: skip
        return True
