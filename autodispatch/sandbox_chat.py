"""`autodispatch chat TEXT`: talk to the sandbox bot as the demo driver, print its answer and the event."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import httpx

from autodispatch.runtime import read_sandbox
from autodispatch.settings import Settings


async def chat(settings: Settings, text: str, *, chat_id: int | None = None, timeout: float = 15.0) -> int:
    sandbox = read_sandbox(settings)
    if sandbox is None or not sandbox.telegram or not sandbox.token:
        print(
            "no sandbox is running: start it with `make run` (or `autodispatch up`) without a Telegram token"
        )
        return 2
    chat_id = chat_id or sandbox.chat_id
    bot_path = f"{sandbox.telegram}/_emulator/bots/{quote(sandbox.token, safe='')}"
    async with httpx.AsyncClient(timeout=10) as http:
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
        if sandbox.google and sandbox.calendar_id and chat_id == sandbox.chat_id:
            events = (
                await http.get(f"{sandbox.google}/_emulator/calendars/{quote(sandbox.calendar_id)}/events")
            ).json()
            mine = [
                e
                for e in events
                if e.get("extendedProperties", {}).get("private", {}).get("chat_id") == str(chat_id)
            ]
            if mine:
                event = max(mine, key=lambda e: e.get("_stored_ts", 0))
                shown = {
                    k: event.get(k)
                    for k in ("id", "summary", "location", "start", "end", "description", "htmlLink")
                }
                print("calendar event:")
                print("  " + json.dumps(shown, ensure_ascii=False, indent=2).replace("\n", "\n  "))
    return 0
