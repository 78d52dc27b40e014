"""deploy/: the alert rules pass promtool, and every metric a dashboard panel or a rule uses is one the
running app exports (checked on GET /metrics of the real stack after an order, in tests/test_metrics.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "autodispatch.json"
METRIC = re.compile(r"\b(?:autodispatch|temporal)_[a-z0-9_]+")


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def panel_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    return exprs


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "promtool not installed (Debian package `prometheus`; `make install` installs it as root)"
        )
    res = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)  # noqa: S603
    assert res.returncode == 0, res.stdout + res.stderr
    config = subprocess.run(  # noqa: S603
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_rules_cover_what_operators_are_paged_for() -> None:
    names = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {
        "AutodispatchOrdersFailing", "AutodispatchCalendarErrors", "AutodispatchSendBudgetSaturated",
        "AutodispatchWorkflowTaskBacklog", "AutodispatchWorkerDown",
    } <= names  # fmt: skip


def exported_names(text: str) -> set[str]:
    """Sample names, and for families with no sample yet (a labelled counter nothing has counted) the
    names their samples will have."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples} | {family.name}
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


def assert_deploy_uses_only_exported_metrics(exposition: str) -> None:
    """Called with GET /metrics of the running stack after an order (tests/test_metrics.py)."""
    used = {m for expr in rule_exprs() + panel_exprs() for m in METRIC.findall(expr)}
    assert len(used) >= 15, used
    missing = used - exported_names(exposition)
    assert not missing, f"used by deploy/ but not exported: {sorted(missing)}"
