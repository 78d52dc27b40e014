"""OCR of order screenshots measured: field accuracy against the text parser and seconds per picture.

    .venv/bin/python -m benchmarks.ocr [CORPUS.jsonl] [--layouts chat,card,dark] [--scale 1.0]

Each order of the corpus is rendered in each layout (emulators.screenshots), read back with Tesseract
(parsing.ocr) and parsed; a field counts when the text parser gets it right on the typed text, and the
OCR path is scored on exactly those fields with the acceptance scorer's own comparison
(../shared/tools/score_orders.py). Prints the accuracy, the misses and p50/p99 OCR time per picture.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from emulators.screenshots import LAYOUTS, Layout, render_png
from parsing.ocr import read_picture
from parsing.orders import parse_order

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PUBLIC_CORPUS = SHARED / "orders_public.jsonl"
SCORER = SHARED / "tools" / "score_orders.py"


def load_scorer(path: Path = SCORER) -> ModuleType:
    """The acceptance scorer as a module: its field_ok is the one comparison used everywhere."""
    spec = importlib.util.spec_from_file_location("score_orders", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_case(case: dict[str, Any], text: str) -> dict[str, Any]:
    now = datetime.fromisoformat(case["now"])
    order = parse_order(text, now, case["tz"], region=case.get("region"), currency=case.get("currency"))
    return order.to_flat_json()


def expected(case: dict[str, Any]) -> dict[str, Any]:
    expect = dict(case["expect"])
    if "pickup_at" in expect:
        expect.setdefault("is_order", True)
    return expect


@dataclass
class Measurement:
    text_right: int = 0  # fields the text parser gets right (the denominator)
    picture_right: int = 0  # of those, fields the OCR path gets right too
    fields: int = 0  # every expected field
    seconds: list[float] = field(default_factory=list)  # wall time per picture (decode, downscale, OCR)
    cpu_seconds: list[float] = field(default_factory=list)  # CPU per picture: ours and Tesseract's
    misses: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.picture_right / self.text_right if self.text_right else 0.0

    def percentile(self, q: float, cpu: bool = False) -> float:
        ordered = sorted(self.cpu_seconds if cpu else self.seconds)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def measure(
    cases: list[dict[str, Any]],
    layouts: tuple[Layout, ...] = LAYOUTS,
    scale: float = 1.0,
    rotate: bool = False,
) -> Measurement:
    """Every case in every layout, or (rotate) each case in one layout, taking turns."""
    scorer = load_scorer()
    result = Measurement()
    for number, case in enumerate(cases):
        typed = parse_case(case, case["text"])
        expect = expected(case)
        right = [k for k, want in expect.items() if scorer.field_ok(k, want, typed.get(k))]
        chosen = (layouts[number % len(layouts)],) if rotate else layouts
        for layout in chosen:
            png = render_png(case["text"], layout, scale)
            before = _cpu()
            picture = read_picture(png)
            result.cpu_seconds.append(_cpu() - before)
            result.seconds.append(picture.seconds)
            read = parse_case(case, picture.text)
            result.fields += len(expect)
            result.text_right += len(right)
            for key in right:
                if scorer.field_ok(key, expect[key], read.get(key)):
                    result.picture_right += 1
                else:
                    result.misses.append(
                        f"{case['id']} {layout} {key}: want {typed.get(key)!r} got {read.get(key)!r}"
                        f" from {picture.text!r}"
                    )
    return result


def _cpu() -> float:
    """CPU seconds of this process and its finished children (each Tesseract run)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load_cases(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=PUBLIC_CORPUS)
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--scale", type=float, default=1.0, help="render bigger pictures (2.0: a high-DPI phone)")
    args = ap.parse_args(argv)
    layouts = tuple(name for name in args.layouts.split(",") if name)
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        print(f"unknown layouts {sorted(unknown)}; known: {', '.join(LAYOUTS)}", file=sys.stderr)
        return 2
    result = measure(load_cases(args.corpus), layouts, args.scale)  # type: ignore[arg-type]
    for miss in result.misses:
        print("miss", miss)
    print(
        f"OCR field accuracy: {result.accuracy:.1%} of the fields the text parser gets right "
        f"({result.picture_right}/{result.text_right}; {result.fields} fields expected), "
        f"{len(result.seconds)} pictures"
    )
    print(
        f"OCR seconds per picture: p50 {result.percentile(0.5):.2f}, p99 {result.percentile(0.99):.2f}, "
        f"mean {statistics.fmean(result.seconds):.2f}; CPU p50 {result.percentile(0.5, cpu=True):.2f}, "
        f"p99 {result.percentile(0.99, cpu=True):.2f}, mean {statistics.fmean(result.cpu_seconds):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
