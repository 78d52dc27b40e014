"""The parse step: the rule-based parser, run as a local activity so its answer is recorded in history
(a parser improvement never changes what a running workflow already decided)."""

from __future__ import annotations

from temporalio import activity

from parsing.orders import parse_fields, parse_order
from parsing.split import split_orders
from schemas.order import OrderChunk, ParsedMessage, ParsedOrder
from schemas.store import ParseOrderInput


class ParseActivities:
    @activity.defn(name="parse_order")
    async def parse_order(self, req: ParseOrderInput) -> ParsedOrder:
        # Sub-millisecond CPU work: cheaper on the event loop than a hop to the thread pool.
        parse = parse_fields if req.mode == "fields" else parse_order
        return parse(req.text, req.now, req.tz, region=req.region, currency=req.currency)

    @activity.defn(name="parse_message")
    async def parse_message(self, req: ParseOrderInput) -> ParsedMessage:
        """The message as one order plus, if it lists two or more complete orders, each of them."""
        whole = parse_order(req.text, req.now, req.tz, region=req.region, currency=req.currency)
        blocks = split_orders(req.text, req.now, req.tz, region=req.region, currency=req.currency)
        return ParsedMessage(order=whole, orders=[OrderChunk(text=b.text, order=b.order) for b in blocks])
