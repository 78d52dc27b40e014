"""What both emulators' control APIs share: reading a JSON object body, and control-API errors."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); 400 with a clear message otherwise."""
    if not request.body_exists:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body must be JSON"}), content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body must be a JSON object"}), content_type="application/json"
        )
    return body


def control_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
