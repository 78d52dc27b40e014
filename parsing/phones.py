"""Phone numbers in any common national or international spelling, normalised to E.164."""

from __future__ import annotations

import re
from typing import NamedTuple

from parsing.regions import CALLING_CODE_LENGTHS, PHONE_PLANS
from parsing.text import Doc

# One digit group of a phone: "+7", "(916)", "123". Groups are joined into runs below.
_GROUP = re.compile(r"(\+\s?)?\(?(\d+)\)?")
# Cheap gate: no phone without seven digits joined by phone punctuation.
_SEVEN_DIGITS = re.compile(r"\d(?:[ ()+.\-]{0,3}\d){6}")
# What may separate two groups of one number.
_GAP = re.compile(r"[ \-]{0,3}|\.")
# A label in front of a phone belongs to it (claimed together so addresses stay clean).
_LABEL_BEFORE = re.compile(
    r"(?:(?<![\w])(?:тел(?:ефон)?|моб(?:ильный)?|сот(?:овый)?|номер|phone|tel|mob(?:ile)?|cell|ph)\.?|📞|☎|📱)"
    r"\s*[:\-]?\s*$"
)


class Phone(NamedTuple):
    start: int
    end: int
    e164: str


class _Group(NamedTuple):
    start: int
    end: int
    digits: str
    plus: bool


def to_e164(digits: str, plus: bool, region: str) -> str | None:
    """E.164 for a digit string, or None when it is not a plausible number in `region`'s plan."""
    n = len(digits)
    if n < 7 or n > 15:
        return None
    if not plus and digits.startswith("00"):
        digits, plus, n = digits[2:], True, n - 2
    if plus:
        for size in (1, 2, 3):
            lengths = CALLING_CODE_LENGTHS.get(digits[:size])
            if lengths is not None:
                return "+" + digits if n in lengths else None
        return "+" + digits if 10 <= n <= 13 else None
    plan = PHONE_PLANS.get(region)
    if plan is None:
        return None
    code, trunk, lengths = plan
    if code == "7":
        # Russia/Kazakhstan: 8 or 7 + ten digits, or the bare ten digits of a mobile/city number.
        if n == 11 and digits[0] in "78" and digits[1] in "3456789":
            return "+7" + digits[1:]
        if n == 10 and digits[0] in "3456789":
            return "+7" + digits
        return None
    if code == "1":
        if n == 11 and digits[0] == "1" and digits[1] in "23456789":
            return "+" + digits
        if n == 10 and digits[0] in "23456789":
            return "+1" + digits
        return None
    if trunk and digits.startswith(trunk) and n - len(trunk) in lengths:
        return "+" + code + digits[len(trunk) :]
    if digits.startswith(code) and n - len(code) in lengths:
        return "+" + digits
    if not trunk and n in lengths:
        return "+" + code + digits
    if code == "375" and n == 9 and digits[0] in "234":
        # Belarusian mobiles are often written without the 80 trunk: "29 123-45-67".
        return "+" + code + digits
    return None


def _runs(masked: str) -> list[list[_Group]]:
    runs: list[list[_Group]] = []
    current: list[_Group] = []
    prev_end = -1
    for m in _GROUP.finditer(masked):
        group = _Group(m.start(), m.end(), m.group(2), m.group(1) is not None)
        joined = (
            current
            and not group.plus
            and _GAP.fullmatch(masked[prev_end : m.start()]) is not None
            # A dot joins only US-style groups ("650.555.0188"), never a date like 23.11.2026.
            and (
                masked[prev_end : m.start()] != "."
                or (len(group.digits) >= 3 and len(current[-1].digits) >= 3)
            )
        )
        if not joined:
            if current:
                runs.append(current)
            current = []
        current.append(group)
        prev_end = m.end()
    if current:
        runs.append(current)
    return runs


def find_phones(doc: Doc, region: str) -> list[Phone]:
    """Every phone number in the free text, claimed (with its "тел:" label) in the document."""
    found: list[Phone] = []
    masked = doc.masked
    if _SEVEN_DIGITS.search(masked) is None:
        return found
    for run in _runs(masked):
        i = 0
        while i < len(run):
            first = run[i]
            # A number glued to letters is a flight or an address code ("SU1103", "д5"), not a phone.
            if first.start > 0 and (masked[first.start - 1].isalpha() or masked[first.start - 1] in "#№"):
                i += 1
                continue
            best: tuple[int, str] | None = None
            digits = ""
            for j in range(i, len(run)):
                if j > i and run[j].plus:
                    break
                digits += run[j].digits
                if len(digits) > 15:
                    break
                e164 = to_e164(digits, first.plus, region)
                if e164:
                    best = (j, e164)
            if best is None:
                i += 1
                continue
            j, e164 = best
            found.append(Phone(first.start, run[j].end, e164))
            i = j + 1
    for phone in found:
        label = _LABEL_BEFORE.search(doc.low, max(0, phone.start - 20), phone.start)
        doc.claim(label.start() if label else phone.start, phone.end)
    return found
