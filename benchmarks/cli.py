"""`autodispatch bench --scenario NAME [--orders N] [--json]` (and `make bench` = `--scenario all`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from autodispatch.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:  # type: ignore[type-arg]
    from benchmarks.runner import SCENARIOS

    p = sub.add_parser(
        "bench",
        help="benchmark the whole stack on embedded defaults (free ports, a temporary data dir)",
        description="Starts Temporal, PostgreSQL, the worker, the bot edge and the Telegram/Google emulators "
        "on free ports in a temporary directory, pushes orders through Telegram's queue and measures "
        "webhook → reply / → event latency, throughput, CPU, lost and duplicated effects, next to a "
        "baseline without Temporal. Results go to bench/results/ and BENCHMARKS.md.",
    )
    p.add_argument("--scenario", default="all", help=f"one of {', '.join(SCENARIOS)}, all, or a comma list")
    p.add_argument("--orders", type=int, default=None,
                   help="orders per run instead of the defaults (max: 60 s; steady: 30/s × 60 s; "
                        "noisy-neighbour: a 2,000-order flood; parse: at least N messages)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object with the results")
    p.add_argument("--mode", choices=["webhook", "polling"], default="webhook", help="the bot edge's mode")
    p.add_argument("--tenants", type=int, default=4, help="tenants per scenario (M, default 4)")
    p.add_argument("--drivers", type=int, default=25, help="drivers per tenant (D, default 25)")
    p.add_argument("--window", type=int, default=100, help="max: orders in flight at most (default 100)")
    p.add_argument("--rate", type=float, default=30.0, help="steady: orders per second (default 30)")
    p.add_argument("--duration", type=float, default=60.0, help="max/steady: seconds (default 60)")
    p.add_argument("--send-budget", type=float, default=None,
                   help="the app's Telegram send budget, messages/s per bot (default: Telegram's 30, or "
                        "unlimited when only `max` runs: its cap is off); per-chat pacing goes with it")  # fmt: skip
    p.add_argument("--no-baseline", action="store_true", help="skip the no-Temporal baseline")
    p.add_argument("--workers", type=int, default=1, help="worker processes of the stack (default 1)")
    p.add_argument("--profile", action="store_true",
                   help="pyinstrument profile of the bench process per durable phase → results dir")  # fmt: skip
    p.add_argument("--results-dir", type=Path, default=Path("bench/results"))
    p.add_argument("--benchmarks-md", type=Path, default=Path("BENCHMARKS.md"),
                   help="update the generated section of this file (default BENCHMARKS.md)")  # fmt: skip
    p.add_argument("--no-write", action="store_true", help="write no files (print only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--keep-data", action="store_true", help="keep the temporary data dir (debugging)")
    return {"bench": cmd_bench}


def _scenarios(value: str) -> list[str]:
    from benchmarks.runner import SCENARIOS

    names = list(SCENARIOS) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise SystemExit(f"bench: unknown scenario {', '.join(unknown) or value!r}; "
                         f"one of {', '.join(SCENARIOS)}, all")  # fmt: skip
    return names


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from benchmarks import report
    from benchmarks.runner import BenchOptions, run

    if args.orders is not None and args.orders < 1:
        print("bench: --orders must be at least 1", file=sys.stderr)
        return 2
    # Our own progress output; the stack's INFO lines would only tear the bar apart.
    if settings.log_level.upper() in ("INFO", "DEBUG") and not args.no_progress:
        logging.getLogger().setLevel(logging.WARNING)
    scenarios = _scenarios(args.scenario)
    budget, per_chat = 30.0, 1.0
    if args.send_budget is not None:
        budget, per_chat = args.send_budget, (1.0 if args.send_budget <= 30 else 0.0)
    elif set(scenarios) <= {"max", "parse"}:
        budget, per_chat = 100_000.0, 0.0  # `max` runs with Telegram's cap off
    opts = BenchOptions(
        scenarios=scenarios, orders=args.orders, send_budget=budget, send_budget_per_chat=per_chat, mode=args.mode, tenants=args.tenants,
        drivers=args.drivers, window=args.window, rate=args.rate, duration=args.duration,
        baseline=not args.no_baseline, profile=args.profile, progress=not args.no_progress,
        results_dir=args.results_dir, benchmarks_md=None if args.no_write else args.benchmarks_md,
        command="autodispatch " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"]
        else "autodispatch bench " + shlex.join(a for a in sys.argv[1:]),
        keep_data=args.keep_data, workers=args.workers,
    )  # fmt: skip
    results = asyncio.run(run(opts))
    if not args.no_write:
        for path in report.write(results, opts.results_dir, opts.benchmarks_md):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.headline(results), ensure_ascii=False))
    else:
        print(report.markdown_table(results))
    return 0
