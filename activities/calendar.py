"""Google Calendar writes, with google-api-python-client (synchronous: these run in a thread pool).

The service is built once from the discovery document bundled with the library; httplib2 is not
thread-safe, so every worker thread gets its own authorized Http.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import google.auth.exceptions
import httplib2
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autodispatch.texts import event_description, event_summary
from schemas.calendar import CalendarEvent, CancelEventInput, CreateEventInput

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
# Errors that retrying cannot fix: the workflow tells the driver what to do instead.
PERMANENT_ERROR_TYPES = ("CalendarNotFound", "CalendarReadOnly", "CalendarAuthFailed", "CalendarBadRequest")
_RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}


class CalendarService:
    """The Calendar v3 service (built once) plus one authorized Http per thread."""

    def __init__(
        self,
        api_root: str,
        *,
        service_account_info: dict[str, Any] | None = None,
        timeout_seconds: float = 20.0,
    ) -> None:
        self.api_root = api_root
        self._sa_info = service_account_info
        self._timeout = timeout_seconds
        self._local = threading.local()
        self.service = build(
            "calendar",
            "v3",
            http=httplib2.Http(timeout=timeout_seconds),
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": api_root},
        )

    @classmethod
    def from_settings(cls, api_root: str, service_account_file: Path | None) -> CalendarService:
        info = json.loads(service_account_file.read_text()) if service_account_file else None
        return cls(api_root, service_account_info=info)

    @property
    def service_account_email(self) -> str | None:
        return self._sa_info.get("client_email") if self._sa_info else None

    def http(self) -> httplib2.Http:
        h = getattr(self._local, "http", None)
        if h is None:
            base = httplib2.Http(timeout=self._timeout)
            if self._sa_info:
                # Credentials per thread too: google-auth's refresh is not guarded by a lock.
                creds = service_account.Credentials.from_service_account_info(
                    self._sa_info, scopes=[CALENDAR_SCOPE]
                )
                h = AuthorizedHttp(creds, http=base)
            else:
                h = base  # an emulator or a proxy that needs no credentials
            self._local.http = h
        return h

    def execute(self, request: Any) -> Any:
        return request.execute(http=self.http(), num_retries=0)


def error_reason(exc: HttpError) -> str:
    try:
        err = json.loads(exc.content.decode("utf-8"))["error"]
        return str((err.get("errors") or [{}])[0].get("reason") or err.get("status") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def classify_http_error(exc: HttpError, calendar_id: str) -> ApplicationError:
    status, reason = exc.resp.status, error_reason(exc)
    if status == 404:
        return ApplicationError(
            f"calendar {calendar_id!r} not found or not shared with us", calendar_id,
            type="CalendarNotFound", non_retryable=True,
        )  # fmt: skip
    if status == 429 or (status == 403 and reason in _RATE_LIMIT_REASONS):
        return ApplicationError(f"Google Calendar rate limit ({status} {reason})", type="CalendarRateLimited")
    if status == 403:
        return ApplicationError(
            f"calendar {calendar_id!r} is not writable for us ({reason})", calendar_id,
            type="CalendarReadOnly", non_retryable=True,
        )  # fmt: skip
    if status == 401:
        return ApplicationError(
            "Google rejected our credentials", type="CalendarAuthFailed", non_retryable=True
        )
    if status >= 500:
        return ApplicationError(
            f"Google Calendar unavailable ({status} {reason})", type="CalendarUnavailable"
        )
    return ApplicationError(
        f"Google Calendar rejected the request ({status} {reason})",
        type="CalendarBadRequest",
        non_retryable=True,
    )


def event_body(req: CreateEventInput, default_duration_minutes: int = 60) -> dict[str, Any]:
    order = req.order
    assert order.pickup_at is not None, "an order reaches the calendar only with a pickup time"
    start = order.pickup_at
    end = start + timedelta(minutes=req.duration_minutes or default_duration_minutes)
    return {
        "id": req.event_id,
        "summary": event_summary(order, req.time_zone),
        "location": order.pickup_address or "",
        "description": event_description(order, req.original_text, req.language),
        "start": {"dateTime": start.isoformat(), "timeZone": req.time_zone},
        "end": {"dateTime": end.isoformat(), "timeZone": req.time_zone},
        "extendedProperties": {
            "private": {
                "autodispatch": "1",
                "order_id": req.order_id,
                "tenant_id": req.tenant_id,
                "chat_id": str(req.chat_id),
            }
        },
    }


class CalendarActivities:
    def __init__(self, calendar: CalendarService, default_duration_minutes: int = 60) -> None:
        self.calendar = calendar
        self.default_duration_minutes = default_duration_minutes

    @activity.defn(name="create_event")
    def create_event(self, req: CreateEventInput) -> CalendarEvent:
        """Insert with a deterministic id: a 409 duplicate means an earlier attempt already wrote it."""
        events = self.calendar.service.events()
        try:
            try:
                created = self.calendar.execute(
                    events.insert(
                        calendarId=req.calendar_id, body=event_body(req, self.default_duration_minutes)
                    )
                )
                return CalendarEvent(event_id=created["id"], html_link=created.get("htmlLink"), created=True)
            except HttpError as exc:
                if exc.resp.status != 409:
                    raise
            existing = self.calendar.execute(events.get(calendarId=req.calendar_id, eventId=req.event_id))
            activity.logger.info("event %s already existed: idempotent insert", req.event_id)
            return CalendarEvent(event_id=existing["id"], html_link=existing.get("htmlLink"), created=False)
        except HttpError as exc:
            raise classify_http_error(exc, req.calendar_id) from exc
        except google.auth.exceptions.RefreshError as exc:
            raise ApplicationError(
                f"Google refused our credentials: {exc}", type="CalendarAuthFailed", non_retryable=True
            ) from exc

    @activity.defn(name="cancel_event")
    def cancel_event(self, req: CancelEventInput) -> bool:
        """Delete the order's event. True if it was there; an event already gone is done, not an error."""
        events = self.calendar.service.events()
        try:
            self.calendar.execute(events.delete(calendarId=req.calendar_id, eventId=req.event_id))
        except HttpError as exc:
            if exc.resp.status in (404, 410):
                return False
            raise classify_http_error(exc, req.calendar_id) from exc
        except google.auth.exceptions.RefreshError as exc:
            raise ApplicationError(
                f"Google refused our credentials: {exc}", type="CalendarAuthFailed", non_retryable=True
            ) from exc
        return True
