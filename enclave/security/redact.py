"""Opt-in PII redaction, applied to document text before chunking and embedding.

Each value found becomes ``[REDACTED:KIND]``; the counts returned never contain the values.

* ``EMAIL``: addresses (not ``logo@2x.png``-style asset names).
* ``IBAN``: country code, the country's ISO 13616 length and the ISO 7064 mod-97 check.
* ``CARD``: 13-19 digits that pass Luhn *and* belong to an issuer range with that length
  (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir, RuPay); written in
  card groups (``4111 1111 1111 1111``, ``3782 822463 10005``), or next to a word such as
  "card", "Visa" or "Kreditkarte". A bare digit run without such a word is left alone.
* ``SSN``: US ``ddd-dd-dddd`` without the never-issued 000/666/9xx areas, 00 groups and 0000
  serials; ``ddd dd dddd`` and nine bare digits next to "SSN" / "social security".
* ``NATIONAL_ID``: UK National Insurance numbers, Spanish DNI/NIE (check letter), Brazilian
  CPF (check digits), French NIR (key), Indian Aadhaar (Verhoeff, next to "Aadhaar").
* ``PHONE``: parsed by ``phonenumbers`` (Google's libphonenumber metadata): any number in
  international form (``+44 20 7946 0958``, ``+49 (0)30 1234567``), and national forms of the
  regions in :data:`PHONE_REGIONS` grouped the way that country writes them (``020 7946
  0958``, ``030 12345678``, ``01 42 68 53 00``, ``98765 43210``, ``03-1234-5678``, ``(11)
  91234-5678``, ``(212) 555-0142``). A number without any separator counts only next to a
  word such as "phone", "tel", "mobile" or "call". Dates, times, versions, IP addresses and
  numbers that are not valid in the region's numbering plan are left alone.

One module over 500 lines, on purpose: every PII detector (pattern, checksum, context) beside
the masking and overlap rule they share.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

KINDS: tuple[str, ...] = ("EMAIL", "IBAN", "CARD", "SSN", "NATIONAL_ID", "PHONE")

#: regions whose national phone formats (without a leading +) are recognised, tried in order
PHONE_REGIONS: tuple[str, ...] = (
    "US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "JP", "BR", "AU", "MX", "CN",
)  # fmt: skip

# ISO 13616 lengths of the countries that issue IBANs (the common ones)
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TL": 23, "TN": 24, "TR": 26, "UA": 29,
    "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

# card issuer ranges: (first digits low, high, lengths). Sources: the networks' published
# BIN ranges (ISO/IEC 7812 issuer identification numbers).
_CARD_RANGES: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("4", "4", (13, 16, 19)),  # Visa
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),  # Mastercard 2-series
    ("34", "34", (15,)),  # American Express
    ("37", "37", (15,)),
    ("6011", "6011", (16, 17, 18, 19)),  # Discover
    ("644", "649", (16, 17, 18, 19)),
    ("65", "65", (16, 17, 18, 19)),
    ("3528", "3589", (16, 17, 18, 19)),  # JCB
    ("300", "305", (14, 16, 17, 18, 19)),  # Diners Club
    ("36", "36", (14, 16, 17, 18, 19)),
    ("38", "39", (14, 16, 17, 18, 19)),
    ("62", "62", (16, 17, 18, 19)),  # UnionPay
    ("5018", "5018", (13, 14, 15, 16, 17, 18, 19)),  # Maestro
    ("5020", "5020", (13, 14, 15, 16, 17, 18, 19)),
    ("5038", "5038", (13, 14, 15, 16, 17, 18, 19)),
    ("5893", "5893", (13, 14, 15, 16, 17, 18, 19)),
    ("6304", "6304", (13, 14, 15, 16, 17, 18, 19)),
    ("6759", "6759", (13, 14, 15, 16, 17, 18, 19)),
    ("6761", "6763", (13, 14, 15, 16, 17, 18, 19)),
    ("2200", "2204", (16, 17, 18, 19)),  # Mir
    ("60", "60", (16,)),  # RuPay
    ("81", "82", (16,)),
    ("508", "508", (16,)),
)

# words that say a nearby number is a card / a phone / an SSN (searched case-insensitively
# in a short window around the number)
_CARD_WORDS = re.compile(
    r"\b(?:cards?|credit|debit|visa|master ?card|mc|amex|american express|discover|diners|"
    r"jcb|maestro|union ?pay|cc|ccn|pan|kreditkarte|karte|carte|cb|tarjeta|cart[aã]o|carta)\b",
    re.IGNORECASE,
)
_PHONE_WORDS = re.compile(
    r"\b(?:tel|t[eé]l[eé]?phone|telefon[eo]?|tel[eé]fono|phone|ph|mobile?|mob|cell(?:ular)?|"
    r"celular|handy|portable|fax|call|dial|ring|whats ?app|sms|hotline|contact|contato|"
    r"fone|ruf|reach(?:ed)?)\b|[☎📞]|電話|携帯|手机|电话",
    re.IGNORECASE,
)
_SSN_WORDS = re.compile(r"\b(?:ssn|ss#|ss no|social security|soc\.? ?sec)", re.IGNORECASE)
_AADHAAR_WORDS = re.compile(r"\b(?:aadhaa?r|uidai|uid)\b|आधार", re.IGNORECASE)
_CPF_WORDS = re.compile(r"\bcpf\b", re.IGNORECASE)
_NIR_WORDS = re.compile(
    r"s[ée]curit[ée] sociale|\bs[ée]cu\b|\bnir\b|\binsee\b|social security", re.IGNORECASE
)


def placeholder(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    """True if ``digits`` starts with a known issuer range that issues this length."""
    n = len(digits)
    for low, high, lengths in _CARD_RANGES:
        if n in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def iban_ok(compact: str) -> bool:
    """ISO 7064 mod-97 check of an IBAN without spaces (and its country's length if known)."""
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6), (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4), (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)  # fmt: skip
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2), (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)  # fmt: skip


def verhoeff_ok(digits: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


def cpf_ok(digits: str) -> bool:
    if len(digits) != 11 or len(set(digits)) == 1:
        return False
    nums = [ord(c) - 48 for c in digits]
    for n in (9, 10):
        s = sum(d * w for d, w in zip(nums[:n], range(n + 1, 1, -1), strict=True))
        if (s * 10 % 11) % 10 != nums[n]:
            return False
    return True


def nir_ok(compact: str) -> bool:
    """French NIR: sex, year, month, department (2A/2B for Corsica), commune, order, key."""
    if len(compact) != 15 or compact[0] not in "12378":
        return False
    month = int(compact[3:5])
    if not (1 <= month <= 12 or month >= 20):
        return False
    body = compact[:13].replace("2A", "19").replace("2B", "18")
    if not body.isdigit():
        return False
    return 97 - int(body) % 97 == int(compact[13:])


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
_FILE_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "pdf", "css"}
    | {"js", "json", "html", "htm", "txt", "md"}
)

Span = tuple[int, int, str]

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w-])"
)
# an IBAN candidate: country, check digits, then alphanumerics in groups (spaces allowed)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)")
_SSN_DASHED = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_SSN_OTHER = re.compile(
    r"(?<![\w-])(?!000|666|9\d\d)\d{3}( ?)(?!00)\d{2}\1(?!0000)\d{4}(?![\w-]|[.,]\d)"
)
_NINO = re.compile(
    r"(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?\d{2} ?\d{2} ?\d{2} ?[A-D]"
    r"(?![A-Za-z0-9])"
)
_DNI = re.compile(r"(?<![A-Za-z0-9])(\d{8})-?([A-Z])(?![A-Za-z0-9])")
_NIE = re.compile(r"(?<![A-Za-z0-9])([XYZ])-?(\d{7})-?([A-Z])(?![A-Za-z0-9])")
_CPF = re.compile(r"(?<![\d.-])(\d{3})(\.?)(\d{3})\2(\d{3})-?(\d{2})(?![\d-]|[.,]\d)")
_NIR = re.compile(
    r"(?<![\w-])([12378]) ?(\d{2}) ?(\d{2}) ?(\d{2}|2[AB]) ?(\d{3}) ?(\d{3}) ?(\d{2})(?![\w-])"
)
_AADHAAR = re.compile(r"(?<![\w-])([2-9]\d{3})([ -]?)(\d{4})\2(\d{4})(?![\w-]|[.,]\d)")
# a run that may hold a phone number: digits with the separators phone numbers use
_PHONE_RUN = re.compile(r"(?:\+|\(\+?)?\d+(?:[ \t\u00a0().\-/]{1,2}\d+)*\)?")
#: every card, SSN, ID and phone number holds a run of >= 6 digits and separators, every
#: IBAN a country code and check digits
_NUMBERISH = re.compile(r"\d[\d \t.()/+-]{4,}\d|\d{6}|[A-Z]{2}\d\d")


def _near(words: re.Pattern[str], text: str, start: int, end: int, before: int = 40) -> bool:
    return words.search(text, max(0, start - before), min(len(text), end + 24)) is not None


def _email_spans(text: str) -> list[Span]:
    out = []
    for m in _EMAIL.finditer(text):
        if m.group(1).lower() not in _FILE_EXTENSIONS:
            out.append((m.start(), m.end(), "EMAIL"))
    return out


def _iban_spans(text: str) -> list[Span]:
    out = []
    for m in _IBAN.finditer(text):
        raw = m.group(0)
        compact = raw.replace(" ", "")
        expected = IBAN_LENGTHS.get(compact[:2])
        if expected is not None and len(compact) > expected:
            # the candidate ran into a following word: keep exactly `expected` characters
            n = end = 0
            for i, ch in enumerate(raw):
                if n == expected:
                    break
                end = i + 1
                if ch != " ":
                    n += 1
            if raw[end : end + 1] == " " and iban_ok(compact[:expected]):
                out.append((m.start(), m.start() + end, "IBAN"))
        elif iban_ok(compact):
            out.append((m.start(), m.end(), "IBAN"))
    return out


def _card_grouped(raw: str) -> bool:
    """Written the way cards are printed: 4-4-4-4(-3), Amex 4-6-5, Diners 4-6-4."""
    groups = [len(g) for g in re.split(r"[ -]", raw)]
    if len(groups) < 3:
        return False
    if groups[:2] == [4, 6] and len(groups) == 3 and groups[2] in (4, 5):
        return True
    return all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4


def _card_spans(text: str) -> list[Span]:
    out = []
    for m in _CARD.finditer(text):
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
            continue
        if len(set(re.findall(r"[ -]", raw))) > 1:  # mixed separators: not a card
            continue
        if not (luhn_ok(digits) and card_issuer_ok(digits)):
            continue
        if _card_grouped(raw) or _near(_CARD_WORDS, text, m.start(), m.end()):
            out.append((m.start(), m.end(), "CARD"))
    return out


def _ssn_spans(text: str) -> list[Span]:
    out = [(m.start(), m.end(), "SSN") for m in _SSN_DASHED.finditer(text)]
    for m in _SSN_OTHER.finditer(text):
        if _near(_SSN_WORDS, text, m.start(), m.end()):
            out.append((m.start(), m.end(), "SSN"))
    return out


def _id_spans(text: str) -> list[Span]:
    out: list[Span] = []
    for m in _NINO.finditer(text):
        if m.group(1) not in _NINO_BAD_PREFIXES:
            out.append((m.start(), m.end(), "NATIONAL_ID"))
    for m in _DNI.finditer(text):
        if _DNI_LETTERS[int(m.group(1)) % 23] == m.group(2):
            out.append((m.start(), m.end(), "NATIONAL_ID"))
    for m in _NIE.finditer(text):
        number = int(str("XYZ".index(m.group(1))) + m.group(2))
        if _DNI_LETTERS[number % 23] == m.group(3):
            out.append((m.start(), m.end(), "NATIONAL_ID"))
    for m in _CPF.finditer(text):
        digits = "".join(m.group(1, 3, 4, 5))
        formatted = m.group(2) == "." and "-" in m.group(0)
        if cpf_ok(digits) and (formatted or _near(_CPF_WORDS, text, m.start(), m.end())):
            out.append((m.start(), m.end(), "NATIONAL_ID"))
    for m in _NIR.finditer(text):
        raw = m.group(0)
        spaced = raw.count(" ") == 6
        if nir_ok(raw.replace(" ", "")) and (spaced or _near(_NIR_WORDS, text, m.start(), m.end())):
            out.append((m.start(), m.end(), "NATIONAL_ID"))
    for m in _AADHAAR.finditer(text):
        digits = "".join(m.group(1, 3, 4))
        if verhoeff_ok(digits) and _near(_AADHAAR_WORDS, text, m.start(), m.end()):
            out.append((m.start(), m.end(), "NATIONAL_ID"))
    return out


_phonenumbers: Any = None


def _pn() -> Any:
    global _phonenumbers
    if _phonenumbers is None:
        import phonenumbers

        _phonenumbers = phonenumbers
    return _phonenumbers


def _groups(s: str) -> list[str]:
    return [g for g in re.split(r"\D+", s) if g]


def _strip_prefix(groups: list[str], prefix: str) -> list[int]:
    """Group lengths of a national number without its leading national prefix."""
    if prefix and groups and groups[0].startswith(prefix):
        rest = groups[0][len(prefix) :]
        groups = ([rest] if rest else []) + groups[1:]
    return [len(g) for g in groups]


def _written_like_a_phone(pn: Any, raw: str, number: Any) -> bool:
    """True if ``raw`` (a national number) is grouped the way its country writes numbers:
    the groups of ``phonenumbers``' national format (``020 7946 0958``, ``(11) 91234-5678``,
    ``98765 43210``), or trunk prefix + area code, then the subscriber number
    (``030 12345678``, ``0151 23456789``). A thousands-grouped amount such as ``867 304 938``
    or a code such as ``66749-6576`` is not, even where its digits form a valid number."""
    region = pn.region_code_for_number(number)
    meta = pn.PhoneMetadata.metadata_for_region(region) if region else None
    prefix = (meta.national_prefix or "") if meta is not None else ""
    national = pn.format_number(number, pn.PhoneNumberFormat.NATIONAL)
    written = _groups(raw)
    if _strip_prefix(written, prefix) == _strip_prefix(_groups(national), prefix):
        return True
    return prefix == "0" and len(written) == 2 and written[0].startswith("0")


_NOT_PHONE_RUN = re.compile(
    r"\d{1,3}(?:\.\d{1,3}){3}"  # IPv4
    r"|\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{4}"  # dates
    r"|(?!0\d(?:\.\d\d){4}$)\d+(?:\.\d+){3,}"  # versions (not 01.42.68.53.00)
)


def _attached(text: str, start: int, end: int) -> bool:
    """True if digits touch the span (through at most one separator): part of a longer number."""
    before = text[max(0, start - 2) : start]
    after = text[end : end + 2]
    return bool(re.search(r"\d[ .\-/]?$", before) or re.match(r"^[ .\-/]?\d", after))


def _region_lengths(pn: Any, region: str) -> tuple[str, frozenset[int]]:
    meta = pn.PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.general_desc is None:
        return "", frozenset()
    return meta.national_prefix or "", frozenset(meta.general_desc.possible_length or ())


_LENGTHS: dict[str, tuple[str, frozenset[int]]] = {}


# regions whose national numbers are always written with the trunk prefix 0, and regions
# whose numbers never start with 0 (neither has a national number without / with it)
_TRUNK_0_WRITTEN = frozenset({"GB", "DE", "FR", "NL", "JP", "AU", "AT", "CH", "BE", "SE"})
_NEVER_0 = frozenset({"US", "CA", "ES", "MX"})


def _could_be_national(pn: Any, digits: str, region: str) -> bool:
    """Cheap test before the matcher: skip ``region`` for a run that cannot be one of its
    national numbers: no trunk prefix where one is always written, a 0 where none is, or a
    length (without the prefix) that no number of the region has."""
    if digits[0] == "0" and region in _NEVER_0:
        return False
    if digits[0] != "0" and region in _TRUNK_0_WRITTEN:
        return False
    if region not in _LENGTHS:
        _LENGTHS[region] = _region_lengths(pn, region)
    prefix, lengths = _LENGTHS[region]
    if not lengths:
        return True
    if prefix and digits.startswith(prefix) and len(digits) - len(prefix) in lengths:
        return True
    return len(digits) in lengths


def _phone_spans(text: str, regions: Sequence[str], taken: Sequence[Span] = ()) -> list[Span]:
    """Phone numbers in ``text``; runs inside a span in ``taken`` (an IBAN, a card, ...)
    are not looked at again."""
    out: list[Span] = []
    pn = None
    for run in _PHONE_RUN.finditer(text):
        raw = run.group(0)
        digits = "".join(ch for ch in raw if ch.isdigit())
        if not 7 <= len(digits) <= 17 or _NOT_PHONE_RUN.fullmatch(raw.strip("()")):
            continue
        if any(t[0] <= run.start() and run.end() <= t[1] for t in taken):
            continue
        international = raw.lstrip("(").startswith("+")
        cue = _near(_PHONE_WORDS, text, run.start(), run.end(), 32)
        if raw.isdigit() and not cue:
            continue  # a bare digit run is a phone number only where the text says so
        pn = pn or _pn()
        # a little of the text around the run, so the matcher sees what touches it
        lo, hi = max(0, run.start() - 2), min(len(text), run.end() + 2)
        window = text[lo:hi]
        for region in regions[:1] if international else regions:
            if not international and not _could_be_national(pn, digits, region):
                continue
            found = False
            matcher = pn.PhoneNumberMatcher(
                window, region, leniency=pn.Leniency.STRICT_GROUPING, max_tries=4
            )
            for match in matcher:
                start, end = lo + match.start, lo + match.end
                written = match.raw_string
                if _attached(text, start, end):
                    continue
                if not written.lstrip("(").startswith("+"):
                    if written.isdigit() and not cue:
                        continue
                    if not cue and not _written_like_a_phone(pn, written, match.number):
                        continue
                out.append((start, end, "PHONE"))
                found = True
            if found:
                break
    return out


def _spans(text: str, wanted: set[str], regions: Sequence[str]) -> list[Span]:
    """Every PII span, the earlier kinds in :data:`KINDS` winning overlaps."""
    found: list[Span] = []
    if "EMAIL" in wanted and "@" in text:
        found += _email_spans(text)
    if _NUMBERISH.search(text) is not None or ("NATIONAL_ID" in wanted and _NINO.search(text)):
        finders: list[tuple[str, Callable[[str], list[Span]]]] = [
            ("IBAN", _iban_spans),
            ("CARD", _card_spans),
            ("SSN", _ssn_spans),
            ("NATIONAL_ID", _id_spans),
            ("PHONE", lambda t: _phone_spans(t, regions, found)),
        ]
        for kind, finder in finders:
            if kind in wanted:
                found += finder(text)
    kept: list[Span] = []
    for span in found:  # already in priority order
        if all(span[1] <= k[0] or span[0] >= k[1] for k in kept):
            kept.append(span)
    return sorted(kept)


def redact(
    text: str, kinds: Iterable[str] | None = None, *, regions: Sequence[str] | None = None
) -> tuple[str, dict[str, int]]:
    """Replace PII with ``[REDACTED:KIND]``; returns the new text and counts per kind.

    ``kinds`` limits the kinds (default: all of :data:`KINDS`); ``regions`` the regions whose
    national phone formats are recognised (default :data:`PHONE_REGIONS`; international
    ``+`` numbers are recognised for every country). Counts hold only kinds found.
    """
    wanted = set(KINDS if kinds is None else (k.upper() for k in kinds))
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown PII kind(s): {', '.join(sorted(unknown))}")
    spans = _spans(text, wanted, PHONE_REGIONS if regions is None else tuple(regions))
    if not spans:
        return text, {}
    counts: dict[str, int] = {}
    parts: list[str] = []
    pos = 0
    for start, end, kind in spans:
        parts.append(text[pos:start])
        parts.append(placeholder(kind))
        counts[kind] = counts.get(kind, 0) + 1
        pos = end
    parts.append(text[pos:])
    return "".join(parts), counts


class _ElementLike(Protocol):
    text: str
    heading_path: list[str]


class _DocumentLike(Protocol):
    title: str

    @property
    def elements(self) -> Sequence[_ElementLike]: ...


def redact_document(doc: _DocumentLike, kinds: Iterable[str] | None = None) -> dict[str, int]:
    """Redact a parsed document in place (title, every element's text and headings).

    Call it before cleaning and chunking, so neither the chunks nor the vectors ever see the
    values. Returns the counts per kind for the whole document.
    """
    total: dict[str, int] = {}

    def one(text: str) -> str:
        out, counts = redact(text, kinds)
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        return out

    doc.title = one(doc.title)
    for el in doc.elements:
        el.text = one(el.text)
        el.heading_path = [one(h) for h in el.heading_path]
    return total


def add_counts(into: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    """Add ``counts`` to ``into`` (e.g. a run's summary) and return it."""
    for k, v in counts.items():
        into[k] = into.get(k, 0) + v
    return into
