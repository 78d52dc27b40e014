"""`autodispatch bot add|remove|list|rotate-keys`: tenants' own Telegram bots (docs/bots.md).

bot add --tenant T --token TOKEN     check the token with getMe, store it encrypted; the running stack
                                     serves the bot within moments (a registered bot gets its new token
                                     and is resumed if it was paused)
bot remove --tenant T --bot ID|@name stop serving it
bot list [--tenant T] [--json]       bots, their status and why one is paused (never a token)
bot rotate-keys                      re-encrypt every bot token under the newest key
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from autodispatch.settings import Settings


def _api_base(settings: Settings) -> str:
    """The Bot API to verify tokens with: the configured one, else the sandbox emulator of `up`."""
    from autodispatch.runtime import read_sandbox

    if not settings.telegram_configured:
        sandbox = read_sandbox(settings)
        if sandbox is not None and sandbox.telegram:
            return sandbox.telegram
    return settings.telegram_api_base


def cmd_bots(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch import bots
    from autodispatch.runtime import admin_pool

    async def run() -> int:
        async with admin_pool(settings) as pool:
            if args.bot_cmd == "add":
                row = await bots.add_bot(
                    pool, settings, args.tenant, args.token, api_base=_api_base(settings), source="cli",
                    actor="cli",
                )  # fmt: skip
                print(json.dumps(row, default=str, ensure_ascii=False))
            elif args.bot_cmd == "remove":
                row = await bots.remove_bot(pool, settings, args.tenant, args.bot, source="cli", actor="cli")
                print(json.dumps(row, default=str, ensure_ascii=False))
            elif args.bot_cmd == "list":
                rows = await bots.list_bots(pool, settings, args.tenant)
                if args.json:
                    print(json.dumps(rows, default=str, ensure_ascii=False))
                for r in rows if not args.json else []:
                    why = f"\t{r['paused_reason']}" if r["status"] == "paused" else ""
                    print(f"{r['tenant_id']}\t@{r['username']}\t{r['bot_id']}\t{r['status']}{why}")
            else:
                changed, lost = await bots.rotate_bot_tokens(pool, settings)
                print(f"re-encrypted {changed} bot token(s) under the newest key")
                if lost:
                    print(f"no key decrypts the token of bot(s) {', '.join(map(str, lost))}: register them "
                          "again with `bot add`", file=sys.stderr)  # fmt: skip
        return 0

    return asyncio.run(run())


def add_bot_subcommands(b: Any) -> None:
    bsub = b.add_subparsers(dest="bot_cmd")  # none: run the Telegram edge
    add = bsub.add_parser("add", help="register a tenant's own bot (token from @BotFather)")
    add.add_argument("--tenant", required=True)
    add.add_argument("--token", required=True, help="the bot's token from @BotFather")
    rm = bsub.add_parser("remove", help="stop serving a tenant's bot")
    rm.add_argument("--tenant", required=True)
    rm.add_argument("--bot", required=True, help="the bot's id or @username")
    ls = bsub.add_parser("list", help="tenants' bots and their status (never tokens)")
    ls.add_argument("--tenant")
    ls.add_argument("--json", action="store_true")
    bsub.add_parser("rotate-keys", help="re-encrypt every bot token under the newest key")
