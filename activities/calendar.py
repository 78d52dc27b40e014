"""Google Calendar writes, with google-api-python-client (synchronous: these run in a thread pool).

The service is built once from the discovery document bundled with the library; httplib2 is not
thread-safe, so every worker thread gets its own authorized Http.

Whose credentials: every call goes through `CalendarService.execute(request, req)` with the activity's
input as `req`. `http_for` picks the credentials in one place: a driver (the input's tenant_id and
chat_id) who connected their calendar with /connect gets their own OAuth grant on a fresh Http per
call; everyone else (and an input without tenant_id/chat_id) the service account. A grant Google no
longer honours (invalid_grant) is `CalendarGrantRevoked`: the workflow pauses the order and asks the
driver to /connect again (docs/oauth.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import google.auth.exceptions
import httplib2
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.oauth import OAuthGrants, UserGrant
from autodispatch import metrics
from autodispatch.texts import event_description, event_summary
from parsing.places import navigation_name
from schemas.calendar import (
    CalendarEvent,
    CancelEventInput,
    ConflictingEvent,
    CreateEventInput,
    UpdateEventInput,
)

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
# Errors that retrying cannot fix: the workflow tells the driver what to do instead.
PERMANENT_ERROR_TYPES = (
    "CalendarNotFound", "CalendarReadOnly", "CalendarAuthFailed", "CalendarBadRequest", "CalendarGrantRevoked",
)  # fmt: skip
_RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}


class CalendarService:
    """The Calendar v3 service (built once) plus one authorized Http per thread."""

    def __init__(
        self,
        api_root: str,
        *,
        service_account_info: dict[str, Any] | None = None,
        timeout_seconds: float = 20.0,
        grants: OAuthGrants | None = None,
    ) -> None:
        self.api_root = api_root
        self._sa_info = service_account_info
        self._timeout = timeout_seconds
        self._local = threading.local()
        # Drivers' own OAuth grants (None: OAuth off, everything as the service account).
        self.grants = grants
        # Access tokens of drivers' grants, so not every call refreshes: (tenant, chat) -> (refresh
        # token it came from, access token, expiry). Credentials objects are never shared across threads.
        self._user_tokens: dict[tuple[str, int], tuple[str, str, Any]] = {}
        self._user_tokens_lock = threading.Lock()
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

    def _grant_of(self, on_behalf: Any) -> UserGrant | None:
        if self.grants is None or on_behalf is None:
            return None
        return self.grants.grant_for(
            getattr(on_behalf, "tenant_id", None),
            getattr(on_behalf, "chat_id", None),
            getattr(on_behalf, "calendar_id", None),
        )

    def http_for(self, on_behalf: Any = None) -> tuple[httplib2.Http, UserGrant | None]:
        """THE choice of credentials for a Calendar call made for `on_behalf` (an activity input with
        tenant_id / chat_id / calendar_id): the driver's own grant if they connected one, else the
        service account. A grant that is no longer active raises CalendarGrantRevoked right away."""
        grant = self._grant_of(on_behalf)
        if grant is None or grant.status == "disconnected":
            return self.http(), None
        if grant.status != "active" or grant.refresh_token is None:
            raise grant_revoked(grant, "the driver's Google grant was revoked earlier")
        key = (grant.tenant_id, grant.chat_id)
        with self._user_tokens_lock:
            cached = self._user_tokens.get(key)
        fresh = cached is not None and cached[0] == grant.refresh_token
        token, expiry = (cached[1], cached[2]) if cached and fresh else (None, None)
        creds = user_credentials.Credentials(
            token=token,
            expiry=expiry,
            refresh_token=grant.refresh_token,
            token_uri=grant.client.token_uri,
            client_id=grant.client.client_id,
            client_secret=grant.client.client_secret,
            scopes=list(grant.client.scopes),
        )
        # A fresh Http per call: httplib2 is not thread-safe, and these credentials are this driver's.
        return AuthorizedHttp(creds, http=httplib2.Http(timeout=self._timeout)), grant

    def execute(self, request: Any, on_behalf: Any = None) -> Any:
        """Run one API request with the credentials `http_for(on_behalf)` picks. Pass the activity's
        input as `on_behalf`; without it the call runs as the service account."""
        operation = str(getattr(request, "methodId", "unknown")).removeprefix("calendar.")
        with metrics.calendar_call(operation, getattr(on_behalf, "tenant_id", None)):
            return self._execute(request, on_behalf)

    def _execute(self, request: Any, on_behalf: Any) -> Any:
        http, grant = self.http_for(on_behalf)
        if grant is None:
            return request.execute(http=http, num_retries=0)
        try:
            return request.execute(http=http, num_retries=0)
        except google.auth.exceptions.RefreshError as exc:
            if not is_invalid_grant(exc):
                raise
            # Remember it, so the driver's next orders pause at once instead of asking Google again.
            assert self.grants is not None
            self.grants.mark_revoked_blocking(grant.tenant_id, grant.chat_id, str(exc))
            raise grant_revoked(grant, f"Google answered invalid_grant: {exc}") from exc
        finally:
            creds = getattr(http, "credentials", None)
            if creds is not None and creds.token:
                with self._user_tokens_lock:
                    self._user_tokens[(grant.tenant_id, grant.chat_id)] = (
                        grant.refresh_token or "", creds.token, creds.expiry,
                    )  # fmt: skip


def is_invalid_grant(exc: google.auth.exceptions.RefreshError) -> bool:
    """google-auth raises RefreshError("invalid_grant: ...", {response body}) for a revoked or expired grant."""
    for arg in exc.args:
        if isinstance(arg, dict) and arg.get("error") == "invalid_grant":
            return True
    return "invalid_grant" in str(exc)


def grant_revoked(grant: UserGrant, why: str) -> ApplicationError:
    return ApplicationError(
        f"{why}; the driver must /connect again", grant.tenant_id, grant.chat_id,
        type="CalendarGrantRevoked", non_retryable=True,
    )  # fmt: skip


@contextmanager
def google_errors(calendar_id: str) -> Iterator[None]:
    """Google's answers as the flows' error types: HttpError classified, refused credentials permanent."""
    try:
        yield
    except HttpError as exc:
        raise classify_http_error(exc, calendar_id) from exc
    except google.auth.exceptions.RefreshError as exc:
        raise ApplicationError(
            f"Google refused our credentials: {exc}", type="CalendarAuthFailed", non_retryable=True
        ) from exc


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
        # A known airport or station by its full name, so the driver's navigation app finds it.
        "location": navigation_name(order.pickup_address) if order.pickup_address else "",
        "description": event_description(order, req.original_text, req.language),
        "start": {"dateTime": start.isoformat(), "timeZone": req.time_zone},
        "end": {"dateTime": end.isoformat(), "timeZone": req.time_zone},
        "extendedProperties": {
            "private": {
                "autodispatch": "1",
                "order_id": req.order_id,
                "tenant_id": req.tenant_id,
                "chat_id": str(req.chat_id),
                # Structured for the agenda's totals (#5); "" (not absent) so a patch clears an old price.
                "price_amount": "" if order.price_amount is None else repr(float(order.price_amount)),
                "price_currency": order.price_currency or "",
            }
        },
    }


def _conflict_of(item: dict[str, Any]) -> ConflictingEvent:
    start = item.get("start") or {}
    at = datetime.fromisoformat(start["dateTime"].replace("Z", "+00:00")) if "dateTime" in start else None
    return ConflictingEvent(event_id=item.get("id", ""), summary=item.get("summary", ""), start=at)


class CalendarActivities:
    def __init__(self, calendar: CalendarService, default_duration_minutes: int = 60) -> None:
        self.calendar = calendar
        self.default_duration_minutes = default_duration_minutes

    def _conflicts(self, req: CreateEventInput) -> list[ConflictingEvent]:
        """Other busy events overlapping the order's window (its own event, on a retry, excluded)."""
        window, start = req.conflict_window, req.order.pickup_at
        if window is None or start is None:
            return []
        end = start + timedelta(minutes=req.duration_minutes or self.default_duration_minutes)
        # timeMin bounds an event's end and timeMax its start: exactly "overlaps the window".
        listing = self.calendar.execute(
            self.calendar.service.events().list(
                calendarId=req.calendar_id,
                timeMin=(start - timedelta(minutes=window.before_minutes)).isoformat(),
                timeMax=(end + timedelta(minutes=window.after_minutes)).isoformat(),
                singleEvents=True,
                orderBy="startTime",
                maxResults=20,
            ),
            req,
        )
        return [
            _conflict_of(item)
            for item in listing.get("items", [])
            if item.get("id") != req.event_id
            and item.get("status") != "cancelled"
            and item.get("transparency") != "transparent"  # marked "free": it blocks nothing
        ]

    @activity.defn(name="create_event")
    def create_event(self, req: CreateEventInput) -> CalendarEvent:
        """Insert with a deterministic id: a 409 duplicate means an earlier attempt already wrote it."""
        events = self.calendar.service.events()
        with google_errors(req.calendar_id):
            # Checked before writing, so the card can say what the new order overlaps.
            conflicts = self._conflicts(req)
            try:
                created = self.calendar.execute(
                    events.insert(
                        calendarId=req.calendar_id, body=event_body(req, self.default_duration_minutes)
                    ),
                    req,
                )
                # Ids only at INFO: the order's text, phone and address stay out of the logs.
                activity.logger.info("event %s written (%d conflicts)", created["id"], len(conflicts))
                return CalendarEvent(
                    event_id=created["id"], html_link=created.get("htmlLink"), created=True,
                    conflicts=conflicts,
                )  # fmt: skip
            except HttpError as exc:
                if exc.resp.status != 409:
                    raise
            existing = self.calendar.execute(
                events.get(calendarId=req.calendar_id, eventId=req.event_id), req
            )
            activity.logger.info("event %s already existed: idempotent insert", req.event_id)
            return CalendarEvent(
                event_id=existing["id"], html_link=existing.get("htmlLink"), created=False,
                conflicts=conflicts,
            )  # fmt: skip

    @activity.defn(name="update_event")
    def update_event(self, req: UpdateEventInput) -> CalendarEvent:
        """Rewrite the order's event with its changed fields (idempotent: the same body each time).

        An event the driver deleted by hand is written again under the same id, so a change never
        leaves the order without its event."""
        events = self.calendar.service.events()
        # "confirmed": deleted events keep their id in Google, and only the status brings one back.
        body = {**event_body(req, self.default_duration_minutes), "status": "confirmed"}
        with google_errors(req.calendar_id):
            conflicts = self._conflicts(req)
            try:
                patched = self.calendar.execute(
                    events.patch(calendarId=req.calendar_id, eventId=req.event_id, body=body), req
                )
            except HttpError as exc:
                if exc.resp.status not in (404, 410):
                    raise
                patched = self.calendar.execute(events.insert(calendarId=req.calendar_id, body=body), req)
            return CalendarEvent(
                event_id=patched["id"], html_link=patched.get("htmlLink"), created=False, conflicts=conflicts
            )

    @activity.defn(name="cancel_event")
    def cancel_event(self, req: CancelEventInput) -> bool:
        """Delete the order's event. True if it was there; an event already gone is done, not an error."""
        events = self.calendar.service.events()
        with google_errors(req.calendar_id):
            try:
                self.calendar.execute(events.delete(calendarId=req.calendar_id, eventId=req.event_id), req)
            except HttpError as exc:
                if exc.resp.status in (404, 410):
                    return False
                raise
        return True
