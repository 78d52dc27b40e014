"""What the parser understands from an order text: the order as the driver's world sees it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

# What an order says: the fields a parse fills and a change (an edit, a reply to the card) may set.
ORDER_DETAIL_FIELDS: tuple[str, ...] = (
    "pickup_at",
    "pickup_address",
    "dropoff_address",
    "price_amount",
    "price_currency",
    "client_name",
    "client_phone",
    "flight_number",
    "passengers",
    "notes",
)
# The flat keys of the parse CLI contract, in the order they are printed.
ORDER_FIELDS: tuple[str, ...] = (*ORDER_DETAIL_FIELDS, "is_order")

# Without these the driver cannot do the job: the bot asks for them instead of guessing.
REQUIRED_FIELDS: tuple[str, ...] = ("pickup_at", "pickup_address")


class ParseRequest(BaseModel):
    """One message to understand, with the context the driver's settings give it."""

    text: str
    now: datetime
    tz: str = "Europe/Moscow"
    region: str | None = None
    currency: str | None = None


# The parse step's own time limit ran out (long texts parse in a child process, stopped then): permanent.
PARSE_TIMEOUT_ERROR = "ParseTimeout"


class ParsedOrder(BaseModel):
    """A structured order. Missing values are None; `is_order` is False for chatter."""

    pickup_at: datetime | None = None
    pickup_address: str | None = None
    dropoff_address: str | None = None
    price_amount: float | None = None
    price_currency: str | None = None
    client_name: str | None = None
    client_phone: str | None = None
    flight_number: str | None = None
    passengers: int | None = None
    notes: str | None = None
    is_order: bool = False
    # Fields the parser saw but could not resolve unambiguously (e.g. "23.11 or 24.11").
    ambiguous: list[str] = Field(default_factory=list)
    # The text named the day ("завтра 10:30"), not only a time ("перенос на 10:30" keeps the order's day).
    date_stated: bool = False

    def missing_fields(self) -> list[str]:
        """Required fields that are absent or ambiguous, in REQUIRED_FIELDS order."""
        return [f for f in REQUIRED_FIELDS if getattr(self, f) is None or f in self.ambiguous]

    def to_flat_json(self) -> dict[str, Any]:
        """The CLI contract: exactly ORDER_FIELDS, pickup_at as ISO 8601 with offset, missing = null."""
        out: dict[str, Any] = {}
        for key in ORDER_FIELDS:
            value = getattr(self, key)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, float) and value.is_integer():
                value = int(value)
            out[key] = value
        return out


class OrderChunk(BaseModel):
    """One order of a message that holds several: its own text (with the shared header) and parse."""

    text: str
    order: ParsedOrder


class ParsedMessage(BaseModel):
    """A whole message understood: as one order, and, when it lists several complete ones, each."""

    order: ParsedOrder
    orders: list[OrderChunk] = Field(default_factory=list)
