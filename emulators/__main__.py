"""Run the Telegram and Google emulators standalone.

    python -m emulators [--host 127.0.0.1] [--telegram-port N] [--google-port N] [--seed N]

The first line on stdout is one JSON object with both base URLs, so a parent process (sandbox CLI,
benchmark, acceptance checks) can read it and start talking to the emulators. Runs until SIGINT or
SIGTERM, then shuts both servers down cleanly and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from emulators.google import GoogleEmulator
from emulators.telegram import TelegramEmulator


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--telegram-port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--google-port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--seed", type=int, default=None, help="seed for failure-injection randomness")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level for stderr")
    parser.add_argument(
        "--allow-anonymous", action="store_true", help="Calendar calls without credentials act as a writer"
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    telegram = TelegramEmulator(seed=args.seed)
    google = GoogleEmulator(seed=args.seed, allow_anonymous=args.allow_anonymous)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        telegram_url = await telegram.start(args.host, args.telegram_port)
        google_url = await google.start(args.host, args.google_port)
    except OSError as exc:
        print(f"emulators: cannot listen: {exc}", file=sys.stderr)
        await telegram.stop()
        await google.stop()
        return 1
    print(json.dumps({"telegram": telegram_url, "google": google_url}), flush=True)
    try:
        await stop.wait()
    finally:
        await telegram.stop()
        await google.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
