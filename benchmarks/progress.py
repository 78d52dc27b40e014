"""A progress bar on stderr with no dependency: redrawn in place on a terminal, a line every few seconds
otherwise (CI logs)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None = None, seconds: float | None = None,
                 stream: TextIO | None = None, enabled: bool = True) -> None:  # fmt: skip
        self.label, self.total, self.seconds = label, total, seconds
        self.sent = 0
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        if self.total:
            frac = min(1.0, self.done / self.total)
        elif self.seconds:
            frac = min(1.0, elapsed / self.seconds)
        else:
            frac = 0.0
        width = 28
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = self.done / elapsed if elapsed > 0 else 0.0
        total = f"/{self.total}" if self.total else ""
        return (f"{self.label:<28} [{bar}] {frac * 100:5.1f}%  sent {self.sent}{total}  "
                f"done {self.done}  {rate:6.1f}/s  {elapsed:5.0f}s")  # fmt: skip

    def draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    async def _run(self) -> None:
        every = 0.2 if self.tty else 5.0
        while True:
            await asyncio.sleep(every)
            self.draw()

    def __enter__(self) -> Progress:
        self.started = time.monotonic()
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            self.draw(final=True)


def note(message: str, enabled: bool = True) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)
