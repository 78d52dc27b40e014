"""Pickup and drop-off addresses: labelled fields, arrows and dashes, "из X в Y" / "from X to Y", verbs.

Runs last, on what the other extractors left unclaimed: claimed spans (dates, prices, phones, names,
flights) are hard boundaries, so an address is the free text between them.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import NamedTuple

from parsing.text import HOLE, Doc, has_letters, strip_holes

_I = re.IGNORECASE

# ---- pieces of text ------------------------------------------------------------------------------------

# Separators and breaks cut the message into pieces; the whitespace around them stays in the pieces.
# Emoji and pictographs are breaks too (cards put one at the start of every field).
_EMOJI = r"[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF]"
_TOKEN = re.compile(
    r"(?P<strong>→|->|=>|⇒|➡|➔|➜|⟶|—>|-->|>>)|(?P<weak>[—–]+|(?<=\s)--?(?=\s))|(?P<hole>\x00+)"
    rf"|(?P<brk>\n|[?!;:|]+|{_EMOJI}+)|(?P<dot>\.(?=\s|$))"
)
_WORD_SPLIT = re.compile(r"[\s\x00(]")
# Words that end with a dot without ending a sentence ("ул. Ленина", "St. Francis").
_ABBREVIATIONS = frozenset(
    """
    ул пр пр-т просп пл д дом корп к стр кв наб пер ш туп бул мкр р-н обл г гор м им ст пос дер с п тц жк
    эт под пом офис оф пгт б-р бульв пр-д пр-кт
    вул пров буд смт
    ul pr prosp per sh korp kv nab mkr bul
    st ave av dr rd blvd ln mr mrs ms no mt ft jr sr apt bldg fl hwy pkwy sq pl ct terr int intl
    """.split()
)


class Route(NamedTuple):
    pickup: str | None
    dropoff: str | None
    # True when the text itself marks the route (labels, an arrow, "из…в", "from…to", verbs);
    # False when the pickup is only the one free piece of text that looks like an address.
    explicit: bool


class _Item(NamedTuple):
    kind: str  # "text", "strong", "weak", "hole", "brk"
    start: int
    end: int


_Span = tuple[int, int]
_Found = tuple[int, int, str]  # span in the text and the cleaned address


def _items(masked: str) -> list[_Item]:
    out: list[_Item] = []
    pos = 0
    for m in _TOKEN.finditer(masked):
        kind = m.lastgroup or "brk"
        if kind == "dot":
            word = _WORD_SPLIT.split(masked[max(0, m.start() - 12) : m.start()])[-1].lower()
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
            kind = "brk"
        if m.start() > pos:
            out.append(_Item("text", pos, m.start()))
        out.append(_Item(kind, m.start(), m.end()))
        pos = m.end()
    if pos < len(masked):
        out.append(_Item("text", pos, len(masked)))
    return out


# ---- cleaning -----------------------------------------------------------------------------------------

_LEAD_FILLER = re.compile(
    r"^(?:(?:новый\s+)?заказ|трансфер|поездка|маршрут|такси|срочно|нужн[аоы]\s+(?:машина|такси)|нужен\s+трансфер|"
    r"потрібн[аеий]\s+(?:машина|таксі|трансфер)|"
    r"route|transfer|order|ride|trip|booking|urgent|pick[\s-]?up|drop[\s-]?off|адрес|address|"
    r"please|пожалуйста|[#№]\s?\d+)(?:\s+(?:на|on|for))?\b[\s,:!.-]*",
    _I,
)
_LEAD_PICKUP = re.compile(r"^(?:из|от|со?|у|в|во|на|около|возле|з|зі|із|від|біля|from|at|in|outside)\s+", _I)
# "маму с Киевского вокзала" after "забери": the object word and its preposition go.
_LEAD_OBJECT = re.compile(r"^[а-яё]+\s+(?:из|с|со|от|у|в|во|на)\s+(?=\S)")
_LEAD_DROPOFF = re.compile(r"^(?:в|во|на|до|к|to|into|at)\s+", _I)
_LEADS = {"pickup": (_LEAD_PICKUP,), "dropoff": (_LEAD_DROPOFF,)}
# Words that dangle at the end of a cut-off piece. Case-sensitive on purpose: "Шереметьево Терминал С"
# ends with a terminal letter, not the preposition "с".
_TAIL_WORDS = frozenset(
    "и а and then далее затем потом дальше на в во до к to at from из от с рейс flight going heading take drop "
    "off drop-off едем ехать поедем отвезти везти довезти".split()
)
_TAIL_PUNCT = " \t,.;:!-"
# Chatter that cuts a loose piece of text short ("Шереметьево, нужно встретить и" → "Шереметьево").
_CHATTER = re.compile(
    r"(?<!\w)(?:нужно|надо|нужна|нужен|нужны|можно|пожалуйста|please|need|встретить|встречать|забрать|"
    r"отвезти|прилета\w*|прил[её]т\w*|вылета\w*|вылет|arriv\w*|lands?|клиента|будет|буду|ждет|ждёт|"
    r"позвон\w*|перезвон\w*|call|thanks|спасибо)(?!\w)",
    _I,
)
_NOT_ADDRESS_WORDS = frozenset(
    """
    привет здравствуйте добрый день вечер утро ок окей ok okay да нет спасибо пожалуйста понял принял
    хорошо буду можешь можете сможешь позвонить перезвони перезвоните свободен свободна занят where are
    you hi hello thanks thank yes no sorry late running see tomorrow today cheers mate sounds good call
    me when close available next week details send later ride yesterday stars заказ отменяется извините
    извини не смогу заболел работаю скинь номер диспетчера на месте выходите где ты клиент ждёт ждет уже
    минут сегодня завтра напомни про оплату сколько будет стоить до в во на к с со из от и а за then and
    to from at the price fare цена стоимость оплата сумма date time дата время passengers pax name phone
    тел телефон рейс flight нужно надо нужна нужен машина такси please
    can could would will you i i'll ll me my we us your pick up send details later want go get it is this take
    there here sure got just what how why who we're you're i'm
    можно мне меня мы нас ты вы он она они это там тут здесь как что где когда кто ещё еще
    эту этот эта следующий следующую ближайший ближайшую next coming
    дома домой home office офиса работы потрібна потрібен машину
    drive bring going heading continue greet meet отвезти отвези везти забрать забери встретить
    """.split()
)
_ADDRESS_HINT = re.compile(
    r"(?<!\w)(?:ул|улица|пр-т|проспект|пр|пер|переулок|ш|шоссе|бульвар|б-р|наб|набережная|пл|площадь|"
    r"мкр|микрорайон|д|дом|корп|стр|вокзал\w*|аэропорт\w*|терминал\w*|метро|м|тц|трц|жк|отель|гостиниц\w*|"
    r"street|st|avenue|ave|road|rd|drive|dr|blvd|lane|ln|square|sq|airport|terminal|station|hotel|"
    r"intl|international|plaza|mall|aeroport\w*|vokzal\w*|вул|вулиця|аеропорт\w*|готел\w*)(?!\w)|\d",
    _I,
)
_CAPITAL = re.compile(r"(?<![\w'])[A-ZА-ЯЁІЇЄ]")
_LETTERS = re.compile(r"[^\W\d_]+")
_PLACE_WORD = re.compile(
    r"аэропорт|аеропорт|вокзал|терминал|airport|station|terminal|hotel|отель|готел|центр|downtown|aeroport|vokzal|"
    r"centr|center|centre",
    _I,
)


def _only_chatter(value: str) -> bool:
    words = _LETTERS.findall(value.lower())
    return not words or all(w in _NOT_ADDRESS_WORDS for w in words)


def _strip_tail(value: str) -> str:
    value = value.rstrip(_TAIL_PUNCT)
    while True:
        head, sep, last = value.rpartition(" ")
        if not sep or last not in _TAIL_WORDS:
            return value
        value = head.rstrip(_TAIL_PUNCT)


def _clean(raw: str, role: str) -> str | None:
    """Tidy one address candidate: no claimed leftovers, fillers, dangling prepositions or punctuation.

    role: "pickup", "dropoff", or "any" (a loose piece: either kind of leading preposition goes)."""
    value = strip_holes(raw).strip(" \t,.;:-–—")
    leads = _LEADS.get(role, (_LEAD_PICKUP, _LEAD_DROPOFF))
    for _ in range(3):
        before = value
        value = _LEAD_FILLER.sub("", value).strip(" ,.;:-–—")
        for lead in leads:
            value = lead.sub("", value).strip(" ,.;:-–—")
        if role != "dropoff":
            value = _LEAD_OBJECT.sub("", value)
        if value == before:
            break
    value = _strip_tail(value)
    if value.count("(") > value.count(")"):
        value = value[: value.rfind("(")].rstrip(" ,")
    if value.count(")") > value.count("("):
        value = value.replace(")", "").strip()
    value = " ".join(value.split())
    if not has_letters(value) or _only_chatter(value):
        return None
    return value[:120]


# ---- route markers ------------------------------------------------------------------------------------

_OBJ = (
    r"(?:\s+(?:клиента|клиентов|пассажира|пассажиров|гостя|гостей|нас|меня|его|её|ее|их|him|her|them|us|me|"
    r"the\s+client|the\s+guests?))?"
)
# Russian verbs may carry one lower-case object word: "забери маму с …", "отвези домой на …".
_RU_OBJ = r"(?:\s+[а-яё]+)?"
_PICKUP_VERB = re.compile(
    rf"(?<!\w)(?:(?:забрать|заберите|забери|забираем|встретить|встретьте|встреть|встречаем|встречать|встреча|"
    rf"подать|подайте){_RU_OBJ}\s+(?:из|с|со|от|в|во|на|у|около|возле)(?=\s)|"
    rf"(?:забрать|заберите|забери|встретить|встреть|встреча|встречать|подача|подать\s+машину)(?=\s)|"
    rf"(?:meet\s*(?:&|and)\s*greet|meet|pick(?:ing)?[\s-]?up|collect){_OBJ}(?:\s+(?:at|from|in|outside))?(?=\s|$)|"
    r"по\s+адресу(?=\s)|"
    # "lands at JFK T5", "прилетает во Внуково": where the plane lands is where the client is met.
    r"(?:lands|landing|arrives|arriving|прилетает|прилетают|прилітає)\s+(?:at|in|into|в|во|у)(?=\s))"
)
_DROPOFF_VERB = re.compile(
    rf"(?<!\w)(?:(?:отвезти|отвезите|отвези|отвести|везти|везем|везём|довезти|доставить|подвезти|завезти|едем|"
    rf"ехать|поедем|поездка|трансфер|далее|затем|потом|дальше){_RU_OBJ}\s+(?:в|во|на|до|к)(?=\s)|"
    rf"(?:drop(?:ping)?(?:[\s-]?off)?){_OBJ}(?:\s+(?:at|to|in))?(?=\s)|"
    rf"(?:going|heading|take|bring|drive|then|continue){_OBJ}\s+(?:to|into)(?=\s))"
)
_FROM = r"(?<!\w)(?:из|от|со?|з|зі|із|від)\s+"
# Each side is bounded (an address is never longer than _MAX_SIDE): an unbounded lazy side would rescan
# the rest of the line from every "из", quadratic in a long line of them.
_MAX_SIDE = 160
_RU_PAIR_FIRST = re.compile(
    _FROM + rf"(?P<a>[^\x00\n]{{1,{_MAX_SIDE}}}?)\s+(?:в|во|до|к)\s+(?P<b>[^\x00\n]{{1,{_MAX_SIDE}}})"
)
_RU_PAIR_SECOND = re.compile(
    _FROM + rf"(?P<a>[^\x00\n]{{1,{_MAX_SIDE}}}?)\s+на\s+(?P<b>[^\x00\n]{{1,{_MAX_SIDE}}})"
)
_EN_PAIR = re.compile(
    rf"(?<!\w)from\s+(?P<a>[^\x00\n]{{1,{_MAX_SIDE}}}?)\s+to\s+(?P<b>[^\x00\n]{{1,{_MAX_SIDE}}})"
)
_TO = re.compile(r"\s+to\s+")
_PICKUP_PREP = re.compile(r"(?<!\w)(?:из|от|від|зі|із|from)\s+(?=\S)")
_DROPOFF_PREP = re.compile(r"(?<!\w)(?:до|to|в|во|на)\s+(?=\S)")
_ANY_PREP = re.compile(r"(?<!\w)(?:из|от|від|зі|із|from|до|to)\s+(?=\S)")
_ONWARD = re.compile(r"\s(?:to|до)\s+(?=\S)")

_PICKUP_LABEL = (
    r"откуда|адрес\s+подачи|место\s+подачи|точка\s+подачи|подача|адрес\s+отправления|адрес|отправление|забрать|"
    r"пункт\s+[аa]|точка\s+[аa]|point\s+a|from|pick[\s-]?up(?:\s+(?:address|location|point|from))?|address|"
    r"collection\s+address|start|от(?=\s*:)"
)
_DROPOFF_LABEL = (
    r"куда|адрес\s+назначения|место\s+назначения|пункт\s+назначения|точка\s+назначения|назначение|"
    r"конечный\s+адрес|адрес\s+прибытия|пункт\s+[бb]|точка\s+[бb]|point\s+b|отвезти|доставить|to|"
    r"drop[\s-]?off(?:\s+(?:address|location|point))?|destination|до(?=\s*:)"
)
# "Откуда: X" and "Откуда - X"; the bare English "From"/"To" only with a colon.
_LABEL = re.compile(
    rf"(?<!\w)(?:(?P<pickup>{_PICKUP_LABEL})|(?P<dropoff>{_DROPOFF_LABEL}))(?:\s*:|(?<!from)(?<!to)\s+[-–—]\s)"
)
_EMOJI_LABEL = re.compile(r"(?P<pickup>[📍🅰🟢])|(?P<dropoff>[🏁🎯🅱🔴])")
_HAS_EMOJI_LABEL = re.compile(r"[📍🅰🟢🏁🎯🅱🔴]")
# Words without which the verb/label patterns cannot match (see Doc.words).
_GATE_PICKUP_VERBS = frozenset(
    "забрать заберите забери забираем встретить встретьте встреть встречаем встречать встреча подать подайте "
    "подача meet pick pickup picking collect адресу lands landing arrives arriving прилетает прилетают "
    "прилітає".split()
)
_GATE_DROPOFF_VERBS = frozenset(
    "отвезти отвезите отвези отвести везти везем везём довезти доставить подвезти завезти едем ехать поедем "
    "поездка трансфер далее затем потом дальше drop dropoff dropping going heading take bring drive then "
    "continue".split()
)
_GATE_LABELS = frozenset(
    "откуда куда адрес подачи подача отправления отправление пункт точка point from pick pickup address "
    "collection start назначения назначение прибытия конечный место to drop dropoff destination забрать "
    "отвезти доставить от до".split()
)


class _Ctx:
    """The unclaimed text cut into pieces, with the verb markers found in it."""

    __slots__ = ("masked", "low", "items", "ends", "markers", "labels")

    def __init__(self, masked: str, low: str, words: frozenset[str]) -> None:
        self.masked = masked
        self.low = low
        self.items = _items(masked)
        self.ends = [item.end for item in self.items]
        # Verb markers ("забрать с", "отвезти в", "pick up at", "drop off at") in text order.
        self.markers: list[tuple[int, int, str]] = []
        if not words.isdisjoint(_GATE_PICKUP_VERBS):
            self.markers += [(m.start(), m.end(), "pickup") for m in _PICKUP_VERB.finditer(low)]
        if not words.isdisjoint(_GATE_DROPOFF_VERBS):
            self.markers += [(m.start(), m.end(), "dropoff") for m in _DROPOFF_VERB.finditer(low)]
        self.markers.sort()
        self.labels = list(_LABEL.finditer(low)) if not words.isdisjoint(_GATE_LABELS) else []

    def item_at(self, pos: int) -> int:
        """Index of the item containing (or first after) character position `pos`."""
        return bisect_right(self.ends, pos)

    def collect(self, index: int, step: int, stop: int | None = None) -> _Span | None:
        """Span of the address next to items[index] (exclusive) walking by `step`; hops over a claimed
        span while nothing with letters has been collected yet ("Внуково (рейс SU 1) →")."""
        items, masked = self.items, self.masked
        i = index + step
        lo: int | None = None
        hi: int | None = None
        while 0 <= i < len(items):
            item = items[i]
            if stop is not None and (item.start >= stop if step > 0 else item.end <= stop):
                break
            if item.kind == "text":
                lo = item.start if lo is None else min(lo, item.start)
                hi = item.end if hi is None else max(hi, item.end)
                if has_letters(masked[item.start : item.end]):
                    if stop is not None and step > 0:
                        hi = min(hi, stop)
                    return lo, hi
            elif item.kind != "hole":
                break
            i += step
        return None

    def across_line(self, index: int, step: int) -> _Span | None:
        """Like collect, past one line end: an arrow that starts or ends a line ("Арбат 5\n→ Внуково")."""
        j = index + step
        if 0 <= j < len(self.items) and self.items[j].kind == "brk":
            if self.masked[self.items[j].start : self.items[j].end] == "\n":
                return self.collect(j, step)
        return None

    def text_after(self, pos: int, stop: int | None = None) -> _Span | None:
        """The address that starts at `pos`, up to the next boundary or `stop`."""
        i = self.item_at(pos)
        if i >= len(self.items):
            return None
        first = self.items[i]
        if first.kind == "text" and first.start < pos:
            end = first.end if stop is None else min(first.end, stop)
            if has_letters(self.masked[pos:end]):
                return pos, end
            span = self.collect(i, 1, stop)
            return (pos, span[1]) if span else None
        return self.collect(i - 1, 1, stop)

    def bounded(self, start: int, end: int) -> _Span:
        """Shrink [start, end) to stop at the first boundary item after start."""
        i = self.item_at(start)
        items = self.items
        while i < len(items) and items[i].start < end:
            if items[i].kind != "text" and items[i].start >= start:
                return start, items[i].start
            i += 1
        return start, end

    def found(self, span: _Span | None, role: str) -> _Found | None:
        if span is None:
            return None
        value = _clean(self.masked[span[0] : span[1]], role)
        return (span[0], span[1], value) if value else None


# ---- finders, strongest evidence first ----------------------------------------------------------------

_Pair = tuple[_Found | None, _Found | None]


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


def _labelled(ctx: _Ctx) -> _Pair:
    """ "Откуда:/Куда:", "Адрес подачи:", "From:/To:", "📍 … 🏁 …"."""
    found: dict[str, _Found] = {}
    label_starts = [m.start() for m in ctx.labels]
    emoji = list(_EMOJI_LABEL.finditer(ctx.masked)) if _HAS_EMOJI_LABEL.search(ctx.masked) else []
    for pattern, matches in ((_LABEL, ctx.labels), (_EMOJI_LABEL, emoji)):
        for m in matches:
            role = "pickup" if m.group("pickup") else "dropoff"
            if role in found:
                continue
            if pattern is _EMOJI_LABEL and _LABEL.match(ctx.low, _skip_spaces(ctx.low, m.end())):
                continue  # "📍 Откуда: Внуково": the word label speaks
            k = bisect_right(label_starts, m.start())
            stop = label_starts[k] if k < len(label_starts) else None
            span = ctx.text_after(m.end(), stop)
            if span is None:
                continue
            after = ctx.item_at(span[1])
            if after < len(ctx.items) and ctx.items[after].kind in ("strong", "weak"):
                continue  # "📍 A → B" / "Маршрут: A → B": the arrow step splits it
            value = ctx.found(span, role)
            if value is not None:
                found[role] = value
    return found.get("pickup"), found.get("dropoff")


def _arrows(ctx: _Ctx) -> _Pair:
    """ "A → B", "A - B", "A — B"; a chain "A → B → C" ends at C."""
    items = ctx.items
    for kind in ("strong", "weak"):
        # Every arrow of a chain ends where the chain does: one failed walk is enough for all of them.
        walked_to = -1
        for i, item in enumerate(items):
            if item.kind != kind or i < walked_to:
                continue
            left = ctx.found(ctx.collect(i, -1) or ctx.across_line(i, -1), "pickup")
            right_span = ctx.collect(i, 1) or ctx.across_line(i, 1)
            if left is None or right_span is None:
                continue
            j = ctx.item_at(right_span[1])
            while j < len(items) and items[j].kind == "strong":
                further = ctx.collect(j, 1)
                if further is None:
                    break
                right_span = further
                j = ctx.item_at(right_span[1])
            right = ctx.found(right_span, "dropoff")
            if right is not None:
                return left, right
            walked_to = j
    return None, None


def _pairs(ctx: _Ctx) -> _Pair:
    """ "из X в Y", "от X до Y", "с X на Y", "from X to Y"."""
    verb_starts = [start for start, _, _ in ctx.markers]
    for pattern in (_RU_PAIR_FIRST, _RU_PAIR_SECOND, _EN_PAIR):
        for m in pattern.finditer(ctx.low):
            a = ctx.bounded(m.start("a"), m.end("a"))
            if a[1] != m.end("a") or any(a[0] <= v < a[1] for v in verb_starts):
                continue  # "из Парижа, отвезти на …": the "на" belongs to the verb, not to "из"
            pickup = ctx.found(a, "pickup")
            dropoff = ctx.found(ctx.bounded(m.start("b"), m.end("b")), "dropoff")
            if pickup is not None and dropoff is not None:
                return pickup, dropoff
    return None, None


def _verbs(ctx: _Ctx) -> _Pair:
    """ "забрать с X", "встретить в X", "отвезти в Y", "pick up at X", "drop off at Y"."""
    markers = ctx.markers
    found: dict[str, _Found] = {}
    for k, (_, end, role) in enumerate(markers):
        if role in found:
            continue
        stop = markers[k + 1][0] if k + 1 < len(markers) else None
        span = ctx.text_after(end, stop)
        if span is not None and _labels_a_time(ctx.masked, end, span[0]):
            continue  # "подача к 00:30, Васильевский остров": the verb said when, not where
        if span is not None:
            # "Pickup at 6:45, 1200 Market St to SFO" / "Отвезти в Шереметьево из Митино": the other end
            # of the route follows inside the same piece.
            other = "dropoff" if role == "pickup" else "pickup"
            split = (_ONWARD if role == "pickup" else _PICKUP_PREP).search(ctx.low, span[0], span[1])
            if split is not None and split.start() > span[0]:
                if other not in found:
                    value = ctx.found((split.end(), span[1]), other)
                    if value is not None:
                        found[other] = value
                span = (span[0], split.start())
        value = ctx.found(span, role)
        if value is not None:
            found[role] = value
    return found.get("pickup"), found.get("dropoff")


def _labels_a_time(masked: str, verb_end: int, text_start: int) -> bool:
    """True when only a claimed span and then a comma stand between a verb and the text after it."""
    between = masked[verb_end:text_start]
    if HOLE not in between:
        return False
    after = masked[text_start : text_start + 3].lstrip(" ")
    return between.rstrip(HOLE + " ").strip(" ") == "" and (after.startswith(",") or between.endswith(","))


def _singles(ctx: _Ctx) -> _Pair:
    """One preposition alone: "из X" / "from X" (pickup), "до Y" / "в Y" / "to Y" (drop-off)."""
    stops = sorted([start for start, _, _ in ctx.markers] + [m.start() for m in _ANY_PREP.finditer(ctx.low)])

    verb_spans = [(start, end) for start, end, _ in ctx.markers]

    def first(pattern: re.Pattern[str], role: str) -> _Found | None:
        for m in pattern.finditer(ctx.low):
            if any(a <= m.start() < b for a, b in verb_spans):
                continue  # "встретить на Киевском": the preposition is the verb's, read there
            k = bisect_right(stops, m.start())
            stop = stops[k] if k < len(stops) else None
            value = ctx.found(ctx.text_after(m.end(), stop), role)
            if value is None:
                continue
            loose = m.group(0).split()[0] in ("в", "во", "на")
            if role == "dropoff" and loose and not (_CAPITAL.match(value[2]) or _PLACE_WORD.match(value[2])):
                continue  # "в Y" alone is a drop-off only when Y is a place name ("до Y" always is)
            return value
        return None

    return first(_PICKUP_PREP, "pickup"), first(_DROPOFF_PREP, "dropoff")


def _x_to_y(ctx: _Ctx) -> _Pair:
    """English "X to Y" inside one piece of text, the weakest route pattern."""
    for item in ctx.items:
        if item.kind != "text":
            continue
        m = _TO.search(ctx.low, item.start, item.end)
        if m is None:
            continue
        pickup = ctx.found((item.start, m.start()), "pickup")
        dropoff = ctx.found((m.end(), item.end), "dropoff")
        if pickup is not None and dropoff is not None:
            return pickup, dropoff
    return None, None


# ---- the loose piece ----------------------------------------------------------------------------------


def _looks_like_address(value: str) -> bool:
    """A loose piece of text that names a place: a street/airport word, a number or a proper name."""
    if _only_chatter(value):
        return False
    if _ADDRESS_HINT.search(value) is not None:
        return True
    return any(_CAPITAL.match(w) and w.lower() not in _NOT_ADDRESS_WORDS for w in value.split())


def _is_question(ctx: _Ctx, i: int) -> bool:
    """A piece of text that ends in "?" is a question to the driver, not an address."""
    for k in range(i + 1, len(ctx.items)):
        item = ctx.items[k]
        if item.kind == "hole":
            continue
        return item.kind == "brk" and "?" in ctx.masked[item.start : item.end]
    return False


def _fallback(ctx: _Ctx, taken: _Found | None) -> _Found | None:
    """The first free piece of text that reads like an address (cards and one-address orders)."""
    header: _Found | None = None
    for i, item in enumerate(ctx.items):
        if item.kind != "text" or _is_question(ctx, i):
            continue
        start, end = item.start, item.end
        if taken is not None and start < taken[1] and taken[0] < end:
            if taken[0] <= start:
                continue
            end = taken[0]  # the part before the drop-off ("в Шереметьево, нужно встретить и отвезти в")
        piece = ctx.masked[start:end]
        cut = _CHATTER.search(piece)
        if cut is not None:
            piece = piece[: cut.start()]
        value = _clean(piece, "any")
        if value and _looks_like_address(value):
            if header is None and _is_city_header(ctx, i, value):
                header = (start, end, value)  # "Алматы: ALA, …" names the city; the place comes next
                continue
            return start, end, value
    return header


def _is_city_header(ctx: _Ctx, i: int, value: str) -> bool:
    """A single word that opens the message and is followed by a colon ("Алматы:", "СПб:")."""
    if " " in value or any(
        item.kind == "text" and has_letters(ctx.masked[item.start : item.end]) for item in ctx.items[:i]
    ):
        return False
    after = ctx.items[i + 1] if i + 1 < len(ctx.items) else None
    return after is not None and after.kind == "brk" and ctx.masked[after.start : after.end] == ":"


def _next_place(ctx: _Ctx, after: int) -> _Found | None:
    """A later free piece that names a street, a number or a place ("Пулково, прилёт 23:55, подача 00:30,
    Васильевский остров, 7 линия"): the drop-off of a message that lists pickup, times, then where to."""
    for i in range(ctx.item_at(after), len(ctx.items)):
        item = ctx.items[i]
        if item.kind != "text" or item.start < after or _is_question(ctx, i):
            continue
        piece = ctx.masked[item.start : item.end]
        cut = _CHATTER.search(piece)
        if cut is not None:
            piece = piece[: cut.start()]
        value = _clean(piece, "dropoff")
        if value and not _only_chatter(value) and _ADDRESS_HINT.search(value) is not None:
            return item.start, item.end, value
    return None


def _overlaps(a: _Found | None, b: _Found | None) -> bool:
    return a is not None and b is not None and a[0] < b[1] and b[0] < a[1]


def extract_route(doc: Doc) -> Route:
    """Pickup and drop-off from the unclaimed text of a message."""
    ctx = _Ctx(doc.masked, doc.low, doc.words)
    pickup, dropoff = _labelled(ctx)
    # Strongest evidence first; each step only fills what is still missing.
    for finder in (_arrows, _pairs, _verbs, _singles, _x_to_y):
        if pickup is not None and dropoff is not None:
            break
        p, d = finder(ctx)
        if pickup is None and dropoff is None and p is not None and d is not None:
            pickup, dropoff = p, d
            break
        if pickup is None and p is not None and not _overlaps(p, dropoff):
            pickup = p
        if dropoff is None and d is not None and not _overlaps(d, pickup):
            dropoff = d
    explicit = pickup is not None or dropoff is not None
    pickup_text = pickup[2] if pickup else None
    if pickup is not None and pickup_text is not None:
        cut = _CHATTER.search(pickup_text)
        if cut is not None and cut.start() > 0:
            pickup_text = _clean(pickup_text[: cut.start()], "pickup") or pickup_text
    else:
        pickup = _fallback(ctx, dropoff)
        pickup_text = pickup[2] if pickup else None
    if pickup is not None and dropoff is None:
        dropoff = _next_place(ctx, pickup[1])
    return Route(pickup_text, dropoff[2] if dropoff else None, explicit)
