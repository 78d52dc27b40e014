"""`autodispatch oauth …`: drivers' Google grants (#6 phase 4, docs/oauth.md).

oauth list [--tenant T] [--json]       who connected which Google account (never a token)
oauth disconnect --chat-id C           revoke the driver's grant at Google and forget it (audited)
oauth rotate-keys                      re-encrypt every stored refresh token under the newest key
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

from autodispatch.admin import AdminError
from autodispatch.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


async def disconnect(settings: Settings, pool: Any, chat_id: int, actor: str) -> dict[str, Any]:
    """The same step as the driver's /disconnect (OAuthGrants.disconnect_and_revoke), audited as the CLI."""
    from activities.oauth import OAuthGrants
    from autodispatch.db import system_tx
    from autodispatch.tenants import audit

    async with system_tx(pool) as conn:
        tenant_id = await conn.fetchval("SELECT tenant_id FROM drivers WHERE chat_id = $1", chat_id)
    if tenant_id is None:
        raise AdminError(f"no driver with chat id {chat_id}")
    google = await OAuthGrants(pool, settings).disconnect_and_revoke(tenant_id, chat_id) or "no active grant"
    async with system_tx(pool) as conn:
        await audit(
            conn, tenant_id, "oauth_disconnected", source="cli", actor=actor, chat_id=chat_id, google=google
        )
    return {"tenant_id": tenant_id, "chat_id": chat_id, "google": google}


def cmd_oauth(args: argparse.Namespace, settings: Settings) -> int:
    from activities.oauth import OAuthGrants
    from autodispatch.db import system_tx
    from autodispatch.runtime import admin_pool

    if args.oauth_cmd != "list" and not settings.oauth_configured:
        raise AdminError(
            "OAuth is not configured (AUTODISPATCH_GOOGLE_OAUTH_CLIENT_ID and friends, docs/oauth.md)"
        )

    async def run() -> int:
        async with admin_pool(settings) as pool:
            if args.oauth_cmd == "list":
                async with system_tx(pool) as conn:
                    rows = await conn.fetch(
                        """SELECT tenant_id, chat_id, status, account_email, scope, connected_at, revoked_at,
                                  revoked_reason FROM oauth_grants
                            WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY tenant_id, chat_id""",
                        args.tenant,
                    )
                out = [dict(r) for r in rows]
                if args.json:
                    print(json.dumps(out, default=str, ensure_ascii=False))
                else:
                    for r in out:
                        print(f"{r['tenant_id']}\t{r['chat_id']}\t{r['status']}\t{r['account_email'] or '-'}")
                return 0
            if args.oauth_cmd == "disconnect":
                print(json.dumps(await disconnect(settings, pool, args.chat_id, actor="cli")))
                return 0
            changed = await OAuthGrants(pool, settings).rotate_all()
            print(f"re-encrypted {changed} refresh token(s) under the newest key")
            return 0

    return asyncio.run(run())


def add_commands(sub: Any) -> dict[str, Handler]:
    o = sub.add_parser("oauth", help="drivers' Google grants from /connect (docs/oauth.md)")
    osub = o.add_subparsers(dest="oauth_cmd", required=True)
    ls = osub.add_parser("list", help="connected drivers and their Google accounts (never tokens)")
    ls.add_argument("--tenant", default=None)
    ls.add_argument("--json", action="store_true")
    d = osub.add_parser("disconnect", help="revoke a driver's grant at Google and forget it")
    d.add_argument("--chat-id", type=int, required=True)
    osub.add_parser(
        "rotate-keys", help="re-encrypt stored refresh tokens under the first OAUTH_TOKEN_KEYS key"
    )
    return {"oauth": cmd_oauth}
