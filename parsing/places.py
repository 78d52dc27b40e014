"""Known airports and railway terminals by the name a navigation app finds ("SVO терм. B" → "Шереметьево,
терминал B", "JFK T4" → "John F. Kennedy International Airport, Terminal 4").

The parsed pickup keeps the driver's own words; only the calendar event's location is rewritten, and only when
the address is just the airport (or station) and its terminal, so nothing the client wrote is lost.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Airport(NamedTuple):
    cyrillic: str
    latin: str
    aliases: tuple[str, ...]  # lower-case stems of the names drivers write


_AIRPORTS: dict[str, Airport] = {
    "SVO": Airport(
        "Шереметьево", "Sheremetyevo International Airport", ("шереметьев", "шереметев", "sheremet")
    ),
    "VKO": Airport("Внуково", "Vnukovo International Airport", ("внуков", "vnukov")),
    "DME": Airport("Домодедово", "Domodedovo Airport", ("домодедов", "domodedov")),
    "ZIA": Airport("Аэропорт Жуковский", "Zhukovsky International Airport", ()),
    "LED": Airport("Пулково", "Pulkovo Airport", ("пулков", "pulkov")),
    "SVX": Airport("Кольцово", "Koltsovo Airport", ("кольцов", "koltsov")),
    "KZN": Airport("Международный аэропорт Казань", "Kazan International Airport", ()),
    "AER": Airport("Международный аэропорт Сочи", "Sochi International Airport", ()),
    "NQZ": Airport("Международный аэропорт Астана", "Astana International Airport", ()),
    "ALA": Airport("Международный аэропорт Алматы", "Almaty International Airport", ()),
    "CIT": Airport("Международный аэропорт Шымкент", "Shymkent International Airport", ()),
    "TAS": Airport("Международный аэропорт Ташкент", "Tashkent International Airport", ()),
    "SKD": Airport("Международный аэропорт Самарканд", "Samarkand International Airport", ()),
    "BHK": Airport("Международный аэропорт Бухара", "Bukhara International Airport", ()),
    "FEG": Airport("Аэропорт Фергана", "Fergana International Airport", ()),
    "KBP": Airport(
        "Міжнародний аеропорт «Бориспіль»", "Boryspil International Airport", ("борисп", "boryspil")
    ),
    "IEV": Airport(
        "Міжнародний аеропорт «Київ» (Жуляни)", "Kyiv International Airport (Zhuliany)", ("жулян",)
    ),
    "LWO": Airport("Міжнародний аеропорт «Львів»", "Lviv International Airport", ()),
    "ODS": Airport("Міжнародний аеропорт «Одеса»", "Odesa International Airport", ()),
    "MSQ": Airport("Национальный аэропорт Минск", "Minsk National Airport", ()),
    "LHR": Airport("Хитроу", "Heathrow Airport", ("heathrow", "хитроу")),
    "LGW": Airport("Гатвик", "Gatwick Airport", ("gatwick", "гатвик")),
    "STN": Airport("Стэнстед", "London Stansted Airport", ("stansted",)),
    "LTN": Airport("Лутон", "London Luton Airport", ("luton",)),
    "LCY": Airport("Лондон-Сити", "London City Airport", ("london city",)),
    "MAN": Airport("Аэропорт Манчестер", "Manchester Airport", ()),
    "EDI": Airport("Аэропорт Эдинбург", "Edinburgh Airport", ()),
    "BHX": Airport("Аэропорт Бирмингем", "Birmingham Airport", ()),
    "DXB": Airport("Международный аэропорт Дубай", "Dubai International Airport", ()),
    "DWC": Airport("Аэропорт Аль-Мактум", "Al Maktoum International Airport", ("al maktoum",)),
    "AUH": Airport("Международный аэропорт Абу-Даби", "Zayed International Airport", ()),
    "SHJ": Airport("Международный аэропорт Шарджа", "Sharjah International Airport", ()),
    "JFK": Airport("Аэропорт Кеннеди", "John F. Kennedy International Airport", ()),
    "LGA": Airport("Аэропорт Ла-Гуардия", "LaGuardia Airport", ("laguardia", "la guardia")),
    "EWR": Airport("Аэропорт Ньюарк", "Newark Liberty International Airport", ()),
    "LAX": Airport("Аэропорт Лос-Анджелес", "Los Angeles International Airport", ()),
    "SFO": Airport("Аэропорт Сан-Франциско", "San Francisco International Airport", ()),
    "ORD": Airport("Аэропорт О'Хара", "O'Hare International Airport", ("o'hare", "ohare")),
    "BUR": Airport("Аэропорт Бербанк", "Hollywood Burbank Airport", ()),
    "IST": Airport("Аэропорт Стамбул", "Istanbul Airport", ()),
}
_CODE = re.compile(r"(?<![\w-])(" + "|".join(_AIRPORTS) + r")(?![\w-])")
# "терминал B", "терм. D", "Terminal 4", "T5", "термінал D"; and a terminal letter right after the name
# ("Шереметьево B").
_TERMINAL = re.compile(
    r"(?<!\w)(?:терминал|термінал|терм\.?|terminal|term\.?|t)[ ]?(?P<t>[A-Fa-fАВСЕДавсед]|\d{1,2})(?!\w)",
    re.IGNORECASE,
)
_BARE_TERMINAL = re.compile(r"[ ,]*(?P<t>[A-FАВСЕД])(?!\w)")
_LETTERS = str.maketrans("АВСЕД", "ABCED")
_NAMED_TERMINAL = re.compile(r"(?<!\w)(?P<t>north|south)\s+terminal(?!\w)", re.IGNORECASE)
_AIRPORT_NAME = re.compile(r"аэропорт|аеропорт|airport", re.IGNORECASE)
_CYRILLIC = re.compile(r"[а-яёіїєА-ЯЁІЇЄ]")
_UKRAINIAN = re.compile(r"[іїєІЇЄ]")
# Words that may sit next to an airport's name without being a different place.
_AIRPORT_WORDS = frozenset(
    "аэропорт аэропорта аэропорту а п аеропорт аеропорту airport international intl intl. arrivals departures "
    "прилет прилёт вылет терминал терм термінал terminal term t".split()
)
_WORDS = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
# Moscow's railway terminals in any case form: "с Павелецкого вокзала" → "Павелецкий вокзал".
_STATION_NAMES = {
    "курск": "Курский", "казанск": "Казанский", "ленинградск": "Ленинградский", "ярославск": "Ярославский",
    "киевск": "Киевский", "белорусск": "Белорусский", "павелецк": "Павелецкий", "савёловск": "Савёловский",
    "савеловск": "Савёловский", "рижск": "Рижский", "восточн": "Восточный",
}  # fmt: skip
_STATION = re.compile(
    r"(?<!\w)(?P<stem>" + "|".join(_STATION_NAMES) + r")(?:ий|ый|ого|ому|ом|ым|им)\s+вокзал\w*(?!\w)",
    re.IGNORECASE,
)


def _airport_in(address: str, low: str) -> tuple[str, Airport, int, int] | None:
    m = _CODE.search(address)
    if m is not None:
        return m.group(1), _AIRPORTS[m.group(1)], m.start(), m.end()
    for code, airport in _AIRPORTS.items():
        for alias in airport.aliases:
            at = low.find(alias)
            if at >= 0:
                end = at + len(alias)
                while end < len(low) and (low[end].isalpha() or low[end] == "'"):
                    end += 1
                return code, airport, at, end
    return None


def navigation_name(address: str) -> str:
    """The full name of a known airport or Moscow railway terminal the address is; else the address itself."""
    low = address.lower()
    found = _airport_in(address, low)
    if found is None:
        return _station_name(address)
    code, airport, start, end = found
    terminal = _TERMINAL.search(address) or _NAMED_TERMINAL.search(address)
    if terminal is None:
        terminal = _BARE_TERMINAL.match(address, end)
    rest = low[:start] + " " + low[end:]
    if terminal is not None:
        rest = low[:start] + " " + low[end : terminal.start()] + " " + low[terminal.end() :]
    if any(w not in _AIRPORT_WORDS and w != code.lower() for w in _WORDS.findall(rest)):
        return address  # "ЖК у Внуково, корп. 3": more than the airport, keep the driver's words
    cyrillic = _CYRILLIC.search(address) is not None
    name = airport.cyrillic if cyrillic else airport.latin
    if terminal is None:
        # "Внуково" alone is a district too: say it is the airport.
        return name if _AIRPORT_NAME.search(name) else f"Аэропорт {name}"
    word = ("термінал" if _UKRAINIAN.search(name) else "терминал") if cyrillic else "Terminal"
    if terminal.re is _NAMED_TERMINAL:
        return f"{name}, {terminal.group('t').capitalize()} {word}"
    return f"{name}, {word} {terminal.group('t').upper().translate(_LETTERS)}"


def _station_name(address: str) -> str:
    m = _STATION.search(address)
    if m is None:
        return address
    stem = m.group("stem").lower()
    rest = address[: m.start()] + address[m.end() :]
    if any(w.lower() not in ("ж", "д", "жд", "вокзал") for w in _WORDS.findall(rest)):
        return address
    return f"{_STATION_NAMES[stem]} вокзал"
