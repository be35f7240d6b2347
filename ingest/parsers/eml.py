"""E-mail (.eml, RFC 5322) with the standard library: headers, then the body.

The subject is the title; From/To/Date become one leading element so a search for a sender
finds the message. The body is the text/plain part, or the HTML part through the lxml extractor.
Attachments are listed by name, not parsed.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from ingest.types import Element, ParsedDocument, ParseError

HEADER_FIELDS = ("From", "To", "Cc", "Date")


def parse_eml(path: str) -> ParsedDocument:
    with open(path, "rb") as fh:
        data = fh.read()
    from ingest.file_checks import looks_binary

    if looks_binary(data[:4096]):
        raise ParseError("binary content, not an e-mail message (refused)")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(msg, EmailMessage) or not (len(msg.keys()) or msg.get_payload()):
        raise ParseError("not a valid e-mail message")
    subject = str(msg.get("Subject", "") or "").strip()
    if not msg.keys():
        raise ParseError("not a valid e-mail message (no headers)")
    heading = [subject] if subject else []
    elements: list[Element] = []
    if subject:
        elements.append(Element(text=subject, kind="title", level=1))
    header_lines = [f"{name}: {msg[name]}" for name in HEADER_FIELDS if msg.get(name)]
    if header_lines:
        elements.append(Element(text="\n".join(header_lines), heading_path=heading))

    body_part = msg.get_body(preferencelist=("plain", "html"))
    if body_part is not None:
        try:
            content = body_part.get_content()
        except (LookupError, UnicodeDecodeError, AssertionError):
            raw = body_part.get_payload(decode=True)
            content = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw or "")
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        if body_part.get_content_subtype() == "html":
            from ingest.parsers.html import extract_html

            _, body_elements = extract_html(content, is_fragment=True)
            for e in body_elements:
                e.heading_path = heading + e.heading_path
            elements.extend(body_elements)
        else:
            for para in content.replace("\r\n", "\n").split("\n\n"):
                if para.strip():
                    elements.append(Element(text=para.strip(), heading_path=heading))

    names = [p.get_filename() for p in msg.iter_attachments() if p.get_filename()]
    if names:
        elements.append(
            Element(text="Attachments: " + ", ".join(str(n) for n in names), heading_path=heading)
        )
    return ParsedDocument(elements=elements, parser="email", title=subject)
