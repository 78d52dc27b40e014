"""Results on disk: JSON per scenario and per run, a Markdown table, a PNG chart, BENCHMARKS.md."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# BENCHMARKS.md is partly written by hand (tuning history, profiles); the bench rewrites only this part.
BEGIN = "<!-- bench:latest:begin (written by `autodispatch bench`; edit outside these markers) -->"
END = "<!-- bench:latest:end -->"
# What `--json` prints and acceptance checks read: keep these names.
HEADLINE = ("scenario", "orders", "throughput_per_s", "p50_ms", "p95_ms", "p99_ms", "lost", "duplicated",
            "rate_limited", "baseline_throughput_per_s")  # fmt: skip


def headline(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One object: a single scenario's fields; for several, the first's fields plus `scenarios`."""
    compact = {name: _compact(r) for name, r in results.items()}
    if len(compact) == 1:
        return next(iter(compact.values()))
    first = next(iter(compact.values()))
    out = {k: first.get(k) for k in HEADLINE}
    out["scenario"] = (
        "all" if set(compact) == {"max", "steady", "noisy-neighbour", "bots", "parse"} else ",".join(compact)
    )
    out["scenarios"] = compact
    return out


def _compact(r: dict[str, Any]) -> dict[str, Any]:
    """The result without the bulky series (those stay in the per-scenario JSON files)."""
    drop = {"cdf", "per_second", "baseline", "quiet_alone", "quiet_in_flood", "flood", "machine"}
    out = {k: v for k, v in r.items() if k not in drop}
    for k in HEADLINE:
        out.setdefault(k, None)
    keys = ("orders", "throughput_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_ms_per_order", "lost", "duplicated",
            "cpu_ms_per_order_by_process", "other_programs_cores_busy", "temporal_breakdown")  # fmt: skip
    if isinstance(r.get("baseline"), dict):
        b = r["baseline"]
        out["baseline_summary"] = {k: b.get(k) for k in keys}
        for part in ("quiet_alone", "quiet_in_flood", "flood"):
            if isinstance(b.get(part), dict):
                out["baseline_summary"][part] = {k: b[part].get(k) for k in keys}
    for part in ("quiet_alone", "quiet_in_flood", "flood"):
        if isinstance(r.get(part), dict):
            out[part] = {k: r[part].get(k) for k in keys}
    return out


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        v = f"{v:,.1f}" if abs(v) < 1e5 else f"{v:,.0f}"
    return f"{v}{unit}"


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| scenario | orders | throughput /s | p50 ms | p95 ms | p99 ms | max ms | lost | dup | 429s | CPU ms/order "
        "| baseline /s | durable/baseline thr | durable/baseline CPU | target | met |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | {_fmt(r.get('orders'))} | {_fmt(r.get('throughput_per_s'))} | {_fmt(r.get('p50_ms'))} "
            f"| {_fmt(r.get('p95_ms'))} | {_fmt(r.get('p99_ms'))} | {_fmt(r.get('max_ms'))} | {_fmt(r.get('lost'))} "
            f"| {_fmt(r.get('duplicated'))} | {_fmt(r.get('rate_limited'))} | {_fmt(r.get('cpu_ms_per_order'))} "
            f"| {_fmt(r.get('baseline_throughput_per_s'))} | {_fmt(r.get('ratio_throughput'))} "
            f"| {_fmt(r.get('ratio_cpu_per_order'))} | {r.get('target', '')} "
            f"| {'yes' if r.get('target_met') else 'no'} |"
        )
    notes = []
    for name, r in results.items():
        if name == "max":
            notes.append(f"* max: best 10 s throughput {_fmt(r.get('sustained_10s_per_s'))}/s over "
                         f"{_fmt(r.get('duration_s'))} s with ≤ {r.get('window')} orders in flight; "
                         f"webhook → event p50 {_fmt(r.get('event_p50_ms'))} ms.")  # fmt: skip
        if name == "noisy-neighbour":
            notes.append(f"* noisy-neighbour: quiet tenant p99 alone {_fmt(r.get('quiet_alone_p99_ms'))} ms, "
                         f"during a {r.get('flood_orders')}-order flood {_fmt(r.get('quiet_in_flood_p99_ms'))} ms "
                         f"(× {_fmt(r.get('quiet_p99_ratio'))}); flood worked off at {_fmt(r.get('throughput_per_s'))}/s.")  # fmt: skip
        if name == "bots":
            per_bot = ", ".join(_fmt(v) for v in r.get("per_bot_throughput_per_s") or [])
            notes.append(f"* bots: {r.get('bots')} tenants' own bots at once: {_fmt(r.get('throughput_per_s'))}/s "
                         f"across bots (per bot {per_bot}; offered {_fmt(r.get('offered_per_bot_per_s'))}/s each); "
                         f"the quiet bots' p99 alone {_fmt(r.get('quiet_alone_p99_ms'))} ms, during one bot's "
                         f"{r.get('flood_orders')}-order flood {_fmt(r.get('quiet_in_flood_p99_ms'))} ms "
                         f"(× {_fmt(r.get('quiet_p99_ratio'))}); the flood at {_fmt(r.get('flood_throughput_per_s'))}/s.")  # fmt: skip
        if name == "strangers":
            notes.append(f"* strangers: a driver's p99 alone {_fmt(r.get('quiet_alone_p99_ms'))} ms, while "
                         f"{r.get('strangers')} unknown chats write at once {_fmt(r.get('quiet_in_flood_p99_ms'))} ms "
                         f"(× {_fmt(r.get('quiet_p99_ratio'))}); Telegram delivered the strangers in "
                         f"{_fmt(r.get('strangers_delivered_s'))} s.")  # fmt: skip
        if isinstance(r.get("cpu_s"), dict):
            busy = ", ".join(f"{k} {v:.2f}" for k, v in (r.get("cpu_cores_busy") or {}).items())
            notes.append(f"* {name}: cores busy per process (durable run): {busy}; other programs on the "
                         f"machine meanwhile: {_fmt(r.get('other_programs_cores_busy'))} cores.")  # fmt: skip
    return "\n".join(rows + [""] + notes) + "\n"


def machine_line(results: dict[str, dict[str, Any]]) -> str:
    m = next((r["machine"] for r in results.values() if r.get("machine")), {})
    return (f"{m.get('cores')} cores ({m.get('cpu')}), {m.get('ram_gb')} GB RAM, Python {m.get('python')}, "
            f"Temporal CLI {m.get('temporal')}, {m.get('os')}")  # fmt: skip


def chart(results: dict[str, dict[str, Any]], path: Path) -> bool:
    """Latency CDF per scenario and throughput over time; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no chart")
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {
        "max": "tab:blue",
        "steady": "tab:green",
        "noisy-neighbour": "tab:red",
        "bots": "tab:purple",
        "parse": "tab:gray",
    }
    for name, r in results.items():
        c = colors.get(name, "black")
        if name == "parse":
            continue
        if r.get("cdf"):
            xs, ys = zip(*r["cdf"], strict=True)
            ax1.plot(xs, ys, color=c, label=f"{name} durable")
        base = r.get("baseline") or {}
        if base.get("cdf"):
            xs, ys = zip(*base["cdf"], strict=True)
            ax1.plot(xs, ys, color=c, linestyle="--", label=f"{name} baseline")
        if name == "noisy-neighbour" and (r.get("quiet_alone") or {}).get("cdf"):
            xs, ys = zip(*r["quiet_alone"]["cdf"], strict=True)
            ax1.plot(xs, ys, color=c, linestyle=":", label="noisy: quiet tenant alone")
        if r.get("per_second"):
            xs, ys = zip(*r["per_second"], strict=True)
            ax2.plot(xs, ys, color=c, label=f"{name} durable")
        if base.get("per_second"):
            xs, ys = zip(*base["per_second"], strict=True)
            ax2.plot(xs, ys, color=c, linestyle="--", alpha=0.6, label=f"{name} baseline")
    ax1.set_xscale("log")
    ax1.set_xlabel("webhook → reply latency (ms, log)")
    ax1.set_ylabel("fraction of orders")
    ax1.set_title("Latency CDF (noisy-neighbour: the quiet tenant)")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.set_xlabel("seconds since the first order")
    ax2.set_ylabel("orders completed per second")
    ax2.set_title("Throughput over time (noisy-neighbour: the flood)")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(f"autodispatch bench — {machine_line(results)}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(results: dict[str, dict[str, Any]], results_dir: Path, benchmarks_md: Path | None) -> list[Path]:
    """latest.{json,md,png} for this run, <scenario>.json per scenario (the latest of each), and the
    generated part of BENCHMARKS.md from every scenario's latest file."""
    results_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, r in results.items():
        p = results_dir / f"{name}.json"
        p.write_text(json.dumps(r, indent=1, ensure_ascii=False) + "\n")
        written.append(p)
    latest = results_dir / "latest.json"
    latest.write_text(json.dumps(headline(results), indent=1, ensure_ascii=False) + "\n")
    md = results_dir / "latest.md"
    md.write_text(f"# Latest bench run\n\n{machine_line(results)}\n\n`{_command(results)}`\n\n"
                  + markdown_table(results))  # fmt: skip
    written += [latest, md]
    if chart(results, results_dir / "latest.png"):
        written.append(results_dir / "latest.png")
    if benchmarks_md is not None:
        everything: dict[str, dict[str, Any]] = {}
        for name in ("max", "steady", "noisy-neighbour", "bots", "parse"):
            p = results_dir / f"{name}.json"
            if p.exists():
                everything[name] = json.loads(p.read_text())
        if chart(everything, results_dir / "all.png"):
            written.append(results_dir / "all.png")
        update_benchmarks_md(benchmarks_md, everything, results_dir)
        written.append(benchmarks_md)
    return written


def _command(results: dict[str, dict[str, Any]]) -> str:
    return next((r.get("command") for r in results.values() if r.get("command")), "autodispatch bench")


def update_benchmarks_md(path: Path, results: dict[str, dict[str, Any]], results_dir: Path) -> None:
    lines = [BEGIN, "", f"Machine: {machine_line(results)}.", ""]
    for name, r in results.items():
        lines.append(f"* `{name}` measured {r.get('started_at')} with `{r.get('command')}`")
    lines += ["", markdown_table(results), f"![latency CDF and throughput]({results_dir.as_posix()}/all.png)",
              "", END]  # fmt: skip
    block = "\n".join(lines)
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Latest numbers\n\n" + block + "\n"
    path.write_text(text)
