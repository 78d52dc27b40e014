"""Order texts rendered as the pictures drivers forward: a messenger's chat bubble, a dispatcher app's
order card, a dark-mode chat. Tests and the OCR measurements read these instead of real screenshots
(which carry clients' phone numbers and cannot be committed)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

Layout = Literal["chat", "card", "dark"]
LAYOUTS: tuple[Layout, ...] = ("chat", "card", "dark")

# Debian's fonts-dejavu-core; fc-list finds them elsewhere on other systems.
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))


class FontMissing(RuntimeError):
    """DejaVu fonts are not installed (Debian: apt-get install fonts-dejavu-core)."""


@cache
def _font_path(bold: bool) -> Path:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for directory in FONT_DIRS:
        if (directory / name).is_file():
            return directory / name
    raise FontMissing(
        f"{name} not found in {', '.join(map(str, FONT_DIRS))} (apt-get install fonts-dejavu-core)"
    )


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_path(bold)), size)


def fonts_available() -> bool:
    try:
        _font_path(False)
    except FontMissing:
        return False
    return True


@dataclass(frozen=True)
class _Style:
    width: int
    background: str
    bubble: str
    ink: str
    muted: str
    size: int


_STYLES: dict[Layout, _Style] = {
    # A phone screenshot of a light chat (WhatsApp-like): a green bubble on a beige wallpaper.
    "chat": _Style(
        width=720, background="#e5ddd5", bubble="#dcf8c6", ink="#111111", muted="#7a7a7a", size=26
    ),
    # A dispatcher app's order card: a white card, a coloured header, label/value lines.
    "card": _Style(
        width=800, background="#f0f2f5", bubble="#ffffff", ink="#1c1e21", muted="#65676b", size=24
    ),
    # The same chat in dark mode: light text on a dark bubble.
    "dark": _Style(
        width=720, background="#0b141a", bubble="#005c4b", ink="#e9edef", muted="#8696a0", size=26
    ),
}


def _wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """The text's lines wrapped at word boundaries to `width` pixels, as a messenger wraps them."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        words = paragraph.split(" ")
        line = ""
        for word in words:
            candidate = f"{line} {word}" if line else word
            if line and face.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def render(text: str, layout: Layout = "chat", scale: float = 1.0) -> Image.Image:
    """The order text as a screenshot in the given layout; `scale` > 1 gives a big (high-DPI) picture."""
    style = _STYLES[layout]
    size = round(style.size * scale)
    face, small = font(size), font(round(size * 0.65))
    pad, inner = round(24 * scale), round(20 * scale)
    width = round(style.width * scale)
    text_width = width - 2 * pad - 2 * inner
    lines = _wrap(text, face, text_width)
    line_h = round(size * 1.35)
    header_h = round(size * 2.2) if layout == "card" else 0
    body_h = header_h + inner * 2 + line_h * len(lines) + round(size * 0.9)
    height = body_h + 2 * pad + round(60 * scale)
    image = Image.new("RGB", (width, height), style.background)
    draw = ImageDraw.Draw(image)
    # The messenger's top bar: the chat's name, as on every phone screenshot.
    draw.rectangle((0, 0, width, round(60 * scale)), fill="#075e54" if layout != "dark" else "#1f2c34")
    draw.text((pad, round(14 * scale)), "Диспетчер", font=font(round(size * 0.9), bold=True), fill="#ffffff")
    top = round(60 * scale) + pad
    box = (pad, top, width - pad, top + body_h)
    draw.rounded_rectangle(box, radius=round(14 * scale), fill=style.bubble)
    y = top + inner
    if layout == "card":
        draw.rounded_rectangle(
            (pad, top, width - pad, top + header_h), radius=round(14 * scale), fill="#1877f2"
        )
        draw.text(
            (pad + inner, top + round(size * 0.5)), "Новый заказ", font=font(size, bold=True), fill="#ffffff"
        )
        y += header_h
    for line in lines:
        draw.text((pad + inner, y), line, font=face, fill=style.ink)
        y += line_h
    draw.text((width - pad - inner - round(size * 2.6), y), "12:07 ✓✓", font=small, fill=style.muted)
    return image


def render_png(text: str, layout: Layout = "chat", scale: float = 1.0) -> bytes:
    return to_bytes(render(text, layout, scale), "PNG")


def to_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()
