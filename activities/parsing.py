"""The parse step: the rule-based parser, run as a local activity so its answer is recorded in history
(a parser improvement never changes what a running workflow already decided)."""

from __future__ import annotations

from temporalio import activity

from parsing.orders import parse_order
from schemas.order import ParsedOrder
from schemas.store import ParseOrderInput


class ParseActivities:
    @activity.defn(name="parse_order")
    async def parse_order(self, req: ParseOrderInput) -> ParsedOrder:
        # Sub-millisecond CPU work: cheaper on the event loop than a hop to the thread pool.
        return parse_order(req.text, req.now, req.tz, region=req.region, currency=req.currency)
