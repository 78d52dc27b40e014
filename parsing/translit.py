"""Russian typed in Latin letters ("segodnya v 9 vechera iz Vnukovo na Arbat"): its small words read as Russian.

Only the words the extractors key on (days, day parts, prepositions, verbs, units) are respelt; place names
stay as the client wrote them, so the driver's card and navigation see "Vnukovo", not a guess at Cyrillic.
"""

from __future__ import annotations

import re

_WORDS: dict[str, str] = {
    "segodnya": "сегодня", "sevodnya": "сегодня", "segodnia": "сегодня", "segodня": "сегодня",
    "zavtra": "завтра", "poslezavtra": "послезавтра",
    "utra": "утра", "utrom": "утром", "vechera": "вечера", "vecherom": "вечером", "nochi": "ночи",
    "nochyu": "ночью", "nochiu": "ночью", "noch'yu": "ночью", "noch'ju": "ночью", "dnya": "дня", "dnem": "днём",
    "v": "в", "vo": "во", "iz": "из", "s": "с", "so": "со", "ot": "от", "do": "до", "na": "на", "k": "к",
    "chel": "чел", "cheloveka": "человека", "chelovek": "человек", "passazhira": "пассажира",
    "passazhirov": "пассажиров", "passazhir": "пассажир", "pass": "пасс",
    "reis": "рейс", "reys": "рейс", "podacha": "подача", "podat": "подать", "otvezti": "отвезти",
    "zabrat": "забрать", "vstretit": "встретить", "vstrecha": "встреча", "prilet": "прилет", "prilyot": "прилет",
    "zakaz": "заказ", "zakazik": "заказик", "kuda": "куда", "otkuda": "откуда", "nuzhna": "нужна", "mashina": "машина", "mashinu": "машину",
    "nal": "нал", "nalom": "налом", "nalichnymi": "наличными",
    "ponedelnik": "понедельник", "vtornik": "вторник", "sredu": "среду", "chetverg": "четверг",
    "pyatnicu": "пятницу", "pyatnitsu": "пятницу", "subbotu": "субботу", "voskresenie": "воскресенье",
    "voskresenye": "воскресенье",
}  # fmt: skip
# Words that only transliterated Russian has: without one of them the message is left alone (English has
# "do", "so", "na" too).
_MARKERS = frozenset(
    "segodnya sevodnya segodnia zavtra poslezavtra utra utrom vechera vecherom nochi nochyu nochiu dnya chel "
    "cheloveka chelovek passazhira passazhirov reis reys podacha otvezti zabrat vstretit vstrecha prilet prilyot "
    "kuda otkuda nuzhna mashina mashinu ponedelnik vtornik chetverg pyatnicu pyatnitsu subbotu zakaz".split()
)
_WORD = re.compile(r"(?<![\w'])[a-z]+(?:'[a-z]+)?(?![\w'])", re.IGNORECASE)
_CYRILLIC = re.compile(r"[а-яёіїєА-ЯЁІЇЄ]")
_LATIN_WORDS = re.compile(r"[a-z]{4,}", re.IGNORECASE)


def latin_russian(text: str) -> str:
    """`text` with transliterated Russian function words respelt in Cyrillic; other text unchanged."""
    if _CYRILLIC.search(text) is not None:
        return text
    low = text.lower()
    if not any(w in _MARKERS for w in _LATIN_WORDS.findall(low)):
        return text
    return _WORD.sub(lambda m: _WORDS.get(m.group(0).lower(), m.group(0)), text)
