"""A local OpenAI-compatible chat endpoint for tests of the optional LLM fallback.

It does not understand anything: it answers with the JSON configured for the first rule whose substring
occurs in the user's message (else `{}`), and records every request it got."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class LlmEmulator:
    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.rules: list[tuple[str, str]] = []  # (substring, raw content the "model" answers)
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []  # HTTP statuses to answer next, in order
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._completions)

    def answer_when(self, substring: str, content: dict[str, Any] | str) -> None:
        self.rules.append((substring, content if isinstance(content, str) else json.dumps(content)))

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.base_url = f"http://{host}:{self._runner.addresses[0][1]}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _completions(self, request: web.Request) -> web.Response:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
        body = await request.json()
        self.requests.append(body)
        if self.fail_next:
            status = self.fail_next.pop(0)
            return web.json_response({"error": {"message": "injected failure"}}, status=status)
        user = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        content = next((c for s, c in self.rules if s in user), "{}")
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
        )
