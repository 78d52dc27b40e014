"""The OpenAPI 3.1 document of /api/v1, generated from the same Endpoint table the router is built from.

routes.ENDPOINTS registers each handler and is the only input here: paths, methods, roles, request and
response schemas (the pydantic models the handlers validate and serialise with) cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from autodispatch.api.auth import ROLES, Role
from autodispatch.api.models import Error

API_PREFIX = "/api/v1"
API_VERSION = "1.0.0"
_PATH_PARAM = re.compile(r"\{(\w+)\}")

PATH_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "tenant": ({"type": "string"}, "the tenant's id or its name"),
    "chat_id": ({"type": "integer"}, "the driver's Telegram chat id"),
    "order_id": ({"type": "string"}, "the order's id"),
    "key_id": ({"type": "string"}, "the API key's id (k…), not the key itself"),
    "bot": ({"type": "string"}, "the bot's Telegram id or its @username"),
}

ERROR_TEXT = {
    400: "bad input: malformed JSON, an unknown field, an invalid value (the message says which)",
    401: "no credential, or an invalid, expired, tampered or revoked one",
    403: "authenticated, but this role or tenant may not do this",
    404: "no such object",
    409: "conflict: a duplicate name or chat, or a state that forbids it",
    503: "a service this needs (Google Calendar) could not answer; nothing was changed, retry",
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # below API_PREFIX, aiohttp syntax: /tenants/{tenant}
    handler: Callable[[Any], Awaitable[web.StreamResponse]]
    operation_id: str
    summary: str
    roles: tuple[Role, ...] | None  # None: public
    response: type[BaseModel] | None = None  # None: 204 No Content
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""

    @property
    def full_path(self) -> str:
        return API_PREFIX + self.path

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)


def _models(endpoints: Sequence[Endpoint]) -> list[tuple[type[BaseModel], str]]:
    seen: list[tuple[type[BaseModel], str]] = [(Error, "serialization")]
    for e in endpoints:
        for model, mode in ((e.body, "validation"), (e.response, "serialization")):
            if model is not None and (model, mode) not in seen:
                seen.append((model, mode))
    return seen


def build_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    refs, defs = models_json_schema(_models(endpoints), ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.full_path, {})[e.method.lower()] = _operation(e, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Auto-Dispatcher admin API",
            "version": API_VERSION,
            "description": (
                "Tenants, the drivers' whitelist, orders, API keys and the audit log. Authenticate with "
                "`Authorization: Bearer <API key or JWT>` or `X-API-Key: <API key>`. Roles: "
                + ", ".join(ROLES)
                + " (see x-roles on each operation). Errors are JSON: "
                '{"error": {"code": "…", "message": "…"}}.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key (adk.…) or a JWT (HS256/RS256; claims sub, role, tenant_id, exp)",
                },
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def _operation(e: Endpoint, refs: dict[tuple[type[BaseModel], str], dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": e.operation_id,
        "summary": e.summary,
        "x-roles": list(e.roles) if e.roles is not None else [],
    }
    roles_text = "public" if e.roles is None else "roles: " + ", ".join(e.roles)
    op["description"] = (e.description + "\n\n" if e.description else "") + roles_text
    params = [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": PATH_PARAMS[n][0],
            "description": PATH_PARAMS[n][1],
        }
        for n in e.path_params
    ]
    if e.query is not None:
        schema = e.query.model_json_schema()
        for name, prop in schema["properties"].items():
            prop = dict(prop)
            description = prop.pop("description", "")
            prop.pop("title", None)
            params.append(
                {"name": name, "in": "query", "required": name in schema.get("required", []),
                 "schema": prop, "description": description}
            )  # fmt: skip
    if params:
        op["parameters"] = params
    if e.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(e.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    if e.response is None:
        responses[str(e.status)] = {"description": "done"}
    else:
        responses[str(e.status)] = {
            "description": "OK",
            "content": {"application/json": {"schema": refs[(e.response, "serialization")]}},
        }
    codes = set(e.errors)
    if e.body is not None or e.query is not None or e.path_params:
        codes.add(400)
    if e.roles is not None:
        codes |= {401, 403}
    if e.path_params:
        codes.add(404)
    error_ref = refs[(Error, "serialization")]
    for code in sorted(codes):
        responses[str(code)] = {
            "description": ERROR_TEXT[code],
            "content": {"application/json": {"schema": error_ref}},
        }
    op["responses"] = responses
    op["security"] = [] if e.roles is None else [{"bearerAuth": []}, {"apiKeyHeader": []}]
    return op
