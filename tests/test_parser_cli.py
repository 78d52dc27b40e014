"""The `parse` CLI contract: one message → one flat JSON object; `--jsonl` batches; the real scorer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulators.screenshots import render_png
from schemas.order import ORDER_FIELDS

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SCORER = SHARED / "tools" / "score_orders.py"
CORPORA = [
    ROOT / "tests" / "corpus" / "orders.jsonl",
    ROOT / "tests" / "corpus" / "orders_round2.jsonl",
    SHARED / "orders_public.jsonl",
]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parsing", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_single_message_prints_exactly_the_flat_keys() -> None:
    proc = cli(
        "завтра 14:20 Шереметьево B → Долгопрудный, 1800р, 3 пасс, Света 89161112233",
        "--now",
        "2026-11-21T10:00:00+03:00",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert list(result) == list(ORDER_FIELDS)
    assert "Шереметьево" in lines[0]  # ensure_ascii=False: Cyrillic is printed as is
    assert result == {
        "pickup_at": "2026-11-22T14:20:00+03:00",
        "pickup_address": "Шереметьево B",
        "dropoff_address": "Долгопрудный",
        "price_amount": 1800,
        "price_currency": "RUB",
        "client_name": "Света",
        "client_phone": "+79161112233",
        "flight_number": None,
        "passengers": 3,
        "notes": None,
        "is_order": True,
    }


def test_defaults_come_from_the_zone() -> None:
    proc = cli(
        "Tomorrow 8:10 am from SFO to Palo Alto, fare 90, (650) 555-0188",
        "--now",
        "2026-11-21T10:00:00-08:00",
        "--tz",
        "America/Los_Angeles",
    )
    result = json.loads(proc.stdout)
    assert (result["pickup_at"], result["price_currency"], result["client_phone"]) == (
        "2026-11-22T08:10:00-08:00",
        "USD",
        "+16505550188",
    )
    overridden = json.loads(cli("завтра в 10:00 Внуково → Химки, цена 60", "--currency", "EUR").stdout)
    assert overridden["price_currency"] == "EUR"


def test_default_now_is_the_current_time() -> None:
    result = json.loads(cli("через 30 минут Арбат 12 → Курский вокзал, 800р").stdout)
    assert result["pickup_at"] is not None and result["pickup_at"].endswith("+03:00")


def test_chatter_prints_nulls() -> None:
    result = json.loads(cli("Ок, понял, спасибо").stdout)
    assert result == {key: None for key in ORDER_FIELDS} | {"is_order": False}


def test_bad_arguments_fail_cleanly() -> None:
    assert cli("завтра в 10", "--tz", "Mars/Olympus").returncode == 2
    assert cli("завтра в 10", "--now", "not-a-date").returncode == 2
    assert cli().returncode == 2


def test_jsonl_batch_keeps_order_and_survives_bad_lines() -> None:
    requests = [
        {"text": "завтра 14:20 Шереметьево B → Долгопрудный, 1800р", "now": "2026-11-21T10:00:00+03:00", "tz": "Europe/Moscow"},
        "this is not json",
        {"text": "Transfer on 11/30 at 11:15 from Hotel Plaza to JFK, USD 110", "now": "2026-11-21T10:00:00-05:00",
         "tz": "America/New_York", "region": "US", "currency": "USD"},
        {"text": 42, "now": "2026-11-21T10:00:00+03:00", "tz": "Europe/Moscow"},
        {"text": "завтра в 10 Арбат → Внуково", "now": "2026-11-21T10:00:00+03:00", "tz": "Nowhere/City"},
        {"text": "thanks!", "now": "2026-11-21T10:00:00+03:00", "tz": "Europe/Moscow"},
    ]  # fmt: skip
    stdin = "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in requests) + "\n"
    proc = cli("--jsonl", stdin=stdin)
    assert proc.returncode == 0
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(requests)
    assert all(list(r) == list(ORDER_FIELDS) for r in results)
    assert results[0]["pickup_at"] == "2026-11-22T14:20:00+03:00"
    assert results[2]["pickup_at"] == "2026-11-30T11:15:00-05:00" and results[2]["dropoff_address"] == "JFK"
    nulls = {key: None for key in ORDER_FIELDS} | {"is_order": False}
    assert results[1] == results[3] == results[4] == nulls
    assert results[5] == nulls
    reported = [line.split(":")[1].strip() for line in proc.stderr.splitlines()]
    assert reported == ["line 2", "line 4", "line 5"]


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda p: p.name)
def test_scorer_accepts_the_parser(corpus: Path) -> None:
    if not SCORER.is_file():
        pytest.fail(f"the shared scorer is missing: expected {SCORER} (../shared beside the project root)")
    if not corpus.is_file():
        pytest.fail(f"corpus missing: {corpus}")
    proc = subprocess.run(
        [
            sys.executable,
            str(SCORER),
            str(corpus),
            "--cmd",
            f"{sys.executable} -m parsing --jsonl",
            "--min",
            "0.95",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "parser field accuracy" in proc.stdout


def test_image_is_read_with_ocr_and_parsed_with_its_caption(tmp_path: Path) -> None:
    picture = tmp_path / "order.png"
    picture.write_bytes(render_png("завтра 14:20 Шереметьево B → Долгопрудный, 1800р, 3 пасс", "dark"))
    proc = cli("Света 89161112233", "--image", str(picture), "--now", "2026-11-21T10:00:00+03:00")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert list(result) == list(ORDER_FIELDS)
    assert result["pickup_at"] == "2026-11-22T14:20:00+03:00" and result["dropoff_address"] == "Долгопрудный"
    assert result["client_phone"] == "+79161112233" and result["price_amount"] == 1800  # caption + picture
    assert "Долгопрудный" in proc.stderr  # what was read, for the person checking it


def test_image_errors_are_one_clear_line(tmp_path: Path) -> None:
    missing = cli("--image", str(tmp_path / "none.png"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr and not missing.stdout
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    bad = cli("--image", str(junk))
    assert bad.returncode == 2 and "not a picture" in bad.stderr
    both = cli("--image", str(junk), "--jsonl", stdin="")
    assert both.returncode == 2 and "--jsonl" in both.stderr
