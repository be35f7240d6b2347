"""Attribution: which source passage backs each statement of an answer.

One rule decides, the support rule of ``rag/support.py``: a sentence is attributed to a
passage only when one unit of the passage holds its specific content (numbers, identifiers,
quoted and rare names, the same negations) and nearly all its words; a quote only when it is
the passage's own words. Word overlap or embedding closeness never attribute anything: they
vouch for sentences that swap an identifier or drop a "not" (the rule this module used to
apply attributed 419 of 421 planted contradictions; this one, none of 737).

The generate mode keeps a sentence the model left uncited when it is attributed to a given
fact (``rag/generated.py``); the evaluation scores faithfulness and groundedness with
:func:`statement_support` (``eval/answer_metrics.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rag.support import Claim, answer_claims, check_claim


@dataclass(frozen=True)
class Attribution:
    """A statement of the answer and the source that supports it."""

    sentence: str
    #: the source's number (as in the answer's ``[n]``)
    source: int
    #: the unit of the passage that supports it
    unit: str

    def to_dict(self) -> dict[str, object]:
        return {"sentence": self.sentence, "index": self.source, "unit": self.unit}


def supporting_source(
    claim: Claim,
    sources: Mapping[int, str],
    *,
    leads: Mapping[int, str] | None = None,
    among: list[int] | None = None,
) -> tuple[int, str] | None:
    """The first source (of ``among``, default all, in order) whose passage supports
    ``claim``, with the supporting unit; None when none does."""
    for n in among if among is not None else list(sources):
        passage = sources.get(n)
        if passage is None:
            continue
        verdict = check_claim(claim, passage, lead_context=(leads or {}).get(n, ""))
        if verdict.supported:
            return n, verdict.unit
    return None


def attribute_sentences(
    answer: str, sources: Mapping[int, str], *, leads: Mapping[int, str] | None = None
) -> list[Attribution]:
    """The supporting source of each statement that cites no given source (statements that
    cite one are left to their own citation); statements no source supports are left out."""
    out: list[Attribution] = []
    for claim in answer_claims(answer):
        if set(claim.markers) & sources.keys() or len(claim.text.split()) < 2:
            continue
        found = supporting_source(claim, sources, leads=leads)
        if found is not None:
            out.append(Attribution(claim.text, found[0], found[1]))
    return out


@dataclass
class StatementSupport:
    """One statement of an answer checked against the sources it cites."""

    sentence: str
    cited: list[int]
    supported: bool
    #: the supporting unit ("" when unsupported), and "ok" or why not
    unit: str
    reason: str
    #: the statement carries its own marker (not one inherited from a neighbour)
    marked: bool = False


def statement_support(
    answer: str, sources: Mapping[int, str], *, cite_all: bool = False
) -> list[StatementSupport]:
    """Every statement of ``answer`` (of at least two words) checked by the support rule
    against the passages it cites (``sources``: marker number -> passage). A statement without
    a marker is covered by the markers of the next statement that has some (a marker closing a
    paragraph covers it), else by the previous one's; a statement that cites nothing valid is
    unsupported. With ``cite_all`` any source may support any statement (groundedness)."""
    claims = [c for c in answer_claims(answer) if len(c.text.split()) >= 2 or c.quoted]
    cited: list[list[int]] = [sorted(sources) if cite_all else list(c.markers) for c in claims]
    for i in range(len(cited)):
        if not cited[i]:
            nxt = next((c for c in cited[i + 1 :] if c), None)
            prev = next((c for c in reversed(cited[:i]) if c), None)
            cited[i] = list(nxt or prev or [])
    out: list[StatementSupport] = []
    for claim, refs in zip(claims, cited, strict=True):
        valid = [n for n in refs if n in sources]
        found = supporting_source(claim, sources, among=valid) if valid else None
        reason = "ok" if found else ("no valid citation" if not valid else "unsupported")
        unit = found[1] if found else ""
        out.append(
            StatementSupport(claim.text, refs, found is not None, unit, reason, bool(claim.markers))
        )
    return out
