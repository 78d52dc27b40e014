"""The Google emulator, exercised through the real googleapiclient/google-auth clients and the control API.

googleapiclient is synchronous (httplib2), and the emulator runs on the test's event loop, so every
client call goes through asyncio.to_thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import httpx
import jwt
import pytest
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from emulators.google import GoogleEmulator

SA_EMAIL = "autodispatch@sandbox.iam.gserviceaccount.com"
DRIVER_CAL = "driver1@example.com"
SCOPES = ["https://www.googleapis.com/auth/calendar.events"]


@pytest.fixture
async def emu() -> AsyncIterator[GoogleEmulator]:
    emulator = GoogleEmulator(seed=1)
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
def sa_info(emu: GoogleEmulator) -> dict[str, Any]:
    info = emu.create_service_account(SA_EMAIL)
    emu.create_calendar(DRIVER_CAL, owner=DRIVER_CAL, shares={SA_EMAIL: "writer"})
    return info


def sa_service(emu: GoogleEmulator, info: dict[str, Any]) -> Any:
    creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=10))
    return build(
        "calendar",
        "v3",
        static_discovery=True,
        client_options={"api_endpoint": emu.calendar_api_root},
        http=http,
    )


@pytest.fixture
def service(emu: GoogleEmulator, sa_info: dict[str, Any]) -> Any:
    return sa_service(emu, sa_info)


async def run(request: Any) -> Any:
    return await asyncio.to_thread(request.execute)


async def http_error(request: Any) -> HttpError:
    with pytest.raises(HttpError) as caught:
        await run(request)
    return caught.value


def reason(err: HttpError) -> str:
    return err.error_details[0]["reason"]  # type: ignore[index]


def event_body(event_id: str | None, start: str, end: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": "Moscow -> Tver",
        "start": {"dateTime": start, "timeZone": "Europe/Moscow"},
        "end": {"dateTime": end, "timeZone": "Europe/Moscow"},
        **extra,
    }
    if event_id is not None:
        body["id"] = event_id
    return body


async def test_client_url_composition(emu: GoogleEmulator, service: Any) -> None:
    # googleapiclient replaces rootUrl+servicePath with api_endpoint wholesale, so the endpoint must
    # include "calendar/v3/".
    req = service.events().get(calendarId="a@b.c", eventId="abcde")
    assert req.uri == f"{emu.base_url}/calendar/v3/calendars/a%40b.c/events/abcde?alt=json"
    assert emu.calendar_api_root == f"{emu.base_url}/calendar/v3/"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{emu.base_url}/healthz")).status_code == 200


async def test_service_account_insert_and_duplicate(emu: GoogleEmulator, service: Any) -> None:
    body = event_body(
        "order00001",
        "2025-03-01T10:00:00+03:00",
        "2025-03-01T12:00:00+03:00",
        location="Tver",
        extendedProperties={"private": {"order_id": "1", "driver": "7"}},
        reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 30}]},
    )
    created = await run(service.events().insert(calendarId=DRIVER_CAL, body=body))
    assert created["id"] == "order00001"
    assert created["status"] == "confirmed"
    assert created["creator"] == {"email": SA_EMAIL}  # the call was made as the service account
    assert created["htmlLink"].startswith("https://www.google.com/calendar/event?eid=")
    assert created["iCalUID"] == "order00001@google.com"
    assert created["start"] == {"dateTime": "2025-03-01T10:00:00+03:00", "timeZone": "Europe/Moscow"}
    assert created["etag"].startswith('"')
    assert created["reminders"]["overrides"][0]["minutes"] == 30
    assert emu.stats()["tokens_issued"] == 1

    err = await http_error(service.events().insert(calendarId=DRIVER_CAL, body=body))
    assert err.resp.status == 409
    assert reason(err) == "duplicate"
    assert err.reason == "The requested identifier already exists."

    fetched = await run(service.events().get(calendarId=DRIVER_CAL, eventId="order00001"))
    assert fetched == created
    generated = await run(
        service.events().insert(
            calendarId=DRIVER_CAL, body=event_body(None, "2025-03-02T10:00:00Z", "2025-03-02T11:00:00Z")
        )
    )
    assert len(generated["id"]) >= 5
    stats = emu.stats()
    assert stats["inserts"] == 2
    assert stats["duplicates"] == 1
    assert stats["methods"]["events.insert"] == 3


async def test_event_validation_errors(service: Any) -> None:
    for bad_id in ("ABCDE", "abcd", "order_1", "wxyz12345"):
        err = await http_error(
            service.events().insert(
                calendarId=DRIVER_CAL, body=event_body(bad_id, "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z")
            )
        )
        assert err.resp.status == 400
        assert reason(err) == "invalid"
        assert err.reason == "Invalid resource id value."
    err = await http_error(
        service.events().insert(
            calendarId=DRIVER_CAL,
            body=event_body("order00002", "2025-03-01T12:00:00Z", "2025-03-01T11:00:00Z"),
        )
    )
    assert (err.resp.status, reason(err)) == (400, "timeRangeEmpty")
    err = await http_error(
        service.events().insert(calendarId=DRIVER_CAL, body={"summary": "x", "start": {"date": "2025-03-01"}})
    )
    assert (err.resp.status, reason(err), err.reason) == (400, "required", "Missing end time.")
    err = await http_error(
        service.events().insert(
            calendarId=DRIVER_CAL,
            body={"start": {"dateTime": "2025-03-01T10:00:00"}, "end": {"dateTime": "2025-03-01T11:00:00"}},
        )
    )
    assert err.reason == "Missing time zone definition for start time."


async def test_list_filters_and_pagination(emu: GoogleEmulator, service: Any) -> None:
    # Three events on one day, given in different offsets: comparison must be by instant.
    specs = [
        ("evt000001", "2025-03-01T09:00:00+03:00", "2025-03-01T10:00:00+03:00", "1"),  # 06:00-07:00Z
        ("evt000002", "2025-03-01T07:30:00Z", "2025-03-01T08:30:00Z", "2"),  # 07:30-08:30Z
        ("evt000003", "2025-03-01T13:00:00+05:00", "2025-03-01T14:00:00+05:00", "3"),  # 08:00-09:00Z
        ("evt000004", "2025-03-02T09:00:00+03:00", "2025-03-02T10:00:00+03:00", "2"),  # next day
    ]
    for event_id, start, end, order in reversed(specs):
        await run(
            service.events().insert(
                calendarId=DRIVER_CAL,
                body=event_body(
                    event_id,
                    start,
                    end,
                    description=f"order {order}",
                    extendedProperties={"private": {"order_id": order, "source": "bot"}},
                ),
            )
        )
    window = await run(
        service.events().list(
            calendarId=DRIVER_CAL,
            timeMin="2025-03-01T07:00:00Z",  # touches evt000001's end exactly: excluded
            timeMax="2025-03-01T11:30:00+03:00",  # = 08:30Z: evt000003 overlaps
            singleEvents=True,
            orderBy="startTime",
        )
    )
    assert [e["id"] for e in window["items"]] == ["evt000002", "evt000003"]
    assert window["kind"] == "calendar#events"
    assert window["timeZone"] == "Europe/Moscow"

    by_prop = await run(
        service.events().list(calendarId=DRIVER_CAL, privateExtendedProperty=["order_id=2", "source=bot"])
    )
    assert sorted(e["id"] for e in by_prop["items"]) == ["evt000002", "evt000004"]
    none = await run(service.events().list(calendarId=DRIVER_CAL, privateExtendedProperty="order_id=9"))
    assert none["items"] == []
    found = await run(service.events().list(calendarId=DRIVER_CAL, q="ORDER 3"))
    assert [e["id"] for e in found["items"]] == ["evt000003"]

    seen: list[str] = []
    token = None
    while True:
        page = await run(
            service.events().list(
                calendarId=DRIVER_CAL, maxResults=3, pageToken=token, singleEvents=True, orderBy="startTime"
            )
        )
        seen += [e["id"] for e in page["items"]]
        token = page.get("nextPageToken")
        if token is None:
            break
    assert seen == ["evt000001", "evt000002", "evt000003", "evt000004"]

    utc = await run(service.events().list(calendarId=DRIVER_CAL, timeZone="UTC", q="order 1"))
    assert utc["items"][0]["start"]["dateTime"] == "2025-03-01T06:00:00+00:00"
    err = await http_error(service.events().list(calendarId=DRIVER_CAL, orderBy="startTime"))
    assert err.resp.status == 400


async def test_patch_update_delete(emu: GoogleEmulator, service: Any) -> None:
    await run(
        service.events().insert(
            calendarId=DRIVER_CAL,
            body=event_body(
                "order00010",
                "2025-03-01T10:00:00+03:00",
                "2025-03-01T11:00:00+03:00",
                extendedProperties={"private": {"order_id": "10"}},
            ),
        )
    )
    patched = await run(
        service.events().patch(
            calendarId=DRIVER_CAL,
            eventId="order00010",
            body={"summary": "Moscow -> Klin", "extendedProperties": {"private": {"state": "confirmed"}}},
        )
    )
    assert patched["summary"] == "Moscow -> Klin"
    assert patched["extendedProperties"]["private"] == {"order_id": "10", "state": "confirmed"}
    assert patched["start"]["dateTime"] == "2025-03-01T10:00:00+03:00"

    replaced = await run(
        service.events().update(
            calendarId=DRIVER_CAL,
            eventId="order00010",
            body=event_body("order00010", "2025-03-01T12:00:00+03:00", "2025-03-01T13:00:00+03:00"),
        )
    )
    assert "extendedProperties" not in replaced  # PUT replaces the whole resource
    assert replaced["sequence"] == 1  # time changed
    assert replaced["created"] == patched["created"]
    assert replaced["etag"] != patched["etag"]

    assert await run(service.events().delete(calendarId=DRIVER_CAL, eventId="order00010")) == ""
    cancelled = await run(service.events().get(calendarId=DRIVER_CAL, eventId="order00010"))
    assert cancelled["status"] == "cancelled"
    err = await http_error(service.events().delete(calendarId=DRIVER_CAL, eventId="order00010"))
    assert (err.resp.status, reason(err), err.reason) == (410, "deleted", "Resource has been deleted")
    assert (await run(service.events().list(calendarId=DRIVER_CAL)))["items"] == []
    shown = await run(service.events().list(calendarId=DRIVER_CAL, showDeleted=True))
    assert [e["status"] for e in shown["items"]] == ["cancelled"]
    # A cancelled event's id stays taken.
    err = await http_error(
        service.events().insert(
            calendarId=DRIVER_CAL,
            body=event_body("order00010", "2025-03-01T12:00:00Z", "2025-03-01T13:00:00Z"),
        )
    )
    assert reason(err) == "duplicate"
    err = await http_error(service.events().get(calendarId=DRIVER_CAL, eventId="nosuchevent"))
    assert (err.resp.status, reason(err)) == (404, "notFound")

    async with httpx.AsyncClient() as http:
        everything = (await http.get(f"{emu.base_url}/_emulator/calendars/{DRIVER_CAL}/events")).json()
    assert [(e["id"], e["status"]) for e in everything] == [("order00010", "cancelled")]
    assert everything[0]["_stored_ts"] <= everything[0]["_updated_ts"]


async def test_permissions(emu: GoogleEmulator, service: Any) -> None:
    emu.create_calendar("private@example.com", owner="private@example.com")
    err = await http_error(service.calendars().get(calendarId="private@example.com"))
    assert (err.resp.status, reason(err), err.reason) == (404, "notFound", "Not Found")
    err = await http_error(service.events().list(calendarId="missing@example.com"))
    assert err.resp.status == 404

    emu.create_calendar("shared@example.com", owner="boss@example.com", shares={SA_EMAIL: "reader"})
    entry = await run(service.calendarList().get(calendarId="shared@example.com"))
    assert entry["accessRole"] == "reader"
    assert (await run(service.events().list(calendarId="shared@example.com")))["items"] == []
    err = await http_error(
        service.events().insert(
            calendarId="shared@example.com",
            body=event_body("order00020", "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"),
        )
    )
    assert (err.resp.status, reason(err)) == (403, "requiredAccessLevel")
    assert err.reason == "You need to have writer access to this calendar."

    async with httpx.AsyncClient(base_url=emu.base_url or "") as http:
        resp = await http.put(
            "/_emulator/calendars/shared@example.com/acl", json={"email": SA_EMAIL, "role": "writer"}
        )
        assert resp.status_code == 200
    await run(
        service.events().insert(
            calendarId="shared@example.com",
            body=event_body("order00020", "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"),
        )
    )
    emu.share_calendar("shared@example.com", SA_EMAIL, None)
    err = await http_error(service.events().get(calendarId="shared@example.com", eventId="order00020"))
    assert err.resp.status == 404
    cal = await run(service.calendars().get(calendarId=DRIVER_CAL))
    assert (cal["id"], cal["timeZone"]) == (DRIVER_CAL, "Europe/Moscow")


async def test_anonymous_and_invalid_tokens(emu: GoogleEmulator, sa_info: dict[str, Any]) -> None:
    anon = build(
        "calendar",
        "v3",
        static_discovery=True,
        client_options={"api_endpoint": emu.calendar_api_root},
        http=httplib2.Http(timeout=10),
    )
    async with httpx.AsyncClient(base_url=emu.base_url or "") as http:
        # Refused by default, as at Google.
        assert emu.allow_anonymous is False
        resp = await http.get(f"/calendar/v3/calendars/{DRIVER_CAL}/events")
        assert resp.status_code == 401
        assert resp.json()["error"]["errors"][0]["reason"] == "required"
        # Turned on (the sandbox, the benchmarks' load): a call without credentials writes.
        await http.post("/_emulator/config", json={"allow_anonymous": True})
        created = await run(
            anon.events().insert(
                calendarId=DRIVER_CAL,
                body=event_body("anon00001", "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"),
            )
        )
        assert created["id"] == "anon00001"
        await http.post("/_emulator/config", json={"allow_anonymous": False})
        resp = await http.get(
            f"/calendar/v3/calendars/{DRIVER_CAL}/events", headers={"Authorization": "Bearer ya29.bogus"}
        )
        assert resp.status_code == 401
        assert "WWW-Authenticate" in resp.headers
        assert resp.json() == {
            "error": {
                "code": 401,
                "message": "Invalid Credentials",
                "errors": [
                    {
                        "domain": "global",
                        "reason": "authError",
                        "message": "Invalid Credentials",
                        "location": "Authorization",
                        "locationType": "header",
                    }
                ],
            }
        }
        # A self-signed service-account JWT is accepted as a bearer token, as Google does.
        now = int(time.time())
        self_signed = jwt.encode(
            {
                "iss": SA_EMAIL,
                "sub": SA_EMAIL,
                "aud": "https://www.googleapis.com/",
                "iat": now,
                "exp": now + 600,
            },
            sa_info["private_key"],
            algorithm="RS256",
            headers={"kid": sa_info["private_key_id"]},
        )
        resp = await http.get(
            f"/calendar/v3/calendars/{DRIVER_CAL}/events/anon00001",
            headers={"Authorization": f"Bearer {self_signed}"},
        )
        assert resp.status_code == 200


async def test_expired_token_is_refreshed_by_client(emu: GoogleEmulator, service: Any) -> None:
    await run(service.calendarList().get(calendarId=DRIVER_CAL))
    assert emu.expire_access_tokens(SA_EMAIL) == 1
    # google-auth sees the 401, fetches a new token and retries transparently.
    await run(service.calendarList().get(calendarId=DRIVER_CAL))
    stats = emu.stats()
    assert stats["tokens_issued"] == 2
    assert stats["errors"]["401 authError"] == 1


async def test_fail_rate_injection(emu: GoogleEmulator, service: Any) -> None:
    body = event_body("order00030", "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z")
    emu.configure(fail_rate=1.0, fail_statuses=[503], seed=3)
    err = await http_error(service.events().insert(calendarId=DRIVER_CAL, body=body))
    assert (err.resp.status, reason(err)) == (503, "backendError")
    assert emu.events(DRIVER_CAL) == []  # failed before doing anything

    emu.configure(fail_statuses=["403rateLimitExceeded"])
    err = await http_error(service.events().insert(calendarId=DRIVER_CAL, body=body))
    assert (err.resp.status, reason(err), err.reason) == (403, "rateLimitExceeded", "Rate Limit Exceeded")
    emu.configure(fail_statuses=[429, "403userRateLimitExceeded"], fail_methods=["events.insert"])
    err = await http_error(service.events().insert(calendarId=DRIVER_CAL, body=body))
    assert reason(err) in ("rateLimitExceeded", "userRateLimitExceeded")
    # Not targeted: reads pass.
    assert (await run(service.events().list(calendarId=DRIVER_CAL)))["items"] == []

    async with httpx.AsyncClient(base_url=emu.base_url or "") as http:
        cfg = (await http.post("/_emulator/config", json={"fail_rate": 0.5, "seed": 42})).json()
        assert cfg["fail_rate"] == 0.5
        bad = await http.post("/_emulator/config", json={"fail_statuses": ["teapot"]})
        assert bad.status_code == 400
    outcomes = []
    for i in range(20):
        try:
            await run(
                service.events().insert(
                    calendarId=DRIVER_CAL,
                    body=event_body(f"bulk{i:05d}", "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"),
                )
            )
            outcomes.append(True)
        except HttpError:
            outcomes.append(False)
    assert 0 < sum(outcomes) < 20
    assert len(emu.events(DRIVER_CAL)) == sum(outcomes)
    assert emu.stats()["injected_failures"] == 3 + outcomes.count(False)


async def test_fail_after_write_then_retry_gets_duplicate(emu: GoogleEmulator, service: Any) -> None:
    body = event_body("order00040", "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z")
    async with httpx.AsyncClient(base_url=emu.base_url or "") as http:
        await http.post("/_emulator/config", json={"fail_after_write_rate": 1.0, "seed": 1})
    err = await http_error(service.events().insert(calendarId=DRIVER_CAL, body=body))
    assert (err.resp.status, reason(err)) == (503, "backendError")
    stored = emu.events(DRIVER_CAL)
    assert [e["id"] for e in stored] == ["order00040"]  # the write happened, the answer was lost
    assert stored[0]["_stored_ts"] > 0
    emu.configure(fail_after_write_rate=0.0)
    err = await http_error(service.events().insert(calendarId=DRIVER_CAL, body=body))
    assert (err.resp.status, reason(err)) == (409, "duplicate")
    stats = emu.stats()
    assert (stats["injected_after_write"], stats["inserts"], stats["duplicates"]) == (1, 1, 1)


async def test_freebusy(emu: GoogleEmulator, service: Any) -> None:
    for event_id, start, end, extra in [
        ("busi00001", "2025-03-01T10:00:00+03:00", "2025-03-01T11:00:00+03:00", {}),
        ("busi00002", "2025-03-01T07:30:00Z", "2025-03-01T09:30:00Z", {}),  # overlaps the first
        (
            "busi00003",
            "2025-03-01T15:00:00+03:00",
            "2025-03-01T16:00:00+03:00",
            {"transparency": "transparent"},
        ),
    ]:
        await run(
            service.events().insert(calendarId=DRIVER_CAL, body=event_body(event_id, start, end, **extra))
        )
    emu.create_calendar("hidden@example.com", owner="hidden@example.com")
    result = await run(
        service.freebusy().query(
            body={
                "timeMin": "2025-03-01T00:00:00Z",
                "timeMax": "2025-03-02T00:00:00Z",
                "items": [{"id": DRIVER_CAL}, {"id": "hidden@example.com"}],
            }
        )
    )
    assert result["calendars"][DRIVER_CAL]["busy"] == [
        {"start": "2025-03-01T07:00:00Z", "end": "2025-03-01T09:30:00Z"}
    ]
    assert result["calendars"]["hidden@example.com"]["errors"][0]["reason"] == "notFound"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def test_pkce_code_flow_end_to_end(emu: GoogleEmulator) -> None:
    redirect = "http://127.0.0.1:8765/oauth/callback"
    emu.create_oauth_client("client-1.apps.googleusercontent.com", "s3cret", [redirect])
    emu.create_user("driver7@example.com")
    verifier, challenge = pkce_pair()
    params = {
        "client_id": "client-1.apps.googleusercontent.com",
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": "openid email https://www.googleapis.com/auth/calendar.events",
        "state": "st-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
        "login_hint": "driver7@example.com",
    }
    async with httpx.AsyncClient(base_url=emu.base_url or "") as http:
        page = await http.get("/o/oauth2/v2/auth", params=params)
        assert page.status_code == 200
        assert "Allow" in page.text and "driver7@example.com" in page.text
        bad = await http.get("/o/oauth2/v2/auth", params={**params, "redirect_uri": "http://evil/cb"})
        assert bad.status_code == 400 and "redirect_uri_mismatch" in bad.text

        # Press "Allow" on the consent form.
        approve = await http.post("/o/oauth2/v2/auth/approve", data={**params, "decision": "allow"})
        assert approve.status_code == 302
        location = urlsplit(approve.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
        query = parse_qs(location.query)
        assert query["state"] == ["st-123"]
        code = query["code"][0]

        token_form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "client-1.apps.googleusercontent.com",
            "client_secret": "s3cret",
            "redirect_uri": redirect,
        }
        wrong = await http.post("/token", data={**token_form, "code_verifier": pkce_pair()[0]})
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "invalid_grant"
        bad_secret = await http.post(
            "/token", data={**token_form, "client_secret": "nope", "code_verifier": verifier}
        )
        assert (bad_secret.status_code, bad_secret.json()["error"]) == (401, "invalid_client")
        ok = await http.post("/token", data={**token_form, "code_verifier": verifier})
        assert ok.status_code == 200
        tokens = ok.json()
        assert tokens["token_type"] == "Bearer"
        assert tokens["expires_in"] == 3600
        assert tokens["scope"] == params["scope"]
        assert tokens["refresh_token"]
        claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
        assert claims["email"] == "driver7@example.com"
        reused = await http.post("/token", data={**token_form, "code_verifier": verifier})
        assert reused.json()["error"] == "invalid_grant"

        userinfo = await http.get(
            "/oauth2/v3/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert userinfo.json()["email"] == "driver7@example.com"

        denied = await http.get(
            "/o/oauth2/v2/auth", params={**params, "approve": "0"}, follow_redirects=False
        )
        assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]

    # The user's tokens drive the real client: primary calendar of the consenting user.
    creds = google.oauth2.credentials.Credentials(
        token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        token_uri=emu.token_uri,
        client_id="client-1.apps.googleusercontent.com",
        client_secret="s3cret",
        scopes=params["scope"].split(),
    )
    http_client = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=10))
    user_service = build(
        "calendar",
        "v3",
        static_discovery=True,
        client_options={"api_endpoint": emu.calendar_api_root},
        http=http_client,
    )
    primary = await run(user_service.calendarList().get(calendarId="primary"))
    assert (primary["id"], primary["accessRole"], primary["primary"]) == (
        "driver7@example.com",
        "owner",
        True,
    )
    await run(
        user_service.events().insert(
            calendarId="primary", body=event_body("mine00001", "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z")
        )
    )
    assert [e["id"] for e in emu.events("driver7@example.com")] == ["mine00001"]

    # Refresh works while the grant lives.
    refresh_request = google_auth_httplib2.Request(httplib2.Http(timeout=10))
    old_token = creds.token
    await asyncio.to_thread(creds.refresh, refresh_request)
    assert creds.token != old_token

    # The user revokes access: refresh now fails with invalid_grant, and the access token is dead.
    async with httpx.AsyncClient(base_url=emu.base_url or "") as http:
        resp = await http.post("/_emulator/oauth/revoke", json={"email": "driver7@example.com"})
        assert resp.json()["revoked_grants"] == 1
        refreshed = await http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": "client-1.apps.googleusercontent.com",
                "client_secret": "s3cret",
            },
        )
        assert refreshed.status_code == 400
        assert refreshed.json() == {
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked.",
        }
    with pytest.raises(RefreshError, match="invalid_grant"):
        await asyncio.to_thread(creds.refresh, refresh_request)
    # With the grant gone, the client's automatic refresh after the 401 fails too.
    with pytest.raises(RefreshError, match="invalid_grant"):
        await run(user_service.calendarList().get(calendarId="primary"))


async def test_revoke_endpoint_and_scripted_consent(emu: GoogleEmulator) -> None:
    redirect = "http://localhost/cb"
    emu.create_oauth_client("cid", "csecret", [redirect])
    verifier, challenge = pkce_pair()
    params = {
        "client_id": "cid",
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": "https://www.googleapis.com/auth/calendar",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        "approve": "1",
        "user": "newdriver@example.com",
    }
    async with httpx.AsyncClient(base_url=emu.base_url or "") as http:
        resp = await http.get("/o/oauth2/v2/auth", params=params)
        assert resp.status_code == 302
        code = parse_qs(urlsplit(resp.headers["location"]).query)["code"][0]
        tokens = (
            await http.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect,
                    "code_verifier": verifier,
                },
                auth=("cid", "csecret"),  # HTTP Basic client authentication
            )
        ).json()
        assert "newdriver@example.com" in [c["calendar_id"] for c in emu.calendars()]
        ok = await http.get(
            "/calendar/v3/users/me/calendarList/primary",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert ok.json()["id"] == "newdriver@example.com"
        assert (await http.post("/revoke", params={"token": tokens["refresh_token"]})).status_code == 200
        dead = await http.get(
            "/calendar/v3/users/me/calendarList/primary",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert dead.status_code == 401
        again = await http.post("/revoke", params={"token": tokens["refresh_token"]})
        assert again.json()["error"] == "invalid_token"


async def test_jwt_bearer_rejections(emu: GoogleEmulator, sa_info: dict[str, Any]) -> None:
    now = int(time.time())
    claims = {"iss": SA_EMAIL, "aud": emu.token_uri, "scope": SCOPES[0], "iat": now, "exp": now + 3600}
    other_key = GoogleEmulator()  # a stranger's key: signature must not verify
    await other_key.start()
    try:
        stranger = other_key.create_service_account(SA_EMAIL)
    finally:
        await other_key.stop()

    def assertion(key: str, **override: Any) -> str:
        return jwt.encode({**claims, **override}, key, algorithm="RS256")

    cases: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
        (assertion(sa_info["private_key"]), lambda r: "access_token" in r),
        (assertion(stranger["private_key"]), lambda r: r["error_description"] == "Invalid JWT Signature."),
        (
            assertion(sa_info["private_key"], aud="https://example.com/token"),
            lambda r: r["error"] == "invalid_grant",
        ),
        (
            assertion(sa_info["private_key"], iat=now - 7200, exp=now - 3600),
            lambda r: "short-lived token" in r["error_description"],
        ),
        (assertion(sa_info["private_key"], scope=""), lambda r: r["error"] == "invalid_scope"),
        (
            assertion(sa_info["private_key"], iss="ghost@sandbox.iam.gserviceaccount.com"),
            lambda r: r["error"] == "invalid_grant",
        ),
    ]
    async with httpx.AsyncClient(base_url=emu.base_url or "") as http:
        for token, check in cases:
            resp = await http.post(
                "/token",
                data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": token},
            )
            assert check(resp.json()), resp.text


async def test_control_api_lifecycle(emu: GoogleEmulator) -> None:
    async with httpx.AsyncClient(base_url=emu.base_url or "") as http:
        sa = (
            await http.post(
                "/_emulator/service_accounts", json={"email": "bench@sandbox.iam.gserviceaccount.com"}
            )
        ).json()
        assert sa["token_uri"] == f"{emu.base_url}/token"
        assert sa["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
        created = await http.post(
            "/_emulator/calendars",
            json={
                "calendar_id": "bench@example.com",
                "time_zone": "Asia/Yekaterinburg",
                "shares": {sa["client_email"]: "writer"},
            },
        )
        assert created.status_code == 201
        dup = await http.post("/_emulator/calendars", json={"calendar_id": "bench@example.com"})
        assert dup.status_code == 409
        token = (await http.post("/_emulator/tokens", json={"email": sa["client_email"]})).json()[
            "access_token"
        ]
        resp = await http.post(
            "/calendar/v3/calendars/bench@example.com/events",
            headers={"Authorization": f"Bearer {token}"},
            json={"id": "bench00001", "start": {"date": "2025-03-01"}, "end": {"date": "2025-03-02"}},
        )
        assert resp.status_code == 200
        assert resp.json()["start"] == {"date": "2025-03-01"}
        events = (await http.get("/_emulator/calendars/bench@example.com/events")).json()
        assert events[0]["id"] == "bench00001"
        stats = (await http.get("/_emulator/stats")).json()
        assert stats["inserts"] == 1
        assert (await http.delete("/_emulator/calendars/bench@example.com")).status_code == 200
        gone = await http.get(
            "/calendar/v3/calendars/bench@example.com", headers={"Authorization": f"Bearer {token}"}
        )
        assert gone.status_code == 404
        assert (await http.get("/calendar/v3/no/such/thing")).json()["error"]["code"] == 404
        assert (await http.post("/_emulator/reset")).status_code == 200
        assert (await http.get("/_emulator/calendars")).json() == []
        assert (await http.get("/_emulator/stats")).json()["inserts"] == 0


async def test_long_list_query_uses_method_override(emu: GoogleEmulator, service: Any) -> None:
    await run(
        service.events().insert(
            calendarId=DRIVER_CAL,
            body=event_body(
                "long00001",
                "2025-03-01T10:00:00Z",
                "2025-03-01T11:00:00Z",
                extendedProperties={"private": {"a": "x" * 1100, "b": "y" * 1100}},
            ),
        )
    )
    req = service.events().list(
        calendarId=DRIVER_CAL, privateExtendedProperty=[f"a={'x' * 1100}", f"b={'y' * 1100}"], q="Tver"
    )
    assert len(req.uri) > 2048  # googleapiclient will send it as POST + X-HTTP-Method-Override: GET
    result = await run(req)
    assert [e["id"] for e in result["items"]] == ["long00001"]
    assert emu.stats()["methods"]["events.list"] == 1


async def test_scripted_failures_hit_the_named_method_and_calendar_only(
    emu: GoogleEmulator, service: Any
) -> None:
    body = event_body("order00040", "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z")
    await run(service.events().insert(calendarId=DRIVER_CAL, body=body))
    emu.fail_next("events.delete", 2, 503, calendar_id=DRIVER_CAL)
    emu.fail_next("events.list", 1, "403rateLimitExceeded")
    assert emu.pending_faults() == 3
    err = await http_error(service.events().list(calendarId=DRIVER_CAL))
    assert (err.resp.status, reason(err)) == (403, "rateLimitExceeded")
    assert await run(
        service.events().patch(calendarId=DRIVER_CAL, eventId="order00040", body={"summary": "x"})
    )
    for _ in range(2):
        err = await http_error(service.events().delete(calendarId=DRIVER_CAL, eventId="order00040"))
        assert err.resp.status == 503
    assert emu.pending_faults() == 0
    await run(service.events().delete(calendarId=DRIVER_CAL, eventId="order00040"))
    with pytest.raises(ValueError):
        emu.fail_next("events.list", 1, "nonsense")
