"""Deterministic identifiers and the search attributes operators filter by in the Temporal UI."""

from __future__ import annotations

import base64
import hashlib

from temporalio.common import SearchAttributeKey

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
CHAT_ID = SearchAttributeKey.for_keyword("ChatId")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")


def order_id_for(tenant_id: str, chat_id: int, message_id: int, index: int = 0) -> str:
    """Same message, same order: 32 characters of base32hex (Google's event id alphabet a-v0-9).
    `index` numbers the orders of a message that lists several (the first keeps the plain id)."""
    key = f"{tenant_id}:{chat_id}:{message_id}" + (f"#{index}" if index else "")
    digest = hashlib.sha256(key.encode()).digest()
    return base64.b32hexencode(digest).decode("ascii").lower().rstrip("=")[:32]


def calendar_workflow_id(order_id: str) -> str:
    return f"calendar-{order_id}"
