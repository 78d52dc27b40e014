"""Several orders in one message: "Завтра:\n1) 9:30 Внуково → Тверская\n2) 14:00 SVO → Химки".

A dispatcher often sends a day's list at once. The text is cut into blocks (separator lines, numbered
items, blank lines); a block that is a complete order on its own (time and pickup) starts an order,
any other block belongs to the order before it (a note, a phone on its own line), or, before the first
order, to a header every order shares ("Завтра:"). Only two or more complete orders make a split: a
single order with blank lines in it stays one order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from parsing.orders import parse_order
from schemas.order import ParsedOrder

_SEPARATOR = re.compile(r"^\s*(?:[-=_*~—–]{3,}|\.{3,})\s*$", re.M)
# "1)", "1.", "№1", "#1" at a line start, followed by a space: numbered list items.
_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|№\s?\d{1,2}[.):]?|#\d{1,2}[.):]?)\s+", re.M)
_BLANK = re.compile(r"\n\s*\n")
MAX_ORDERS = 20  # a longer list is more likely a price list than orders; one card per order is plenty


@dataclass(frozen=True, slots=True)
class OrderBlock:
    text: str  # the block as the driver wrote it, with the shared header in front
    order: ParsedOrder


def _blocks(text: str) -> list[str]:
    if _SEPARATOR.search(text):
        parts = _SEPARATOR.split(text)
    else:
        starts = [m.start() for m in _ITEM.finditer(text)]
        if len(starts) >= 2:
            parts = [text[: starts[0]]] + [
                text[a:b] for a, b in zip(starts, starts[1:] + [len(text)], strict=True)
            ]
        else:
            parts = _BLANK.split(text)
    return [p.strip() for p in parts if p.strip()]


def _complete(order: ParsedOrder) -> bool:
    return order.is_order and not order.missing_fields()


def split_orders(
    text: str, now: datetime, tz: str, region: str | None = None, currency: str | None = None
) -> list[OrderBlock]:
    """The orders of a message, in order, when it holds two or more complete ones; else []."""
    blocks = _blocks(text)
    if len(blocks) < 2:
        return []
    header: list[str] = []
    orders: list[list[str]] = []
    for block in blocks:
        with_header = "\n".join([*header, block])
        if _complete(parse_order(with_header, now, tz, region, currency)):
            orders.append([block])
        elif orders:
            orders[-1].append(block)
        else:
            header.append(block)
    if not 2 <= len(orders) <= MAX_ORDERS:
        return []
    result: list[OrderBlock] = []
    for parts in orders:
        order_text = "\n".join([*header, *parts])
        result.append(OrderBlock(order_text, parse_order(order_text, now, tz, region, currency)))
    return result
