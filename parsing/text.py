"""Shared text plumbing: normalisation and the claim mask that stops two extractors using one span."""

from __future__ import annotations

import re

# Claimed characters are replaced by HOLE in `Doc.masked`: later extractors cannot match across them
# and addresses stop at them, so a price or phone never ends up inside an address.
HOLE = "\x00"

_ODD_SPACES = re.compile(r"[\t\u00a0\u2002-\u200a\u202f\u205f\u3000]")
# Zero-width joiners and emoji variation selectors carry no meaning for parsing.
_INVISIBLE = re.compile(r"[\u200b-\u200d\u2060\ufe0e\ufe0f\ufeff]")
_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "ʼ": "'"})
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")
_MULTI_SPACE = re.compile(r"[ ]{2,}")
_WORDS = re.compile(r"[^\W\d_]+")
_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")


def normalize(text: str) -> str:
    """One spelling for spaces, line ends and apostrophes; emoji selectors dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ODD_SPACES.sub(" ", text)
    text = _INVISIBLE.sub("", text)
    return text.translate(_QUOTES)


def lower_same_length(text: str) -> str:
    """text.lower() when that keeps every index in place (it does except for rare letters like "İ")."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


class Doc:
    """The message being parsed and the mask of what extractors have already taken.

    `masked` keeps the original case (for capitalisation checks and the values we output); `low` is
    the same text lower-cased, index for index: keyword patterns run on it without re.IGNORECASE,
    which is several times faster in CPython's regex engine.
    """

    __slots__ = ("text", "text_low", "masked", "low", "words", "stems", "has_digits")

    def __init__(self, text: str) -> None:
        self.text = text
        self.text_low = lower_same_length(text)
        self.masked = text
        self.low = self.text_low
        # The message's lower-case words and their 3-letter stems: a cheap "can this pattern match at
        # all?" gate that lets extractors skip most of their regex scans on a typical message.
        self.words = frozenset(_WORDS.findall(self.text_low))
        self.stems = frozenset(w[:3] for w in self.words)
        self.has_digits = _DIGIT.search(text) is not None

    def has_any(self, words: frozenset[str]) -> bool:
        return not self.words.isdisjoint(words)

    def has_stem(self, stems: frozenset[str]) -> bool:
        return not self.stems.isdisjoint(stems)

    def claim(self, start: int, end: int) -> None:
        if end > start:
            hole = HOLE * (end - start)
            self.masked = self.masked[:start] + hole + self.masked[end:]
            self.low = self.low[:start] + hole + self.low[end:]


def strip_holes(value: str) -> str:
    """Drop claimed characters and the empty brackets they leave ("Внуково (рейс SU 1) " → "Внуково")."""
    if HOLE not in value:
        return value
    value = value.replace(HOLE, "")
    if "(" in value or "[" in value:
        value = _EMPTY_BRACKETS.sub(" ", value)
    return _MULTI_SPACE.sub(" ", value)


def has_letters(value: str) -> bool:
    return _LETTER.search(value) is not None
