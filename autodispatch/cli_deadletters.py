"""`autodispatch deadletter …`: updates set aside after failing again and again (docs/security.md).

deadletter list [--all] [--json]    what is set aside (default: not retried yet), newest first
deadletter show ID                  one dead letter with its stored update and last error (JSON)
deadletter retry ID                 an inbox row goes back into the inbox; a raw update is fed again by
                                    the running bot (audited)
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from collections.abc import Callable
from typing import Any

from autodispatch.admin import AdminError
from autodispatch.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def cmd_deadletter(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch.dead_letters import (
        DeadLetterError,
        get_dead_letter,
        list_dead_letters,
        retry_dead_letter,
    )
    from autodispatch.runtime import admin_pool

    async def run() -> int:
        async with admin_pool(settings) as pool:
            try:
                if args.deadletter_cmd == "list":
                    rows = await list_dead_letters(pool, status=None if args.all else "dead")
                    if args.json:
                        print(json.dumps(rows, default=str, ensure_ascii=False))
                    for r in [] if args.json else rows:
                        print(
                            f"{r['id']}\t{r['status']}\t{r['source']}\t{r['tenant_id']}\tupdate {r['update_id']}"
                            f"\t{r['attempts']} attempts\t{r['last_error'][:120]}"
                        )
                    return 0
                if args.deadletter_cmd == "show":
                    print(json.dumps(await get_dead_letter(pool, args.id), default=str, ensure_ascii=False))
                    return 0
                done = await retry_dead_letter(pool, args.id, actor=f"cli:{getpass.getuser()}")
            except DeadLetterError as exc:
                raise AdminError(str(exc)) from None
            print(f"dead letter {args.id}: {done}")
            return 0

    return asyncio.run(run())


def add_commands(sub: Any) -> dict[str, Handler]:
    d = sub.add_parser("deadletter", help="updates set aside after failing repeatedly: list, show, retry")
    dsub = d.add_subparsers(dest="deadletter_cmd", required=True)
    ls = dsub.add_parser("list", help="dead letters not retried yet, newest first")
    ls.add_argument("--all", action="store_true", help="retried ones too")
    ls.add_argument("--json", action="store_true")
    show = dsub.add_parser("show", help="one dead letter: the stored update and its last error")
    show.add_argument("id", type=int, metavar="ID")
    retry = dsub.add_parser("retry", help="hand it over again (after a fix)")
    retry.add_argument("id", type=int, metavar="ID")
    return {"deadletter": cmd_deadletter}
