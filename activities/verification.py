"""Is a driver's calendar usable by the bot? Read it, then write and delete a probe event, as the service
account. Used before a driver is activated (`driver add`, `driver approve`, the admin API), so the
admin gets a precise reason at once instead of the driver's first order failing.

Synchronous (google-api-python-client): callers on an event loop run it in a thread.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any, Literal

import google.auth.exceptions
import httplib2
from googleapiclient.errors import HttpError
from pydantic import BaseModel

from activities.calendar import CalendarService, error_reason

AccessStatus = Literal[
    "ok", "not_found_or_not_shared", "read_only", "auth_failed", "unavailable", "unreachable", "invalid"
]
_RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}
# The probe lies far in the past and blocks no time: even if its deletion failed, the driver's
# agenda would not show it.
_PROBE_START = "2000-01-01T00:00:00Z"
_PROBE_END = "2000-01-01T00:01:00Z"
_DELETE_RETRIES = 3


class CalendarAccess(BaseModel):
    calendar_id: str
    status: AccessStatus
    message: str
    # Who we are to Google: the service account's e-mail (None: an endpoint used without credentials).
    account: str | None = None
    access_role: str | None = None
    summary: str | None = None
    time_zone: str | None = None
    # Set only if the probe event could not be deleted (Google failing right then): delete it by hand.
    leftover_event_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def probe_event_id() -> str:
    """A random id in Google's event id alphabet (base32hex, lowercase)."""
    return base64.b32hexencode(secrets.token_bytes(15)).decode("ascii").lower()


def _who(calendar: CalendarService) -> str:
    return calendar.service_account_email or "the bot (no service account configured)"


def _status_of(exc: HttpError) -> tuple[int, str]:
    return exc.resp.status, error_reason(exc)


def _transient(status: int, reason: str) -> bool:
    return status >= 500 or status == 429 or (status == 403 and reason in _RATE_LIMIT_REASONS)


def _read(calendar: CalendarService, calendar_id: str) -> dict[str, Any]:
    """The calendar's metadata, with our access role when the calendar list has it. A calendar shared
    with a service account is often not in its calendar list (sharing does not add it), so a 404 there
    falls back to calendars.get, which answers for any calendar we may see."""
    svc = calendar.service
    try:
        entry = calendar.execute(svc.calendarList().get(calendarId=calendar_id))
        return {
            "summary": entry.get("summary"),
            "timeZone": entry.get("timeZone"),
            "role": entry.get("accessRole"),
        }
    except HttpError as exc:
        if exc.resp.status != 404:
            raise
    meta = calendar.execute(svc.calendars().get(calendarId=calendar_id))
    return {"summary": meta.get("summary"), "timeZone": meta.get("timeZone"), "role": None}


def _probe(calendar: CalendarService, calendar_id: str) -> str | None:
    """Insert a probe event and delete it. Returns the probe's id if it could not be deleted."""
    events = calendar.service.events()
    event_id = probe_event_id()
    body = {
        "id": event_id,
        "summary": "Auto-Dispatcher access check (deleted right away)",
        "start": {"dateTime": _PROBE_START},
        "end": {"dateTime": _PROBE_END},
        "transparency": "transparent",
        "visibility": "private",
        "extendedProperties": {"private": {"autodispatch": "probe"}},
    }
    try:
        calendar.execute(events.insert(calendarId=calendar_id, body=body))
    except HttpError as exc:
        if exc.resp.status >= 500:
            # The insert may have been done and only its answer lost: make sure no probe stays.
            _delete(calendar, calendar_id, event_id)
        raise
    return None if _delete(calendar, calendar_id, event_id) else event_id


def _delete(calendar: CalendarService, calendar_id: str, event_id: str) -> bool:
    """Delete the probe; True when it is gone (deleted now, or it never existed)."""
    try:
        # googleapiclient retries 5xx/429 itself here (with backoff): leaving the probe behind is worse
        # than a few seconds' wait.
        calendar.service.events().delete(calendarId=calendar_id, eventId=event_id).execute(
            http=calendar.http(), num_retries=_DELETE_RETRIES
        )
    except HttpError as exc:
        return exc.resp.status in (404, 410)  # already gone: fine
    except (OSError, httplib2.HttpLib2Error):
        return False
    return True


def _metadata_only(
    base: dict[str, Any], meta: dict[str, Any], calendar_id: str, who: str, not_shared: str
) -> CalendarAccess:
    """The verdict from the metadata alone: no summary means calendars.get did not answer for it."""
    if meta["summary"] is None and meta["timeZone"] is None:
        return CalendarAccess(**base, status="not_found_or_not_shared", message=not_shared)
    if meta["role"] in ("reader", "freeBusyReader"):
        return CalendarAccess(
            **base,
            status="read_only",
            message=f"calendar {calendar_id!r} is shared with {who} read-only (shared as {meta['role']}). "
            "The driver must change that permission to 'Make changes to events'",
        )
    return CalendarAccess(
        **base,
        status="ok",
        message=f"calendar {calendar_id!r} is shared with {who}; writing is checked once the driver "
        "has proved the calendar is theirs",
    )


def verify_calendar_access(
    calendar: CalendarService, calendar_id: str, *, write_probe: bool = True
) -> CalendarAccess:
    """Can we read `calendar_id` and write to it? Leaves nothing behind (the probe event is deleted).

    `write_probe` False: only the calendar's metadata is read, for a calendar nobody has proved to be
    the driver's yet (onboarding): naming a calendar must not let anyone write into it, even a probe."""
    who = _who(calendar)
    base: dict[str, Any] = {"calendar_id": calendar_id, "account": calendar.service_account_email}
    not_shared = (
        f"calendar {calendar_id!r} was not found, or it is not shared with {who}. The driver must open the "
        f"calendar's settings → 'Share with specific people or groups' → add {who} with the permission "
        "'Make changes to events' (and check the calendar id: Settings → Integrate calendar → Calendar ID)"
    )
    if not calendar_id.strip():
        return CalendarAccess(**base, status="invalid", message="calendar id must not be empty")
    try:
        meta: dict[str, Any] = {"role": None, "summary": None, "timeZone": None}
        try:
            meta = _read(calendar, calendar_id)
        except HttpError as exc:
            status, reason = _status_of(exc)
            if not (status in (403, 404) and not _transient(status, reason)):
                raise
            # Not decisive on its own: a proxy or a minimal Calendar endpoint may serve events only.
            # The write probe below says whether the calendar exists and is shared with us.
        base.update(access_role=meta["role"], summary=meta["summary"], time_zone=meta["timeZone"])
        if not write_probe:
            return _metadata_only(base, meta, calendar_id, who, not_shared)
        try:
            leftover = _probe(calendar, calendar_id)
        except HttpError as exc:
            status, reason = _status_of(exc)
            if status == 403 and not _transient(status, reason):
                shared_as = f" (shared as {meta['role']})" if meta["role"] else ""
                return CalendarAccess(
                    **base,
                    status="read_only",
                    message=(
                        f"calendar {calendar_id!r} is shared with {who} read-only{shared_as}. The driver "
                        "must change that permission to 'Make changes to events'"
                    ),
                )
            if status == 404:
                return CalendarAccess(**base, status="not_found_or_not_shared", message=not_shared)
            raise
    except HttpError as exc:
        status, reason = _status_of(exc)
        if status == 401:
            return CalendarAccess(
                **base,
                status="auth_failed",
                message="Google rejected the service account's credentials "
                "(AUTODISPATCH_GOOGLE_SERVICE_ACCOUNT_FILE)",
            )
        if _transient(status, reason):
            return CalendarAccess(
                **base,
                status="unavailable",
                message=f"Google Calendar could not answer the check ({status} {reason}); nothing was "
                "changed, try again in a minute",
            )
        return CalendarAccess(
            **base,
            status="invalid",
            message=f"Google Calendar rejected the check of {calendar_id!r} ({status} {reason}): check the id",
        )
    except google.auth.exceptions.TransportError as exc:
        return CalendarAccess(
            **base, status="unreachable", message=f"cannot reach Google's token endpoint: {exc}"
        )
    except google.auth.exceptions.GoogleAuthError as exc:
        return CalendarAccess(
            **base,
            status="auth_failed",
            message=f"Google rejected the service account's credentials "
            f"(AUTODISPATCH_GOOGLE_SERVICE_ACCOUNT_FILE): {exc}",
        )
    except (OSError, httplib2.HttpLib2Error) as exc:
        return CalendarAccess(
            **base,
            status="unreachable",
            message=f"cannot reach the Google Calendar API at {calendar.api_root}: {exc}",
        )
    role = f" (access {meta['role']})" if meta["role"] else ""
    if leftover is not None:
        return CalendarAccess(
            **base,
            status="ok",
            leftover_event_id=leftover,
            message=f"calendar {calendar_id!r} is usable: {who} can read and write it{role}; but the probe "
            f"event {leftover!r} (on 1 January 2000) could not be deleted, delete it by hand",
        )
    return CalendarAccess(
        **base,
        status="ok",
        message=f"calendar {calendar_id!r} is usable: {who} can read and write it{role}; "
        "a probe event was written and deleted",
    )
