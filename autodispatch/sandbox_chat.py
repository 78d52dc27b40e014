"""`autodispatch chat TEXT`: talk to the sandbox bot as the demo driver, print its answer and the calendar
event this message created or changed (none when it changed nothing: a greeting, a question)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import httpx

from autodispatch.runtime import read_sandbox
from autodispatch.settings import Settings


async def chat(settings: Settings, text: str, *, chat_id: int | None = None, timeout: float = 15.0) -> int:
    try:
        return await _chat(settings, text, chat_id=chat_id, timeout=timeout)
    except httpx.TransportError as exc:
        print(
            f"cannot reach the sandbox's emulators ({exc.request.url.host}:{exc.request.url.port}): is "
            "`autodispatch up` running with this AUTODISPATCH_DATA_DIR?"
        )
        return 2


async def _chat(settings: Settings, text: str, *, chat_id: int | None, timeout: float) -> int:
    sandbox = read_sandbox(settings)
    if sandbox is None or not sandbox.telegram or not sandbox.token:
        print(
            "no sandbox is running: start it with `make run` (or `autodispatch up`) without a Telegram token"
        )
        return 2
    chat_id = chat_id or sandbox.chat_id
    bot_path = f"{sandbox.telegram}/_emulator/bots/{quote(sandbox.token, safe='')}"
    show_events = bool(sandbox.google and sandbox.calendar_id and chat_id == sandbox.chat_id)
    events_url = f"{sandbox.google}/_emulator/calendars/{quote(sandbox.calendar_id or '')}/events"
    async with httpx.AsyncClient(timeout=10) as http:
        before = _versions(await _events(http, events_url, chat_id)) if show_events else {}
        seen = len((await http.get(f"{bot_path}/sent", params={"chat_id": chat_id})).json())
        sent = await http.post(
            f"{bot_path}/messages",
            json={
                "chat_id": chat_id,
                "text": text,
                "from": {"id": chat_id, "first_name": "Demo", "language_code": "ru"},
            },
        )
        sent.raise_for_status()
        # Whatever the bot says next in this chat: a reply to this message, or (when this message
        # answered a question) the confirmation of the order it completed.
        answers: list[dict] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            out = (await http.get(f"{bot_path}/sent", params={"chat_id": chat_id})).json()
            answers = [m for m in out[seen:] if m.get("method") == "sendMessage"]
            if answers:
                break
            await asyncio.sleep(0.1)
        if not answers:
            print(f"the bot did not answer within {timeout:.0f}s (is `autodispatch up` running?)")
            return 1
        print("bot:")
        for answer in answers:
            print("  " + answer["text"].replace("\n", "\n  "))
            # URL buttons (/connect's consent link): open them in a browser, the emulator shows the page.
            for row in (answer.get("reply_markup") or {}).get("inline_keyboard") or []:
                for button in row:
                    if button.get("url"):
                        print(f"  [{button.get('text', '')}] {button['url']}")
        if show_events:
            after = await _events(http, events_url, chat_id)
            for event in after:
                if before.get(event["id"]) == _version(event):
                    continue  # there before this message and untouched by it
                shown = {
                    k: event.get(k)
                    for k in ("id", "summary", "location", "start", "end", "description", "htmlLink")
                }
                print("calendar event:" if event["id"] not in before else "calendar event changed:")
                print("  " + json.dumps(shown, ensure_ascii=False, indent=2).replace("\n", "\n  "))
            for gone in sorted(set(before) - {e["id"] for e in after}):
                print(f"calendar event removed: {gone}")
    return 0


async def _events(http: httpx.AsyncClient, url: str, chat_id: int) -> list[dict]:
    """The demo calendar's events of this chat's orders."""
    events = (await http.get(url)).json()
    return [
        e
        for e in events
        if e.get("status") != "cancelled"
        and e.get("extendedProperties", {}).get("private", {}).get("chat_id") == str(chat_id)
    ]


def _version(event: dict) -> tuple:
    return (event.get("_stored_ts"), event.get("_updated_ts"), event.get("updated"), event.get("etag"))


def _versions(events: list[dict]) -> dict[str, tuple]:
    return {e["id"]: _version(e) for e in events}
