"""Where the driver works: region from the time zone, currency from the region, phone numbering plans."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

# Zones whose country is worth pinning explicitly (the common ones, and the few where zone.tab's answer
# is not the one a driver expects).
_ZONE_REGION: dict[str, str] = {
    "Europe/Moscow": "RU",
    "Europe/Kaliningrad": "RU",
    "Europe/Samara": "RU",
    "Europe/Volgograd": "RU",
    "Asia/Yekaterinburg": "RU",
    "Asia/Novosibirsk": "RU",
    "Asia/Krasnoyarsk": "RU",
    "Asia/Irkutsk": "RU",
    "Asia/Vladivostok": "RU",
    "Asia/Omsk": "RU",
    "Europe/Simferopol": "RU",
    "Asia/Almaty": "KZ",
    "Asia/Qostanay": "KZ",
    "Asia/Aqtobe": "KZ",
    "Asia/Aqtau": "KZ",
    "Asia/Atyrau": "KZ",
    "Asia/Oral": "KZ",
    "Asia/Qyzylorda": "KZ",
    "Europe/Kyiv": "UA",
    "Europe/Kiev": "UA",
    "Europe/Minsk": "BY",
    "Europe/Istanbul": "TR",
    "Asia/Istanbul": "TR",
    "Asia/Dubai": "AE",
    "Europe/London": "GB",
    "Europe/Belfast": "GB",
    "Europe/Paris": "FR",
    "Europe/Berlin": "DE",
    "Europe/Madrid": "ES",
    "Europe/Rome": "IT",
    "Europe/Amsterdam": "NL",
    "Europe/Brussels": "BE",
    "Europe/Vienna": "AT",
    "Europe/Zurich": "CH",
    "Europe/Lisbon": "PT",
    "Europe/Dublin": "IE",
    "Europe/Warsaw": "PL",
    "Europe/Prague": "CZ",
    "Asia/Tbilisi": "GE",
    "Asia/Yerevan": "AM",
    "Asia/Baku": "AZ",
    "Asia/Tashkent": "UZ",
    "Asia/Bishkek": "KG",
    "Pacific/Honolulu": "US",
    "America/Toronto": "CA",
    "America/Vancouver": "CA",
    "America/Montreal": "CA",
    "America/Edmonton": "CA",
    "America/Winnipeg": "CA",
    "America/Halifax": "CA",
    "America/Regina": "CA",
    "America/St_Johns": "CA",
    "America/Mexico_City": "MX",
    "America/Cancun": "MX",
    "America/Tijuana": "MX",
    "America/Sao_Paulo": "BR",
    "America/Argentina/Buenos_Aires": "AR",
    "America/Buenos_Aires": "AR",
    "America/Bogota": "CO",
    "America/Lima": "PE",
    "America/Santiago": "CL",
}

_EURO = frozenset("AT BE BG HR CY EE FI FR DE GR IE IT LV LT LU MT NL PT SK SI ES MC SM VA AD ME XK".split())

_REGION_CURRENCY: dict[str, str] = {
    "RU": "RUB",
    "US": "USD",
    "GB": "GBP",
    "KZ": "KZT",
    "UA": "UAH",
    "BY": "BYN",
    "TR": "TRY",
    "AE": "AED",
    "CH": "CHF",
    "LI": "CHF",
    "PL": "PLN",
    "CZ": "CZK",
    "SE": "SEK",
    "NO": "NOK",
    "DK": "DKK",
    "IS": "ISK",
    "HU": "HUF",
    "RO": "RON",
    "RS": "RSD",
    "MD": "MDL",
    "GE": "GEL",
    "AM": "AMD",
    "AZ": "AZN",
    "UZ": "UZS",
    "KG": "KGS",
    "TJ": "TJS",
    "TM": "TMT",
    "MN": "MNT",
    "IL": "ILS",
    "QA": "QAR",
    "SA": "SAR",
    "KW": "KWD",
    "BH": "BHD",
    "OM": "OMR",
    "EG": "EGP",
    "ZA": "ZAR",
    "CA": "CAD",
    "MX": "MXN",
    "BR": "BRL",
    "AR": "ARS",
    "CO": "COP",
    "PE": "PEN",
    "CL": "CLP",
    "AU": "AUD",
    "NZ": "NZD",
    "JP": "JPY",
    "CN": "CNY",
    "HK": "HKD",
    "SG": "SGD",
    "IN": "INR",
    "TH": "THB",
    "KR": "KRW",
    "VN": "VND",
    "ID": "IDR",
    "MY": "MYR",
    "PH": "PHP",
}

# Country calling code and the national number lengths after the trunk prefix.
# trunk: what a national number starts with before the subscriber digits ("" when there is none).
PHONE_PLANS: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "RU": ("7", "8", (10,)),
    "KZ": ("7", "8", (10,)),
    "BY": ("375", "80", (9,)),
    "UA": ("380", "0", (9,)),
    "US": ("1", "1", (10,)),
    "CA": ("1", "1", (10,)),
    "GB": ("44", "0", (9, 10)),
    "FR": ("33", "0", (9,)),
    "DE": ("49", "0", (9, 10, 11)),
    "AT": ("43", "0", (9, 10, 11, 12)),
    "CH": ("41", "0", (9,)),
    "NL": ("31", "0", (9,)),
    "BE": ("32", "0", (8, 9)),
    "IE": ("353", "0", (8, 9)),
    "TR": ("90", "0", (10,)),
    "AE": ("971", "0", (8, 9)),
    "IL": ("972", "0", (8, 9)),
    "GE": ("995", "0", (9,)),
    "AM": ("374", "0", (8,)),
    "AZ": ("994", "0", (9,)),
    "FI": ("358", "0", (8, 9, 10)),
    "SE": ("46", "0", (7, 8, 9)),
    "ES": ("34", "", (9,)),
    "IT": ("39", "", (9, 10)),
    "PL": ("48", "", (9,)),
    "CZ": ("420", "", (9,)),
    "PT": ("351", "", (9,)),
    "GR": ("30", "", (10,)),
    "DK": ("45", "", (8,)),
    "NO": ("47", "", (8,)),
    "UZ": ("998", "", (9,)),
    "KG": ("996", "0", (9,)),
    "LV": ("371", "", (8,)),
    "LT": ("370", "8", (8,)),
    "EE": ("372", "", (7, 8)),
    "MD": ("373", "0", (8,)),
}

# Total E.164 digit counts (calling code included) for the codes a driver meets; others get a range.
CALLING_CODE_LENGTHS: dict[str, tuple[int, ...]] = {
    "1": (11,),
    "7": (11,),
    "20": (12,),
    "27": (11,),
    "30": (12,),
    "31": (11,),
    "32": (10, 11),
    "33": (11,),
    "34": (11,),
    "36": (10, 11),
    "39": (11, 12),
    "40": (11,),
    "41": (11,),
    "43": (10, 11, 12, 13),
    "44": (11, 12),
    "45": (10,),
    "46": (9, 10, 11, 12),
    "47": (10,),
    "48": (11,),
    "49": (11, 12, 13),
    "51": (11,),
    "52": (12,),
    "54": (12, 13),
    "55": (12, 13),
    "56": (11,),
    "57": (12,),
    "60": (11, 12),
    "61": (11,),
    "62": (11, 12, 13),
    "63": (12,),
    "64": (10, 11),
    "65": (10,),
    "66": (10, 11),
    "81": (11, 12),
    "82": (11, 12),
    "84": (11, 12),
    "86": (13,),
    "90": (12,),
    "91": (12,),
    "351": (12,),
    "353": (11, 12),
    "358": (10, 11, 12),
    "359": (11, 12),
    "370": (11,),
    "371": (11,),
    "372": (10, 11),
    "373": (11,),
    "374": (11,),
    "375": (12,),
    "380": (12,),
    "420": (12,),
    "852": (11,),
    "961": (10, 11),
    "962": (12,),
    "965": (11,),
    "966": (12,),
    "968": (11,),
    "971": (11, 12),
    "972": (11, 12),
    "973": (11,),
    "974": (11,),
    "992": (12,),
    "993": (11,),
    "994": (12,),
    "995": (12,),
    "996": (12,),
    "998": (12,),
}

# Regions that write numeric dates month first (12/02 is December 2nd).
MONTH_FIRST_REGIONS = frozenset({"US", "PH", "FM", "MH", "PW"})


@lru_cache(maxsize=1)
def _zone_tab() -> dict[str, str]:
    """zone.tab from the tzdata package: the fallback for zones not pinned above."""
    out: dict[str, str] = {}
    try:
        text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return out
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) >= 3:
            out[parts[2]] = parts[0]
    return out


@lru_cache(maxsize=512)
def default_region_for_zone(tz: str) -> str:
    """ISO country code a driver in zone `tz` most likely works in (RU when nothing better is known)."""
    if tz in _ZONE_REGION:
        return _ZONE_REGION[tz]
    found = _zone_tab().get(tz)
    if found:
        return found
    if tz.startswith("America/") or tz.startswith("US/"):
        return "US"
    if tz.startswith("Australia/"):
        return "AU"
    return "RU"


def default_currency_for_region(region: str | None) -> str:
    """ISO 4217 currency of a region (eurozone → EUR); USD for regions we know nothing about."""
    code = (region or "").upper()
    if code in _EURO:
        return "EUR"
    return _REGION_CURRENCY.get(code, "USD")
