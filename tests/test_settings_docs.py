"""The README's settings table names every setting there is."""

from __future__ import annotations

from pathlib import Path

from autodispatch.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme]
    assert not missing, f"settings missing from README.md's table: {missing}"
