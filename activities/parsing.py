"""The parse step: the rule-based parser, run as a local activity so its answer is recorded in history
(a parser improvement never changes what a running workflow already decided).

An everyday order (a few hundred characters) parses in well under a millisecond, cheaper on the event
loop than any hop elsewhere. A long message goes to a child process instead, with a time limit that
really stops it: a text the parser cannot finish in time must not hold up every workflow of the worker
(the event loop is theirs too). The flow then answers "could not read this order".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from parsing.orders import parse_fields, parse_order
from parsing.split import split_orders
from schemas.order import PARSE_TIMEOUT_ERROR, OrderChunk, ParsedMessage, ParsedOrder
from schemas.store import ParseOrderInput

log = logging.getLogger(__name__)

# Longer texts are parsed in the child process (Telegram's limit is 4,096 characters).
INLINE_LIMIT = 600


def read_order(req: ParseOrderInput) -> ParsedOrder:
    parse = parse_fields if req.mode == "fields" else parse_order
    return parse(req.text, req.now, req.tz, region=req.region, currency=req.currency)


def read_message(req: ParseOrderInput) -> ParsedMessage:
    """The message as one order plus, if it lists two or more complete orders, each of them."""
    whole = parse_order(req.text, req.now, req.tz, region=req.region, currency=req.currency)
    blocks = split_orders(req.text, req.now, req.tz, region=req.region, currency=req.currency)
    return ParsedMessage(order=whole, orders=[OrderChunk(text=b.text, order=b.order) for b in blocks])


class ParserProcess:
    """One child process for long texts, replaced when a parse overruns its limit (killing it is the
    only way to stop CPU-bound Python). Forked from a clean server process, never from the worker's
    own threads."""

    def __init__(self, time_limit: float = 3.0) -> None:
        self.time_limit = time_limit
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["parsing.orders", "parsing.split"])
            self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context)
        return self._pool

    async def run(self, fn: Callable[[ParseOrderInput], Any], req: ParseOrderInput) -> Any:
        pool = self._executor()
        future = asyncio.get_running_loop().run_in_executor(pool, fn, req)
        try:
            return await asyncio.wait_for(future, timeout=self.time_limit)
        except TimeoutError:
            self._replace(pool)
            log.warning(
                "parsing a %s-character message took over %.1fs; stopped", len(req.text), self.time_limit
            )
            raise ApplicationError(
                f"parsing took longer than {self.time_limit:.1f}s ({len(req.text)} characters)",
                type=PARSE_TIMEOUT_ERROR,
                non_retryable=True,
            ) from None
        except concurrent.futures.process.BrokenProcessPool:
            self._replace(pool)
            raise  # retried by the step's policy, on a fresh process

    def _replace(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._replace(self._pool)


class ParseActivities:
    def __init__(self, long_texts: ParserProcess | None = None, inline_limit: int = INLINE_LIMIT) -> None:
        self.long_texts = long_texts or ParserProcess()
        self.inline_limit = inline_limit

    async def _read(self, fn: Callable[[ParseOrderInput], Any], req: ParseOrderInput) -> Any:
        if len(req.text) <= self.inline_limit:
            return fn(req)
        return await self.long_texts.run(fn, req)

    @activity.defn(name="parse_order")
    async def parse_order(self, req: ParseOrderInput) -> ParsedOrder:
        return await self._read(read_order, req)

    @activity.defn(name="parse_message")
    async def parse_message(self, req: ParseOrderInput) -> ParsedMessage:
        """The message as one order plus, if it lists two or more complete orders, each of them."""
        return await self._read(read_message, req)
