"""`autodispatch parse`: one message → one JSON object, or `--jsonl` batches on stdin → JSON lines;
`--image FILE` reads an order screenshot with OCR first (the text, if given too, is its caption)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any, TextIO

from parsing.orders import parse_order, zone_for
from schemas.order import ORDER_FIELDS, ParsedOrder

_NULL_RESULT: dict[str, Any] = {key: None for key in ORDER_FIELDS} | {"is_order": False}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="?", help="the order text (omit with --jsonl; with --image: its caption)")
    p.add_argument(
        "--image",
        metavar="FILE",
        help="an order screenshot (PNG, JPEG, WebP...) read with Tesseract OCR; the text read goes to stderr",
    )
    p.add_argument("--now", help="when the message arrived, ISO 8601 (default: now); naive = in --tz")
    p.add_argument(
        "--tz", default="Europe/Moscow", help="the driver's IANA time zone (default Europe/Moscow)"
    )
    p.add_argument("--region", help="ISO country code for phone/date formats (default: from --tz)")
    p.add_argument("--currency", help="ISO 4217 currency of bare prices (default: from the region)")
    p.add_argument(
        "--jsonl",
        action="store_true",
        help='read {"text","now","tz","region"?,"currency"?} per line on stdin, write one result per line',
    )


def _parse_now(value: str | None, tz: str) -> datetime:
    zone = zone_for(tz)
    if not value:
        return datetime.now(zone)
    now = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return now if now.tzinfo is not None else now.replace(tzinfo=zone)


def _dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False)


def _one(request: Any) -> dict[str, Any]:
    if not isinstance(request, dict):
        raise ValueError("request is not a JSON object")
    text, tz = request.get("text"), request.get("tz") or "Europe/Moscow"
    if not isinstance(text, str):
        raise ValueError('"text" must be a string')
    if not isinstance(tz, str):
        raise ValueError('"tz" must be a string')
    now_raw = request.get("now")
    if now_raw is not None and not isinstance(now_raw, str):
        raise ValueError('"now" must be an ISO 8601 string')
    region, currency = request.get("region"), request.get("currency")
    for key, value in (("region", region), ("currency", currency)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f'"{key}" must be a string')
    order: ParsedOrder = parse_order(text, _parse_now(now_raw, tz), tz, region=region, currency=currency)
    return order.to_flat_json()


def _batch(stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    out: list[str] = []
    for number, line in enumerate(stdin, start=1):
        if not line.strip():
            continue
        try:
            result = _one(json.loads(line))
        except (ValueError, TypeError, OverflowError) as exc:
            # One bad line must not cost the rest of the batch: a null result keeps lines aligned.
            print(f"parse: line {number}: {exc}", file=stderr)
            result = _NULL_RESULT
        out.append(_dumps(result))
        if len(out) >= 1000:
            stdout.write("\n".join(out) + "\n")
            out.clear()
    if out:
        stdout.write("\n".join(out) + "\n")
    stdout.flush()
    return 0


def _read_image(path: str, caption: str | None) -> str | None:
    """The screenshot's text after its caption, as the bot reads a photo; None (and why, on stderr)."""
    from parsing import ocr  # Pillow and Tesseract only for pictures: text parsing stays light

    try:
        with open(path, "rb") as file:
            data = file.read()
        picture = ocr.read_picture(data)
    except OSError as exc:
        print(f"parse: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    except (ocr.OcrUnavailable, ocr.PictureUnreadable, ocr.OcrTimeout) as exc:
        print(f"parse: {path}: {exc}", file=sys.stderr)
        return None
    print(f"read from {path} ({picture.width}x{picture.height}, {picture.seconds:.2f} s):", file=sys.stderr)
    print(picture.text or "(no text)", file=sys.stderr)
    return f"{caption}\n{picture.text}" if caption else picture.text


def run(args: argparse.Namespace) -> int:
    if args.jsonl:
        if args.image:
            print("parse: --image reads one picture; it does not combine with --jsonl", file=sys.stderr)
            return 2
        return _batch(sys.stdin, sys.stdout, sys.stderr)
    if args.image:
        text = _read_image(args.image, args.text)
        if text is None:
            return 2
        args.text = text
    if args.text is None:
        print("parse: give the order TEXT, or --jsonl to read requests from stdin", file=sys.stderr)
        return 2
    try:
        now = _parse_now(args.now, args.tz)
        order = parse_order(args.text, now, args.tz, region=args.region, currency=args.currency)
    except ValueError as exc:
        print(f"parse: {exc}", file=sys.stderr)
        return 2
    print(_dumps(order.to_flat_json()), flush=True)
    return 0
