from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave.security.redact import (
    card_issuer_ok,
    cpf_ok,
    iban_ok,
    luhn_ok,
    nir_ok,
    redact,
    verhoeff_ok,
)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Write to jane.doe+hr@example.co.uk today.", "EMAIL", "jane.doe+hr@example.co.uk"),
        ("Contact: BOB_99@corp-mail.example.com.", "EMAIL", "BOB_99@corp-mail.example.com"),
        ("IBAN DE89 3704 0044 0532 0130 00 for salary.", "IBAN", "DE89 3704 0044 0532 0130 00"),
        ("Pay GB82WEST12345698765432 now", "IBAN", "GB82WEST12345698765432"),
        ("FR14 2004 1010 0505 0001 3M02 606 (France)", "IBAN", "FR14 2004 1010 0505 0001 3M02 606"),
        ("Card 4111 1111 1111 1111 expires", "CARD", "4111 1111 1111 1111"),
        ("MC 5500-0000-0000-0004.", "CARD", "5500-0000-0000-0004"),
        ("Amex 378282246310005 on file", "CARD", "378282246310005"),
        ("SSN: 123-45-6789.", "SSN", "123-45-6789"),
        ("Call +44 20 7946 0958 today", "PHONE", "+44 20 7946 0958"),
        ("Call +1 (415) 555-2671.", "PHONE", "+1 (415) 555-2671"),
        ("Desk (212) 555-0142, ext 4", "PHONE", "(212) 555-0142"),
        ("Desk 212-555-0142.", "PHONE", "212-555-0142"),
        ("Desk 212.555.0142 or", "PHONE", "212.555.0142"),
        ("Tel. +49 30 1234567 (Berlin)", "PHONE", "+49 30 1234567"),
        # national formats, recognised by phonenumbers' numbering plans
        ("London office: 020 7946 0958.", "PHONE", "020 7946 0958"),
        ("Ruf an: 030 12345678", "PHONE", "030 12345678"),
        ("Handy 0151 23456789 (abends)", "PHONE", "0151 23456789"),
        ("Standard 01 42 68 53 00, poste 12", "PHONE", "01 42 68 53 00"),
        ("Mumbai desk 98765 43210.", "PHONE", "98765 43210"),
        ("東京 03-1234-5678", "PHONE", "03-1234-5678"),
        ("São Paulo (11) 91234-5678", "PHONE", "(11) 91234-5678"),
        ("Sydney (02) 9123 4567", "PHONE", "(02) 9123 4567"),
        ("mobile 9876543210", "PHONE", "9876543210"),
        ("NI number AB 12 34 56 C", "NATIONAL_ID", "AB 12 34 56 C"),
        ("CPF 529.982.247-25", "NATIONAL_ID", "529.982.247-25"),
        ("DNI 12345678Z", "NATIONAL_ID", "12345678Z"),
        ("NIE X1234567L", "NATIONAL_ID", "X1234567L"),
        ("Aadhaar 2341 2341 2346", "NATIONAL_ID", "2341 2341 2346"),
        ("NIR 1 84 12 76 451 089 46", "NATIONAL_ID", "1 84 12 76 451 089 46"),
        ("SSN 123 45 6789", "SSN", "123 45 6789"),
        ("Credit card 4111111111111111 on file", "CARD", "4111111111111111"),
    ],
)
def test_each_kind_is_redacted(text: str, kind: str, value: str) -> None:
    out, counts = redact(text)
    assert value not in out
    assert f"[REDACTED:{kind}]" in out
    assert counts == {kind: 1}
    assert all(isinstance(v, int) for v in counts.values())


NEAR_MISSES = [
    "Card 4111 1111 1111 1112 fails Luhn.",
    "IBAN DE89 3704 0044 0532 0130 01 has a bad checksum.",
    "GB82WEST12345698765431 too.",
    "Dates 2024-01-15, 15.01.2024, 01/15/2024 and 2024.01.15.",
    "Version 1.2.3, build 10.0.19045.2965, release 2024.1.",
    "IP 192.168.100.200 and port 8080.",
    "Order 12345, year 2023, room 101, invoice 2024-000123.",
    "Invalid SSNs 000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000.",
    "ISBN 978-3-16-148410-0 and 0000 0000 0000 0000.",
    "Totals 1,234,567.89 and pi 3.14159265358979.",
    "Timestamp 20240115123045 and id 1234567890123.",
    "Not an email: user@localhost or @handle or a@b.",
    "US numbers must not start with 0/1: 012-555-0142, 212-055-0142.",
    # a bare Luhn-valid number in a card issuer range, without a word that says "card"
    "Reference 4111111111111111 and transaction 5500000000000004.",
    "IMEI 490154203237518 reported stolen.",
    "Population 867 304 938, budget 785 179 658 €.",
    "ZIP 94107-1234, codes 66749-6576 and (88398-6959).",
    "Server 229.175.39.59 and Chrome 124.0.6367.118.",
    "Order 4012345678 shipped; tracking 449044304137821.",
    "Invoice 2341 2341 2346 has twelve digits (a valid Verhoeff check).",
    "Assets logo@2x.png and icon@3x.webp.",
]


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_stay(text: str) -> None:
    assert redact(text) == (text, {})


def test_mixed_document_counts_only() -> None:
    text = (
        "Employee: Jane (jane@corp.example, +33 1 42 68 53 00). Salary to "
        "FR14 2004 1010 0505 0001 3M02 606. Corporate card 4111-1111-1111-1111. "
        "SSN 078-05-1120. Second mail: j.doe@corp.example. Meeting 2024-05-01 in room 12."
    )
    out, counts = redact(text)
    assert counts == {"EMAIL": 2, "IBAN": 1, "CARD": 1, "SSN": 1, "PHONE": 1}
    for secret in ("jane@", "42 68", "3M02", "4111", "078-05", "j.doe"):
        assert secret not in out and secret not in repr(counts)
    assert "2024-05-01" in out and "room 12" in out


def test_kinds_can_be_chosen() -> None:
    text = "a@b.example and 123-45-6789"
    assert redact(text, kinds=["ssn"]) == ("a@b.example and [REDACTED:SSN]", {"SSN": 1})
    with pytest.raises(ValueError, match="unknown PII kind"):
        redact(text, kinds=["passport"])


def test_phone_regions_can_be_chosen() -> None:
    text = "Berlin 030 12345678, London +44 20 7946 0958"
    assert redact(text)[1] == {"PHONE": 2}
    # without DE among the regions, only the international number is recognised
    out, counts = redact(text, regions=["US"])
    assert counts == {"PHONE": 1} and "030 12345678" in out


def _luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError


@settings(max_examples=60, deadline=None)
@given(
    # no "c" or "p": the text around a bare number must not spell a card word ("cc", "pan")
    body=st.text(alphabet=st.sampled_from("abdefghij klmno,;"), max_size=60),
    seed=st.integers(0, 10_000),
    sep=st.sampled_from(["", " ", "-"]),
)
def test_planted_cards_are_redacted_and_one_digit_off_is_not(
    body: str, seed: int, sep: str
) -> None:
    rng = random.Random(seed)
    digits = _luhn_complete("4" + "".join(rng.choice("0123456789") for _ in range(14)))
    card = sep.join(digits[i : i + 4] for i in range(0, 16, 4))
    # grouped like a card: redacted anywhere; bare: only next to a word that says "card"
    word = "card " if sep == "" else ""
    out, counts = redact(f"{body} {word}{card} {body}")
    assert card not in out and counts == {"CARD": 1}
    if sep == "":
        assert redact(f"{body} {card} {body}")[1].get("CARD") is None
    broken = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    assert not luhn_ok(broken)
    bcard = sep.join(broken[i : i + 4] for i in range(0, 16, 4))
    assert redact(f"{body} {word}{bcard} {body}")[1].get("CARD") is None


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="@+"),
        max_size=200,
    )
)
def test_text_without_digits_or_at_signs_is_unchanged(text: str) -> None:
    assert redact(text) == (text, {})


def test_checksums() -> None:
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE8937040044053201300")  # wrong length for DE
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert card_issuer_ok("4111111111111111") and card_issuer_ok("378282246310005")
    assert not card_issuer_ok("9111111111111111")  # no issuer uses 9
    assert not card_issuer_ok("341111111111111111")  # Amex numbers have 15 digits
    assert verhoeff_ok("234123412346") and not verhoeff_ok("234123412347")
    assert cpf_ok("52998224725") and not cpf_ok("52998224726") and not cpf_ok("11111111111")
    assert nir_ok("184127645108946") and not nir_ok("184127645108947")


def test_redact_document_in_place() -> None:
    from ingest.types import Element, ParsedDocument

    doc = ParsedDocument(
        elements=[
            Element(text="Contact jane@corp.example or 212-555-0142.", heading_path=["HR"]),
            Element(text="SSN 078-05-1120", heading_path=["Staff: bob@corp.example"]),
            Element(text="Nothing here."),
        ],
        parser="test",
        title="Record of jane@corp.example",
    )
    from enclave.security.redact import add_counts, redact_document

    counts = redact_document(doc)
    assert counts == {"EMAIL": 3, "PHONE": 1, "SSN": 1}
    assert doc.title == "Record of [REDACTED:EMAIL]"
    assert doc.elements[0].text == "Contact [REDACTED:EMAIL] or [REDACTED:PHONE]."
    assert doc.elements[1].heading_path == ["Staff: [REDACTED:EMAIL]"]
    assert doc.elements[2].text == "Nothing here."
    assert add_counts({"EMAIL": 1}, counts) == {"EMAIL": 4, "PHONE": 1, "SSN": 1}
