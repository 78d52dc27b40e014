"""Pure helpers: percentiles, CDFs, time series, CPU accounting of the processes under test."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no data."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def summary_ms(latencies_s: Sequence[float], prefix: str = "") -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds, rounded for people."""
    out: dict[str, float | None] = {}
    for name, q in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)):
        v = percentile(latencies_s, q)
        out[f"{prefix}{name}_ms"] = None if v is None else round(v * 1000.0, 1)
    return out


def cdf_points(latencies_s: Sequence[float], points: int = 101) -> list[list[float]]:
    """A downsampled CDF [[latency ms, fraction], ...]: enough for a chart, small enough to commit."""
    if not latencies_s:
        return []
    return [[round(percentile(latencies_s, 100.0 * i / (points - 1)) * 1000.0, 2), i / (points - 1)]  # type: ignore[operator]
            for i in range(points)]  # fmt: skip


def per_second(timestamps: Iterable[float], start: float) -> list[list[float]]:
    """Completions per 1-second bucket since `start`: [[second, count], ...]."""
    counts: dict[int, int] = {}
    for ts in timestamps:
        b = max(0, int(ts - start))
        counts[b] = counts.get(b, 0) + 1
    if not counts:
        return []
    return [[float(s), float(counts.get(s, 0))] for s in range(max(counts) + 1)]


def sustained_rate(series: list[list[float]], window_s: int = 10) -> float | None:
    """The best rate over any `window_s`-second stretch: what the system keeps up, not warm-up."""
    if not series:
        return None
    counts = [c for _, c in series]
    if len(counts) <= window_s:
        return sum(counts) / max(1, len(counts))
    best = max(sum(counts[i : i + window_s]) for i in range(len(counts) - window_s + 1))
    return best / window_s


@dataclass
class CpuMeter:
    """CPU seconds used by named processes (and their children, e.g. postgres backends)."""

    pids: dict[str, int] = field(default_factory=dict)

    # Processes whose children are part of them (postgres forks a backend per connection). The bench
    # process's own children are the other servers: counted under their own names, not twice.
    with_children: tuple[str, ...] = ("postgres",)

    def _seconds(self, name: str, pid: int) -> float:
        try:
            proc = psutil.Process(pid)
            t = proc.cpu_times()
            total = t.user + t.system
            if name not in self.with_children:
                return total
            total += t.children_user + t.children_system
            for child in proc.children(recursive=True):
                try:
                    c = child.cpu_times()
                    total += c.user + c.system
                except psutil.Error:
                    pass
            return total
        except psutil.Error:
            return 0.0

    def snapshot(self) -> dict[str, float]:
        snap = {name: self._seconds(name, pid) for name, pid in self.pids.items()}
        t = psutil.cpu_times()
        # Everything busy on the machine; minus our processes it is the noise from other work.
        snap["machine"] = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        return snap

    @staticmethod
    def others(delta: dict[str, float]) -> float:
        """CPU seconds other programs used meanwhile (shared machines: read numbers with this in mind)."""
        ours = sum(v for k, v in delta.items() if k != "machine")
        return round(max(0.0, delta.get("machine", 0.0) - ours), 2)

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: round(max(0.0, after.get(k, 0.0) - v), 3) for k, v in before.items()}


def temporal_server_version() -> str:
    from autodispatch.embedded import temporal_cli_path

    try:
        out = subprocess.run(  # noqa: S603 - our own bundled binary
            [temporal_cli_path(), "--version"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    # "temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)"
    return out.strip().removeprefix("temporal version ").strip() or "unknown"


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor() or "unknown",
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "temporal": temporal_server_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
