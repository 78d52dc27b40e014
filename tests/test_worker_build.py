"""What the worker prepares before it polls: the workflow modules' bytecode."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from workers.worker import PROJECT_ROOT, SANDBOX_PACKAGES, ensure_bytecode


def test_sandbox_packages_get_bytecode_even_where_python_writes_none(tmp_path: Path) -> None:
    package = tmp_path / "flows"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "order.py").write_text("STEPS = ('parse', 'write', 'reply')\n")
    cached = Path(importlib.util.cache_from_source(str(package / "order.py")))
    assert not cached.exists()
    assert ensure_bytecode([package, tmp_path / "missing"]) == 1
    assert cached.exists()
    first = cached.stat().st_mtime_ns
    (package / "order.py").write_text("STEPS = ('parse', 'write', 'reply', 'remind')\n")
    os.utime(package / "order.py", ns=(first + 2_000_000_000, first + 2_000_000_000))
    ensure_bytecode([package])
    assert cached.stat().st_mtime_ns > first  # a changed module is compiled again, not served stale


def test_the_sandboxed_packages_are_the_projects() -> None:
    assert all((PROJECT_ROOT / name / "__init__.py").exists() for name in SANDBOX_PACKAGES)
