"""A labelled corpus for PII redaction, generated (no external data): one sentence per item,
holding either one PII value of a known kind or one look-alike that is not PII.

    python -m tests.security.pii_corpus      # rewrites tests/security/fixtures/pii_corpus.jsonl

Values follow the real formats and checksums: phone numbers from each country's numbering
plan (area codes, mobile prefixes, the usual ways of writing them, national and
international), IBANs with ISO 7064 check digits, card numbers with issuer ranges and Luhn,
US SSNs from issuable areas, UK National Insurance numbers, Indian Aadhaar (Verhoeff),
Brazilian CPF, French NIR and Spanish DNI/NIE check characters. Look-alikes are the numbers
that fill ordinary documents: order and invoice numbers, ISBNs, barcodes, timestamps, dates,
versions, IP addresses, amounts, tracking and device numbers, and random 13-19 digit numbers.

The generator is deterministic (fixed seed); ``test_redact_corpus.py`` checks that the file
is what it produces.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "pii_corpus.jsonl"
SEED = 20261130

Item = dict[str, str]


def _d(rng: random.Random, n: int, first: str = "0123456789") -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(n - 1))


def _fill(rng: random.Random, template: str) -> str:
    """``#`` = any digit, ``N`` = 2-9, ``Z`` = 1-9."""
    out = []
    for ch in template:
        if ch == "#":
            out.append(rng.choice(string.digits))
        elif ch == "N":
            out.append(rng.choice("23456789"))
        elif ch == "Z":
            out.append(rng.choice("123456789"))
        else:
            out.append(ch)
    return "".join(out)


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


# ---------------------------------------------------------------------------- phones
# region -> list of (template, contexts). Templates use the formats people write; contexts
# hold a {} for the number. Numbering plans: NANP (area/exchange 2-9), Ofcom (020 London,
# 0161 Manchester, 07xxx mobiles), BNetzA (030 Berlin, 089 Munich, 040 Hamburg, 015x/017x
# mobiles), ARCEP (01-05 geographic, 06/07 mobiles), TRAI (6-9 mobiles, 011/022 landlines),
# MIC Japan (03 Tokyo, 06 Osaka, 070/080/090 mobiles), Anatel (two-digit area codes,
# 9xxxx mobiles), CNMC Spain (6xx mobiles, 91 Madrid), AGCOM Italy (06 Rome, 02 Milan,
# 3xx mobiles), ACM NL (06 mobiles, 020 Amsterdam), ACMA (04 mobiles, 02 Sydney), IFT
# Mexico (55 CDMX, 33 Guadalajara), MIIT China (13x mobiles, 010 Beijing, 021 Shanghai).
US_AREAS = ["212", "415", "312", "617", "206", "303", "512", "702", "404", "213", "646", "718"]
CA_AREAS = ["416", "604", "514", "613", "403"]


def _nanp(rng: random.Random, areas: list[str]) -> tuple[str, str, str]:
    area = rng.choice(areas)
    while True:
        exch = _fill(rng, "N##")
        if exch[1:] != "11":
            break
    return area, exch, _fill(rng, "####")


PHONE_FORMATS: dict[str, list[str]] = {
    "GB": [
        "020 7### ####",
        "+44 20 7### ####",
        "+44 (0)20 8### ####",
        "0161 N## ####",
        "+44 161 N## ####",
        "07400 ######",
        "07812 ######",
        "+44 7941 ######",
        "+447961######",
        "0113 2## ####",
    ],
    "DE": [
        "030 N#######",
        "030/N#######",
        "030-N#######",
        "+49 30 N#######",
        "+49 (0)89 N#######",
        "089 N#######",
        "040 N#######",
        "0151 ########",
        "+49 151 ########",
        "0171 #######",
        "+49 176 ########",
    ],
    "FR": [
        "01 4# ## ## ##",
        "01.4#.##.##.##",
        "+33 1 4# ## ## ##",
        "04 7# ## ## ##",
        "06 ## ## ## ##",
        "06.##.##.##.##",
        "+33 6 ## ## ## ##",
        "+33 (0)7 5# ## ## ##",
        "07 8# ## ## ##",
        "05 56 ## ## ##",
    ],
    "IN": [
        "98### #####",
        "+91 98### #####",
        "+91-97########",
        "+91 70### #####",
        "011 2### ####",
        "+91 11 2### ####",
        "022 2### ####",
        "+91 22 6### ####",
        "080 4### ####",
    ],
    "JP": [
        "03-N###-####",
        "06-6###-####",
        "090-N###-####",
        "080-N###-####",
        "070-N###-####",
        "+81 3-N###-####",
        "+81 90-N###-####",
        "+81 80 N### ####",
        "045-###-####",
    ],
    "BR": [
        "(11) 9####-####",
        "(21) 2###-####",
        "(21) 3###-####",
        "+55 11 9####-####",
        "+55 (21) 3###-####",
        "11 9####-####",
        "(31) 9####-####",
        "+55 61 3###-####",
    ],
    "ES": [
        "6## ## ## ##",
        "6## ### ###",
        "+34 6## ### ###",
        "91 ### ## ##",
        "+34 91 ### ## ##",
        "93 ### ## ##",
    ],
    "IT": [
        "06 #### ####",
        "02 #### ####",
        "+39 06 #### ####",
        "347 ### ####",
        "+39 347 ### ####",
        "+39 02 #### ####",
    ],
    "NL": [
        "06-1#######",
        "06 1# ## ## ##",
        "020 N## ####",
        "+31 6 1#######",
        "+31 20 N## ####",
        "010 N## ####",
    ],
    "AU": [
        "0412 ### ###",
        "(02) 9### ####",
        "+61 2 9### ####",
        "+61 412 ### ###",
        "(03) 9### ####",
        "0422 ### ###",
    ],
    "MX": [
        "55 5### ####",
        "+52 55 5### ####",
        "33 3### ####",
        "+52 33 3### ####",
    ],
    "CN": [
        "138 #### ####",
        "+86 139 #### ####",
        "010 6### ####",
        "+86 10 6### ####",
        "021 5### ####",
        "+86 21 5### ####",
    ],
}

PHONE_CONTEXTS = [
    "Call {} for support.",
    "Tel: {}",
    "Phone {} (reception)",
    "Mobile: {}, evenings only.",
    "For questions ring the front desk on {}.",
    "The regional office can be reached at {}.",
    "Kontakt: Frau Weber, Telefon {}.",
    "Téléphone : {}",
    "Contato: {} (WhatsApp)",
    "電話: {}",
    "Fax {}",
    "Emergency line {} is staffed around the clock.",
    "Office directory | Operations | {} |",
    "Please confirm by phone ({}) before shipping.",
]


def phone_items(rng: random.Random) -> list[Item]:
    items: list[Item] = []
    for region, formats in PHONE_FORMATS.items():
        for fmt in formats:
            for _ in range(2):
                value = _fill(rng, fmt)
                items.append(_item("PHONE", region, value, rng.choice(PHONE_CONTEXTS)))
    for region, areas in (("US", US_AREAS), ("CA", CA_AREAS)):
        styles = [
            "({a}) {e}-{l}",
            "{a}-{e}-{l}",
            "{a}.{e}.{l}",
            "+1 {a} {e} {l}",
            "+1-{a}-{e}-{l}",
            "+1 ({a}) {e}-{l}",
            "1-{a}-{e}-{l}",
        ]
        for style in styles:
            for _ in range(3 if region == "US" else 1):
                a, e, line = _nanp(rng, areas)
                value = style.format(a=a, e=e, l=line)
                items.append(_item("PHONE", region, value, rng.choice(PHONE_CONTEXTS)))
    # written without any separator: recognisable only next to a word that says "phone"
    bare = [
        ("IN", "98########"),
        ("GB", "07961######"),
        ("DE", "0151########"),
        ("FR", "06########"),
        ("US", "415N######"),
        ("JP", "090N#######"),
        ("BR", "119########"),
        ("ES", "6########"),
    ]
    for region, fmt in bare:
        ctx = rng.choice(["Tel: {}", "mobile {}", "Call me on {} after six.", "phone: {}"])
        items.append(_item("PHONE", region + "-bare", _fill(rng, fmt), ctx))
    return items


# ---------------------------------------------------------------------------- e-mail
EMAILS = [
    "jane.doe@example.com",
    "j.smith+payroll@corp.example.co.uk",
    "m.mueller@beispiel-firma.de",
    "contact@startup.io",
    "first_last@mail.example.org",
    "Priya.Raman@infotech.example.in",
    "k-tanaka@example.co.jp",
    "joao.silva@empresa.example.com.br",
    "support-team@helpdesk.example.net",
    "x9@a.example",
    "HR.Benefits@Example.COM",
    "l.dupont@exemple.fr",
    "a.b.c.d@sub.domain.example.eu",
    "anna%relay@example.org",
    "ops@example.museum",
    "info@acme-widgets.example.com",
    "noreply@notifications.example.dev",
    "carlos.garcia@correo.example.es",
    "m.rossi@azienda.example.it",
    "t.nguyen2024@example.edu",
]
EMAIL_CONTEXTS = [
    "Write to {} with the signed form.",
    "Contact: {}",
    "Questions? <{}>",
    "cc: {}; please keep the thread.",
    "Send your CV to {}.",
    "(mailto:{})",
    "Reply-To: {}",
]


def email_items(rng: random.Random) -> list[Item]:
    out = []
    for value in EMAILS:
        for ctx in rng.sample(EMAIL_CONTEXTS, 2):
            out.append(_item("EMAIL", "", value, ctx))
    return out


# ---------------------------------------------------------------------------- IBAN
# country -> BBAN format: n = digit, a = upper-case letter, c = letter or digit
IBAN_BBAN: dict[str, str] = {
    "DE": "n" * 18,
    "GB": "aaaa" + "n" * 14,
    "FR": "n" * 10 + "c" * 11 + "nn",
    "ES": "n" * 20,
    "IT": "a" + "n" * 10 + "c" * 12,
    "NL": "aaaa" + "n" * 10,
    "BE": "n" * 12,
    "CH": "n" * 5 + "c" * 12,
    "AT": "n" * 16,
    "PL": "n" * 24,
    "PT": "n" * 21,
    "IE": "aaaa" + "n" * 14,
    "SE": "n" * 20,
    "NO": "n" * 11,
    "DK": "n" * 14,
    "FI": "n" * 14,
    "LU": "nnn" + "c" * 13,
    "BR": "n" * 23 + "a" + "c",
    "SA": "nn" + "c" * 18,
    "TR": "n" * 6 + "c" * 16,
}


def iban_check(country: str, bban: str) -> str:
    moved = bban + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in moved))
    return f"{98 - number % 97:02d}"


def make_iban(rng: random.Random, country: str) -> str:
    chars = []
    for f in IBAN_BBAN[country]:
        if f == "n":
            chars.append(rng.choice(string.digits))
        elif f == "a":
            chars.append(rng.choice(string.ascii_uppercase))
        else:
            chars.append(rng.choice(string.digits * 3 + string.ascii_uppercase))
    bban = "".join(chars)
    return country + iban_check(country, bban) + bban


def group4(s: str, sep: str = " ") -> str:
    return sep.join(s[i : i + 4] for i in range(0, len(s), 4))


IBAN_CONTEXTS = [
    "IBAN: {}",
    "Please transfer the deposit to {} by Friday.",
    "Bankverbindung {} (Sparkasse)",
    "Salary account {}",
    "RIB / IBAN {}",
    "Beneficiary account: {}.",
]


def iban_items(rng: random.Random) -> list[Item]:
    out = []
    for country in IBAN_BBAN:
        for grouped in (True, False):
            iban = make_iban(rng, country)
            value = group4(iban) if grouped else iban
            out.append(_item("IBAN", country, value, rng.choice(IBAN_CONTEXTS)))
    return out


# ---------------------------------------------------------------------------- cards
# brand -> (prefixes, length, grouping)
CARD_BRANDS: dict[str, tuple[list[str], int, tuple[int, ...]]] = {
    "visa": (["4"], 16, (4, 4, 4, 4)),
    "mastercard": (["51", "52", "53", "54", "55", "2221", "2720", "2300"], 16, (4, 4, 4, 4)),
    "amex": (["34", "37"], 15, (4, 6, 5)),
    "discover": (["6011", "65", "644", "649"], 16, (4, 4, 4, 4)),
    "jcb": (["3528", "3540", "3589"], 16, (4, 4, 4, 4)),
    "diners": (["300", "305", "36", "38"], 14, (4, 6, 4)),
    "unionpay": (["62"], 16, (4, 4, 4, 4)),
    "unionpay19": (["62"], 19, (4, 4, 4, 4, 3)),
    "maestro": (["6759", "5018", "6304"], 16, (4, 4, 4, 4)),
}
CARD_CONTEXTS_WITH_WORD = [
    "Card number: {}",
    "Charge the corporate card {} for the deposit.",
    "Paid by credit card {} (exp 09/27).",
    "Visa/Mastercard {} on file.",
    "debit card {}",
    "Kreditkarte {}",
    "carte bancaire {}",
]
CARD_CONTEXTS_PLAIN = [
    "{} is the number on file.",
    "Booking 44 paid with {}.",
    "Number: {}",
]


def make_card(rng: random.Random, brand: str) -> str:
    prefixes, length, _ = CARD_BRANDS[brand]
    prefix = rng.choice(prefixes)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + luhn_digit(body)


def group(digits: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i : i + n])
        i += n
    return sep.join(p for p in out if p)


def card_items(rng: random.Random) -> list[Item]:
    out = []
    for brand, (_, _, sizes) in CARD_BRANDS.items():
        for style in ("space", "dash", "bare", "space-plain"):
            number = make_card(rng, brand)
            if style == "bare":
                value, ctx = number, rng.choice(CARD_CONTEXTS_WITH_WORD)
            else:
                value = group(number, sizes, "-" if style == "dash" else " ")
                pool = CARD_CONTEXTS_PLAIN if style == "space-plain" else CARD_CONTEXTS_WITH_WORD
                ctx = rng.choice(pool)
            out.append(_item("CARD", brand, value, ctx))
    return out


# ---------------------------------------------------------------------------- national IDs
def make_ssn(rng: random.Random) -> tuple[str, str, str]:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"
NINO_BAD_PREFIX = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


def make_nino(rng: random.Random) -> str:
    while True:
        prefix = rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)
        if prefix not in NINO_BAD_PREFIX:
            break
    return prefix + _d(rng, 6) + rng.choice("ABCD")


_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]
_VERHOEFF_INV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def verhoeff_digit(body: str) -> str:
    c = 0
    for i, ch in enumerate(reversed(body)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[(i + 1) % 8][int(ch)]]
    return str(_VERHOEFF_INV[c])


def make_aadhaar(rng: random.Random) -> str:
    body = _d(rng, 11, "23456789")
    return body + verhoeff_digit(body)


def make_cpf(rng: random.Random) -> str:
    digits = [int(c) for c in _d(rng, 9)]
    for n in (10, 11):
        total = sum(d * w for d, w in zip(digits, range(n, 1, -1), strict=False))
        digits.append((total * 10 % 11) % 10)
    s = "".join(map(str, digits))
    return f"{s[:3]}.{s[3:6]}.{s[6:9]}-{s[9:]}"


def make_nir(rng: random.Random) -> str:
    body = (
        rng.choice("12")
        + f"{rng.randint(40, 99):02d}"
        + f"{rng.randint(1, 12):02d}"
        + f"{rng.randint(1, 95):02d}"
        + f"{rng.randint(1, 990):03d}"
        + f"{rng.randint(1, 999):03d}"
    )
    return body + f"{97 - int(body) % 97:02d}"


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def make_dni(rng: random.Random) -> str:
    n = rng.randint(1_000_000, 99_999_999)
    return f"{n:08d}{DNI_LETTERS[n % 23]}"


def make_nie(rng: random.Random) -> str:
    lead = rng.choice("XYZ")
    n = rng.randint(0, 9_999_999)
    number = int(str("XYZ".index(lead)) + f"{n:07d}")
    return f"{lead}{n:07d}{DNI_LETTERS[number % 23]}"


def id_items(rng: random.Random) -> list[Item]:
    out: list[Item] = []
    for i in range(16):
        a, g, s = make_ssn(rng)
        if i < 10:
            ctx = rng.choice(["SSN: {}", "Social Security number {}.", "employee {} (W-2)", "{}"])
            out.append(_item("SSN", "dashed", f"{a}-{g}-{s}", ctx))
        elif i < 13:
            out.append(_item("SSN", "spaced", f"{a} {g} {s}", "SSN {} on the I-9 form"))
        else:
            out.append(_item("SSN", "bare", f"{a}{g}{s}", "social security no. {}"))
    for i in range(10):
        nino = make_nino(rng)
        value = f"{nino[:2]} {nino[2:4]} {nino[4:6]} {nino[6:8]} {nino[8]}" if i % 2 else nino
        ctx = rng.choice(
            ["National Insurance number {}", "NI number: {}", "NINO {}", "{} (payroll)"]
        )
        out.append(_item("NATIONAL_ID", "GB-NINO", value, ctx))
    for i in range(8):
        aad = make_aadhaar(rng)
        value = f"{aad[:4]} {aad[4:8]} {aad[8:]}" if i % 4 else aad
        ctx = rng.choice(["Aadhaar: {}", "Aadhaar number {} verified.", "UIDAI / Aadhaar no. {}"])
        out.append(_item("NATIONAL_ID", "IN-Aadhaar", value, ctx))
    for _ in range(8):
        ctx = rng.choice(["CPF {}", "CPF: {}", "Cliente {} (pessoa física)", "{}"])
        out.append(_item("NATIONAL_ID", "BR-CPF", make_cpf(rng), ctx))
    for i in range(8):
        nir = make_nir(rng)
        if i % 2:
            value = f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"
        else:
            value = nir
        ctx = rng.choice(["N° de sécurité sociale : {}", "NIR {}", "numéro INSEE {}"])
        out.append(_item("NATIONAL_ID", "FR-NIR", value, ctx))
    for i in range(8):
        value = make_dni(rng) if i % 2 else make_nie(rng)
        ctx = rng.choice(["DNI {}", "NIE: {}", "Documento {} (titular)", "{}"])
        out.append(_item("NATIONAL_ID", "ES-DNI/NIE", value, ctx))
    return out


# ---------------------------------------------------------------------------- look-alikes
def isbn13(rng: random.Random) -> str:
    body = rng.choice(["978", "979"]) + _d(rng, 9)
    s = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body))
    return body + str((10 - s % 10) % 10)


def isbn10(rng: random.Random) -> str:
    body = _d(rng, 9)
    s = sum(int(c) * (10 - i) for i, c in enumerate(body))
    check = (11 - s % 11) % 11
    return body + ("X" if check == 10 else str(check))


def ean13(rng: random.Random) -> str:
    body = _d(rng, 12, "3456789")
    s = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body))
    return body + str((10 - s % 10) % 10)


def imei(rng: random.Random) -> str:
    body = rng.choice(["35", "86", "49", "01"]) + _d(rng, 12)
    return body + luhn_digit(body)


def _date(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)


def _time(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)


def lookalike_makers() -> dict[str, Callable[[random.Random], tuple[str, str]]]:
    """category -> (value, context) maker."""

    def order(r: random.Random) -> tuple[str, str]:
        v = rng_choice(
            r,
            [
                lambda: _d(r, 10, "123456789"),
                lambda: _d(r, r.randint(6, 12), "123456789"),
                lambda: f"PO-{r.randint(2019, 2026)}-{_d(r, 6)}",
                lambda: f"{r.randint(2019, 2026)}-{_d(r, 6)}",
                lambda: f"INC{_d(r, 7)}",
                lambda: f"{_d(r, 3, '123456789')}-{_d(r, 7)}-{_d(r, 7)}",
            ],
        )
        ctx = r.choice(["Order #{}", "order no. {} shipped", "Invoice {} is overdue.", "Ticket {}"])
        return v, ctx

    def isbn(r: random.Random) -> tuple[str, str]:
        v = isbn13(r)
        if r.random() < 0.5:
            cut = r.randint(4, 6)
            v = f"{v[:3]}-{v[3]}-{v[4 : cut + 4]}-{v[cut + 4 : 12]}-{v[12]}"
        elif r.random() < 0.5:
            v = isbn10(r)
            v = f"{v[0]}-{v[1:4]}-{v[4:9]}-{v[9]}"
        return v, r.choice(["ISBN {}", "ISBN-13: {}", "see the handbook (ISBN {})"])

    def barcode(r: random.Random) -> tuple[str, str]:
        v = ean13(r) if r.random() < 0.7 else ean13(r)[1:]
        return v, r.choice(["EAN {}", "barcode {}", "GTIN: {}", "| {} | 12 units |"])

    def timestamp(r: random.Random) -> tuple[str, str]:
        (y, mo, d), (h, mi, s) = _date(r), _time(r)
        v = rng_choice(
            r,
            [
                lambda: f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}",
                lambda: f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z",
                lambda: f"{d:02d}/{mo:02d}/{y} {h:02d}:{mi:02d}",
                lambda: f"{y}{mo:02d}{d:02d}{h:02d}{mi:02d}{s:02d}",
                lambda: str(r.randint(1_000_000_000, 1_900_000_000)),
                lambda: str(r.randint(1_000_000_000_000, 1_900_000_000_000)),
                lambda: f"{y}{mo:02d}{d:02d}-{h:02d}{mi:02d}{s:02d}",
            ],
        )
        return v, r.choice(
            ["logged at {}", "timestamp {}", "created {} by the scheduler", "epoch {}"]
        )

    def date(r: random.Random) -> tuple[str, str]:
        y, mo, d = _date(r)
        v = r.choice(
            [
                f"{d:02d}.{mo:02d}.{y}",
                f"{mo:02d}/{d:02d}/{y}",
                f"{y}-{mo:02d}-{d:02d}",
                f"{y}.{mo:02d}.{d:02d}",
            ]
        )
        return v, r.choice(["due {}", "signed on {}", "valid until {}"])

    def version(r: random.Random) -> tuple[str, str]:
        v = rng_choice(
            r,
            [
                lambda: f"10.0.{r.randint(10000, 26000)}.{r.randint(100, 5000)}",
                lambda: f"v{r.randint(0, 20)}.{r.randint(0, 40)}.{r.randint(0, 20)}",
                lambda: f"{r.randint(100, 130)}.0.{r.randint(1000, 9999)}.{r.randint(10, 300)}",
                lambda: (
                    f"{r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(1000, 9999)}"
                ),
                lambda: f"{r.randint(20000, 26000)}.{r.randint(1000, 4000)}",
            ],
        )
        return v, r.choice(["version {}", "build {}", "Chrome {}", "upgrade to {} first"])

    def ip(r: random.Random) -> tuple[str, str]:
        v = ".".join(str(r.randint(1, 254)) for _ in range(4))
        if r.random() < 0.3:
            v += f":{r.randint(1024, 65535)}"
        return v, r.choice(["host {}", "from IP {}", "listening on {}"])

    def random_long(r: random.Random) -> tuple[str, str]:
        v = _d(r, r.randint(13, 19), "123456789")
        ctx = r.choice(
            [
                "Reference {}",
                "transaction ID {}",
                "tracking number {}",
                "| {} | shipped |",
                "Document {} was archived.",
                "serial {}",
                "account ref {}",
                "{}",
            ]
        )
        return v, ctx

    def amount(r: random.Random) -> tuple[str, str]:
        n = r.randint(1_000_000, 9_999_999_999)
        v = r.choice(
            [
                f"€{n:,}".replace(",", ".") + f",{r.randint(0, 99):02d}",
                f"${n:,}.{r.randint(0, 99):02d}",
                f"{n:,}".replace(",", " ") + " €",
                f"USD {n:,}",
                f"{n:,}".replace(",", " "),
            ]
        )
        return v, r.choice(["total {}", "budget {} approved", "population {}", "revenue: {}"])

    def device(r: random.Random) -> tuple[str, str]:
        v = imei(r)
        return v, r.choice(["IMEI {}", "device IMEI: {}", "handset {} reported stolen"])

    def tracking(r: random.Random) -> tuple[str, str]:
        v = rng_choice(
            r,
            [
                lambda: (
                    "1Z"
                    + "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(16))
                ),
                lambda: _d(r, 12, "123456789"),
                lambda: group4("94" + _d(r, 20)),
                lambda: _d(r, 15, "123456789"),
            ],
        )
        return v, r.choice(["FedEx tracking {}", "UPS {}", "USPS tracking {}", "parcel {}"])

    def misc(r: random.Random) -> tuple[str, str]:
        v = rng_choice(
            r,
            [
                lambda: f"{r.randint(48, 52)}.{_d(r, 6)}, {r.randint(1, 13)}.{_d(r, 6)}",
                lambda: "3.14159265358979",
                lambda: f"{r.randint(1000, 9999)}-{r.randint(10, 99)}-{r.randint(0, 9)}",
                lambda: f"ISO {r.randint(9000, 27002)}:{r.randint(2005, 2024)}",
                lambda: f"EN {r.randint(60000, 62000)}-{r.randint(1, 2)}-{r.randint(1, 99)}",
                lambda: f"{r.randint(1024, 7680)}x{r.randint(768, 4320)}",
                lambda: f"pp. {r.randint(100, 900)}-{r.randint(901, 999)}",
                lambda: f"{r.randint(10000, 99999)}-{r.randint(1000, 9999)}",
                lambda: f"{r.randint(1, 99):02d}-{r.randint(1000, 9999)}-{r.randint(100, 999)}",
                lambda: "-".join(_d(r, 4) for _ in range(3)),
                lambda: "550e8400-e29b-41d4-a716-" + _d(r, 12),
                lambda: " ".join(_d(r, 3) for _ in range(r.randint(4, 5))),
            ],
        )
        return v, r.choice(["value {}", "see {}", "part no. {}", "({})", "code {}"])

    def bad_checksum(r: random.Random) -> tuple[str, str]:
        kind = r.choice(["iban", "card", "ssn"])
        if kind == "iban":
            good = make_iban(r, r.choice(list(IBAN_BBAN)))
            check = f"{(int(good[2:4]) + r.randint(1, 90)) % 97 + 2:02d}"
            v = group4(good[:2] + check + good[4:])
        elif kind == "card":
            good = make_card(r, "visa")
            v = group(good[:-1] + str((int(good[-1]) + r.randint(1, 9)) % 10), (4, 4, 4, 4), " ")
        else:
            area = r.choice(["000", "666", f"{r.randint(900, 999)}"])
            v = f"{area}-{r.randint(10, 99)}-{r.randint(1000, 9999)}"
        return v, r.choice(["{} (invalid)", "test value {}", "{}"])

    def email_like(r: random.Random) -> tuple[str, str]:
        v = r.choice(
            [
                "logo@2x.png",
                "icon@3x.webp",
                "@pytest.fixture",
                "user@localhost",
                "react@18.2.0",
                "@channel",
                "npm install @scope/pkg",
                "a@b",
            ]
        )
        return v, r.choice(["asset {}", "see {}", "{}"])

    return {
        "order number": order,
        "ISBN": isbn,
        "barcode": barcode,
        "timestamp": timestamp,
        "date": date,
        "version": version,
        "IP address": ip,
        "random 13-19 digits": random_long,
        "amount": amount,
        "IMEI": device,
        "tracking number": tracking,
        "other number": misc,
        "failed checksum": bad_checksum,
        "e-mail look-alike": email_like,
    }


LOOKALIKE_COUNTS = {
    "order number": 30,
    "ISBN": 20,
    "barcode": 15,
    "timestamp": 30,
    "date": 15,
    "version": 20,
    "IP address": 10,
    "random 13-19 digits": 120,
    "amount": 15,
    "IMEI": 10,
    "tracking number": 15,
    "other number": 40,
    "failed checksum": 20,
    "e-mail look-alike": 8,
}


def rng_choice(r: random.Random, makers: list[Callable[[], str]]) -> str:
    return r.choice(makers)()


def lookalike_items(rng: random.Random) -> list[Item]:
    out = []
    makers = lookalike_makers()
    for category, n in LOOKALIKE_COUNTS.items():
        for _ in range(n):
            value, ctx = makers[category](rng)
            out.append(_item("NONE", category, value, ctx))
    return out


# ---------------------------------------------------------------------------- assembly
def _item(kind: str, sub: str, value: str, context: str) -> Item:
    return {"kind": kind, "sub": sub, "value": value, "text": context.format(value)}


def build_corpus(seed: int = SEED) -> list[Item]:
    rng = random.Random(seed)
    items = (
        phone_items(rng)
        + email_items(rng)
        + iban_items(rng)
        + card_items(rng)
        + id_items(rng)
        + lookalike_items(rng)
    )
    for i, item in enumerate(items, start=1):
        item["id"] = f"{i:04d}"
    return items


def dumps(items: list[Item]) -> str:
    keys = ("id", "kind", "sub", "value", "text")
    return "".join(json.dumps({k: it[k] for k in keys}, ensure_ascii=False) + "\n" for it in items)


def load_corpus(path: Path = FIXTURE) -> list[Item]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


if __name__ == "__main__":
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(dumps(build_corpus()), encoding="utf-8")
    print(f"wrote {FIXTURE}")
