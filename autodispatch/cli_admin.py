"""Operator commands: `tenant`, `apikey`, `token` (system context; `--tenant` takes an id or a name).

    autodispatch tenant create NAME [--dedicated] [--tz ZONE] [--currency CODE] [--json]
    autodispatch tenant list [--tenant T] [--json]
    autodispatch tenant disable|enable T [--json]
    autodispatch apikey create --tenant T [--role R] [--name N] [--chat-id C] [--json]
    autodispatch apikey list [--tenant T] [--json]
    autodispatch apikey revoke KEY_ID_OR_KEY [--tenant T] [--json]
    autodispatch token issue --role R --tenant T [--chat-id C] [--sub S] [--ttl 1h] [--json]
    autodispatch token revoke --tenant T (--jti J | --all) [--json]

Each action is audited (workflow id `admin`, the operator's login as actor).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from autodispatch.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
ROLE_CHOICES = ["user", "viewer", "admin", "system"]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in some containers
        return "cli:operator"


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str))


def _run(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    """Run `work(pool)`; a refusal (unknown tenant, duplicate name, bad zone…) is one line on stderr."""
    from autodispatch.admin import AdminError
    from autodispatch.api.auth import JwtNotConfigured
    from autodispatch.runtime import admin_pool

    async def go() -> int:
        async with admin_pool(settings) as pool:
            return await work(pool)

    try:
        return asyncio.run(go())
    except JwtNotConfigured as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _key_line(k: dict[str, Any]) -> str:
    state = f"revoked {k['revoked_at']:%Y-%m-%d %H:%M}" if k["revoked_at"] else "active"
    used = f"{k['last_used_at']:%Y-%m-%d %H:%M}" if k["last_used_at"] else "never"
    driver = f" chat {k['chat_id']}" if k["chat_id"] is not None else ""
    return (
        f"{k['tenant_id']:<16} {k['key_id']:<14} {k['role']:<7} {state:<24} used {used:<17} "
        f"{k['prefix']}…{driver} {k['name']}"
    )


# -- tenant -----------------------------------------------------------------------------
def cmd_tenant(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch import tenants

    actor = _actor()

    async def work(pool: Any) -> int:
        if args.tenant_cmd == "create":
            t = await tenants.create_tenant(
                pool, settings, args.name, dedicated=args.dedicated, time_zone=args.tz,
                currency=args.currency, source="cli", actor=actor,
            )  # fmt: skip
            if args.json:
                _print_json(t)
            else:
                queue = f"{t['task_queue']} ({'dedicated' if t['dedicated'] else 'shared'})"
                print(
                    f"tenant {t['name']!r} created: id {t['tenant_id']}, task queue {queue}, "
                    f"time zone {t['time_zone']}, currency {t['currency'] or '-'}"
                )
                print(f"admin API key {t['key_id']} (shown once, store it now): {t['api_key']}")
                if t["dedicated"]:
                    print(f"start its workers with: autodispatch worker --tenant {t['tenant_id']}")
        elif args.tenant_cmd == "list":
            rows = await tenants.list_tenants(pool, settings, tenant=args.tenant)
            if args.json:
                _print_json(rows)
                return 0
            for r in rows:
                print(
                    f"{r['tenant_id']:<20} {r['status']:<9} {r['task_queue']:<28} {r['time_zone']:<20} "
                    f"{r['currency'] or '-':<4} {r['name']}"
                )
            if not rows:
                print("no tenants")
        else:
            status = "disabled" if args.tenant_cmd == "disable" else "active"
            t = await tenants.set_tenant_status(
                pool, settings, args.tenant, status, source="cli", actor=actor
            )
            if args.json:
                _print_json(t)
            else:
                print(f"tenant {t['tenant_id']} ({t['name']}) is now {status}")
        return 0

    return _run(settings, work)


# -- apikey -----------------------------------------------------------------------------
def cmd_apikey(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch import tenants

    actor = _actor()

    async def work(pool: Any) -> int:
        if args.apikey_cmd == "create":
            k = await tenants.create_api_key(
                pool,
                args.tenant,
                role=args.role,
                name=args.name,
                chat_id=args.chat_id,
                source="cli",
                actor=actor,
            )
            if args.json:
                _print_json(k)
            else:
                print(
                    f"API key {k['key_id']} ({k['role']}) for tenant {k['tenant_id']} (shown once): {k['api_key']}"
                )
        elif args.apikey_cmd == "list":
            if args.tenant:
                t = await tenants.get_tenant(pool, args.tenant)
                rows = await tenants.list_api_keys(pool, t["tenant_id"])
            else:
                rows = []
                for t in await tenants.list_tenants(pool, settings, include_system=True):
                    rows += await tenants.list_api_keys(pool, t["tenant_id"])
            if args.json:
                _print_json(rows)
                return 0
            for k in rows:
                print(_key_line(k))
            if not rows:
                print("no API keys")
        else:
            k = await tenants.revoke_api_key(pool, args.key, tenant=args.tenant, source="cli", actor=actor)
            if args.json:
                _print_json(k)
            else:
                print(f"API key {k['key_id']} of tenant {k['tenant_id']} is revoked")
        return 0

    return _run(settings, work)


# -- token ------------------------------------------------------------------------------
def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch import tenants
    from autodispatch.admin import AdminError
    from autodispatch.api.auth import JwtNotConfigured, require_signing_key

    if args.token_cmd == "revoke":
        if (args.jti is None) == (not args.all):
            print("error: give --jti J (one token) or --all (every token of the tenant)", file=sys.stderr)
            return 1

        async def revoke(pool: Any) -> int:
            r = await tenants.revoke_tokens(
                pool, settings, tenant=args.tenant, jti=args.jti, source="cli", actor=_actor()
            )
            if args.json:
                _print_json(r)
            elif r["revoked"] == "all":
                print(f"every JWT issued so far for tenant {r['tenant_id']} is revoked")
            else:
                print(f"JWT {r['revoked']} of tenant {r['tenant_id']} is revoked")
            return 0

        return _run(settings, revoke)

    try:
        # Before touching the database: a missing key is a configuration error, said in one line.
        require_signing_key(settings)
        ttl = tenants.parse_ttl(args.ttl)
    except JwtNotConfigured as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tenant = args.tenant or ("system" if args.role == "system" else None)
    if tenant is None:
        print("error: --tenant is required (a tenant id or name)", file=sys.stderr)
        return 1

    async def work(pool: Any) -> int:
        t = await tenants.issue_token(
            pool, settings, tenant=tenant, role=args.role, subject=args.sub, chat_id=args.chat_id, ttl=ttl,
            source="cli", actor=_actor(),
        )  # fmt: skip
        if args.json:
            _print_json(t)
        else:
            print(t["token"])
            print(
                f"JWT for role {t['role']} in tenant {t['tenant_id']} (sub {t['sub']}), "
                f"expires {t['expires_at']:%Y-%m-%d %H:%M:%S %Z}",
                file=sys.stderr,
            )
        return 0

    return _run(settings, work)


def add_commands(sub: Any) -> dict[str, Handler]:
    t = sub.add_parser("tenant", help="onboard and manage tenants (operators)")
    tsub = t.add_subparsers(dest="tenant_cmd", required=True)
    c = tsub.add_parser("create", help="create a tenant, its admin API key (printed once) and task queue")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--dedicated", action="store_true", help="its own task queue tenant-<id> (own workers)")
    c.add_argument("--tz", default=None, help="IANA time zone (default: AUTODISPATCH_DEFAULT_TIME_ZONE)")
    c.add_argument("--currency", default=None, help="ISO 4217 code, e.g. RUB")
    c.add_argument("--json", action="store_true")
    ls = tsub.add_parser("list", help="list tenants")
    ls.add_argument("--tenant", help="only this tenant (id or name)")
    ls.add_argument("--json", action="store_true")
    for name, effect in (("disable", "its keys and tokens stop working"), ("enable", "they work again")):
        x = tsub.add_parser(name, help=f"{name} a tenant ({effect})")
        x.add_argument("tenant", metavar="TENANT", help="id or name")
        x.add_argument("--json", action="store_true")

    k = sub.add_parser("apikey", help="per-tenant API keys for the admin API")
    ksub = k.add_subparsers(dest="apikey_cmd", required=True)
    kc = ksub.add_parser("create", help="create an API key (printed once; stored hashed)")
    kc.add_argument("--tenant", required=True, help="id or name")
    kc.add_argument("--role", choices=ROLE_CHOICES, default="admin")
    kc.add_argument("--name", default="", help="what the key is for")
    kc.add_argument("--chat-id", type=int, default=None, help="the driver, for --role user")
    kc.add_argument("--json", action="store_true")
    kl = ksub.add_parser("list", help="list API keys (never the keys themselves)")
    kl.add_argument("--tenant", help="id or name")
    kl.add_argument("--json", action="store_true")
    kr = ksub.add_parser("revoke", help="revoke an API key")
    kr.add_argument("key", metavar="KEY", help="the key id (k…) or the key itself")
    kr.add_argument("--tenant", help="id or name: the key must belong to it")
    kr.add_argument("--json", action="store_true")

    tok = sub.add_parser("token", help="JWTs for the admin API")
    toksub = tok.add_subparsers(dest="token_cmd", required=True)
    ti = toksub.add_parser("issue", help="issue a signed JWT (AUTODISPATCH_JWT_SECRET or _PRIVATE_KEY_FILE)")
    ti.add_argument("--role", choices=ROLE_CHOICES, required=True)
    ti.add_argument("--tenant", help="id or name (not needed for --role system)")
    ti.add_argument("--chat-id", type=int, default=None, help="the driver, for --role user")
    ti.add_argument("--sub", default=None, help="subject (default: the operator)")
    ti.add_argument("--ttl", default="1h", help="lifetime: seconds or 15m / 12h / 30d (default 1h)")
    ti.add_argument("--json", action="store_true")
    tr = toksub.add_parser("revoke", help="revoke a JWT by its jti, or every JWT of a tenant (--all)")
    tr.add_argument("--tenant", required=True, help="id or name")
    tr.add_argument("--jti", default=None, help="the token's jti (`token issue --json`, the audit log)")
    tr.add_argument("--all", action="store_true", help="every token of the tenant issued so far")
    tr.add_argument("--json", action="store_true")
    return {"tenant": cmd_tenant, "apikey": cmd_apikey, "token": cmd_token}
