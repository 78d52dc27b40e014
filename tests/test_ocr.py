"""The OCR reader on rendered screenshots: layouts, dark mode, big pictures, bad bytes, the timeout,
a machine without Tesseract, and the acceptance measure on the public corpus."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime

import pytest
from PIL import Image

from benchmarks.ocr import PUBLIC_CORPUS, load_cases, measure
from emulators.screenshots import LAYOUTS, render, render_png, to_bytes
from parsing import ocr
from parsing.orders import parse_order

ORDER = "Заказ 22.11 в 08:15\nОткуда: Внуково, рейс SU 1103\nКуда: ул. Остоженка 25\nКлиент: Роман +7 903 765-43-21\nЦена: 2700 ₽"
NOW = datetime.fromisoformat("2026-11-21T10:00:00+03:00")


@pytest.fixture(scope="module", autouse=True)
def tesseract_installed() -> None:
    found = ocr.availability()
    assert found.ok, f"OCR tests need Tesseract: {found.message} (make install does it as root)"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_reads_into_the_same_order(layout: str) -> None:
    picture = ocr.read_picture(render_png(ORDER, layout))  # type: ignore[arg-type]
    order = parse_order(picture.text, NOW, "Europe/Moscow")
    assert order.pickup_at == datetime.fromisoformat("2026-11-22T08:15:00+03:00")
    assert "Внуково" in (order.pickup_address or "")
    assert "Остоженка" in (order.dropoff_address or "")
    assert order.client_phone == "+79037654321"
    assert order.flight_number == "SU1103"
    assert order.price_amount == 2700


def test_the_chat_title_and_time_stamp_are_not_read_as_the_order() -> None:
    text = ocr.read_picture(render_png("завтра 14:20 Шереметьево B → Долгопрудный, 1800р", "dark")).text
    assert "Диспетчер" not in text and "12:07" not in text
    assert text.startswith("завтра 14:20")


def test_lines_the_messenger_wrapped_are_joined_and_real_line_breaks_kept() -> None:
    long = "во вторник в 7 утра из Реутова в Домодедово, 2400 руб, Света 89161112233, багаж два чемодана"
    text = ocr.read_picture(render_png(f"{long}\nКлиент ждёт у подъезда", "chat")).text
    assert text.splitlines()[0].startswith("во вторник") and "Света 89161112233" in text.splitlines()[0]
    assert text.splitlines()[-1] == "Клиент ждёт у подъезда"


def test_a_big_picture_is_downscaled_and_still_read() -> None:
    big = render(ORDER, "card", scale=5.0)
    assert max(big.size) > ocr.MAX_SIDE
    prepared, original = ocr.prepare(to_bytes(big, "JPEG"))
    assert original == big.size and max(prepared.size) == ocr.MAX_SIDE
    picture = ocr.read_picture(to_bytes(big, "JPEG"))
    assert (picture.width, picture.height) == big.size
    assert "+7 903 765-43-21" in picture.text


def test_dark_mode_is_inverted_to_dark_ink() -> None:
    prepared, _ = ocr.prepare(render_png(ORDER, "dark"))
    histogram = prepared.histogram()
    assert sum(histogram[128:]) > sum(histogram[:128])  # mostly light: the letters are the dark part


def test_bytes_that_are_no_picture_are_refused_clearly() -> None:
    with pytest.raises(ocr.PictureUnreadable, match="not a picture"):
        ocr.read_picture(b"%PDF-1.4 not an image")


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = to_bytes(Image.new("1", (9000, 9000)), "PNG")  # small file, 81 M pixels
    with pytest.raises(ocr.PictureUnreadable, match="too big"):
        ocr.prepare(bomb)


def test_the_timeout_kills_tesseract() -> None:
    with pytest.raises(ocr.OcrTimeout):
        ocr.read_picture(render_png(ORDER, "chat", scale=3.0), timeout_s=0.01)
    # subprocess.run kills and reaps the child on its timeout: no tesseract of ours is left running.
    ps = subprocess.run(["ps", "-o", "pid=,ppid=,comm="], capture_output=True, text=True, check=True)
    assert not [
        line for line in ps.stdout.splitlines() if line.split()[1:] == [str(os.getpid()), "tesseract"]
    ]


def test_without_tesseract_the_reader_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    ocr.availability.cache_clear()
    try:
        found = ocr.availability()
        assert not found.ok and "apt-get install -y tesseract-ocr" in found.message
        with pytest.raises(ocr.OcrUnavailable, match="tesseract is not installed"):
            ocr.read_picture(render_png(ORDER))
    finally:
        monkeypatch.undo()
        ocr.availability.cache_clear()


def test_public_orders_as_screenshots_keep_90_percent_of_the_text_parsers_fields() -> None:
    # Each order in one layout, the layouts taking turns (all three: python -m benchmarks.ocr).
    result = measure(load_cases(PUBLIC_CORPUS), rotate=True)
    assert len(result.seconds) == 20 and result.text_right >= 120
    assert result.accuracy >= 0.90, "\n".join(result.misses)


@pytest.mark.parametrize(
    ("read", "meant"),
    [
        ("Тверская 12 → Шереметьево, 22002", "Тверская 12 → Шереметьево, 2200 ₽"),  # ₽ read as a 2
        ("19002", "1900 ₽"),  # "1 900 ₽" on its own line
        ("Курский вокзал — Внуково, 2 100 2", "Курский вокзал — Внуково, 2 100 ₽"),
        ("Цена: 2700 Р", "Цена: 2700 ₽"),
        ("Бутово → Домодедово, 1300p", "Бутово → Домодедово, 1300 ₽"),
        ("Шереметьево В > Долгопрудный", "Шереметьево В → Долгопрудный"),
        ("Киевский вокзал —> Новопеределкино", "Киевский вокзал → Новопеределкино"),
        ("Пулково - Пушкин", "Пулково — Пушкин"),
        ("Nov 25, 2:15 рт", "Nov 25, 2:15 pm"),
        # Digits that are no price keep their last 2: a house, a flight, a phone.
        ("Зеленоград, корп. 2002", "Зеленоград, корп. 2002"),
        ("рейс SU 1002", "рейс SU 1002"),
        ("+7 916 100-20-02", "+7 916 100-20-02"),
    ],
)
def test_what_tesseract_makes_of_order_symbols_is_taken_back(read: str, meant: str) -> None:
    assert ocr.clean([read]) == meant
