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
# "1)", "1.", "№1", "#1", or a bullet ("—", "-", "•") at a line start, followed by a space: list items.
_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|№\s?\d{1,2}[.):]?|#\d{1,2}[.):]?|[-—–•▪●*])\s+", re.M)
_BLANK = re.compile(r"\n\s*\n")
MAX_ORDERS = 20  # a longer list is more likely a price list than orders; one card per order is plenty
HEADER_MAX = 300  # "Заказы на завтра, 28.11:" and a greeting; a longer preamble is not shared context


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


def _header_tail(header: list[str]) -> list[str]:
    """The header blocks nearest the list, at most HEADER_MAX characters of them: the day a list is for
    sits right above it, and a bounded header keeps every block's parse bounded (linear in the message)."""
    kept: list[str] = []
    size = 0
    for block in reversed(header):
        size += len(block) + 1
        if size > HEADER_MAX:
            break
        kept.append(block)
    return kept[::-1]


def split_orders(
    text: str, now: datetime, tz: str, region: str | None = None, currency: str | None = None
) -> list[OrderBlock]:
    """The orders of a message, in order, when it holds two or more complete ones; else [].

    Every block is parsed once on its own, and once more with the (bounded) header only when it is a
    complete order by itself, so the work is linear in the message's length whatever its shape.
    """

    def parse(block_text: str) -> ParsedOrder:
        return parse_order(block_text, now, tz, region, currency)

    blocks = _blocks(text)
    if len(blocks) < 2:
        return []
    header: list[str] = []
    shared: list[str] = []  # the header every order gets, fixed at the first order
    orders: list[list[str]] = []
    # The parse of an order that is still its first block alone (reused for the result), else None.
    parses: list[ParsedOrder | None] = []
    for block in blocks:
        parsed: ParsedOrder | None = None
        if _complete(alone := parse(block)):
            context = shared if orders else _header_tail(header)
            parsed = parse("\n".join([*context, block])) if context else alone
        if parsed is not None and _complete(parsed):
            if not orders:
                shared = _header_tail(header)
            if len(orders) == MAX_ORDERS:
                return []
            orders.append([block])
            parses.append(parsed)
        elif orders:
            orders[-1].append(block)
            parses[-1] = None
        else:
            header.append(block)
    if len(orders) < 2:
        return []
    result: list[OrderBlock] = []
    for parts, parsed in zip(orders, parses, strict=True):
        order_text = "\n".join([*shared, *parts])
        result.append(OrderBlock(order_text, parsed if parsed is not None else parse(order_text)))
    return result
