"""The bench machinery end to end on a few orders: the JSON contract, the files, nothing lost or doubled.
No timing assertions: machines are shared and noisy; the numbers live in BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

HEADLINE = ("scenario", "orders", "throughput_per_s", "p50_ms", "p95_ms", "p99_ms", "lost", "duplicated",
            "rate_limited", "baseline_throughput_per_s")  # fmt: skip


def test_bench_max_and_parse_on_few_orders(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODISPATCH_")}
    env["AUTODISPATCH_LOG_LEVEL"] = "WARNING"
    res = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "autodispatch", "bench", "--scenario", "max,parse", "--orders", "20", "--json",
         "--no-progress", "--results-dir", str(tmp_path / "results"),
         "--benchmarks-md", str(tmp_path / "BENCHMARKS.md")],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for key in HEADLINE:
        assert key in out, key
    assert set(out["scenarios"]) == {"max", "parse"}

    max_ = out["scenarios"]["max"]
    for key in HEADLINE:
        assert key in max_, key
    assert max_["scenario"] == "max" and max_["orders"] == 20
    assert max_["lost"] == 0 and max_["duplicated"] == 0 and max_["rate_limited"] == 0
    assert max_["throughput_per_s"] > 0 and max_["baseline_throughput_per_s"] > 0
    assert 0 < max_["p50_ms"] <= max_["p95_ms"] <= max_["p99_ms"]
    assert max_["baseline_summary"]["lost"] == 0 and max_["baseline_summary"]["duplicated"] == 0

    parse = out["scenarios"]["parse"]
    assert parse["scenario"] == "parse" and parse["orders"] >= 20 and parse["throughput_per_s"] > 0

    results = tmp_path / "results"
    for name in ("latest.json", "latest.md", "latest.png", "max.json", "parse.json"):
        assert (results / name).stat().st_size > 0, name
    assert json.loads((results / "latest.json").read_text())["scenarios"]["max"]["lost"] == 0
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| max |" in md and "| parse |" in md
