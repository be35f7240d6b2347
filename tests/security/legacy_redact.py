"""The regex redactor Enclave shipped before phone numbers were parsed with `phonenumbers`
and card numbers needed an issuer range and context: kept verbatim (below this note) only as
the baseline that tests/security/test_redact_corpus.py and benchmarks/redact_bench.py
compare against. Not used by Enclave."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

KINDS: tuple[str, ...] = ("EMAIL", "IBAN", "CARD", "SSN", "PHONE")

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


_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
# an IBAN candidate: country, check digits, then alphanumerics in groups (spaces allowed)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d-]|[.,]\d)")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d(?:[ .-]?\(?\d\)?){7,14}(?![\d-])")
_PHONE_US = re.compile(
    r"(?<![\w.+-])(?:1[ .-]?)?(?:\([2-9]\d{2}\)\s?|[2-9]\d{2}[ .-])"
    r"[2-9]\d{2}[ .-]\d{4}(?![\w-]|\.\d)"
)


def _iban_sub(m: re.Match[str]) -> str | None:
    text = m.group(0)
    compact = text.replace(" ", "")
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) > expected:
        # the candidate ran into a following word: keep exactly `expected` characters
        kept, n = [], 0
        for ch in text:
            if n == expected:
                break
            kept.append(ch)
            if ch != " ":
                n += 1
        if iban_ok(compact[:expected]):
            rest = text[len("".join(kept)) :]
            if rest.startswith(" "):
                return placeholder("IBAN") + rest
        return None
    return placeholder("IBAN") if iban_ok(compact) else None


def _card_sub(m: re.Match[str]) -> str | None:
    text = m.group(0)
    digits = re.sub(r"\D", "", text)
    if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
        return None
    if len(set(digits)) == 1:  # 0000 0000 0000 0000 passes Luhn but is no card
        return None
    seps = set(re.findall(r"[ -]", text))
    if len(seps) > 1:  # mixed separators: not how card numbers are written
        return None
    return placeholder("CARD")


def _phone_intl_sub(m: re.Match[str]) -> str | None:
    text = m.group(0)
    digits = re.sub(r"\D", "", text)
    if not 8 <= len(digits) <= 15:
        return None
    return placeholder("PHONE")


#: every IBAN, card, SSN and phone number holds a run of >= 6 digits and separators
_NUMBERISH = re.compile(r"\d[\d \t.()/+-]{4,}\d|\d{6}")

_Sub = Callable[[re.Match[str]], str | None]

_RULES: list[tuple[str, re.Pattern[str], _Sub | None]] = [
    ("EMAIL", _EMAIL, None),
    ("IBAN", _IBAN, _iban_sub),
    ("CARD", _CARD, _card_sub),
    ("SSN", _SSN, None),
    ("PHONE", _PHONE_INTL, _phone_intl_sub),
    ("PHONE", _PHONE_US, None),
]


def redact(text: str, kinds: Iterable[str] | None = None) -> tuple[str, dict[str, int]]:
    """Replace PII with ``[REDACTED:KIND]``; returns the new text and counts per kind.

    ``kinds`` limits the kinds (default: all of :data:`KINDS`). Counts hold only kinds found.
    """
    wanted = set(KINDS if kinds is None else (k.upper() for k in kinds))
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown PII kind(s): {', '.join(sorted(unknown))}")
    counts: dict[str, int] = {}
    has_at = "@" in text
    numberish = _NUMBERISH.search(text) is not None
    for kind, pattern, check in _RULES:
        if kind not in wanted:
            continue
        if (kind == "EMAIL" and not has_at) or (kind != "EMAIL" and not numberish):
            continue  # cheap gates: most text has neither an '@' nor a long number

        def sub(m: re.Match[str], kind: str = kind, check: _Sub | None = check) -> str:
            out = check(m) if check is not None else placeholder(kind)
            if out is None:
                return m.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            return out

        text = pattern.sub(sub, text)
    return text, counts


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
