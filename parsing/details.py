"""Flight numbers, passenger counts and driver notes (child seat, luggage, name sign, payment method)."""

from __future__ import annotations

import re

from parsing.text import Doc

# ---- flights ------------------------------------------------------------------------------------------

# IATA designators seen on transfers; without a "рейс/flight" keyword only these count as flights,
# so "CA 94301" or "US 101" stay addresses.
_AIRLINES = frozenset(
    """
    SU S7 U6 DP UT FV N4 WZ 5N YC A4 ZF R3 6R 7R EO J2 KC DV IQ HY PS B2 TK PC XQ EK FZ EY G9 QR UA AA DL
    WN B6 AS NK F9 G4 SY HA AC WS BA VS U2 FR W6 W4 LS BE LH AF KL IB VY UX AZ LX OS SK AY LO OK TP EI SN
    A3 EW DY DE X3 HV TO TB V7 QF NZ NH JL CX SQ CA MU CZ HU KE OZ TG MH GA VN AI 6E UK SV MS ET KQ LY
    RJ GF WY KU J9 OV BT LG JU OU FB RO PG VJ QZ AK D7 TR 3K 5J IX G8 SG AT AH TU ZI FI ME KM
    """.split()
)
_FLIGHT_KEYWORD = re.compile(
    r"(?<!\w)(?:номер\s+рейса|авиарейс|рейс(?:ом|а)?|flight(?:\s+(?:no\.?|number|#))?|flt|✈|🛬|🛫)"
    r"\s*[:#№.-]?\s*(?P<code>[a-zа-я]{2}|[a-zа-я]\d|\d[a-zа-я])\s?-?\s?(?P<num>\d{1,4})(?![\w])",
)
_FLIGHT_BARE = re.compile(
    r"(?<![\w-])(?P<code>[A-Z]{2}|[A-Z]\d|\d[A-Z])\s?-?\s?(?P<num>\d{1,4})(?![\w]|[.,:]\d)"
)
_GATE_FLIGHT = frozenset("рей fli flt ави ном".split())
_HAS_PLANE = re.compile(r"[✈🛬🛫]")
_HAS_UPPER = re.compile(r"[A-Z]")
# Cyrillic look-alikes typed by mistake in "рейс SU 1103".
_LOOKALIKE = str.maketrans("АВЕКМНОРСТУХаеокрсух", "ABEKMHOPCTYXAEOKPCYX")
# Russian spellings of the designators of airlines flying from Russian airports ("рейс ЮТ-454").
_CYRILLIC_CODES = {
    "СУ": "SU", "С7": "S7", "У6": "U6", "ЮТ": "UT", "ДП": "DP", "ФВ": "FV", "Н4": "N4", "5Н": "5N",
    "ЯК": "YC", "А4": "A4", "ЗФ": "ZF", "Р3": "R3", "6Р": "6R", "7Р": "7R", "ПС": "PS",
}  # fmt: skip


def extract_flight(doc: Doc, spans: list[tuple[int, int]] | None = None) -> str | None:
    """The flight designator ("SU1525"), claimed with its "рейс" keyword; `spans` collects where flights are."""
    found: list[tuple[int, str]] = []
    if spans is None:
        spans = []
    if not doc.has_digits:
        return None
    keyword_hits = (
        _FLIGHT_KEYWORD.finditer(doc.low) if doc.has_stem(_GATE_FLIGHT) or _HAS_PLANE.search(doc.text) else ()
    )
    for m in keyword_hits:
        raw = m.group("code").upper()
        if not raw.isascii() and not doc.masked[m.start("code") : m.end("code")].isupper():
            continue  # "рейс на 1234": a Cyrillic code counts only when written in capitals ("ЮТ-454")
        code = _CYRILLIC_CODES.get(raw) or raw.translate(_LOOKALIKE)
        if not code.isascii():
            continue
        found.append((m.start(), code + m.group("num")))
        spans.append((m.start(), m.end()))
        doc.claim(m.start(), m.end())
    for m in _FLIGHT_BARE.finditer(doc.masked) if _HAS_UPPER.search(doc.masked) else ():
        code = m.group("code")
        if code in _AIRLINES:
            found.append((m.start(), code + m.group("num")))
            spans.append((m.start(), m.end()))
            doc.claim(m.start(), m.end())
    return min(found)[1] if found else None


# ---- where the flight or train comes from -------------------------------------------------------------

# "рейс SU 1125 из Сочи", "прилёт из Минска", "поезд из Калуги", "flight from Paris", "BA 117 from New York":
# the city the client comes from is not where the driver picks them up.
_ORIGIN_PLACE = (
    r"(?P<origin>(?i:из|изо|з|зі|із|from|iz)[ ]+[^\W\d_][\w'-]*(?:[ ]+[A-ZА-ЯЁІЇЄ][\w'-]*|-на-[\w'-]+)?)"
)
_ORIGIN_AFTER_WORD = re.compile(
    r"(?<!\w)(?i:рейс\w*|авиарейс|прил[её]т\w*|прилета\w*|прибыти\w*|прибыва\w*|поезд\w*|поїзд\w*|приліт\w*|"
    r"прибуття|reis|reys|prilet|poezd|flight|flt|arriv\w*|lands|landing|inbound|train)[ ]+"
    # "прилёт в 23:35 из Москвы": the arrival time may come first (dates are read after this).
    r"(?:(?:в|о|at)[ ]+)?(?:\d{1,2}[:.]\d{2}[ ]+)?" + _ORIGIN_PLACE
)
_ORIGIN_AT = re.compile(r"[ ]*" + _ORIGIN_PLACE)
_GATE_ORIGIN = frozenset("из изо з зі із from iz".split())


def claim_flight_origins(doc: Doc, flight_spans: list[tuple[int, int]]) -> None:
    """Claim "из Сочи" / "from Paris" right after a flight, an arrival or a train, so no route step reads it."""
    if not doc.has_any(_GATE_ORIGIN):
        return
    found = [m.span("origin") for m in _ORIGIN_AFTER_WORD.finditer(doc.masked)]
    for _, end in flight_spans:
        m = _ORIGIN_AT.match(doc.masked, end)
        if m is not None:
            found.append(m.span("origin"))
    for start, end in found:
        doc.claim(start, end)


# ---- passengers ---------------------------------------------------------------------------------------

_PAX_UNIT = (
    r"(?:пассажир\w*|пасажир\w*|пасс?\b\.?|чел\b\.?|человек\w*|взросл\w*|pax|passengers?|persons?|people|ppl|adults?|"
    r"guests?|of\s+us)"
)
_PAX_AFTER = re.compile(rf"(?P<n>\d(?<![\w.,:]\d)\d?)\s*(?:-?х\s+)?{_PAX_UNIT}")
_PAX_LABEL = re.compile(
    r"(?<!\w)(?:пассажиров|пассажиры|пасажирів|пасажири|пасс\.?|кол-?во\s+(?:пассажиров|человек)|passengers|pax|"
    r"people|guests|(?:family|party|group)\s+of|👥|🧑‍🤝‍🧑)"
    r"\s*[:\-]?\s*(?P<n>\d{1,2})(?![\w])",
)
_PAX_WORDS = re.compile(
    r"(?<!\w)(?:нас\s+(?P<ru>двое|трое|четверо|пятеро|шестеро|семеро)|(?P<num>один|одна|два|две|три|четыре|пять|"
    rf"шесть|one|two|three|four|five|six)\s+{_PAX_UNIT}|(?P<adv>вдвоем|вдвоём|втроем|втроём|вчетвером)|"
    r"(?P<ru2>двое|трое|четверо|пятеро|шестеро|двоє|троє|четверо|п'ятеро))(?!\w)",
)
_CHILDREN = re.compile(
    r"(?<![\w.,])(?:\+\s*)?(?P<n>\d{1,2})\s*(?:реб[её]н\w*|дет(?:ей|и)\b|child(?:ren)?|kids?|infants?)"
)
_GATE_PAX = frozenset("пас чел взр кол pax pas per peo ppl adu gue fam par gro us".split())
_GATE_PAX_WORDS = frozenset(
    "нас двое трое четверо пятеро шестеро семеро один одна два две три четыре пять шесть one two three four "
    "five six вдвоем вдвоём втроем втроём вчетвером двоє троє п'ятеро".split()
)
_GATE_CHILDREN = frozenset("реб дет дит chi kid inf bab".split())
_ADULTS = re.compile(r"взросл|adult")
_WORD_NUMBERS = {
    "один": 1, "одна": 1, "one": 1, "два": 2, "две": 2, "двое": 2, "two": 2, "вдвоем": 2, "вдвоём": 2,
    "три": 3, "трое": 3, "three": 3, "втроем": 3, "втроём": 3, "четыре": 4, "четверо": 4, "four": 4,
    "вчетвером": 4, "пять": 5, "пятеро": 5, "five": 5, "шесть": 6, "шестеро": 6, "six": 6, "семеро": 7,
    "двоє": 2, "троє": 3, "п'ятеро": 5,
}  # fmt: skip
# "2 взрослых и ребёнок", "2 adults and a child": one child without a number.
_ONE_CHILD = re.compile(
    r"(?<!\w)(?:и|і|and|with|\+)\s+(?:a\s+|один\s+|одна\s+)?(?:реб[её]н\w*|дитин\w*|child|kid|infant|baby)(?!\w)"
)


def extract_passengers(doc: Doc) -> int | None:
    """How many people ride: "3 пасс", "Пассажиров: 1", "4 pax", "нас трое"; children are added."""
    count: int | None = None
    if not (doc.has_stem(_GATE_PAX) or doc.has_any(_GATE_PAX_WORDS) or "👥" in doc.text):
        return None
    for pattern in (_PAX_AFTER, _PAX_LABEL):
        for m in pattern.finditer(doc.low):
            n = int(m.group("n"))
            if 1 <= n <= 60 and count is None:
                count = n
            doc.claim(m.start(), m.end())
    for m in _PAX_WORDS.finditer(doc.low) if doc.has_any(_GATE_PAX_WORDS) else ():
        word = next(g for g in m.groups() if g)
        if count is None:
            count = _WORD_NUMBERS.get(word)
        doc.claim(m.start(), m.end())
    for m in _CHILDREN.finditer(doc.low) if doc.has_stem(_GATE_CHILDREN) else ():
        # "2 adults + 1 child": the child rides too; a bare "ребёнок 5 лет" is not a head count.
        if count is not None and _ADULTS.search(doc.text_low):
            count += int(m.group("n"))
        doc.claim(m.start(), m.end())
    for m in _ONE_CHILD.finditer(doc.low) if count is not None and doc.has_stem(_GATE_CHILDREN) else ():
        # "2 взрослых и ребёнок", "2 пассажира + ребёнок": one more seat.
        if m.group(0).startswith("+") or _ADULTS.search(doc.text_low):
            count += 1
        doc.claim(m.start(), m.end())
    return count


# ---- notes --------------------------------------------------------------------------------------------

_SIGN = re.compile(
    r"(?<!\w)(?i:(?:с\s+)?табличк\w*|(?:name\s+)?(?:sign|board|placard)(?:\s+with)?)\s*[:\-]?\s*[«\"']?"
    r"(?P<name>[A-ZА-ЯЁ][\w'-]+(?:\s+[A-ZА-ЯЁ][\w'-]+)?)[»\"']?",
)
_NOTE_LABEL = re.compile(
    r"(?<!\w)(?:примечани[ея]|комментари[йи]|коммент|пожелания|доп\.?\s*инфо|note[s]?|comments?|remarks?|💬|📝)"
    r"\s*[:\-]?\s*(?P<value>[^\n]+)",
)
_NOTE_PHRASES = re.compile(
    r"(?<!\w)(?:"
    r"(?:\d\s*)?детск\w*\s+кресл\w*|(?:\d\s*)?кресл\w*(?:\s+детск\w*)?|бустер\w*|люльк\w*|автолюльк\w*|"
    r"(?:\d\s*)?(?:child|baby|infant|car)\s+seats?|booster(?:\s+seats?)?|"
    r"(?:\d+\s*)?(?:больш\w+\s+)?(?:чемодан\w*|сумк\w*|багаж\w*|лыж\w*|сноуборд\w*|велосипед\w*|коляск\w*)|"
    r"(?:\d+\s*)?(?:large\s+|big\s+|extra\s+)?(?:suitcases?|luggage|bags?|skis?|stroller|wheelchair)|"
    r"(?:оплата\s+)?(?:наличными|наличкой|налом|по\s+карте|картой|безнал\w*|переводом)|нал\b|"
    r"(?:pay(?:ment)?\s+)?(?:in\s+cash|by\s+card|cash|card)|"
    r"с\s+собак\w*|с\s+кошк\w*|с\s+животн\w*|(?:with\s+)?(?:a\s+)?(?:dog|pet)|"
    r"не\s+курить|без\s+курения|no\s+smoking|минивэн|минивен|бизнес[\s-]класс|"
    r"minivan|business\s+class|executive\s+car)(?!\w)",
)


_MEET_GREET = re.compile(r"(?<!\w)meet\s*(?:&|and)\s*greet(?!\w)")
_GATE_NOTE_LABEL = frozenset("при ком пож доп not rem".split())
_HAS_NOTE_EMOJI = re.compile(r"[💬📝]")
_GATE_SIGN = frozenset("таб sig nam boa pla".split())
_GATE_NOTES = frozenset(
    "дет кре бус люл авт chi bab inf car boo чем сум баг лыж сно вел кол sui lar big ext lug bag ski str whe "
    "опл нал нал пол кар без пер pay in by cas соб кош жив wit dog pet не без no mee мин биз min bus exe".split()
)


def extract_notes(doc: Doc) -> tuple[str | None, str | None]:
    """(notes text, name on the pickup sign). Notes keep the driver-relevant wording, "; "-joined.

    Runs on the original text, after prices: "оплата 2500 наличными" is both a price and a note.
    """
    notes: list[tuple[int, str]] = []
    sign_name: str | None = None
    label_hits = (
        _NOTE_LABEL.finditer(doc.text_low)
        if doc.has_stem(_GATE_NOTE_LABEL) or _HAS_NOTE_EMOJI.search(doc.text)
        else ()
    )
    for m in label_hits:
        value = doc.text[m.start("value") : m.end("value")].strip(" ,.;")
        if value:
            notes.append((m.start(), value))
        doc.claim(m.start(), m.end())
    for m in _SIGN.finditer(doc.text) if doc.has_stem(_GATE_SIGN) else ():
        sign_name = sign_name or m.group("name")
        notes.append((m.start(), " ".join(m.group(0).split())))
        doc.claim(m.start(), m.end())
    for m in _NOTE_PHRASES.finditer(doc.text_low) if doc.has_stem(_GATE_NOTES) else ():
        notes.append((m.start(), " ".join(doc.text[m.start() : m.end()].split())))
        doc.claim(m.start(), m.end())
    # Noted but left unclaimed: "meet & greet at JFK" also tells the route where the pickup is.
    for m in _MEET_GREET.finditer(doc.text_low) if "greet" in doc.words else ():
        notes.append((m.start(), doc.text[m.start() : m.end()]))
    if not notes:
        return None, sign_name
    seen: list[str] = []
    lowered: set[str] = set()
    for _, text in sorted(notes):
        if text.lower() not in lowered:
            lowered.add(text.lower())
            seen.append(text)
    return "; ".join(seen), sign_name
