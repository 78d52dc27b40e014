"""Several orders in one message, and the parser's cost staying linear in the message's length."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import parsing.split
from parsing.orders import MAX_TEXT, parse_order
from parsing.split import HEADER_MAX, MAX_ORDERS, split_orders

NOW = datetime.fromisoformat("2026-11-21T10:00:00+03:00")
TZ = "Europe/Moscow"
PARSING_DIR = str(Path(parsing.split.__file__).resolve().parent)


def split(text: str) -> list[parsing.split.OrderBlock]:
    return split_orders(text, NOW, TZ)


# ---- what a split is ----------------------------------------------------------------------------------


def test_a_days_list_splits_and_every_order_gets_the_header() -> None:
    text = (
        "Заказы на 24.11:\n"
        "1) 07:30 Ленинский пр-т 30 → Внуково, 1500р\n"
        "2) 12:15 Шереметьево B → Химки, ул. Московская 5, 1800р\n"
        "3) 19:40 Тверская 7 → Домодедово, 2100р"
    )
    blocks = split(text)
    assert [b.order.pickup_at.isoformat() for b in blocks if b.order.pickup_at] == [
        "2026-11-24T07:30:00+03:00",
        "2026-11-24T12:15:00+03:00",
        "2026-11-24T19:40:00+03:00",
    ]
    assert all(b.text.startswith("Заказы на 24.11:") for b in blocks)
    assert [b.order.price_amount for b in blocks] == [1500, 1800, 2100]


def test_a_note_on_its_own_block_belongs_to_the_order_before_it() -> None:
    text = (
        "завтра 8:00 Арбат 10 → Внуково, 1400р\n\n"
        "клиент с собакой\n\n"
        "завтра 15:00 Пулково → Невский 20, 1200р"
    )
    blocks = split(text)
    assert len(blocks) == 2
    assert "собакой" in blocks[0].text and "собакой" not in blocks[1].text
    assert blocks[0].order.notes and "собак" in blocks[0].order.notes


def test_one_order_with_blank_lines_is_not_split() -> None:
    text = "Завтра в 9:00\n\nОткуда: Арбат 10\n\nКуда: Шереметьево D\n\n1500р"
    assert split(text) == []


def test_too_many_orders_is_not_a_list_of_orders() -> None:
    one = "в 10:00 Арбат 1 → Внуково, 1000р"
    assert split("\n\n".join([one] * (MAX_ORDERS + 1))) == []
    assert len(split("\n\n".join([one] * MAX_ORDERS))) == MAX_ORDERS


def test_a_long_preamble_keeps_only_the_lines_nearest_the_list() -> None:
    preamble = "\n\n".join(["Коллеги, всем добрый вечер, правила прежние, без опозданий"] * 20)
    text = preamble + "\n\nНа 25.11:\n\n09:00 Арбат 1 → Внуково, 1000р\n\n13:00 Внуково → Арбат 1, 1000р"
    blocks = split(text)
    assert len(blocks) == 2
    assert all(len(b.text) <= HEADER_MAX + 60 for b in blocks)
    assert all(b.order.pickup_at and b.order.pickup_at.day == 25 for b in blocks)


# ---- linear in the message's length -------------------------------------------------------------------

# Messages a stranger (or a chatty dispatcher) can send: many short blocks, long lines of one repeated
# phrase. Each shape is repeated up to the length asked for.
SHAPES: dict[str, str] = {
    "short chatter blocks": "ок\n\n",
    "short sentence blocks": "привет, как дела\n\n",
    "numbered items": "1) ок\n",
    "route-like blocks": "из А в Б\n\n",
    "digit blocks": "1 2\n\n",
    "bare hours": "в 7\n\n",
    "one line of pickups": "из Арбата ",
    "one line of pairs": "из А в Б, ",
    "labels": "Откуда: А\n",
    "verbs": "забрать с А ",
    "dashes": "А - Б - ",
    "arrows and chatter": "Арбат → ок → ",
    "short dates": "23.11 ",
    "prices": "1000р ",
    "emoji labels": "📍 ",
    "questions": "Арбат? ",
}


def shaped(unit: str, length: int) -> str:
    """Whole repeats of `unit` up to `length`: a short and a long text of one shape end alike."""
    return unit * (length // len(unit))


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_split_parses_each_block_a_bounded_number_of_times(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Characters handed to the parser while splitting: at most a few times the message, whatever its shape
    (before, every block was parsed with the whole growing header in front: quadratic, 14 s for 4,000
    characters of short blocks)."""
    parsed_chars = 0

    def counting(text: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal parsed_chars
        parsed_chars += len(text)
        return parse_order(text, *args, **kwargs)

    monkeypatch.setattr(parsing.split, "parse_order", counting)
    text = shaped(SHAPES[shape], 4000)
    split(text)
    assert parsed_chars <= 3 * len(text) + 2 * (MAX_ORDERS + 1) * (HEADER_MAX + 1)


def _line_events(func: Callable[[], object]) -> int:
    """Python lines run inside parsing/ while `func` runs: a deterministic operation count."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if not frame.f_code.co_filename.startswith(PARSING_DIR):
            return None
        if event == "line":
            count += 1
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        func()
    finally:
        sys.settrace(old)
    return count


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_parser_steps_grow_linearly_with_the_text(shape: str) -> None:
    """Eight times the text costs at most about eight times the parser's Python steps."""
    short, long = shaped(SHAPES[shape], MAX_TEXT // 8), shaped(SHAPES[shape], MAX_TEXT)
    for run in (parse_order, split_orders):
        small = _line_events(lambda run=run: run(short, NOW, TZ))
        big = _line_events(lambda run=run: run(long, NOW, TZ))
        assert big <= 12 * small + 2000, f"{run.__name__}: {small} steps for 1/8 of the text, {big} for all"


def test_a_bulleted_list_splits() -> None:
    text = (
        "На 05.12\n"
        "— 06:00 Арбат 5 → Внуково, 1500 нал\n"
        "— 13:20 Внуково, рейс SU 1234 из Сочи → Химки, 1800\n"
        "— 20:00 Тверская 3 → Шереметьево B, 2200"
    )
    blocks = split(text)
    assert [b.order.pickup_address for b in blocks] == ["Арбат 5", "Внуково", "Тверская 3"]
    assert all(b.order.pickup_at and b.order.pickup_at.day == 5 for b in blocks)


def test_a_card_with_dashed_lines_stays_one_order() -> None:
    assert split("- Завтра в 9:00\n- Откуда: Арбат 10\n- Куда: Шереметьево D\n- 1500р") == []
