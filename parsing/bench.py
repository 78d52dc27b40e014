"""Parser throughput: messages per second on one thread."""

from __future__ import annotations

import time

from parsing.orders import parse_order
from schemas.order import ParseRequest


def bench_parse(requests: list[ParseRequest], min_seconds: float = 2.0) -> dict[str, float]:
    """Parse `requests` round after round until `min_seconds` have passed; report the rate."""
    if not requests:
        raise ValueError("bench_parse needs at least one request")
    parsed = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < min_seconds:
        for req in requests:
            parse_order(req.text, req.now, req.tz, region=req.region, currency=req.currency)
        parsed += len(requests)
        elapsed = time.perf_counter() - start
    return {"messages": parsed, "seconds": elapsed, "messages_per_s": parsed / elapsed}
