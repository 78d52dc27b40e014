"""Prices: amounts with a currency sign, code or word, thousands shorthands ("5к"), keyword-led and bare ones."""

from __future__ import annotations

import re
from typing import NamedTuple

from parsing.text import Doc

# Space/dot/comma thousands groups ("2 500", "1,200") or a plain number with up to two decimals.
_NUM = r"\d{1,3}(?:[ .,]\d{3})+(?!\d)|\d+(?:[.,]\d{1,2})?(?!\d)"
_THOUSANDS = r"(?:к|k|тыс\.?|тысяч[аи]?|т\.\s?р\.?)"
_CUR_AFTER = (
    r"(?:₽|₸|₴|₺|€|\$|£|₾|₼|₹|₪|฿|¥|₩|֏|"
    r"бел\.?\s?руб\.?|руб(?:л(?:ей|я|ь))?\.?|р\.|р(?![\w-])|тенге|тг\.?|грн\.?|гривен|гривн[аяы]|"
    r"гривень|гривні|гривня|лир[аы]?|дирхам\w*|евро|долл(?:аров|ара|ар|\.)?|бакс\w*|фунт\w*|злот\w*|лари|сомов|сом|сум|"
    r"драм\w*|манат\w*|юан\w*|крон\w*|"
    r"usd|eur|gbp|rub|rur|byn|kzt|uah|try|aed|czk|pln|gel|chf|sek|nok|dkk|huf|ron|bgn|amd|azn|uzs|"
    r"kgs|cad|aud|nzd|sgd|hkd|jpy|cny|inr|thb|ils|sar|qar|egp|mxn|brl|"
    r"euros?|dollars?|dollarov|dollara|bucks|pounds?|quid|dirhams?|dhs|tl|lira|tenge|rubles?|roubles?|rublei|rubley|"
    r"hrn|grn|hryvnias?|som|soum|so'm|sum|kč|zł|zl|kr|lei)"
    r"(?![\w-])"
)
_CUR_BEFORE = (
    r"(?:us\$|ca\$|a\$|\$|€|£|₺|₽|₸|₴|₾|₹|₪|¥|"
    r"usd|eur|gbp|aed|rub|kzt|uah|try|byn|chf|pln|czk|gel|cad|aud|sar|qar)"
)
# Starts with a plain digit class (the lookbehind sits after it) so the engine can skip to digits fast.
_MARKED_NUM = r"\d(?<![\w.,+]\d)(?:\d{0,2}(?:[ .,]\d{3})+(?!\d)|\d*(?:[.,]\d{1,2})?(?!\d))"
_MARKED = re.compile(rf"(?P<num>{_MARKED_NUM})\s?(?P<k>{_THOUSANDS}(?![\w]))?\s?(?P<cur>{_CUR_AFTER})")
_PREFIXED = re.compile(rf"(?<![\w])(?P<cur>{_CUR_BEFORE})\s?(?P<num>{_NUM})(?P<k>[kк](?!\w))?")
_PAYMENT_WORD = (
    r"(?:наличными|наличкой|налом|нал|картой|по\s+карте|безнал\w*|переводом|cash|in\s+cash|by\s+card|card)"
)
_KEYWORD = re.compile(
    rf"(?<!\w)(?P<kw>цена|стоимость|стоит|оплата|оплачено|сумма|тариф|итого|заплачу|оплачу|price|fare|cost|"
    rf"total|rate|(?:will|i'll|i\s+will)\s+pay|paying|pay|"
    rf"💰|💵|💳|💸|за)\s*(?:[:\-–—=]\s*)?(?:{_PAYMENT_WORD}\s*[:,\-]?\s*)?(?P<cur0>{_CUR_BEFORE})?\s?"
    rf"(?P<num>{_NUM})(?!\s*(?:мин|час|ч\b|км|km|min|hour|сек|дн|д\.|%|пасс|чел|pax|[:/]\d))"
    rf"\s?(?P<k>{_THOUSANDS}(?![\w]))?(?:\s?(?P<cur>{_CUR_AFTER}))?",
)
# A number with how it is paid and no currency: "2300 нал", "2800 безнал", "1600 наличными", "40 cash".
_PAID = re.compile(
    rf"(?P<num>{_MARKED_NUM})\s?(?P<k>{_THOUSANDS}(?![\w]))?\s?"
    r"(?:наличными|наличкой|налом|нал|безнал\w*|на\s+карту|по\s+карте|картой|переводом|готівкою|готівка|"
    r"cash|in\s+cash|by\s+card|card)(?![\w])"
)
_GATE_PAID = frozenset(
    "наличными наличкой налом нал безнал безналом безналичные карту карте картой переводом готівкою готівка cash "
    "card".split()
)
_K_ONLY = re.compile(
    r"(?P<num>\d(?<![\w.,]\d)\d*(?:[.,]\d)?)(?:(?P<k>[кk])(?![\w-])|\s?(?P<k2>тыс\.?|тысяч[аи]?)(?!\w))"
)
# A number that is a whole comma-separated piece of a line ("…до Лобни, 1700") or ends the message.
_BARE = re.compile(
    r"(?:^|[,;\x00])[ ]*(?P<num>\d{1,3}(?: \d{3})+|\d{3,5})[ ]*(?=[,;.!\n\x00]|$)", re.MULTILINE
)
_BARE_END = re.compile(r"[^\W\d][ ]+(?P<num>\d{3,5})[ ]*[.!]?[ ]*\Z")
# "Ленинский проспект, 123": a number after a street word is a house number, not a price.
_HOUSE_BEFORE = re.compile(
    r"(?:ул|улица|проспект|пр-т|пр|переулок|пер|шоссе|ш|бульвар|набережная|наб|дом|д|корпус|корп|street|st|"
    r"avenue|ave|road|rd|drive|dr|blvd|lane|ln)\.?[ ,]*$"
)
_GROUPED = re.compile(r"\d{1,3}(?:[ .,]\d{3})+")

_DOLLARS = frozenset({"USD", "CAD", "AUD", "NZD", "SGD", "HKD"})
# Gates (see Doc.words): a scan runs only when the message has a word or sign it needs.
_HAS_SIGN = re.compile(r"[$€£₺₽₸₴₾₹₪¥]")
_HAS_MONEY_EMOJI = re.compile(r"[💰💵💳💸]")
_GATE_PREFIXED = frozenset(
    "us ca a usd eur gbp aed rub kzt uah try byn chf pln czk gel cad aud sar qar".split()
)
_GATE_KEYWORD = frozenset(
    "цена стоимость стоит оплата оплачено сумма тариф итого заплачу оплачу price fare cost total rate pay "
    "paying за".split()
)
_GATE_THOUSANDS = frozenset("к k тыс тысяч тысячи тысяча".split())
_WORD_CODES: tuple[tuple[str, str], ...] = (
    ("бел", "BYN"), ("руб", "RUB"), ("р", "RUB"), ("₽", "RUB"), ("rub", "RUB"), ("rur", "RUB"),
    ("roub", "RUB"), ("тенге", "KZT"), ("тг", "KZT"), ("₸", "KZT"), ("tenge", "KZT"),
    ("грн", "UAH"), ("гривн", "UAH"), ("гривен", "UAH"), ("гривень", "UAH"), ("₴", "UAH"), ("hrn", "UAH"),
    ("grn", "UAH"), ("hryvn", "UAH"), ("sum", "UZS"),
    ("лир", "TRY"), ("₺", "TRY"), ("tl", "TRY"), ("lira", "TRY"), ("дирхам", "AED"), ("dirham", "AED"),
    ("dhs", "AED"), ("евро", "EUR"), ("€", "EUR"), ("euro", "EUR"), ("фунт", "GBP"), ("£", "GBP"),
    ("pound", "GBP"), ("quid", "GBP"), ("злот", "PLN"), ("zł", "PLN"), ("zl", "PLN"), ("лари", "GEL"),
    ("₾", "GEL"), ("сом", "KGS"), ("сум", "UZS"), ("драм", "AMD"), ("֏", "AMD"), ("манат", "AZN"),
    ("₼", "AZN"), ("юан", "CNY"), ("₹", "INR"), ("₪", "ILS"), ("฿", "THB"), ("₩", "KRW"),
    ("kč", "CZK"), ("крон", "CZK"), ("lei", "RON"),
)  # fmt: skip


# Three letters that are a currency word, not an ISO code.
_NOT_ISO = frozenset({"rub", "rur", "dhs", "hrn", "grn", "som", "sum"})


class Price(NamedTuple):
    amount: float
    currency: str


def _amount(raw: str, thousands: str | None) -> float:
    raw = raw.replace(" ", "")
    if _GROUPED.fullmatch(raw):
        value = float(raw.replace(",", "").replace(".", ""))
    else:
        value = float(raw.replace(",", "."))
    return value * 1000 if thousands else value


def _currency(token: str | None, region: str, default: str) -> str:
    """ISO 4217 for a currency sign or word, read the way the driver's region reads it."""
    if not token:
        return default
    low = " ".join(token.lower().rstrip(".").split())
    if low in ("$", "bucks") or low.startswith(("долл", "бакс", "dollar")):
        return default if default in _DOLLARS else "USD"
    if low in ("us$",):
        return "USD"
    if low in ("ca$",):
        return "CAD"
    if low in ("a$",):
        return "AUD"
    if low == "kr" or (low.startswith("крон") and region in ("SE", "NO", "DK", "IS")):
        return default if default in ("SEK", "NOK", "DKK", "ISK") else "SEK"
    if low == "¥":
        return "JPY" if region == "JP" else "CNY"
    if low in ("som", "soum", "so'm"):
        return "UZS" if region == "UZ" else "KGS"
    if len(low) == 3 and low.isascii() and low.isalpha() and low not in _NOT_ISO:
        return low.upper()
    for prefix, code in _WORD_CODES:
        if low.startswith(prefix):
            # In Belarus "руб"/"р" is the Belarusian rouble.
            if code == "RUB" and region == "BY" and not low.startswith(("rur", "roub")):
                return "BYN"
            return code
    return default


def extract_price(doc: Doc, region: str, default_currency: str) -> Price | None:
    """The order's price; every price-looking phrase is claimed so addresses never swallow one."""
    found: list[tuple[int, Price]] = []
    if not doc.has_digits:
        return None
    # Keyword-led first, so "Стоимость: 1700 руб" is claimed with its label, not just "1700 руб".
    patterns = []
    if doc.has_any(_GATE_KEYWORD) or _HAS_MONEY_EMOJI.search(doc.text):
        patterns.append(_KEYWORD)
    patterns.append(_MARKED)
    if doc.has_any(_GATE_PAID):
        patterns.append(_PAID)
    if doc.has_any(_GATE_PREFIXED) or _HAS_SIGN.search(doc.text):
        patterns.append(_PREFIXED)
    for pattern in patterns:
        for m in pattern.finditer(doc.low):
            kw = m.groupdict().get("kw")
            value = _amount(m.group("num"), m.group("k"))
            if kw == "за" and (m.group("cur") is None and value < 100):
                continue
            if value <= 0:
                continue
            token = m.groupdict().get("cur") or m.groupdict().get("cur0")
            found.append((m.start(), Price(value, _currency(token, region, default_currency))))
            doc.claim(m.start(), m.end())
    for m in _K_ONLY.finditer(doc.low) if doc.has_any(_GATE_THOUSANDS) else ():
        num = m.group("num")
        found.append((m.start(), Price(_amount(num, "k"), default_currency)))
        doc.claim(m.start(), m.end())
    if found:
        return min(found, key=lambda item: item[0])[1]
    for pattern in (_BARE, _BARE_END):
        for m in pattern.finditer(doc.low):
            raw = m.group("num")
            value = _amount(raw, None)
            if pattern is _BARE_END and value < 500:
                continue
            if (
                value < 300
                or (region == "US" and len(raw) == 5)
                or _HOUSE_BEFORE.search(doc.low, max(0, m.start("num") - 24), m.start("num"))
            ):
                continue  # house numbers are small or follow a street word; five US digits are a ZIP code
            doc.claim(m.start("num"), m.end("num"))
            return Price(value, default_currency)
    return None
