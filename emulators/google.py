"""Local emulator of Google Calendar API v3 (the subset Auto-Dispatcher uses) and Google OAuth2.

Spoken to by the real clients: ``googleapiclient.discovery.build("calendar", "v3",
client_options={"api_endpoint": f"{base}/calendar/v3/"}, ...)`` over httplib2, and google-auth's
service-account / authorization-code flows against ``{base}/token``. Error bodies follow Google's JSON
error format, because the production code decides "retry" versus "give up" from status and reason.

All state is in memory on one event loop. Every handler reads its request body first and then mutates
state in one synchronous stretch (no await in between), which is what keeps concurrent requests
consistent without locks.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import html
import json
import logging
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import MultiDict, MultiDictProxy

from emulators._http import control_error, json_object

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
ROLE_RANK = {"freeBusyReader": 1, "reader": 2, "writer": 3, "owner": 4}
EVENT_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
# google-auth signs service-account assertions for this audience whatever token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCESS_TOKEN_TTL = 3600
CODE_TTL = 600
# Event fields the server owns; values sent by clients are ignored, as Google does.
_READ_ONLY_FIELDS = frozenset(
    {"kind", "etag", "created", "updated", "htmlLink", "iCalUID", "creator", "organizer", "id"}
)
_WRITE_METHODS = frozenset({"events.insert", "events.patch", "events.update", "events.delete"})

_STANDARD_ERRORS: dict[int, tuple[str, str]] = {
    400: ("badRequest", "Bad Request"),
    401: ("authError", "Invalid Credentials"),
    403: ("rateLimitExceeded", "Rate Limit Exceeded"),
    404: ("notFound", "Not Found"),
    409: ("duplicate", "The requested identifier already exists."),
    410: ("deleted", "Resource has been deleted"),
    412: ("conditionNotMet", "Precondition Failed"),
    429: ("rateLimitExceeded", "Rate Limit Exceeded"),
    500: ("backendError", "Backend Error"),
    502: ("backendError", "Bad Gateway"),
    503: ("backendError", "Backend Error"),
}
_REASON_MESSAGES = {
    "rateLimitExceeded": "Rate Limit Exceeded",
    "userRateLimitExceeded": "Rate Limit Exceeded",
    "quotaExceeded": "Calendar usage limits exceeded.",
    "backendError": "Backend Error",
    "authError": "Invalid Credentials",
    "notFound": "Not Found",
    "duplicate": "The requested identifier already exists.",
}


class GoogleApiError(Exception):
    """An error answer in Google's JSON error format."""

    def __init__(self, code: int, reason: str, message: str, **extra: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.extra = extra

    def response(self) -> web.Response:
        detail: dict[str, Any] = {
            "domain": "global",
            "reason": self.reason,
            "message": self.message,
            **self.extra,
        }
        body = {"error": {"code": self.code, "message": self.message, "errors": [detail]}}
        headers = {}
        if self.code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
        return web.json_response(body, status=self.code, headers=headers)


def _invalid(message: str) -> GoogleApiError:
    return GoogleApiError(400, "invalid", message)


def _not_found() -> GoogleApiError:
    return GoogleApiError(404, "notFound", "Not Found")


class OAuthError(Exception):
    """An OAuth2 token-endpoint error: {"error": ..., "error_description": ...}."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> web.Response:
        return web.json_response(
            {"error": self.error, "error_description": self.description}, status=self.status
        )


# --------------------------------------------------------------------------------------------------
# Time handling: store what the client sent, compare instants.


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def _parse_instant(value: str, default_tz: str | None = None) -> datetime:
    """An RFC 3339 timestamp as an aware datetime; a naive one is read in default_tz if given."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except (ValueError, AttributeError):
        raise GoogleApiError(400, "badRequest", "Bad Request") from None
    if parsed.tzinfo is None:
        if default_tz is None:
            raise GoogleApiError(400, "badRequest", "Bad Request")
        parsed = parsed.replace(tzinfo=_zone(default_tz))
    return parsed


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid("Invalid time zone definition.") from None


def _event_bound(ev_time: Any, which: str, calendar_tz: str) -> datetime:
    """Validate an event's start/end object and return its instant."""
    if not isinstance(ev_time, dict) or not (ev_time.get("dateTime") or ev_time.get("date")):
        raise GoogleApiError(400, "required", f"Missing {which} time.")
    if ev_time.get("dateTime"):
        tz_name = ev_time.get("timeZone")
        if tz_name:
            try:
                ZoneInfo(tz_name)
            except (ZoneInfoNotFoundError, ValueError):
                raise _invalid(f"Invalid time zone definition for {which} time.") from None
        try:
            parsed = datetime.fromisoformat(str(ev_time["dateTime"]).replace("z", "Z"))
        except ValueError:
            raise _invalid(f"Invalid {which} time.") from None
        if parsed.tzinfo is None:
            if not tz_name:
                raise GoogleApiError(400, "required", f"Missing time zone definition for {which} time.")
            parsed = parsed.replace(tzinfo=ZoneInfo(tz_name))
        return parsed
    try:
        day = date.fromisoformat(str(ev_time["date"]))
    except ValueError:
        raise _invalid(f"Invalid {which} time.") from None
    # All-day events occupy whole days in the calendar's time zone.
    return datetime(day.year, day.month, day.day, tzinfo=_zone(ev_time.get("timeZone") or calendar_tz))


def _render_time(ev_time: dict[str, Any], instant: datetime, tz_name: str | None) -> dict[str, Any]:
    if tz_name is None or "dateTime" not in ev_time:
        return copy.deepcopy(ev_time)
    return {**ev_time, "dateTime": instant.astimezone(ZoneInfo(tz_name)).isoformat(), "timeZone": tz_name}


# --------------------------------------------------------------------------------------------------
# State


@dataclass
class _Event:
    data: dict[str, Any]
    start: datetime
    end: datetime
    stored_ts: float
    updated_ts: float
    seq: int


@dataclass
class _Calendar:
    id: str
    summary: str
    owner: str
    time_zone: str
    acl: dict[str, str] = field(default_factory=dict)
    events: dict[str, _Event] = field(default_factory=dict)
    created_ts: float = field(default_factory=time.time)
    description: str = ""

    def role(self, principal: str) -> str | None:
        if principal == self.owner:
            return "owner"
        return self.acl.get(principal)

    def to_json(self) -> dict[str, Any]:
        return {
            "calendar_id": self.id,
            "summary": self.summary,
            "owner": self.owner,
            "time_zone": self.time_zone,
            "shares": dict(self.acl),
            "events": len(self.events),
            "created_ts": self.created_ts,
            "description": self.description,
        }


@dataclass
class _ServiceAccount:
    email: str
    key_id: str
    public_key: Any
    client_id: str
    domain_wide_delegation: bool


@dataclass
class _OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class _Grant:
    grant_id: str
    email: str
    client_id: str | None
    scope: str
    revoked: bool = False


@dataclass
class _AccessToken:
    email: str
    expires_at: float
    grant_id: str | None
    scope: str
    revoked: bool = False


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    email: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str
    offline: bool
    expires_at: float
    used: bool = False


@dataclass
class GoogleConfig:
    fail_rate: float = 0.0
    fail_statuses: list[int | str] = field(default_factory=lambda: [500, 503])
    fail_after_write_rate: float = 0.0
    fail_methods: list[str] | None = None  # restrict injection to e.g. ["events.insert"]
    seed: int | None = None
    latency_ms: float = 0.0
    # Google answers a call without credentials with 401; so does the emulator unless told otherwise
    # (the sandbox of `autodispatch up` and the benchmarks' load opt in).
    allow_anonymous: bool = False


_Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


@dataclass
class _Fault:
    """A scripted answer: the next `count` calls of `method` (on `calendar_id`, if given) fail."""

    method: str
    count: int
    status: int | str
    calendar_id: str | None = None


class GoogleEmulator:
    """Google Calendar v3 subset + OAuth2 endpoints in one aiohttp application."""

    def __init__(self, *, seed: int | None = None, allow_anonymous: bool = False) -> None:
        self.config = GoogleConfig(seed=seed, allow_anonymous=allow_anonymous)
        self._rng = random.Random(seed)
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._clear()
        self.app = self._build_app()

    def _clear(self) -> None:
        self._calendars: dict[str, _Calendar] = {}
        self._service_accounts: dict[str, _ServiceAccount] = {}
        self._users: list[str] = []
        self._current_user: str | None = None
        self._clients: dict[str, _OAuthClient] = {}
        self._grants: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> grant id
        self._codes: dict[str, _AuthCode] = {}
        self._calls: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        self._counters: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._seq = 0
        self._signing_key: rsa.RSAPrivateKey | None = None
        self._signing_kid = secrets.token_hex(20)

    @property
    def allow_anonymous(self) -> bool:
        return self.config.allow_anonymous

    @allow_anonymous.setter
    def allow_anonymous(self, value: bool) -> None:
        self.config.allow_anonymous = bool(value)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> GoogleEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def calendar_api_root(self) -> str:
        """What to pass as client_options={"api_endpoint": ...} to googleapiclient."""
        return f"{self._base()}/calendar/v3/"

    @property
    def token_uri(self) -> str:
        return f"{self._base()}/token"

    def _base(self) -> str:
        if self.base_url is None:
            raise RuntimeError("GoogleEmulator is not started")
        return self.base_url

    def _build_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/healthz", self._h_health)
        api = "/calendar/v3"
        routes: list[tuple[str, str, str, _Handler]] = [
            ("GET", "/calendars/{calendarId}", "calendars.get", self._calendars_get),
            ("GET", "/users/me/calendarList", "calendarList.list", self._calendar_list_list),
            ("GET", "/users/me/calendarList/{calendarId}", "calendarList.get", self._calendar_list_get),
            ("POST", "/calendars/{calendarId}/events", "events.insert", self._events_insert),
            ("GET", "/calendars/{calendarId}/events", "events.list", self._events_list),
            ("GET", "/calendars/{calendarId}/events/{eventId}", "events.get", self._events_get),
            ("PATCH", "/calendars/{calendarId}/events/{eventId}", "events.patch", self._events_patch),
            ("PUT", "/calendars/{calendarId}/events/{eventId}", "events.update", self._events_update),
            ("DELETE", "/calendars/{calendarId}/events/{eventId}", "events.delete", self._events_delete),
            ("POST", "/freeBusy", "freebusy.query", self._freebusy),
        ]
        for verb, path, name, handler in routes:
            r.add_route(verb, api + path, self._api_handler(name, handler))
        r.add_route("*", api + "/{tail:.*}", self._h_api_not_found)
        # OAuth2
        r.add_post("/token", self._h_token)
        r.add_post("/oauth2/v4/token", self._h_token)
        r.add_get("/o/oauth2/v2/auth", self._h_auth)
        r.add_get("/o/oauth2/auth", self._h_auth)
        r.add_post("/o/oauth2/v2/auth/approve", self._h_auth_approve)
        r.add_route("*", "/revoke", self._h_revoke)
        r.add_route("*", "/o/oauth2/revoke", self._h_revoke)
        r.add_get("/oauth2/v3/certs", self._h_certs)
        r.add_get("/oauth2/v3/userinfo", self._h_userinfo)
        r.add_get("/oauth2/v2/userinfo", self._h_userinfo)
        # Control API
        c = "/_emulator"
        r.add_post(c + "/config", self._h_config)
        r.add_get(c + "/config", self._h_get_config)
        r.add_get(c + "/stats", self._h_stats)
        r.add_post(c + "/reset", self._h_reset)
        r.add_post(c + "/calendars", self._h_create_calendar)
        r.add_get(c + "/calendars", self._h_list_calendars)
        r.add_put(c + "/calendars/{calendarId}/acl", self._h_set_acl)
        r.add_put(c + "/calendars/{calendarId}/description", self._h_set_description)
        r.add_delete(c + "/calendars/{calendarId}", self._h_delete_calendar)
        r.add_get(c + "/calendars/{calendarId}/events", self._h_all_events)
        r.add_post(c + "/service_accounts", self._h_create_sa)
        r.add_post(c + "/users", self._h_create_user)
        r.add_post(c + "/oauth/clients", self._h_create_client)
        r.add_post(c + "/oauth/revoke", self._h_revoke_user)
        r.add_post(c + "/oauth/expire", self._h_expire)
        r.add_post(c + "/tokens", self._h_issue_token)
        return app

    # ------------------------------------------------------------------ Python control API

    def configure(self, **options: Any) -> dict[str, Any]:
        """fail_rate, fail_statuses, fail_after_write_rate, fail_methods, seed, latency_ms, allow_anonymous."""
        for key, value in options.items():
            if not hasattr(self.config, key):
                raise ValueError(f"unknown google emulator option {key!r}")
            if key == "fail_statuses":
                for spec in value:
                    self._parse_fail_status(spec)  # reject bad specs now rather than mid-request
                value = list(value)
            setattr(self.config, key, value)
        if "seed" in options:
            self._rng = random.Random(options["seed"])
        return self.get_config()

    def get_config(self) -> dict[str, Any]:
        return copy.deepcopy(self.config.__dict__)

    def fail_next(
        self, method: str, count: int = 1, status: int | str = 503, *, calendar_id: str | None = None
    ) -> None:
        """The next `count` calls of `method` ("events.patch", "events.delete", "events.list"...), on
        `calendar_id` if given, fail before doing anything with `status` (503, "403rateLimitExceeded")."""
        self._parse_fail_status(status)
        self._faults.append(_Fault(method, int(count), status, calendar_id))

    def pending_faults(self) -> int:
        """Scripted failures not yet answered."""
        return sum(f.count for f in self._faults)

    def _scripted_failure(self, name: str, request: web.Request) -> GoogleApiError | None:
        calendar_id = request.match_info.get("calendarId")
        for fault in self._faults:
            if fault.method == name and fault.calendar_id in (None, calendar_id):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                self._counters["injected_failures"] += 1
                return GoogleApiError(*self._parse_fail_status(fault.status))
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "methods": dict(self._calls),
            "inserts": self._counters["inserts"],
            "duplicates": self._counters["duplicates"],
            "injected_failures": self._counters["injected_failures"],
            "injected_after_write": self._counters["injected_after_write"],
            "tokens_issued": self._counters["tokens_issued"],
            "errors": dict(self._errors),
        }

    def reset(self) -> None:
        """Forget calendars, events, accounts, tokens, counters; config back to defaults."""
        self._clear()
        self.config = GoogleConfig()
        self._rng = random.Random(None)

    def create_calendar(
        self,
        calendar_id: str,
        owner: str = "owner@example.com",
        time_zone: str = "Europe/Moscow",
        shares: dict[str, str | None] | None = None,
        summary: str | None = None,
    ) -> dict[str, Any]:
        if not calendar_id:
            raise ValueError("calendar_id is required")
        if calendar_id in self._calendars:
            raise ValueError(f"calendar {calendar_id!r} already exists")
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {time_zone!r}") from None
        cal = _Calendar(id=calendar_id, summary=summary or calendar_id, owner=owner, time_zone=time_zone)
        self._calendars[calendar_id] = cal
        for email, role in (shares or {}).items():
            self.share_calendar(calendar_id, email, role)
        return cal.to_json()

    def share_calendar(self, calendar_id: str, email: str, role: str | None) -> dict[str, Any]:
        """Give ``email`` a role on the calendar, or revoke its access with role=None."""
        cal = self._calendars.get(calendar_id)
        if cal is None:
            raise KeyError(f"calendar {calendar_id!r} not found")
        if role is None or role == "none":
            cal.acl.pop(email, None)
        elif role not in ROLE_RANK:
            raise ValueError(f"unknown role {role!r}; one of {sorted(ROLE_RANK)} or null")
        else:
            cal.acl[email] = role
        return cal.to_json()

    def set_description(self, calendar_id: str, description: str) -> dict[str, Any]:
        """What its owner types into the calendar's "Description" in Google Calendar's settings."""
        cal = self._calendars.get(calendar_id)
        if cal is None:
            raise KeyError(f"calendar {calendar_id!r} not found")
        cal.description = description
        return cal.to_json()

    def delete_calendar(self, calendar_id: str) -> None:
        if self._calendars.pop(calendar_id, None) is None:
            raise KeyError(f"calendar {calendar_id!r} not found")

    def calendars(self) -> list[dict[str, Any]]:
        return [cal.to_json() for cal in self._calendars.values()]

    def events(self, calendar_id: str) -> list[dict[str, Any]]:
        """Every event of the calendar, cancelled ones included, with _stored_ts/_updated_ts."""
        cal = self._calendars.get(calendar_id)
        if cal is None:
            raise KeyError(f"calendar {calendar_id!r} not found")
        return [
            {**copy.deepcopy(ev.data), "_stored_ts": ev.stored_ts, "_updated_ts": ev.updated_ts}
            for ev in sorted(cal.events.values(), key=lambda e: e.seq)
        ]

    def create_service_account(
        self,
        email: str = "autodispatch@sandbox.iam.gserviceaccount.com",
        domain_wide_delegation: bool = False,
    ) -> dict[str, Any]:
        """A complete service-account key file (dict) whose token_uri points at this emulator."""
        base = self._base()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        key_id = secrets.token_hex(20)
        client_id = str(100000000000000000000 + self._rng.randrange(10**20))
        self._service_accounts[email] = _ServiceAccount(
            email=email,
            key_id=key_id,
            public_key=key.public_key(),
            client_id=client_id,
            domain_wide_delegation=domain_wide_delegation,
        )
        project = email.split("@", 1)[1].split(".", 1)[0] if "@" in email else "sandbox"
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": client_id,
            "auth_uri": f"{base}/o/oauth2/auth",
            "token_uri": f"{base}/token",
            "auth_provider_x509_cert_url": f"{base}/oauth2/v1/certs",
            "client_x509_cert_url": f"{base}/robot/v1/metadata/x509/{quote(email)}",
            "universe_domain": "googleapis.com",
        }

    def create_user(
        self, email: str, make_current: bool = True, primary_calendar: bool = True
    ) -> dict[str, Any]:
        """A Google account that can consent on the OAuth page; gets a primary calendar (id = email)."""
        if email not in self._users:
            self._users.append(email)
        if make_current:
            self._current_user = email
        if primary_calendar and email not in self._calendars:
            self.create_calendar(email, owner=email, summary=email)
        return {"email": email, "current": self._current_user == email}

    def create_oauth_client(
        self, client_id: str, client_secret: str, redirect_uris: list[str]
    ) -> dict[str, Any]:
        self._clients[client_id] = _OAuthClient(client_id, client_secret, list(redirect_uris))
        return {"client_id": client_id, "client_secret": client_secret, "redirect_uris": list(redirect_uris)}

    def issue_access_token(self, email: str, expires_in: int = ACCESS_TOKEN_TTL, scope: str = "") -> str:
        """Mint an access token for a principal directly (benchmarks, scripted checks)."""
        return self._mint_access_token(email, None, scope, expires_in)

    def revoke_user_grants(self, email: str) -> int:
        """Revoke every OAuth grant of the user (as from "Third-party access" in the Google account)."""
        count = 0
        for grant in self._grants.values():
            if grant.email == email and not grant.revoked:
                grant.revoked = True
                count += 1
        for token in self._access_tokens.values():
            if token.email == email:
                token.revoked = True
        return count

    def expire_access_tokens(self, email: str | None = None) -> int:
        """Make access tokens (of one principal, or all) expired now, to exercise refresh paths."""
        count = 0
        now = time.time()
        for token in self._access_tokens.values():
            if email is None or token.email == email:
                token.expires_at = min(token.expires_at, now - 1)
                count += 1
        return count

    # ------------------------------------------------------------------ calendar API plumbing

    def _api_handler(
        self, name: str, impl: _Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            method_name, method_impl = name, impl
            if (
                request.method == "POST"
                and request.headers.get("X-HTTP-Method-Override", "").upper() == "GET"
            ):
                # googleapiclient turns a GET whose URI exceeds 2048 chars into this POST form.
                if name != "events.insert":
                    return _not_found().response()
                method_name, method_impl = "events.list", self._events_list
            return await run(request, method_name, method_impl)

        async def run(request: web.Request, name: str, impl: _Handler) -> web.StreamResponse:
            self._calls[name] += 1
            cfg = self.config
            if cfg.latency_ms > 0:
                await asyncio.sleep(cfg.latency_ms / 1000)
            targeted = cfg.fail_methods is None or name in cfg.fail_methods
            try:
                if (scripted := self._scripted_failure(name, request)) is not None:
                    raise scripted
                if targeted and cfg.fail_rate > 0 and self._rng.random() < cfg.fail_rate:
                    self._counters["injected_failures"] += 1
                    raise self._injected_error()
                principal = self._principal(request)
                response = await impl(request, principal)
                if (
                    name in _WRITE_METHODS
                    and targeted
                    and cfg.fail_after_write_rate > 0
                    and self._rng.random() < cfg.fail_after_write_rate
                ):
                    # The write happened; the answer is "lost" and the client sees a retryable 503.
                    self._counters["injected_after_write"] += 1
                    raise GoogleApiError(503, "backendError", "Backend Error")
                return response
            except GoogleApiError as err:
                self._errors[f"{err.code} {err.reason}"] += 1
                return err.response()

        return handler

    @staticmethod
    def _parse_fail_status(spec: int | str) -> tuple[int, str, str]:
        text = str(spec)
        m = re.fullmatch(r"(\d{3})([A-Za-z]*)", text)
        if not m:
            raise ValueError(f"bad fail status {spec!r}; use e.g. 503 or '403rateLimitExceeded'")
        code = int(m.group(1))
        reason = m.group(2) or _STANDARD_ERRORS.get(code, ("backendError", "Backend Error"))[0]
        message = _REASON_MESSAGES.get(reason) or _STANDARD_ERRORS.get(code, ("", "Backend Error"))[1]
        return code, reason, message

    def _injected_error(self) -> GoogleApiError:
        code, reason, message = self._parse_fail_status(self._rng.choice(self.config.fail_statuses or [503]))
        return GoogleApiError(code, reason, message)

    async def _h_api_not_found(self, request: web.Request) -> web.Response:
        return _not_found().response()

    def _principal(self, request: web.Request) -> str:
        auth = request.headers.get("Authorization")
        if not auth:
            if self.config.allow_anonymous:
                return ANONYMOUS
            raise GoogleApiError(
                401, "required", "Login Required.", location="Authorization", locationType="header"
            )
        scheme, _, token = auth.partition(" ")
        principal = self._token_principal(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise GoogleApiError(
                401, "authError", "Invalid Credentials", location="Authorization", locationType="header"
            )
        return principal

    def _token_principal(self, token: str) -> str | None:
        rec = self._access_tokens.get(token)
        if rec is not None:
            grant = self._grants.get(rec.grant_id) if rec.grant_id else None
            if rec.revoked or rec.expires_at <= time.time() or (grant is not None and grant.revoked):
                return None
            return rec.email
        if token.count(".") == 2:
            # A self-signed service-account JWT used directly as the bearer token (google-auth's
            # "JWT access" mode); Google accepts these without a token exchange.
            try:
                claims = jwt.decode(token, options={"verify_signature": False})
                sa = self._service_accounts.get(str(claims.get("iss")))
                if sa is None:
                    return None
                jwt.decode(token, sa.public_key, algorithms=["RS256"], options={"verify_aud": False})
            except jwt.PyJWTError:
                return None
            return sa.email
        return None

    def _calendar_for(self, calendar_id: str, principal: str, need: str) -> tuple[_Calendar, str]:
        if calendar_id == "primary":
            calendar_id = principal
        cal = self._calendars.get(calendar_id)
        if cal is None:
            raise _not_found()
        role = "writer" if principal == ANONYMOUS else cal.role(principal)
        if role is None:
            # Google answers 404 for calendars that exist but are not shared with the caller.
            raise _not_found()
        if ROLE_RANK[role] < ROLE_RANK[need]:
            level = "writer" if ROLE_RANK[need] >= ROLE_RANK["writer"] else "reader"
            raise GoogleApiError(
                403, "requiredAccessLevel", f"You need to have {level} access to this calendar."
            )
        return cal, role

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise GoogleApiError(400, "parseError", "Parse Error") from None
        if not isinstance(body, dict):
            raise GoogleApiError(400, "parseError", "Parse Error")
        return body

    def _next_etag(self) -> str:
        self._seq += 1
        return f'"{int(time.time() * 1000) * 1000 + self._seq % 1000}"'

    def _event_json(self, cal: _Calendar, ev: _Event, tz_name: str | None = None) -> dict[str, Any]:
        data = copy.deepcopy(ev.data)
        if tz_name is not None:
            data["start"] = _render_time(ev.data["start"], ev.start, tz_name)
            data["end"] = _render_time(ev.data["end"], ev.end, tz_name)
        return data

    def _build_event(
        self, cal: _Calendar, body: dict[str, Any], principal: str, previous: _Event | None, event_id: str
    ) -> _Event:
        start = _event_bound(body.get("start"), "start", cal.time_zone)
        end = _event_bound(body.get("end"), "end", cal.time_zone)
        if ("date" in body["start"]) != ("date" in body["end"]):
            raise _invalid("Start and end times must either both be date or both be dateTime.")
        if end < start:
            raise GoogleApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        status = body.get("status") or "confirmed"
        if status not in ("confirmed", "tentative", "cancelled"):
            raise _invalid("Invalid value for: status")
        now = time.time()
        # iCalendar SEQUENCE: bumped when the time changes, so invitees' copies can tell it is newer.
        sequence = int(previous.data.get("sequence", 0)) if previous else int(body.get("sequence") or 0)
        if previous is not None and (previous.start != start or previous.end != end):
            sequence += 1
        data = {k: copy.deepcopy(v) for k, v in body.items() if k not in _READ_ONLY_FIELDS}
        creator = principal if principal != ANONYMOUS else cal.owner
        eid = base64.urlsafe_b64encode(f"{event_id} {cal.id}".encode()).decode().rstrip("=")
        data.update(
            {
                "kind": "calendar#event",
                "etag": self._next_etag(),
                "id": event_id,
                "status": status,
                "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
                "created": previous.data["created"] if previous else _rfc3339(now),
                "updated": _rfc3339(now),
                "creator": previous.data["creator"] if previous else {"email": creator},
                "organizer": {"email": cal.id, "displayName": cal.summary, "self": True},
                "iCalUID": previous.data["iCalUID"] if previous else f"{event_id}@google.com",
                "sequence": sequence,
                "reminders": body.get("reminders") or {"useDefault": True},
                "eventType": body.get("eventType", "default"),
            }
        )
        self._seq += 1
        return _Event(
            data=data,
            start=start,
            end=end,
            stored_ts=previous.stored_ts if previous else now,
            updated_ts=now,
            seq=previous.seq if previous else self._seq,
        )

    # ------------------------------------------------------------------ calendar API methods

    async def _calendars_get(self, request: web.Request, principal: str) -> web.Response:
        cal, _role = self._calendar_for(request.match_info["calendarId"], principal, "freeBusyReader")
        return web.json_response(
            {
                "kind": "calendar#calendar",
                "etag": f'"{int(cal.created_ts * 1000)}"',
                "id": cal.id,
                "summary": cal.summary,
                "description": cal.description,
                "timeZone": cal.time_zone,
                "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
            }
        )

    def _list_entry(self, cal: _Calendar, role: str, principal: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": "calendar#calendarListEntry",
            "etag": f'"{int(cal.created_ts * 1000)}"',
            "id": cal.id,
            "summary": cal.summary,
            "timeZone": cal.time_zone,
            "accessRole": role,
            "defaultReminders": [],
            "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
        }
        if cal.id == principal:
            entry["primary"] = True
        return entry

    async def _calendar_list_get(self, request: web.Request, principal: str) -> web.Response:
        cal, role = self._calendar_for(request.match_info["calendarId"], principal, "freeBusyReader")
        return web.json_response(self._list_entry(cal, role, principal))

    async def _calendar_list_list(self, request: web.Request, principal: str) -> web.Response:
        items = []
        for cal in self._calendars.values():
            role = "writer" if principal == ANONYMOUS else cal.role(principal)
            if role is not None:
                items.append(self._list_entry(cal, role, principal))
        return web.json_response({"kind": "calendar#calendarList", "etag": self._next_etag(), "items": items})

    async def _events_insert(self, request: web.Request, principal: str) -> web.Response:
        body = await self._body(request)
        cal, _role = self._calendar_for(request.match_info["calendarId"], principal, "writer")
        event_id = body.get("id")
        if event_id is not None:
            event_id = str(event_id)
            if not EVENT_ID_RE.match(event_id):
                raise _invalid("Invalid resource id value.")
            if event_id in cal.events:
                self._counters["duplicates"] += 1
                raise GoogleApiError(409, "duplicate", "The requested identifier already exists.")
        else:
            event_id = "".join(self._rng.choice("abcdefghijklmnopqrstuv0123456789") for _ in range(26))
        ev = self._build_event(cal, body, principal, None, event_id)
        cal.events[event_id] = ev
        self._counters["inserts"] += 1
        return web.json_response(self._event_json(cal, ev))

    def _existing_event(self, request: web.Request, principal: str, need: str) -> tuple[_Calendar, _Event]:
        cal, _role = self._calendar_for(request.match_info["calendarId"], principal, need)
        ev = cal.events.get(request.match_info["eventId"])
        if ev is None:
            raise _not_found()
        return cal, ev

    async def _events_get(self, request: web.Request, principal: str) -> web.Response:
        cal, ev = self._existing_event(request, principal, "reader")
        return web.json_response(self._event_json(cal, ev, request.query.get("timeZone")))

    async def _events_patch(self, request: web.Request, principal: str) -> web.Response:
        body = await self._body(request)
        cal, ev = self._existing_event(request, principal, "writer")
        merged = _merge_patch(ev.data, body)
        new = self._build_event(cal, merged, principal, ev, ev.data["id"])
        cal.events[ev.data["id"]] = new
        return web.json_response(self._event_json(cal, new))

    async def _events_update(self, request: web.Request, principal: str) -> web.Response:
        body = await self._body(request)
        cal, ev = self._existing_event(request, principal, "writer")
        new = self._build_event(cal, body, principal, ev, ev.data["id"])
        cal.events[ev.data["id"]] = new
        return web.json_response(self._event_json(cal, new))

    async def _events_delete(self, request: web.Request, principal: str) -> web.Response:
        cal, ev = self._existing_event(request, principal, "writer")
        if ev.data["status"] == "cancelled":
            raise GoogleApiError(410, "deleted", "Resource has been deleted")
        ev.data["status"] = "cancelled"
        ev.data["etag"] = self._next_etag()
        ev.updated_ts = time.time()
        ev.data["updated"] = _rfc3339(ev.updated_ts)
        return web.Response(status=204)

    async def _events_list(self, request: web.Request, principal: str) -> web.Response:
        cal, role = self._calendar_for(request.match_info["calendarId"], principal, "reader")
        q = request.query
        if request.method == "POST":
            q = MultiDictProxy(MultiDict([*request.query.items(), *(await request.post()).items()]))
        tz_name = q.get("timeZone")
        if tz_name:
            _zone(tz_name)
        time_min = _parse_instant(q["timeMin"]) if q.get("timeMin") else None
        time_max = _parse_instant(q["timeMax"]) if q.get("timeMax") else None
        if time_min and time_max and time_min >= time_max:
            raise GoogleApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        updated_min = _parse_instant(q["updatedMin"]).timestamp() if q.get("updatedMin") else None
        single = q.get("singleEvents", "false").lower() == "true"
        order_by = q.get("orderBy")
        if order_by not in (None, "startTime", "updated"):
            raise _invalid("Invalid value for: orderBy")
        if order_by == "startTime" and not single:
            raise _invalid("The requested ordering is not available for the particular query.")
        show_deleted = q.get("showDeleted", "false").lower() == "true"
        filters = [
            (kind, _split_property(value))
            for kind, key in (("private", "privateExtendedProperty"), ("shared", "sharedExtendedProperty"))
            for value in q.getall(key, [])
        ]
        terms = [t.lower() for t in q.get("q", "").split()]
        ical = q.get("iCalUID")
        try:
            max_results = int(q.get("maxResults", "250"))
        except ValueError:
            raise _invalid("Invalid value for: maxResults") from None
        if max_results < 1:
            raise _invalid("Invalid value for: maxResults")
        max_results = min(max_results, 2500)

        items = []
        for ev in cal.events.values():
            data = ev.data
            if data["status"] == "cancelled" and not show_deleted:
                continue
            if time_min is not None and ev.end <= time_min:
                continue
            if time_max is not None and ev.start >= time_max:
                continue
            if updated_min is not None and ev.updated_ts < updated_min:
                continue
            if ical and data.get("iCalUID") != ical:
                continue
            props = data.get("extendedProperties") or {}
            if any((props.get(kind) or {}).get(k) != v for kind, (k, v) in filters):
                continue
            if terms:
                hay = (
                    " ".join(str(data.get(f, "")) for f in ("summary", "description", "location")).lower()
                    + " "
                    + " ".join(a.get("email", "") for a in data.get("attendees", []) or []).lower()
                )
                if not all(t in hay for t in terms):
                    continue
            items.append(ev)
        if order_by == "startTime":
            items.sort(key=lambda e: (e.start, e.data["id"]))
        elif order_by == "updated":
            items.sort(key=lambda e: (e.updated_ts, e.data["id"]))
        else:
            items.sort(key=lambda e: e.seq)

        offset = _decode_page_token(q.get("pageToken")) if q.get("pageToken") else 0
        page = items[offset : offset + max_results]
        result: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": self._next_etag(),
            "summary": cal.summary,
            "description": cal.description,
            "updated": _rfc3339(max((e.updated_ts for e in cal.events.values()), default=cal.created_ts)),
            "timeZone": tz_name or cal.time_zone,
            "accessRole": role if principal != ANONYMOUS else "writer",
            "defaultReminders": [],
            "items": [self._event_json(cal, ev, tz_name) for ev in page],
        }
        if offset + max_results < len(items):
            result["nextPageToken"] = _encode_page_token(offset + max_results)
        return web.json_response(result)

    async def _freebusy(self, request: web.Request, principal: str) -> web.Response:
        body = await self._body(request)
        if not body.get("timeMin"):
            raise GoogleApiError(400, "required", "Missing timeMin parameter.")
        if not body.get("timeMax"):
            raise GoogleApiError(400, "required", "Missing timeMax parameter.")
        time_min = _parse_instant(str(body["timeMin"]))
        time_max = _parse_instant(str(body["timeMax"]))
        if time_min >= time_max:
            raise GoogleApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        tz_name = body.get("timeZone")
        out_tz = _zone(tz_name) if tz_name else UTC

        def render(instant: datetime) -> str:
            if out_tz is UTC:
                return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return instant.astimezone(out_tz).isoformat()

        calendars: dict[str, Any] = {}
        for item in body.get("items") or []:
            cal_id = str(item.get("id", ""))
            try:
                cal, _role = self._calendar_for(cal_id, principal, "freeBusyReader")
            except GoogleApiError:
                calendars[cal_id] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                continue
            spans = sorted(
                (max(ev.start, time_min), min(ev.end, time_max))
                for ev in cal.events.values()
                if ev.data["status"] != "cancelled"
                and ev.data.get("transparency") != "transparent"
                and ev.end > time_min
                and ev.start < time_max
            )
            merged: list[list[datetime]] = []
            for start, end in spans:
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            calendars[cal_id] = {"busy": [{"start": render(s), "end": render(e)} for s, e in merged]}
        return web.json_response(
            {
                "kind": "calendar#freeBusy",
                "timeMin": render(time_min),
                "timeMax": render(time_max),
                "calendars": calendars,
            }
        )

    # ------------------------------------------------------------------ OAuth2

    def _mint_access_token(
        self, email: str, grant_id: str | None, scope: str, ttl: int = ACCESS_TOKEN_TTL
    ) -> str:
        token = "ya29.emu." + secrets.token_urlsafe(32)
        self._access_tokens[token] = _AccessToken(email, time.time() + ttl, grant_id, scope)
        self._counters["tokens_issued"] += 1
        return token

    def _client_auth(self, request: web.Request, form: dict[str, str]) -> _OAuthClient:
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip()).decode()
                client_id, _, secret = decoded.partition(":")
            except ValueError:
                raise OAuthError(401, "invalid_client", "Unauthorized") from None
        client = self._clients.get(client_id or "")
        if client is None:
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if secret != client.client_secret:
            raise OAuthError(401, "invalid_client", "Unauthorized")
        return client

    async def _h_token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        try:
            grant_type = form.get("grant_type")
            if grant_type == JWT_BEARER:
                return web.json_response(self._token_jwt_bearer(request, form))
            if grant_type == "authorization_code":
                return web.json_response(self._token_auth_code(request, form))
            if grant_type == "refresh_token":
                return web.json_response(self._token_refresh(request, form))
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type or ''}")
        except OAuthError as err:
            self._errors[f"token {err.error}"] += 1
            return err.response()

    def _token_jwt_bearer(self, request: web.Request, form: dict[str, str]) -> dict[str, Any]:
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.") from None
        sa = self._service_accounts.get(str(claims.get("iss")))
        if sa is None:
            raise OAuthError(400, "invalid_grant", "Invalid grant: account not found")
        audiences = [GOOGLE_TOKEN_AUDIENCE, f"{request.scheme}://{request.host}/token"]
        if self.base_url:
            audiences.append(f"{self.base_url}/token")
        try:
            verified = jwt.decode(
                assertion, sa.public_key, algorithms=["RS256"], audience=audiences, leeway=60
            )
        except jwt.InvalidAudienceError:
            raise OAuthError(
                400, "invalid_grant", "Invalid JWT: audience does not match the token endpoint"
            ) from None
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            raise OAuthError(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim.",
            ) from None
        except jwt.PyJWTError:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.") from None
        if int(verified.get("exp", 0)) - int(verified.get("iat", 0)) > 3600 + 60:
            raise OAuthError(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim.",
            )
        scope = str(verified.get("scope", "")).strip()
        if not scope:
            raise OAuthError(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        email = sa.email
        if verified.get("sub"):
            if not sa.domain_wide_delegation:
                raise OAuthError(
                    401,
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this method, or client not "
                    "authorized for any of the scopes requested.",
                )
            email = str(verified["sub"])
        token = self._mint_access_token(email, None, scope)
        return {"access_token": token, "expires_in": ACCESS_TOKEN_TTL, "token_type": "Bearer"}

    def _token_auth_code(self, request: web.Request, form: dict[str, str]) -> dict[str, Any]:
        client = self._client_auth(request, form)
        code = self._codes.get(form.get("code", ""))
        if code is None:
            raise OAuthError(400, "invalid_grant", "Malformed auth code.")
        if code.used or code.expires_at < time.time() or code.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Bad Request")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
        if code.code_challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier:
                raise OAuthError(400, "invalid_grant", "Missing code verifier.")
            if code.code_challenge_method == "S256":
                computed = (
                    base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                )
            else:
                computed = verifier
            if not re.fullmatch(r"[A-Za-z0-9._~-]{43,128}", verifier) or computed != code.code_challenge:
                raise OAuthError(400, "invalid_grant", "Invalid code verifier.")
        code.used = True
        grant = _Grant(secrets.token_hex(8), code.email, client.client_id, code.scope)
        self._grants[grant.grant_id] = grant
        result: dict[str, Any] = {
            "access_token": self._mint_access_token(code.email, grant.grant_id, code.scope),
            "expires_in": ACCESS_TOKEN_TTL,
            "scope": code.scope,
            "token_type": "Bearer",
        }
        if code.offline:
            refresh = "1//emu." + secrets.token_urlsafe(32)
            self._refresh_tokens[refresh] = grant.grant_id
            result["refresh_token"] = refresh
        scopes = code.scope.split()
        if "openid" in scopes or "email" in scopes:
            result["id_token"] = self._id_token(code.email, client.client_id)
        return result

    def _token_refresh(self, request: web.Request, form: dict[str, str]) -> dict[str, Any]:
        client = self._client_auth(request, form)
        grant_id = self._refresh_tokens.get(form.get("refresh_token", ""))
        grant = self._grants.get(grant_id or "")
        if grant is None or grant.revoked or grant.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
        return {
            "access_token": self._mint_access_token(grant.email, grant.grant_id, grant.scope),
            "expires_in": ACCESS_TOKEN_TTL,
            "scope": grant.scope,
            "token_type": "Bearer",
        }

    def _key(self) -> rsa.RSAPrivateKey:
        if self._signing_key is None:
            self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._signing_key

    def _id_token(self, email: str, audience: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self._base(),
            "aud": audience,
            "azp": audience,
            "sub": str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + ACCESS_TOKEN_TTL,
        }
        return jwt.encode(claims, self._key(), algorithm="RS256", headers={"kid": self._signing_kid})

    async def _h_certs(self, request: web.Request) -> web.Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key().public_key()))
        jwk.update({"kid": self._signing_kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": [jwk]})

    async def _h_userinfo(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        principal = self._token_principal(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
        if principal is None:
            return web.json_response(
                {"error": "invalid_request", "error_description": "Invalid Credentials"},
                status=401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
                },
            )
        sub = str(int(hashlib.sha256(principal.encode()).hexdigest()[:15], 16))
        return web.json_response({"sub": sub, "email": principal, "email_verified": True})

    async def _h_revoke(self, request: web.Request) -> web.Response:
        token = request.query.get("token")
        if token is None and request.method == "POST":
            token = str((await request.post()).get("token") or "") or None
        if not token:
            return OAuthError(400, "invalid_request", "Bad Request").response()
        if token in self._refresh_tokens:
            grant = self._grants.get(self._refresh_tokens[token])
            if grant is not None and not grant.revoked:
                grant.revoked = True
                return web.json_response({})
        rec = self._access_tokens.get(token)
        if rec is not None and not rec.revoked:
            rec.revoked = True
            if rec.grant_id and rec.grant_id in self._grants:
                self._grants[rec.grant_id].revoked = True
            return web.json_response({})
        return OAuthError(400, "invalid_token", "Token expired or revoked").response()

    # ------------------------------------------------------------------ consent page

    def _auth_request(self, params: Any) -> tuple[_OAuthClient, dict[str, str]] | web.Response:
        """Validate an authorization request; errors are shown as a page, as Google does."""
        client = self._clients.get(params.get("client_id", ""))
        if client is None:
            return _error_page(401, "invalid_client", "The OAuth client was not found.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return _error_page(
                400,
                "redirect_uri_mismatch",
                "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy.",
            )
        if params.get("response_type") != "code":
            return _error_page(400, "unsupported_response_type", "Only response_type=code is supported.")
        if not params.get("scope"):
            return _error_page(400, "invalid_request", "Missing required parameter: scope")
        method = params.get("code_challenge_method", "plain" if params.get("code_challenge") else "")
        if params.get("code_challenge") and method not in ("S256", "plain"):
            return _error_page(400, "invalid_request", "Invalid code_challenge_method")
        keys = (
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
            "access_type",
            "prompt",
            "login_hint",
            "include_granted_scopes",
        )
        return client, {k: str(params[k]) for k in keys if params.get(k) is not None}

    def _pick_user(self, requested: str | None) -> str | None:
        if requested:
            if requested not in self._users:
                # Sandbox convenience: signing in with a new address creates that account.
                self.create_user(requested, make_current=False)
            return requested
        return self._current_user

    def _approve(
        self, client: _OAuthClient, req: dict[str, str], user: str | None, allow: bool
    ) -> web.Response:
        query: dict[str, str] = {}
        if not allow:
            query["error"] = "access_denied"
        else:
            if user is None:
                return _error_page(400, "no_user", "No Google account is signed in to the emulator.")
            code = "4/0Aemu" + secrets.token_urlsafe(32)
            self._codes[code] = _AuthCode(
                client_id=client.client_id,
                redirect_uri=req["redirect_uri"],
                email=user,
                scope=req["scope"],
                code_challenge=req.get("code_challenge"),
                code_challenge_method=req.get("code_challenge_method", "plain"),
                offline=req.get("access_type") == "offline",
                expires_at=time.time() + CODE_TTL,
            )
            query["code"] = code
            query["scope"] = req["scope"]
        if "state" in req:
            query["state"] = req["state"]
        raise web.HTTPFound(_add_query(req["redirect_uri"], query))

    async def _h_auth(self, request: web.Request) -> web.Response:
        checked = self._auth_request(request.query)
        if isinstance(checked, web.Response):
            return checked
        client, req = checked
        user = self._pick_user(request.query.get("user") or req.get("login_hint"))
        if request.query.get("approve") is not None:
            return self._approve(client, req, user, request.query["approve"] in ("1", "true", "yes", "allow"))
        return _consent_page(req, user, self._users)

    async def _h_auth_approve(self, request: web.Request) -> web.Response:
        form = await request.post()
        checked = self._auth_request(form)
        if isinstance(checked, web.Response):
            return checked
        client, req = checked
        user = self._pick_user(str(form.get("user") or "") or req.get("login_hint"))
        return self._approve(client, req, user, form.get("decision", "allow") == "allow")

    # ------------------------------------------------------------------ control API (HTTP)

    async def _h_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "service": "google"})

    async def _h_config(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        try:
            return web.json_response(self.configure(**body))
        except (ValueError, TypeError) as exc:
            return control_error(400, str(exc))

    async def _h_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.get_config())

    async def _h_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _h_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _h_create_calendar(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        try:
            cal = self.create_calendar(
                str(body.get("calendar_id") or body.get("id") or ""),
                owner=body.get("owner", "owner@example.com"),
                time_zone=body.get("time_zone", "Europe/Moscow"),
                shares=body.get("shares"),
                summary=body.get("summary"),
            )
        except ValueError as exc:
            return control_error(409 if "already exists" in str(exc) else 400, str(exc))
        return web.json_response(cal, status=201)

    async def _h_list_calendars(self, request: web.Request) -> web.Response:
        return web.json_response(self.calendars())

    async def _h_set_description(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        try:
            return web.json_response(
                self.set_description(request.match_info["calendarId"], str(body.get("description") or ""))
            )
        except KeyError as exc:
            return control_error(404, str(exc))

    async def _h_set_acl(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        if not body.get("email"):
            return control_error(400, "email is required")
        try:
            return web.json_response(
                self.share_calendar(request.match_info["calendarId"], str(body["email"]), body.get("role"))
            )
        except KeyError as exc:
            return control_error(404, str(exc))
        except ValueError as exc:
            return control_error(400, str(exc))

    async def _h_delete_calendar(self, request: web.Request) -> web.Response:
        try:
            self.delete_calendar(request.match_info["calendarId"])
        except KeyError as exc:
            return control_error(404, str(exc))
        return web.json_response({"ok": True})

    async def _h_all_events(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.events(request.match_info["calendarId"]))
        except KeyError as exc:
            return control_error(404, str(exc))

    async def _h_create_sa(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        info = self.create_service_account(
            body.get("email", "autodispatch@sandbox.iam.gserviceaccount.com"),
            domain_wide_delegation=bool(body.get("domain_wide_delegation", False)),
        )
        return web.json_response(info, status=201)

    async def _h_create_user(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        if not body.get("email"):
            return control_error(400, "email is required")
        return web.json_response(
            self.create_user(
                str(body["email"]),
                make_current=bool(body.get("make_current", True)),
                primary_calendar=bool(body.get("primary_calendar", True)),
            ),
            status=201,
        )

    async def _h_create_client(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        try:
            client = self.create_oauth_client(
                str(body["client_id"]), str(body["client_secret"]), list(body.get("redirect_uris") or [])
            )
        except KeyError as exc:
            return control_error(400, f"{exc.args[0]} is required")
        return web.json_response(client, status=201)

    async def _h_revoke_user(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        if not body.get("email"):
            return control_error(400, "email is required")
        return web.json_response({"revoked_grants": self.revoke_user_grants(str(body["email"]))})

    async def _h_expire(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        return web.json_response({"expired": self.expire_access_tokens(body.get("email"))})

    async def _h_issue_token(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        if not body.get("email"):
            return control_error(400, "email is required")
        token = self.issue_access_token(
            str(body["email"]), int(body.get("expires_in", ACCESS_TOKEN_TTL)), str(body.get("scope", ""))
        )
        return web.json_response(
            {"access_token": token, "expires_in": int(body.get("expires_in", ACCESS_TOKEN_TTL))}, status=201
        )


# --------------------------------------------------------------------------------------------------
# Helpers


def _merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Google's patch semantics: given fields replace, nested objects merge, arrays replace, null clears."""
    result = copy.deepcopy(current)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _split_property(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise _invalid("Invalid extended property filter: expected propertyName=value.")
    return key, val


def _encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_page_token(token: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return max(0, int(data["o"]))
    except (ValueError, KeyError, TypeError):
        raise _invalid("Invalid page token value.") from None


def _add_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _error_page(status: int, error: str, detail: str) -> web.Response:
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Error</title></head><body>"
        f"<h1>Access blocked: Authorization Error</h1><p>{html.escape(detail)}</p>"
        f"<p>Error {status}: {html.escape(error)}</p></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html")


def _consent_page(req: dict[str, str], user: str | None, users: list[str]) -> web.Response:
    hidden = "".join(
        f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>" for k, v in req.items()
    )
    options = "".join(
        f"<option value='{html.escape(u)}'{' selected' if u == user else ''}>{html.escape(u)}</option>"
        for u in users
    )
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in req["scope"].split())
    user_field = (
        f"<label>Account: <select name='user'>{options}</select></label>"
        if users
        else "<label>Account e-mail: <input type='email' name='user' required></label>"
    )
    body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in - Google Accounts (emulator)</title></head>
<body>
<h1>{html.escape(req["client_id"])} wants to access your Google Account</h1>
<p>Signed in as <b id="current-user">{html.escape(user or "nobody")}</b></p>
<p>This will allow the app to:</p><ul>{scopes}</ul>
<form method="post" action="/o/oauth2/v2/auth/approve">
{hidden}
{user_field}
<button type="submit" name="decision" value="allow" id="allow">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Cancel</button>
</form>
</body></html>"""
    return web.Response(text=body, content_type="text/html")
