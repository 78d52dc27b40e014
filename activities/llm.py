"""Optional LLM fallback (off unless AUTODISPATCH_LLM_BASE_URL is set): an OpenAI-compatible chat
endpoint fills in what the rule-based parser could not resolve, in the same JSON, validated by the
same pydantic schema. The rules stay the source of truth; the model only fills gaps."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from schemas.order import ORDER_FIELDS, ParsedOrder
from schemas.store import ParseOrderInput

SYSTEM_PROMPT = (
    "You extract taxi / airport transfer orders from messages a driver received (Russian or English). "
    "Answer with one JSON object with exactly these keys: " + ", ".join(ORDER_FIELDS) + ". "
    "pickup_at is ISO 8601 with the UTC offset of the driver's time zone; a date without a year is the "
    "next such date after the message time. client_phone is E.164. price_currency is ISO 4217. "
    "Unknown values are null. is_order is false for messages that are not orders. Never invent values."
)


class LlmActivities:
    def __init__(self, base_url: str | None, api_key: str | None = None, model: str = "gpt-4o-mini") -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.api_key = api_key
        self.model = model

    @activity.defn(name="parse_with_llm")
    async def parse_with_llm(self, req: ParseOrderInput) -> ParsedOrder | None:
        """The model's reading of the message, or None when the fallback is off or its answer is unusable."""
        if not self.base_url:
            return None
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": f"Message time: {req.now.isoformat()}\nDriver's time zone: {req.tz}\n"
                    f"Region: {req.region or '-'}; default currency: {req.currency or '-'}\n\n{req.text}",
                },
            ],
        }
        async with httpx.AsyncClient(timeout=25) as http:
            resp = await http.post(f"{self.base_url}/chat/completions", json=body, headers=headers)
        if resp.status_code in (401, 403, 404, 400, 422):
            raise ApplicationError(
                f"the LLM endpoint refused the request ({resp.status_code}): {resp.text[:200]}",
                type="LlmRejected",
                non_retryable=True,
            )
        resp.raise_for_status()  # 429 / 5xx: retried by the call site's policy
        try:
            content = resp.json()["choices"][0]["message"]["content"]
            return to_order(json.loads(content), req.tz)
        except (KeyError, IndexError, TypeError, ValueError, ValidationError) as exc:
            activity.logger.warning("unusable LLM answer, ignored: %s", exc)
            return None


def to_order(data: dict[str, Any], tz: str) -> ParsedOrder:
    """Validate the model's JSON with the parser's own schema; a naive time is in the driver's zone."""
    fields = {k: data.get(k) for k in ORDER_FIELDS if k in data}
    order = ParsedOrder.model_validate(fields)
    if order.pickup_at is not None and order.pickup_at.tzinfo is None:
        order.pickup_at = order.pickup_at.replace(tzinfo=ZoneInfo(tz))
    if isinstance(order.pickup_at, datetime):
        order.pickup_at = order.pickup_at.astimezone(ZoneInfo(tz))
    return order
