"""The client's name: after a "Клиент:/Name:/👤" label, or a first name written next to the phone."""

from __future__ import annotations

import re

from parsing.phones import Phone
from parsing.text import HOLE, Doc

_I = re.IGNORECASE

# Common first names and their everyday short forms. A known name next to a phone is taken at once;
# other capitalised words must pass the looser checks in `_plausible`.
_FIRST_NAMES = frozenset(
    """
    александр александра саша шура алексей леша лёша алеша анатолий андрей андрюша антон аркадий арсений
    артем артём артур богдан борис вадим валентин валентина валерий валерия варвара василий вася вера
    вероника виктор виктория вика виталий влад владимир вова володя владислав всеволод вячеслав слава
    галина галя геннадий гена георгий жора глеб григорий гриша даниил данил даня дарья даша денис дима
    дмитрий евгений евгения женя екатерина катя елена лена елизавета лиза жанна захар зоя иван ваня игорь
    илья инна ирина ира карина кирилл константин костя кристина ксения ксюша лариса лев леонид лидия
    любовь люба людмила люда маргарита рита марина мария маша марк матвей максим макс михаил миша надежда
    надя наталья наталия наташа никита николай коля нина оксана олег ольга оля павел паша петр пётр петя
    полина роман рома руслан светлана света семен семён сергей серёжа сережа софия софья соня станислав
    стас степан тамара тарас татьяна таня тимофей тимур тимофей федор фёдор филипп эдуард эльвира юлия
    юля юрий юра яна ярослав айгерим айдар алия арман асель бауыржан дамир ерлан жанар нурлан данияр
    азамат айжан гульнара мадина камила амина ахмед ахмет мехмет мустафа али фатима лейла эмин эмиль
    олександр олена тетяна наталія марія юлія ірина андрій сергій дмитро василь микола петро іван
    john james robert michael william david richard joseph thomas tom charles chris christopher daniel dan
    matthew matt anthony tony mark donald steven steve paul andrew andy joshua kenneth kevin brian george
    edward ed ronald timothy tim jason jeffrey ryan jacob gary nicholas nick eric jonathan stephen larry
    justin scott brandon benjamin ben samuel sam frank gregory greg raymond alexander alex patrick jack
    dennis jerry tyler aaron jose adam henry nathan douglas peter zachary kyle walter ethan jeremy harold
    carl keith roger gerald dave mike bob bill jim joe luke liam noah oliver harry charlie leo oscar
    mary patricia jennifer linda elizabeth liz barbara susan jessica sarah karen nancy lisa betty margaret
    sandra ashley kimberly emily donna michelle dorothy carol amanda melissa deborah stephanie rebecca
    sharon laura cynthia kathleen amy shirley angela helen anna anne brenda pamela nicole emma samantha
    katherine kate christine debra rachel catherine carolyn janet ruth maria heather diane virginia julie
    joyce victoria olivia kelly christina lauren joan evelyn judith megan cheryl andrea hannah martha
    jacqueline frances gloria ann teresa kathryn sara janice jean alice madison doris abigail julia judy
    grace denise amber marilyn beverly danielle theresa sophia sophie marie diana brittany natalie isabella
    charlotte rose alexis kayla chloe lucy mia ella amelia ava grace zoe
    pierre jean jacques louis marc luc antoine nicolas julien camille manon léa lea chloé inès ines
    hans klaus jürgen jurgen stefan andreas thomas markus lukas jonas anna lena laura sara lea
    marco luca giuseppe giovanni francesco alessandro giulia sofia chiara francesca
    carlos juan pedro pablo miguel javier luis jorge sergio diego lucia carmen ana isabel elena
    mohammed muhammad mohamed ahmed ali omar hassan hussein khalid yousef youssef fatima aisha mariam
    mehmet ahmet mustafa emre can burak elif zeynep ayse ayşe fatma
    piotr pawel paweł tomasz krzysztof marek anna katarzyna agnieszka
    wang li zhang liu chen yang huang zhao wu zhou
    """.split()
)

# Capitalised words that are never a client's name.
_NOT_NAMES = frozenset(
    """
    тел телефон моб мобильный номер контакт клиент пассажир заказ трансфер цена оплата стоимость рейс
    звонить позвонить звоните связь whatsapp ватсап вотсап viber вайбер telegram телеграм встреча
    табличка аэропорт вокзал терминал метро улица отель гостиница москва город центр дом
    phone tel mob mobile cell call contact client passenger order transfer price fare flight airport
    station terminal hotel street city center centre downtown pickup dropoff from to
    итого сумма доплата наличными картой нал cash card
    """.split()
)
# Endings typical of Russian place and street names (Одинцово, Химки, Тверская), not of first names.
_PLACE_ENDINGS = (
    "ово", "ево", "ино", "ыно", "ск", "цк", "град", "город", "поль", "бург", "ки", "цы", "ая", "ое",
    "ой", "ый", "ий", "ье", "ская", "ский",
)  # fmt: skip

_PATRONYMIC = ("вич", "вна", "чна", "ична", "ьич", "івна", "йович", "ївна")
_WORD = r"[A-ZА-ЯЁІЇЄ][A-Za-zА-Яа-яЁёІіЇїЄє'-]*"
# "Клиент: Иван", "👤 Иван", "👤 Клиент: Иван".
_LABEL = re.compile(
    r"(?<!\w)(?P<label>(?:[👤🙋👨👩🧑]\s*)?(?i:клиент(?:ка)?|пассажир(?:ка)?|пасс|имя|ф\.?\s?и\.?\s?о\.?|"
    r"контакт(?:ное\s+лицо)?|заказчик|встречать|гость|client|name|passenger|contact|guest|customer|"
    r"lead\s+passenger)\s*[:\-–—]|[👤🙋👨👩🧑])\s*"
    r"(?P<name>(?:(?i:mr|mrs|ms|miss|dr|г-н|г-жа)\.?\s+)?[^\W\d_][\w'-]*(?:[ ]+[^\W\d_][\w'-]*){0,2})",
)
# "Mr Brown", "Mrs. Haddad", "Dr Okafor", "Mr Al Mansoori", "г-н Петров": a title names the client.
_TITLE = re.compile(
    r"(?<![\w'])(?P<name>(?:Mr|Mrs|Ms|Miss|Mx|Dr|Sir|Mister|Madam|Г-н|г-н|Г-жа|г-жа|Господин|господин|Госпожа|"
    r"госпожа|Пан|пан|Пані|пані)\.?[ ]+[A-ZА-ЯЁІЇЄ][\w'-]+(?:[ ]+(?!(?:[Tt]o|[Aa]t|[Ff]rom)\b)[A-ZА-ЯЁІЇЄ][\w'-]+)?)"
)
_STREET_BEFORE = re.compile(r"\d+[A-Za-z]?[ ]+(?:[A-Z][\w'-]*[ ]+){1,3}$")
_GATE_TITLE = frozenset("mr mrs ms miss mx dr sir mister madam г н жа господин госпожа пан пані".split())
_LABEL_LOOSE = re.compile(
    r"(?<!\w)(?i:клиент(?:ка)?|client|пассажир(?:ка)?|passenger|guest|гость)\s+(?P<name>" + _WORD + ")"
)
_BEFORE_PHONE = re.compile(
    rf"(?<![\w'-])(?P<name>{_WORD}(?:[ ]+{_WORD})?)[ ]*[,:(\-–—]?[ ]*"
    r"(?:(?i:call|звонить|тел|phone)\.?[ ]*:?[ ]*)?[ ]*\(?$"
)
_AFTER_PHONE = re.compile(rf"[ ]*[,;(]?[ ]*(?P<name>{_WORD})[ ]*\)?(?=[ ]*(?:[,;.\n{HOLE}]|$))")
_STOP_AT = re.compile(
    r"(?i:\s+(?:тел\w*|phone|tel|моб\w*|и|and|с|with|рейс|flight|из|from|в|to|на|at)\b.*$)", re.DOTALL
)


_GATE_LABEL = frozenset("кли пас имя ф и кон зак вст гос cli nam pas con gue cus lea".split())
_HAS_PERSON_EMOJI = re.compile(r"[👤🙋👨👩🧑]")


def _known(word: str) -> bool:
    return word.lower().replace("ё", "е") in _FIRST_NAMES or word.lower() in _FIRST_NAMES


def _plausible(word: str) -> bool:
    """A capitalised word that could be a first name although it is not in the list."""
    low = word.lower()
    if low in _NOT_NAMES or not word.isalpha() or not 2 <= len(word) <= 15:
        return False
    if word.isupper() and len(word) <= 4:
        return False  # SFO, JFK, DXB
    return not low.endswith(_PLACE_ENDINGS)


def _clean_label_name(raw: str) -> tuple[str | None, int]:
    """The name in what follows a label, and how many characters of it belong to the name."""
    raw = _STOP_AT.sub("", raw).rstrip(" ,.-")
    words = [w for w in raw.split() if w.lower().strip(".") not in _NOT_NAMES]
    return (" ".join(words) if words else None), len(raw)


def extract_name(doc: Doc, phones: list[Phone]) -> str | None:
    """The client's name, claimed so it does not end up in an address."""
    labelled = doc.has_stem(_GATE_LABEL) or _HAS_PERSON_EMOJI.search(doc.text) is not None
    titled = doc.has_any(_GATE_TITLE)
    patterns = [p for p, on in ((_LABEL, labelled), (_TITLE, titled), (_LABEL_LOOSE, labelled)) if on]
    for pattern in patterns:
        for m in pattern.finditer(doc.masked):
            if pattern is _TITLE:
                if _STREET_BEFORE.search(doc.masked, max(0, m.start() - 40), m.start()):
                    continue  # "55 Sunset Dr Palo Alto": a street's "Dr", not a doctor
                name = " ".join(w for w in m.group("name").split() if w.lower() not in _NOT_NAMES)
                doc.claim(m.start(), m.end())
                return name
            name, length = _clean_label_name(m.group("name"))
            if name is None:
                continue
            if pattern is _LABEL_LOOSE and not (_known(name) or _plausible(name)):
                continue
            doc.claim(m.start(), m.start("name") + length)
            return name
    for phone in phones:
        before = _BEFORE_PHONE.search(doc.masked, max(0, phone.start - 60), phone.start)
        if before is not None:
            words = before.group("name").split()
            if len(words) == 2 and _known(words[0]) and _plausible(words[1]):
                name = " ".join(words)
            elif len(words) == 2 and _plausible(words[0]) and words[1].lower().endswith(_PATRONYMIC):
                name = " ".join(words)  # "Антонина Павловна", "Семён Аркадьевич"
            elif _known(words[-1]) or (_plausible(words[-1]) and _segment_start(doc.masked, before, words)):
                name = words[-1]
            else:
                name = None
            if name is not None:
                start = before.start("name") + before.group("name").rfind(name)
                doc.claim(start, before.end())
                return name
        after = _AFTER_PHONE.match(doc.masked, phone.end)
        if after is not None and _known(after.group("name")):
            doc.claim(after.start("name"), after.end("name"))
            return after.group("name")
    return None


def _segment_start(masked: str, m: re.Match[str], words: list[str]) -> bool:
    """True when the word begins its piece of the message (after a comma, a claimed span or a line)."""
    start = m.start("name") + m.group("name").rfind(words[-1])
    head = masked[:start].rstrip(" ")
    # Not after an arrow or dash: "… → Тверь, +7 916…" ends a route, it does not name a client.
    return not head or head[-1] in ",;:\n.!(" + HOLE
