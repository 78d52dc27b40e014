"""Pickup date and time: absolute, relative and weekday dates, 12/24-hour times, resolved in the driver's zone.

Extraction claims every date/time phrase (with its "в", "at", "Время:" lead-in) so nothing of it ends up in an
address; resolution then picks the pickup date and time among the candidates and builds an aware datetime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from parsing.regions import MONTH_FIRST_REGIONS
from parsing.text import HOLE, Doc

# ---- vocabularies -------------------------------------------------------------------------------------

# Month spellings, matched by prefix after lower-casing (order matters: longer/ambiguous stems first).
_MONTH_PREFIXES: tuple[tuple[str, int], ...] = (
    ("янв", 1), ("фев", 2), ("мар", 3), ("апр", 4), ("ма", 5), ("июн", 6), ("июл", 7), ("авг", 8),
    ("сен", 9), ("окт", 10), ("ноя", 11), ("дек", 12),
    ("січ", 1), ("лют", 2), ("берез", 3), ("квіт", 4), ("трав", 5), ("черв", 6), ("лип", 7), ("серп", 8),
    ("верес", 9), ("жовт", 10), ("листопад", 11), ("груд", 12),
    ("jan", 1), ("feb", 2), ("mar", 3), ("apr", 4), ("may", 5), ("jun", 6), ("jul", 7), ("aug", 8),
    ("sep", 9), ("oct", 10), ("nov", 11), ("dec", 12),
)  # fmt: skip
_MONTH = (
    r"(?:январ[яь]|янв|феврал[яь]|фев|март[а]?|мар|апрел[яь]|апр|ма[яй]|июн[яь]|июн|июл[яь]|июл|"
    r"август[а]?|авг|сентябр[яь]|сент?|октябр[яь]|окт|ноябр[яь]|нояб?|декабр[яь]|дек|"
    r"січ(?:ня|ень)|лют(?:ого|ий)|берез(?:ня|ень)|квіт(?:ня|ень)|трав(?:ня|ень)|черв(?:ня|ень)|"
    r"лип(?:ня|ень)|серп(?:ня|ень)|верес(?:ня|ень)|жовт(?:ня|ень)|листопад[а]?|груд(?:ня|ень)|"
    r"january|jan|february|feb|march|mar|april|apr|may|june|jun|july|jul|august|aug|"
    r"september|sept|sep|october|oct|november|nov|december|dec)\.?"
)
_WEEKDAYS: tuple[tuple[str, int], ...] = (
    ("понедельник", 0), ("пн", 0), ("вторник", 1), ("вт", 1), ("сред", 2), ("ср", 2), ("четверг", 3),
    ("чт", 3), ("пятниц", 4), ("пт", 4), ("суббот", 5), ("субот", 5), ("сб", 5), ("воскресен", 6),
    ("вс", 6), ("понеділ", 0), ("вівтор", 1), ("серед", 2), ("четвер", 3), ("п'ятниц", 4),
    ("неділ", 6), ("mon", 0), ("tue", 1), ("wed", 2), ("thu", 3), ("fri", 4), ("sat", 5), ("sun", 6),
)  # fmt: skip
_WEEKDAY = (
    r"(?:понедельник|вторник|сред[уаы]|четверг|пятниц[уаы]|суб?бот[уаы]|воскресенье|"
    r"понеділок|вівторок|серед[уа]|четвер|п'ятниц[юя]|неділ[юя]|"
    r"пн|вт|ср|чт|пт|сб|вс|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tues?|wed|thu(?:rs?)?|fri|sat|sun)"
)
_REL_DAYS: dict[str, int] = {
    "сегодня": 0, "сьогодні": 0, "today": 0, "tonight": 0,
    "седня": 0, "сёдня": 0, "tonite": 0,
    "завтра": 1, "tomorrow": 1, "tomorow": 1, "tommorow": 1, "tommorrow": 1, "tmrw": 1, "tmr": 1, "tmw": 1,
    "2moro": 1, "2morrow": 1,
    "послезавтра": 2, "после завтра": 2, "післязавтра": 2, "day after tomorrow": 2,
}  # fmt: skip
_NUMBER_WORDS: dict[str, float] = {
    "один": 1, "одну": 1, "два": 2, "две": 2, "пару": 2, "три": 3, "четыре": 4, "пять": 5, "шесть": 6,
    "десять": 10, "пятнадцать": 15, "двадцать": 20, "тридцать": 30, "сорок": 40, "сорок пять": 45,
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10, "fifteen": 15,
    "twenty": 20, "thirty": 30, "forty": 40, "forty-five": 45, "a couple of": 2, "couple of": 2,
}  # fmt: skip

# ---- patterns -----------------------------------------------------------------------------------------

_RELATIVE_RU = re.compile(
    r"(?<!\w)через\s+(?:(?P<num>\d+(?:[.,]\d+)?|один|одну|два|две|пару|три|четыре|пять|шесть|десять|"
    r"пятнадцать|двадцать|тридцать|сорок(?:\s+пять)?)\s*(?P<unit>минут\w*|мин\.?|м\b|час\w*|ч\b\.?)|"
    r"(?P<word>полчаса|пол\s+часа|полтора\s+часа|часик|час|минуту))",
)
_RELATIVE_EN = re.compile(
    r"(?<!\w)in\s+(?:(?P<num>\d+(?:[.,]\d+)?|an?|one|two|three|four|five|ten|fifteen|twenty|thirty|forty|"
    r"forty-five|a\s+couple\s+of|couple\s+of)\s*(?P<unit>minutes?|mins?|m\b|hours?|hrs?|h\b)|"
    r"(?P<word>half\s+an\s+hour|an\s+hour\s+and\s+a\s+half))",
)
# A year may be followed by "г."/"года": "28.11.2026г.", "28 ноября 2026 года".
_YEAR_WORD = r"(?:\s?(?:г\.|года|г)(?![\w]))?"
# "28 ноября", "1st December", "28 of Nov 2026"; and "Nov 28", "December 1st, 2026".
_DAY_MONTH = re.compile(
    rf"(?P<day>\d(?<![\w:.,/]\d)\d?)(?:-?(?:го|е|ое)|st|nd|rd|th)?\s*(?:of\s+)?(?P<month>{_MONTH})(?!\w)"
    rf"(?:,?\s*(?P<year>\d{{4}})(?![\d:]){_YEAR_WORD})?",
)
_MONTH_DAY = re.compile(
    rf"(?<!\w)(?P<month>{_MONTH})\s*(?P<day>\d{{1,2}})(?:st|nd|rd|th)?(?![\d:.]\d|\d|\w)"
    rf"(?:,?\s*(?P<year>\d{{4}})(?![\d:]){_YEAR_WORD})?",
)
_ISO_DATE = re.compile(r"(?P<year>\d(?<![\w.]\d)\d{3})-(?P<month>\d{2})-(?P<day>\d{2})(?!\w)")
# 23.11 / 23.11.2026 / 25.11.26 / 24/11 / 12/02 / 24-11-2026.
_NUM_DATE = re.compile(
    r"(?P<a>\d(?<![\w:.,/+-]\d)\d?)(?P<sep>[./-])(?P<b>\d{1,2})"
    rf"(?:(?P=sep)(?P<year>\d{{4}}|\d{{2}}){_YEAR_WORD})?(?![\w]|[./:-]\d)"
)
# "в 10-30", "к 9-15": a Russian way to write a time (a date with dashes always has a year).
_DASH_TIME = re.compile(r"(?P<h>\d(?<![\w.:,/-]\d)\d?)-(?P<m>[0-5]\d)(?![\w]|[./:-]\d)")
_AMPM = r"(?P<ampm>[ap])\.?\s?m\.?(?![a-z])"
_RU_PERIOD = r"(?P<period>утра|вечера|дня|ночи)(?!\w)"
_HOURS_WORD = r"ч(?:ас(?:а|ов)?)?\.?(?![а-яё])"
_COLON_TIME = re.compile(
    rf"(?P<h>\d(?<![\d:.]\d)\d?):(?P<m>[0-5]\d)(?!\d)(?:\s*(?:{_AMPM}|{_RU_PERIOD}|{_HOURS_WORD}))?",
)
# "5.15am": a dotted time glued to am/pm (a dotted pair followed by letters is otherwise no date or time).
_DOT_AMPM = re.compile(rf"(?P<h>\d(?<![\w.:,/]\d)\d?)\.(?P<m>[0-5]\d){_AMPM}")
_DOT_TIME_SUFFIX = re.compile(rf"\s*(?:{_AMPM}|{_RU_PERIOD}|{_HOURS_WORD})")
_MARKED_HOUR = re.compile(
    rf"(?P<h>\d(?<![\d:.,]\d)\d?)\s*(?:{_AMPM}|(?:{_HOURS_WORD}\s*)?{_RU_PERIOD}|{_HOURS_WORD})",
)
_WORD_TIME = re.compile(r"(?<!\w)(?P<word>полдень|полночь|noon|midday|midnight)(?!\w)")
_REL_DAY = re.compile(
    r"(?<!\w)(?P<word>послезавтра|после\s+завтра|післязавтра|day\s+after\s+tomorrow|сегодня|сьогодні|седня|"
    r"сёдня|today|tonight|tonite|завтра|tomorrow|tomorow|tommorow|tommorrow|tmrw|tmr|tmw|2moro|2morrow)(?!\w)",
)
_WEEKDAY_RE = re.compile(rf"(?<![\w'])(?P<wd>{_WEEKDAY})\.?(?![\w'])")
# "28-го", "на 28-е"; and English "the 28th" (two patterns: each starts with a plain class, see _BARE_HOUR).
_DAY_ONLY = re.compile(r"(?P<day>\d(?<![\w.:/]\d)\d?)-?(?:го|е|ое)(?!\w)")
_DAY_ONLY_EN = re.compile(r"(?<!\w)(?:on\s+)?the\s+(?P<day>\d{1,2})(?:st|nd|rd|th)(?!\w)")
# "в 7", "at 7", "к 8": an hour without minutes needs a lead-in word (checked in _bare_hours).
# Patterns here start with a plain character class where they can: CPython's regex engine then skips
# straight to candidate positions, while a leading lookbehind makes it try every position.
_BARE_HOUR = re.compile(r"(?P<h>\d(?<![\w.:,]\d)\d?)(?![\d\w]|[:.,]\d)")
_BARE_HOUR_PREPS = frozenset("в во к at @ о by around".split())
# Words allowed right after a bare hour ("в 7 из дома", "at 7 from the hotel").
_AFTER_BARE_HOUR = re.compile(
    r"\s*(?:$|[,.;!?)\n\x00→>—–-]|из\b|от\b|со?\b|до\b|в\b|на\b|и\b|у\b|около\b|возле\b|з\b|від\b|"
    r"from\b|to\b|and\b|near\b|outside\b|pick|"
    r"завтра|сегодня|послезавтра|tomorrow|today|tonight|утром|вечером|ночью|[A-ZА-ЯЁ])",
)
# "Сейчас"/"now": pickup at once, when nothing else says when.
_NOW_WORD = re.compile(
    r"(?<!\w)(?:прямо\s+сейчас|сейчас|срочно\s+сейчас|right\s+now|now|asap|immediately)(?!\w)"
)
_PERIOD_HINT = re.compile(
    r"(?<!\w)(?P<hint>утром|вечером|дн[её]м|ночью|вранці|зранку|ввечері|увечері|вночі|уночі|вдень|this\s+morning|this\s+evening|this\s+afternoon|"
    r"in\s+the\s+morning|in\s+the\s+evening|in\s+the\s+afternoon|afternoon|evening)(?!\w)",
)
# A lead-in right before a date/time: a field label ("Время подачи:", "⏰") and/or a preposition.
# Matched by hand from the end (see _lead_in): an end-anchored regex would be retried at every position.
_LEAD_PREPS = frozenset("в во к ко на о об у at on by around for @".split())
_LEAD_LABELS = (
    "время подачи", "время встречи", "подача", "подать", "подачу", "pick up time", "pick-up time", "pickup time",
    "прилет", "прилёт", "прилетает", "прилётает", "прилетаем", "прибытие", "прибытия", "прибывает", "посадка",
    "arrival", "arrives", "arriving", "land", "lands", "landing", "вылет", "вылетает", "departure", "departs",
    "дата и время", "дата/время", "дата", "время", "когда", "date", "time",
    "машина", "машину", "машины", "car", "car at", "meet", "collect", "pick up", "pickup", "pick-up", "встретить",
    "встреча", "забрать", "зустріти", "зустріч", "забрати", "подача машины", "приліт", "прилітає", "прибуття",
    "due", "час", "коли", "встречать", "встречаем", "встретим", "забираем", "заберём", "заберем", "подаём",
    "подаем", "подадим",
)  # fmt: skip
_LEAD_LABELS_BY_LAST: dict[str, list[str]] = {}
for _label in sorted(_LEAD_LABELS, key=len, reverse=True):
    _LEAD_LABELS_BY_LAST.setdefault(re.split(r"[\s/-]", _label)[-1], []).append(_label)
_LEAD_EMOJI = frozenset("📅🗓⏰🕐🕑🕒⌚⏱")
_PICKUP_LABELS = (
    "подач", "подать", "pick", "время встречи", "машин", "car", "meet", "collect", "встрет", "встреч", "забра",
    "зустр",
)  # fmt: skip
_ARRIVAL_LABELS = ("прил", "прибы", "прибут", "посадка", "arriv", "land", "вылет", "depart", "due")
# Text after this belongs to a return trip: its date/time is not the pickup.
_RETURN = re.compile(r"(?<!\w)(?:обратно|назад|return(?:ing)?|back\s+on|way\s+back)(?!\w)")
_MONEY_AHEAD = re.compile(r"\s?(?:€|\$|£|₽|₸|₴|₺|руб|р(?![а-яё])|eur|usd|gbp|aed|tl\b|тг|грн|евро|euro)")
_NIGHT_FROM = re.compile(r"(?:ночь|ніч|night)\s+(?:с|со|з|from)\s+$")
_TIME_WORDS = re.compile(r"(?<!\w)(?:время|time|в|к|at|by|@|⏰)\s*[:\-]?\s*$")


# Words (or 3-letter stems) without which a scan cannot match.
_GATE_RELATIVE = frozenset({"через", "in"})
_GATE_MONTHS = frozenset(
    "янв фев мар апр май мая июн июл авг сен окт ноя дек січ лют бер кві тра чер лип сер вер жов лис гру "
    "jan feb mar apr may jun jul aug sep oct nov dec".split()
)
_GATE_MARKED = frozenset("am pm a p m утра вечера дня ночи ч час часа часов".split())
_GATE_WORD_TIMES = frozenset("полдень полночь noon midday midnight".split())
_GATE_REL_DAYS = frozenset(
    "сегодня сьогодні седня сёдня today tonight tonite завтра tomorrow tomorow tommorow tommorrow tmrw tmr tmw "
    "moro morrow послезавтра післязавтра".split()
)
_GATE_WEEKDAYS = frozenset(
    "пон вто сре чет пят суб вос пн вт ср чт пт сб вс вів сер нед mon tue wed thu fri sat sun п".split()
)
_GATE_DAY_ONLY = frozenset("го е ое st nd rd th".split())
_GATE_HINTS = frozenset(
    "утром вечером днём днем ночью вранці зранку ввечері увечері вночі уночі вдень morning evening afternoon".split()
)
_GATE_NOW = frozenset("сейчас now asap immediately".split())


@dataclass(slots=True)
class _Time:
    start: int
    hour: int
    minute: int
    # True when written so that 12-hour reading is impossible ("07:40", "19:45").
    explicit24: bool
    period: str | None
    label: str | None


@dataclass(slots=True)
class _Date:
    start: int
    kind: str  # "ymd", "md", "day", "weekday", "rel"
    year: int | None = None
    month: int | None = None
    day: int | None = None
    value: int | None = None  # weekday number or day offset
    label: str | None = None


@dataclass(slots=True)
class PickupTime:
    """What the message says about when: the resolved pickup and whether it was a clear answer."""

    at: datetime | None
    ambiguous: bool
    # Any date/time phrase at all (an order needs one; chatter like "завтра позвоню" has one too).
    has_signal: bool
    # The day was said ("завтра", "23.11", "in 2 hours"), not assumed from the clock ("на 10:30").
    dated: bool = False


def _month_number(token: str) -> int:
    low = token.lower().rstrip(".")
    for prefix, number in _MONTH_PREFIXES:
        if low.startswith(prefix):
            return number
    return 0


def _weekday_number(token: str) -> int:
    low = token.lower()
    for prefix, number in _WEEKDAYS:
        if low.startswith(prefix):
            return number
    return -1


def _lead_in(low: str, start: int) -> tuple[int, str | None]:
    """Where the lead-in of a date/time at `start` begins, and its kind ("pickup", "arrival" or None)."""
    lo = max(0, start - 40)
    begin, kind = start, None
    j = start
    while j > lo and low[j - 1] in " \t":
        j -= 1
    if j < start:
        k = j
        while k > lo and (low[k - 1].isalpha() or low[k - 1] == "@"):
            k -= 1
        if k < j and low[k:j] in _LEAD_PREPS and (k == 0 or not low[k - 1].isalnum()):
            begin = k
            if low[k:j] in ("к", "ко", "by"):
                kind = "pickup"
    j = begin
    while j > lo and low[j - 1] in " \t:-–":
        j -= 1
    if j > lo and low[j - 1] in _LEAD_EMOJI:
        return j - 1, kind
    k = j
    while k > lo and low[k - 1].isalpha():
        k -= 1
    for label in _LEAD_LABELS_BY_LAST.get(low[k:j], ()):
        s = j - len(label)
        if s >= lo and low[s:j] == label and (s == 0 or not low[s - 1].isalnum()):
            if label.startswith(_PICKUP_LABELS):
                kind = "pickup"
            elif label.startswith(_ARRIVAL_LABELS):
                kind = "arrival"
            return s, kind
    return begin, kind


class _Scan:
    """Collects date and time candidates from a document, claiming their text."""

    def __init__(self, doc: Doc, region: str) -> None:
        self.doc = doc
        self.month_first = region in MONTH_FIRST_REGIONS
        self.times: list[_Time] = []
        self.dates: list[_Date] = []
        self.delta: timedelta | None = None
        self.hint: str | None = None
        self.now_word = False

    def _take(self, start: int, end: int) -> tuple[int, str | None]:
        """Claim [start, end) with its lead-in; returns the claim start and the label kind."""
        start, kind = _lead_in(self.doc.low, start)
        self.doc.claim(start, end)
        return start, kind

    def _add_time(
        self, m: re.Match[str], hour: int, minute: int, explicit24: bool, period: str | None
    ) -> None:
        if hour > 24 or minute > 59:
            return
        start, kind = self._take(m.start(), m.end())
        self.times.append(_Time(start, hour % 24, minute, explicit24, period, kind))

    def _add_date(self, m: re.Match[str], **fields: int | str | None) -> None:
        start, kind = self._take(m.start(), m.end())
        self.dates.append(_Date(start, label=kind, **fields))  # type: ignore[arg-type]

    def run(self) -> None:
        doc = self.doc
        text = doc.text
        has_digits = doc.has_digits
        # Each scan runs only when the message has a character or word it needs (see Doc.words).
        if doc.has_any(_GATE_RELATIVE):
            self._relative()
        if has_digits and doc.has_stem(_GATE_MONTHS):
            self._month_names()
        if has_digits and ("." in text or "/" in text or "-" in text):
            self._numeric_dates_with_year()
        if ":" in text:
            self._colon_times()
        if has_digits and "." in text and doc.has_any(_GATE_MARKED):
            for m in _DOT_AMPM.finditer(doc.low):
                hour = int(m.group("h"))
                if 1 <= hour <= 12:
                    period = self._period(m)
                    self._add_time(m, self._apply_period(hour, period), int(m.group("m")), False, period)
        if "-" in text and has_digits:
            self._dash_times()
        if has_digits and doc.has_any(_GATE_MARKED):
            self._marked_hours()
        if doc.has_any(_GATE_WORD_TIMES):
            self._word_times()
        if has_digits and ("." in text or "/" in text):
            self._numeric_dates_short()
        if doc.has_any(_GATE_REL_DAYS):
            self._relative_days()
        if doc.has_stem(_GATE_WEEKDAYS):
            self._weekdays()
        if has_digits and doc.has_any(_GATE_DAY_ONLY):
            self._days_only()
        # Day-part words first: "вечером в 8 у ТЦ" reads the bare hour as a time right after them.
        if doc.has_any(_GATE_HINTS):
            self._hints()
        if has_digits:
            self._bare_hours()
        if doc.has_any(_GATE_NOW):
            for m in _NOW_WORD.finditer(doc.low):
                self.now_word = True
                doc.claim(m.start(), m.end())

    def _relative(self) -> None:
        for pattern in (_RELATIVE_RU, _RELATIVE_EN):
            for m in pattern.finditer(self.doc.low):
                word = m.group("word")
                if word:
                    low = " ".join(word.split())
                    minutes = {"полчаса": 30, "пол часа": 30, "полтора часа": 90, "минуту": 1}.get(low)
                    if minutes is None:
                        minutes = 90 if "half" in low and "and" in low else 30 if "half" in low else 60
                else:
                    raw = " ".join(m.group("num").split())
                    amount = _NUMBER_WORDS.get(raw)
                    if amount is None:
                        amount = float(raw.replace(",", "."))
                    minutes = amount * (1 if m.group("unit").startswith(("m", "м")) else 60)
                if 0 < minutes <= 24 * 60 and self.delta is None:
                    self.delta = timedelta(minutes=minutes)
                self.doc.claim(m.start(), m.end())

    def _month_names(self) -> None:
        for pattern in (_DAY_MONTH, _MONTH_DAY):
            for m in pattern.finditer(self.doc.low):
                month = _month_number(m.group("month"))
                day = int(m.group("day"))
                if not month or not 1 <= day <= 31:
                    continue
                year = m.group("year")
                if year:
                    self._add_date(m, kind="ymd", year=int(year), month=month, day=day)
                else:
                    self._add_date(m, kind="md", month=month, day=day)

    def _day_month(self, a: int, b: int, sep: str) -> tuple[int, int]:
        """(month, day) of a numeric date, month first only where the region writes it so."""
        if self.month_first and sep == "/" and a <= 12:
            return a, b
        if self.month_first and sep != "/" and a <= 12 and b > 12:
            return a, b
        return b, a

    def _numeric_dates_with_year(self) -> None:
        for m in _ISO_DATE.finditer(self.doc.low):
            self._add_date(m, kind="ymd", year=int(m["year"]), month=int(m["month"]), day=int(m["day"]))
        for m in _NUM_DATE.finditer(self.doc.low):
            if m.group("year") is None:
                continue
            month, day = self._day_month(int(m["a"]), int(m["b"]), m["sep"])
            year = int(m["year"])
            if year < 100:
                year += 2000
            if 1 <= month <= 12 and 1 <= day <= 31:
                self._add_date(m, kind="ymd", year=year, month=month, day=day)

    def _colon_times(self) -> None:
        for m in _COLON_TIME.finditer(self.doc.low):
            raw_h = m.group("h")
            hour, minute = int(raw_h), int(m.group("m"))
            period = self._period(m)
            explicit24 = raw_h.startswith("0") or hour > 12
            self._add_time(m, self._apply_period(hour, period), minute, explicit24, period)

    def _dash_times(self) -> None:
        low = self.doc.low
        for m in _DASH_TIME.finditer(low):
            head = low[max(0, m.start() - 4) : m.start()].rstrip()
            if not head.endswith((" в", " к", " на")) and head not in ("в", "к", "на"):
                continue  # without "в"/"к" a dash between numbers is a range or a phone piece
            hour = int(m.group("h"))
            self._add_time(m, hour, int(m.group("m")), m.group("h").startswith("0") or hour > 12, None)

    def _marked_hours(self) -> None:
        low = self.doc.low
        for m in _MARKED_HOUR.finditer(low):
            hour = int(m.group("h"))
            if hour > 24:
                continue
            period = self._period(m)
            spaced = not m.group(0)[len(m.group("h")) :].startswith("ч")
            if period is None and spaced and not _TIME_WORDS.search(low, max(0, m.start() - 12), m.start()):
                continue  # "на 3 часа" is a duration; "в 23 часа" and "18ч" are clock times
            self._add_time(m, self._apply_period(hour, period), 0, hour > 12 or period is None, period)

    def _word_times(self) -> None:
        for m in _WORD_TIME.finditer(self.doc.low):
            hour = 0 if m.group("word") in ("полночь", "midnight") else 12
            self._add_time(m, hour, 0, True, None)

    def _numeric_dates_short(self) -> None:
        low = self.doc.low
        # Whether the message has a colon time / a day word: asked once, not per candidate.
        colon_time: bool | None = None
        day_word: bool | None = None
        for m in _NUM_DATE.finditer(low):
            if m.group("year") is not None or m["sep"] == "-" or (m["sep"] == "." and len(m["b"]) != 2):
                continue  # "1.5 тыс" is a number, not the 1st of May
            a, b, sep = int(m["a"]), int(m["b"]), m["sep"]
            month, day = self._day_month(a, b, sep)
            as_date = 1 <= month <= 12 and 1 <= day <= 31
            as_time = sep == "." and len(m["b"]) == 2 and a <= 23 and b <= 59
            if as_time and _MONEY_AHEAD.match(low, m.end()):
                continue  # "12.50 €" is a price
            if as_time and as_date:
                # "07.12" is a date unless a time is wanted: a time suffix, or no time elsewhere and
                # either a lead-in ("в 10.11") or a date already given ("завтра 10.11").
                suffix = _DOT_TIME_SUFFIX.match(low, m.end())
                lead = _TIME_WORDS.search(low, max(0, m.start() - 12), m.start())
                if colon_time is None:
                    colon_time = _COLON_TIME.search(low) is not None
                    day_word = _REL_DAY.search(low) is not None
                has_time = bool(self.times) or colon_time
                has_date = bool(self.dates) or bool(day_word)
                as_date = not (suffix or (not has_time and (lead is not None or has_date)))
            if as_date:
                self._add_date(m, kind="md", month=month, day=day)
            elif as_time:
                suffix = _DOT_TIME_SUFFIX.match(low, m.end())
                period = self._period(suffix) if suffix else None
                end = suffix.end() if suffix else m.end()
                start, kind = self._take(m.start(), end)
                explicit24 = m["a"].startswith("0") or a > 12
                self.times.append(
                    _Time(start, self._apply_period(a, period) % 24, b, explicit24, period, kind)
                )

    def _relative_days(self) -> None:
        for m in _REL_DAY.finditer(self.doc.low):
            word = " ".join(m.group("word").split())
            if word in ("tonight", "tonite"):
                self.hint = self.hint or "evening"
            self._add_date(m, kind="rel", value=_REL_DAYS[word])

    def _weekdays(self) -> None:
        low = self.doc.low
        for m in _WEEKDAY_RE.finditer(low):
            number = _weekday_number(m.group("wd"))
            if number >= 0 and _NIGHT_FROM.search(low, max(0, m.start() - 12), m.start()):
                self.doc.claim(m.start(), m.end())  # "в ночь с пятницы на субботу": the day after counts
            elif number >= 0:
                self._add_date(m, kind="weekday", value=number)

    def _days_only(self) -> None:
        for pattern in (_DAY_ONLY, _DAY_ONLY_EN):
            for m in pattern.finditer(self.doc.low):
                day = int(m.group("day"))
                if 1 <= day <= 31:
                    self._add_date(m, kind="day", day=day)

    def _bare_hours(self) -> None:
        low, masked = self.doc.low, self.doc.masked
        for m in _BARE_HOUR.finditer(low):
            hour = int(m.group("h"))
            if hour > 23:
                continue
            head = low[max(0, m.start() - 8) : m.start()]
            prep = head.rstrip()
            word = prep.rsplit(None, 1)[-1] if prep else ""
            if (
                prep == head
                or word not in _BARE_HOUR_PREPS
                or (len(prep) > len(word) and prep[-len(word) - 1].isalnum())
            ):
                continue
            start = m.start() - (len(head) - len(prep)) - len(word)
            # "в 7 Арбат → …", "в 7 из дома"; or any "в 7" right after a date ("завтра в 11 маму…").
            k = start
            while k > 0 and masked[k - 1] in " ,":
                k -= 1
            after_date = k > 0 and masked[k - 1] == HOLE
            if not (after_date or _AFTER_BARE_HOUR.match(masked, m.end())):
                continue
            self.doc.claim(start, m.end())
            self.times.append(_Time(start, hour, 0, hour > 12, None, None))
            masked = self.doc.masked

    def _hints(self) -> None:
        for m in _PERIOD_HINT.finditer(self.doc.low):
            low = m.group("hint")
            if low.startswith(("утр", "вран", "зран", "this morning", "in the morning")):
                hint = "morning"
            elif low.startswith(("веч", "ввеч", "увеч", "this evening", "in the evening", "evening")):
                hint = "evening"
            elif low.startswith(("ноч", "вноч", "уноч")):
                hint = "night"
            else:
                hint = "day"
            self.hint = self.hint or hint
            self.doc.claim(m.start(), m.end())

    @staticmethod
    def _period(m: re.Match[str]) -> str | None:
        groups = m.groupdict()
        ampm = groups.get("ampm")
        if ampm:
            return "am" if ampm == "a" else "pm"
        ru = groups.get("period")
        if ru:
            return {"утра": "am", "дня": "day", "вечера": "pm", "ночи": "night"}[ru]
        return None

    @staticmethod
    def _apply_period(hour: int, period: str | None) -> int:
        if period == "am":
            return 0 if hour == 12 else hour
        if period in ("pm", "day"):
            return hour + 12 if hour < 12 else hour
        if period == "night":
            if hour == 12:
                return 0
            return hour + 12 if 9 <= hour <= 11 else hour
        return hour


def _apply_hint(t: _Time, hint: str | None) -> int:
    if hint is None or t.period is not None or t.explicit24 or t.hour > 12:
        return t.hour
    if hint == "evening" and 1 <= t.hour <= 11:
        return t.hour + 12
    if hint == "day" and 1 <= t.hour <= 6:
        return t.hour + 12
    if hint == "night":
        if t.hour == 12:
            return 0
        if 9 <= t.hour <= 11:
            return t.hour + 12
    return t.hour


def _add_months(d: date, months: int) -> tuple[int, int]:
    total = d.year * 12 + d.month - 1 + months
    return total // 12, total % 12 + 1


def _resolve_date(c: _Date, today: date, time_passed: bool | None) -> date | None:
    """The calendar date a candidate means, the next one in the future when the year/month is implied."""
    try:
        if c.kind == "ymd":
            return date(c.year or today.year, c.month or 1, c.day or 1)
        if c.kind == "md":
            for year in range(today.year, today.year + 5):
                try:
                    d = date(year, c.month or 1, c.day or 1)
                except ValueError:
                    continue
                if d >= today:
                    return d
            return None
        if c.kind == "day":
            for ahead in range(0, 13):
                year, month = _add_months(today, ahead)
                try:
                    d = date(year, month, c.day or 1)
                except ValueError:
                    continue
                if d >= today:
                    return d
            return None
        if c.kind == "weekday":
            delta = ((c.value or 0) - today.weekday()) % 7
            if delta == 0 and time_passed:
                delta = 7
            return today + timedelta(days=delta)
        if c.kind == "rel":
            return today + timedelta(days=c.value or 0)
    except ValueError:
        return None
    return None


def _pick_time(times: list[_Time]) -> tuple[_Time | None, bool]:
    """The pickup time among candidates: a "подача/pickup/к" one wins, arrival times lose; else the first."""
    if not times:
        return None, False
    labelled = [t for t in times if t.label == "pickup"]
    if labelled:
        return labelled[0], False
    plain = [t for t in times if t.label != "arrival"] or times
    distinct = {(t.hour, t.minute) for t in plain}
    return plain[0], len(distinct) > 1


def extract_pickup(doc: Doc, now: datetime, zone: ZoneInfo, region: str) -> PickupTime:
    """Find, claim and resolve the pickup moment of an order text."""
    scan = _Scan(doc, region)
    scan.run()
    has_signal = bool(scan.times or scan.dates or scan.delta or scan.now_word)
    now_local = now.astimezone(zone)
    if scan.delta is None and scan.now_word and not scan.times and not scan.dates:
        scan.delta = timedelta(0)
    if scan.delta is not None:
        at = (now.astimezone(UTC) + scan.delta).astimezone(zone)
        return PickupTime(at, False, True, dated=True)

    # Candidates that come after "обратно"/"return" describe the way back.
    back = _RETURN.search(doc.text_low)
    times, dates = scan.times, scan.dates
    if back is not None:
        times = [t for t in times if t.start < back.start()] or times
        dates = [d for d in dates if d.start < back.start()] or dates
    times = sorted(times, key=lambda t: t.start)
    dates = sorted(dates, key=lambda d: d.start)

    chosen, ambiguous = _pick_time(times)
    today = now_local.date()
    now_hm = (now_local.hour, now_local.minute)
    hm: tuple[int, int] | None = None
    if chosen is not None:
        hm = (_apply_hint(chosen, scan.hint), chosen.minute)
    time_passed = None if hm is None else hm < now_hm

    resolved: list[tuple[_Date, date]] = []
    for c in dates:
        d = _resolve_date(c, today, time_passed)
        if d is not None:
            resolved.append((c, d))
    # A weekday that agrees with an explicit date ("в субботу 28-го", "Sat, Nov 28") adds nothing.
    explicit = [(c, d) for c, d in resolved if c.kind != "weekday"]
    weekdays = [(c, d) for c, d in resolved if c.kind == "weekday"]
    if explicit and weekdays:
        named = {d.weekday() for _, d in explicit}
        if any(c.value not in named for c, _ in weekdays):
            ambiguous = True
        resolved = explicit
    distinct_dates = {d for _, d in resolved}
    if len(distinct_dates) > 1:
        ambiguous = True
        labelled = [(c, d) for c, d in resolved if c.label == "pickup"]
        if labelled:
            resolved = labelled
            ambiguous = False

    if hm is None:
        return PickupTime(None, ambiguous, has_signal)
    hour, minute = hm
    if resolved:
        first, day = resolved[0]
        if first.kind == "rel" and first.value == 0 and hm < now_hm:
            # "сегодня в 7" said at 10:00 means 19:00; "сегодня в 2:30" said late in the evening, "сегодня
            # ночью в 1:15", "tonight at 00:45" or "tonight at 1 am" mean the night that follows today.
            shiftable = chosen is not None and not chosen.explicit24 and chosen.period is None
            small_hours = hour < 6 and (scan.hint in ("night", "evening") or not shiftable)
            if small_hours or (hour < 6 and now_local.hour >= 18):
                day = day + timedelta(days=1)
            elif shiftable and 1 <= hour <= 11 and (hour + 12, minute) >= now_hm:
                hour += 12
    else:
        day = today if hm >= now_hm else today + timedelta(days=1)
    at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    return PickupTime(at, ambiguous, has_signal, dated=bool(resolved))
