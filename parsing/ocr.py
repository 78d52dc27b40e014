"""Order screenshots read with Tesseract OCR (Debian: tesseract-ocr, tesseract-ocr-rus, tesseract-ocr-eng).

Tesseract runs as a child process with a timeout that kills it; Pillow decodes the picture first, turns
it to grey, inverts dark mode and downscales big pictures (a 4000-pixel photo of a screen costs seconds
and reads no better than 1600 pixels). The result is plain text for the same parser as typed orders.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

OCR_LANGUAGES = ("rus", "eng")
INSTALL_HINT = "apt-get install -y tesseract-ocr tesseract-ocr-rus tesseract-ocr-eng"
MAX_SIDE = 1600  # longest side after downscaling, in pixels
MIN_SIDE = 900  # small pictures (a phone's thumbnail-sized crop) are upscaled: Tesseract wants ~30 px letters
MAX_PIXELS = 40_000_000  # larger pictures are refused before decoding (a decompression bomb)
DEFAULT_TIMEOUT_S = 30.0

Status = Literal["ok", "unavailable", "unreadable", "timeout"]


class OcrUnavailable(RuntimeError):
    """Tesseract (or its Russian/English data) is not installed here."""


class PictureUnreadable(ValueError):
    """The bytes are not a picture Pillow can decode, or it is too big."""


class OcrTimeout(TimeoutError):
    """Tesseract did not finish in time and was killed."""


@dataclass(frozen=True)
class Availability:
    ok: bool
    languages: tuple[str, ...]
    message: str


@cache
def availability() -> Availability:
    """Whether OCR works on this machine, with the languages it can read and what is missing."""
    binary = shutil.which("tesseract")
    if binary is None:
        return Availability(False, (), f"tesseract is not installed ({INSTALL_HINT})")
    try:
        listed = subprocess.run(
            [binary, "--list-langs"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, (), f"tesseract does not run: {exc}")
    have = {line.strip() for line in listed.stdout.splitlines()[1:]}
    languages = tuple(lang for lang in OCR_LANGUAGES if lang in have)
    if not languages:
        return Availability(False, (), f"tesseract has no Russian or English data ({INSTALL_HINT})")
    missing = [lang for lang in OCR_LANGUAGES if lang not in have]
    note = f"; missing {', '.join(missing)} ({INSTALL_HINT})" if missing else ""
    return Availability(True, languages, f"tesseract reads {'+'.join(languages)}{note}")


def prepare(data: bytes) -> tuple[Image.Image, tuple[int, int]]:
    """The picture as Tesseract reads it best: grey, dark text on light, 900-1600 px on its long side.
    Returns it with the original size."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise PictureUnreadable(f"the picture is too big ({image.width}x{image.height})")
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise PictureUnreadable(f"not a picture: {exc}") from None
    original = image.size
    image = ImageOps.exif_transpose(image) or image  # phone photos of a screen carry their rotation
    grey = ImageOps.grayscale(image.convert("RGB"))
    longest = max(grey.size)
    if longest > MAX_SIDE:
        grey.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    elif longest < MIN_SIDE:
        factor = MIN_SIDE / longest
        grey = grey.resize(
            (round(grey.width * factor), round(grey.height * factor)), Image.Resampling.LANCZOS
        )
    # Dark mode: light letters on a dark screen. Tesseract's models are trained on dark ink.
    histogram = grey.histogram()
    dark = sum(histogram[:128])
    if dark > sum(histogram[128:]):
        grey = ImageOps.invert(grey)
    return grey, original


def run_tesseract(image: Image.Image, languages: tuple[str, ...], timeout_s: float) -> str:
    """Tesseract's words with their boxes (TSV) for one prepared picture; killed after `timeout_s`
    (subprocess.run kills the child on its timeout)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    # One thread per Tesseract: the worker runs several at once on few cores, and OpenMP's own threads
    # only fight each other there.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", "+".join(languages), "--psm", "6", "tsv"],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OcrTimeout(f"tesseract did not finish in {timeout_s:.0f} s") from None
    except FileNotFoundError:
        raise OcrUnavailable(f"tesseract is not installed ({INSTALL_HINT})") from None
    if done.returncode != 0:
        raise PictureUnreadable(f"tesseract failed: {done.stderr.decode(errors='replace')[-300:]}")
    return done.stdout.decode("utf-8", errors="replace")


@dataclass
class _Line:
    words: list[str]
    left: int
    right: int
    first_word_width: int


def _lines(tsv: str) -> list[_Line]:
    """The words of Tesseract's TSV grouped into lines, in reading order, with their extent."""
    lines: dict[tuple[int, int, int], _Line] = {}
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or cells[0] != "5" or not cells[11].strip():
            continue
        key = (int(cells[2]), int(cells[3]), int(cells[4]))
        left, width = int(cells[6]), int(cells[7])
        line = lines.get(key)
        if line is None:
            lines[key] = _Line([cells[11].strip()], left, left + width, width)
        else:
            line.words.append(cells[11].strip())
            line.right = max(line.right, left + width)
    return list(lines.values())


_ARROWS = ("→", "—>", "->", ">", "-›", "›")
_LABEL = re.compile(r"^[A-Za-zА-Яа-яЁё ]{2,20}:")
_STAMP = re.compile(r"^\d{1,2}:\d{2}( ?[AaPp][Mm])?( \S{1,3})?$")  # the messenger's "12:07 ✓✓"


def join_wrapped(lines: list[_Line]) -> list[str]:
    """Lines the messenger wrapped joined back into the sender's lines: a line ends where the sender
    pressed Enter only if the next line's first word would have fitted after it."""
    if not lines:
        return []
    right_edge = max(line.right for line in lines)
    space = max(4, round(sum(line.first_word_width for line in lines) / len(lines) / 4))
    out: list[str] = []
    for number, line in enumerate(lines):
        text = " ".join(line.words)
        if number and out:
            before = lines[number - 1]
            wrapped = before.right + space + line.first_word_width > right_edge
            arrow = out[-1].endswith(_ARROWS) or text.startswith(_ARROWS)
            if arrow or wrapped and not _LABEL.match(text) and before.right - before.left > 0.6 * right_edge:
                out[-1] = f"{out[-1]} {text}"
                continue
        out.append(text)
    return out


# What Tesseract makes of the symbols order texts use; the parser knows the words.
_FIXES = (
    (re.compile(r"(?<=\d)\s?[PРpр₽]$|(?<=\d)\s?[PРpр₽](?=[\s,.;])"), " ₽"),  # "2700 Р", "1300p,": the rouble
    (re.compile(r"(^|\s)(?:—>|->|=>|-›|>|›|»)(?=\s|$)"), r"\1→"),  # the arrow between pickup and destination
    (re.compile(r"(?<=[^\W\d]) - (?=[^\W\d])"), " — "),  # "Пулково - Пушкин": Tesseract's short dash
    (re.compile(r"(?<=\d) ?[рp][тm]\b"), " pm"),  # "2:15 рт": Cyrillic letters for Latin ones
    (re.compile(r"(?<=\d) ?[аa][тm]\b"), " am"),
    (re.compile(r"[|]"), "I"),
    # Tesseract often reads the rouble sign as a "2" glued to a round price ("2200₽" → "22002", "1 900 ₽"
    # → "19002", "2 100 ₽" → "2 100 2"). Only a price standing on its own (a line's start or after ", ",
    # then the end or a comma) is taken back: house numbers, flights and phones keep their digits.
    (re.compile(r"(?:(?<=^)|(?<=, ))(\d{1,3} \d00|\d+00) ?2(?=$|[,;])"), r"\1 ₽"),
)


def clean(lines: list[str]) -> str:
    """Tesseract's lines made closer to what was on the screen: stray symbols fixed, the messenger's
    time stamp and a chat title (one or two words, no digits, above the order) dropped."""
    kept: list[str] = []
    for raw in lines:
        line = " ".join(raw.split())
        if not line or _STAMP.match(line):
            continue
        for pattern, replacement in _FIXES:
            line = pattern.sub(replacement, line)
        kept.append(line)
    if len(kept) > 1 and _is_title(kept[0]):
        kept = kept[1:]
    return "\n".join(kept)


def _is_title(line: str) -> bool:
    words = line.split()
    return len(words) <= 2 and not any(ch.isdigit() or ch in ":,→—" for ch in line)


def ocr_text(tsv: str) -> str:
    # The stamp sits at the bubble's right edge: dropped before it looks like a wrapped line's end.
    lines = [line for line in _lines(tsv) if not _STAMP.match(" ".join(line.words))]
    return clean(join_wrapped(lines))


@dataclass(frozen=True)
class PictureText:
    text: str
    width: int
    height: int
    seconds: float


def read_picture(data: bytes, timeout_s: float = DEFAULT_TIMEOUT_S) -> PictureText:
    """The text of one screenshot. Raises OcrUnavailable, PictureUnreadable or OcrTimeout."""
    found = availability()
    if not found.ok:
        raise OcrUnavailable(found.message)
    started = time.perf_counter()
    image, (width, height) = prepare(data)
    text = ocr_text(run_tesseract(image, found.languages, timeout_s))
    return PictureText(text=text, width=width, height=height, seconds=time.perf_counter() - started)
