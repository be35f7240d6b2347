"""Section-aware chunking bounded in the embedder's own tokens.

Rules:

* A change of heading path starts a new chunk; a heading element opens a section and travels
  with the text that follows it. Inside a section, small elements are packed together.
* A window of at most ``budget`` embedder tokens slides over the section's tokens; each chunk
  ends at the best break in the second half of its window: a paragraph break, then a sentence
  end, then a line break, then a space, and only when there is none of these (a long word, a
  run of CJK characters) between two tokens. Nothing is ever truncated: every character of the
  text lies in some chunk.
* The embedded text is ``"Title > Heading > Sub\\n\\n" + body``: the heading path helps
  retrieval. The bound covers the prefix: ``count_tokens(embed_text) <= embedder.max_tokens``
  for every chunk, checked with the embedder's tokenizer whenever the estimate could be off.
* Consecutive chunks of one section overlap by ``overlap`` tokens (snapped to a word start).

``Chunk.text`` is exactly ``full_text[char_start:char_end]`` (the stored, cited text); the
heading path is stored beside it.

Chunks are cut as they are taken (:meth:`Chunker.iter_chunks`, :class:`ChunkStream`): a
section is tokenized in blocks and only a window of its tokens is held, so memory does not
grow with a section's size; a :class:`ChunkStream` stops at a document's chunk cap and says
where.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ingest.clean import CleanDocument
from ingest.types import Element
from models.embedder import Embedder

#: embedder token spans longer than this many characters (an unknown-token blob such as a long
#: hash or base64 run) are counted as several pseudo-tokens, so chunks stay short in characters
MAX_TOKEN_CHARS = 12
#: a section is tokenized in blocks of about this many characters (cut at a space when one
#: lies in the block's second half), so a huge section is never tokenized in one piece
TOKENIZE_BLOCK_CHARS = 1 << 16
#: the heading prefix may use at most this share of the embedder's window
PREFIX_SHARE = 4
HEADING_JOINER = " > "
PREFIX_SEPARATOR = "\n\n"

_SENTENCE_END = re.compile(r"[.!?;:。！？；…)\"'»”’]$")
_CJK_STOP = frozenset("。！？；")


class ChunkingError(Exception):
    """The text cannot be cut under the embedder's bound (a tokenizer that emits more tokens
    for one character than the model accepts); the message is shown to the user."""


@dataclass
class Chunk:
    doc_id: str
    ordinal: int
    text: str  # full_text[char_start:char_end]
    embed_text: str  # heading prefix + text: what the embedder sees
    char_start: int
    char_end: int
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)
    embed_tokens: int = 0  # upper bound of count_tokens(embed_text); <= embedder.max_tokens
    tokens: int = 0  # tiktoken cl100k count of text, for context budgeting

    @property
    def chunk_id(self) -> str:
        return chunk_id(self.doc_id, self.ordinal)


def chunk_id(doc_id: str, ordinal: int) -> str:
    """Stable chunk id: the document id and the chunk's position in it."""
    return f"{doc_id}-{ordinal:05d}"


def sections(elements: list[Element]) -> list[list[int]]:
    """Group element indices into sections: a new group when the heading path changes; a
    heading opens a group and takes the elements that follow it."""
    groups: list[list[int]] = []
    key: tuple[str, ...] | None = None
    open_heading = False  # the current group holds only headings so far
    for i, el in enumerate(elements):
        this = tuple(el.heading_path)
        if el.kind == "title":
            if groups and open_heading:
                groups[-1].append(i)
            else:
                groups.append([i])
                open_heading = True
            key = None
            continue
        if groups and (open_heading or this == key):
            groups[-1].append(i)
        else:
            groups.append([i])
        key = this
        open_heading = False
    return groups


class Chunker:
    """Cuts cleaned documents into chunks that always fit the embedder."""

    def __init__(self, embedder: Embedder, chunk_tokens: int = 200, overlap: int = 30) -> None:
        self.embedder = embedder
        self.max_tokens = int(embedder.max_tokens)
        if self.max_tokens < 8:
            raise ValueError(f"embedder accepts only {self.max_tokens} tokens")
        self.target = max(8, min(int(chunk_tokens), self.max_tokens))
        self.overlap = max(0, min(int(overlap), self.target // 2))
        self.prefix_cap = max(0, self.max_tokens // PREFIX_SHARE)
        self._prefix_cache: dict[tuple[str, ...], tuple[str, int]] = {}

    # ------------------------------------------------------------------ prefix
    def heading_prefix(self, title: str, heading_path: list[str]) -> tuple[str, int]:
        """The prefix put before a chunk's text for embedding, and its token count."""
        parts: list[str] = []
        for part in [title, *heading_path]:
            if part and (not parts or parts[-1] != part):
                parts.append(part)
        key = tuple(parts)
        cached = self._prefix_cache.get(key)
        if cached is not None:
            return cached
        if not parts:
            result = ("", 0)
        else:
            head = HEADING_JOINER.join(parts)
            spans = self.embedder.token_spans(head)
            if len(spans) > self.prefix_cap:
                # a heading path longer than the cap keeps its start; the body is never cut
                head = head[: spans[self.prefix_cap - 1][1]].rstrip() + " …"
            text = head + PREFIX_SEPARATOR
            result = (text, self.embedder.count_tokens(text))
        if len(self._prefix_cache) < 4096:
            self._prefix_cache[key] = result
        return result

    # ------------------------------------------------------------------- chunks
    def chunk(self, doc: CleanDocument, doc_id: str) -> list[Chunk]:
        """Every chunk of ``doc``, in order."""
        return list(self.iter_chunks(doc, doc_id))

    def iter_chunks(self, doc: CleanDocument, doc_id: str) -> Iterator[Chunk]:
        """The chunks of ``doc`` in order, cut as they are taken: a section is tokenized in
        blocks of :data:`TOKENIZE_BLOCK_CHARS` characters and only the tokens of the chunk
        being cut are held, so a huge section costs no more memory than a small one."""
        full = doc.text
        starts = [s for s, _ in doc.spans]
        ordinal = 0
        for group in sections(doc.elements):
            first = doc.elements[group[0]]
            heading = next(
                (doc.elements[i].heading_path for i in group if doc.elements[i].kind != "title"),
                first.heading_path,
            )
            gs = doc.spans[group[0]][0]
            ge = doc.spans[group[-1]][1]
            prefix, prefix_tokens = self.heading_prefix(doc.title, heading)
            for cs, ce, est in self._cut(full, gs, ge, prefix, prefix_tokens):
                idx = bisect.bisect_right(starts, cs) - 1
                page = doc.elements[max(idx, 0)].page
                body = full[cs:ce]
                yield Chunk(
                    doc_id=doc_id,
                    ordinal=ordinal,
                    text=body,
                    embed_text=prefix + body,
                    char_start=cs,
                    char_end=ce,
                    page=page,
                    heading_path=list(heading),
                    embed_tokens=est,
                )
                ordinal += 1

    def _token_spans(self, full: str, gs: int, ge: int) -> Iterator[tuple[int, int]]:
        """The section's token spans, tokenized block by block: each block ends after the
        last space or line break of its second half (so no word is split where there is a
        choice), and spans longer than :data:`MAX_TOKEN_CHARS` become several."""
        pos = gs
        while pos < ge:
            end = min(ge, pos + TOKENIZE_BLOCK_CHARS)
            if end < ge:
                half = pos + TOKENIZE_BLOCK_CHARS // 2
                cut = max(full.rfind(" ", half, end), full.rfind("\n", half, end))
                if cut > pos:
                    end = cut + 1
            for a, b in self.embedder.token_spans(full[pos:end]):
                a += pos
                b += pos
                if b <= a:
                    continue
                while b - a > MAX_TOKEN_CHARS:
                    yield (a, a + MAX_TOKEN_CHARS)
                    a += MAX_TOKEN_CHARS
                yield (a, b)
            pos = end

    def _cut(
        self, full: str, gs: int, ge: int, prefix: str, prefix_tokens: int
    ) -> Iterator[tuple[int, int, int]]:
        """Character spans ``[start, end)`` of the chunks of one section, with the upper
        bound of each chunk's embedded token count, as they are cut."""
        spans = _Spans(self._token_spans(full, gs, ge))
        if not spans.has(0):
            if ge > gs:
                yield (gs, ge, prefix_tokens)
            return
        budget = max(1, min(self.target, self.max_tokens - prefix_tokens))

        def score(k: int) -> int:
            """How good a break between token k-1 and token k is."""
            gap = full[spans[k - 1][1] : spans[k][0]]
            if "\n\n" in gap:
                return 4
            prev = full[spans[k - 1][0] : spans[k - 1][1]]
            if gap and gap.isspace() and _SENTENCE_END.search(prev):
                return 3
            if not gap and prev[-1:] in _CJK_STOP:
                return 3
            if "\n" in gap:
                return 2
            if any(c.isspace() for c in gap):
                return 1
            return 0

        def end_of(k: int) -> int:
            """Where a chunk whose last token is k-1 ends: after any token-less characters
            before the next token (so they are covered), without trailing whitespace."""
            nxt = spans[k][0] if spans.has(k) else ge
            end = spans[k - 1][1]
            tail = full[end:nxt].rstrip()
            return end + len(tail)

        i = 0
        start = gs
        while True:
            if not spans.has(i + budget):  # the rest fits in one chunk
                k = spans.count()
            else:
                hi = i + budget
                lo = i + max(1, budget // 2)
                if not spans.has(i + budget + budget // 2 - 1):
                    # avoid a tiny last chunk: cut near the middle of what is left
                    rest = spans.count() - i
                    hi = min(hi, i + rest // 2 + budget // 4)
                    lo = min(lo, hi - 1)
                k = hi
                best = -1
                for cand in range(hi, lo, -1):
                    s = score(cand)
                    if s > best:
                        best, k = s, cand
                        if s == 4:
                            break
            k, end, est = self._fit(full, i, k, start, end_of, prefix, prefix_tokens)
            yield (start, end, est)
            if not spans.has(k):
                return
            nxt = k
            ov = min(self.overlap, (k - i) // 2)
            if ov > 0:
                nxt = k - ov
                # begin the overlap at a word start when one is near
                while nxt < k - 1 and score(nxt) == 0:
                    nxt += 1
            i = nxt
            start = spans[i][0]
            spans.forget_before(i)

    def _fit(
        self,
        full: str,
        i: int,
        k: int,
        start: int,
        end_of: Callable[[int], int],
        prefix: str,
        prefix_tokens: int,
    ) -> tuple[int, int, int]:
        """Shrink the chunk of tokens [i, k) until the embedder's own count fits."""
        while True:
            end = end_of(k)
            est = prefix_tokens + (k - i)
            clean_edges = _word_edge(full, start) and _word_edge_after(full, end)
            if est <= self.max_tokens - 4 and clean_edges:
                return k, end, est
            real = self.embedder.count_tokens(prefix + full[start:end])
            if real <= self.max_tokens:
                return k, end, real
            if k - i <= 1:
                raise ChunkingError(
                    f"one token of text at character {start} needs {real} embedder tokens, "
                    f"more than the embedder's limit of {self.max_tokens}"
                )
            k = max(i + 1, k - max(1, real - self.max_tokens))


class _Spans:
    """The token spans of one section, read from ``source`` as they are asked for; spans
    before the cutter's position are forgotten, so only a window of them is ever held."""

    _READ = 4096

    def __init__(self, source: Iterator[tuple[int, int]]) -> None:
        self._source = source
        self._held: list[tuple[int, int]] = []
        self._base = 0  # index of self._held[0]
        self._done = False

    def has(self, k: int) -> bool:
        """Whether the section has a token ``k`` (reading as far as needed)."""
        while not self._done and k >= self._base + len(self._held):
            more = list(itertools.islice(self._source, self._READ))
            if not more:
                self._done = True
            self._held.extend(more)
        return k < self._base + len(self._held)

    def count(self) -> int:
        """The number of tokens of the section (reads to its end)."""
        while not self._done:
            self.has(self._base + len(self._held))
        return self._base + len(self._held)

    def __getitem__(self, k: int) -> tuple[int, int]:
        return self._held[k - self._base]

    def forget_before(self, k: int) -> None:
        if k - self._base > self._READ:
            del self._held[: k - self._base]
            self._base = k


def _word_edge(full: str, pos: int) -> bool:
    """A chunk starting at ``pos`` starts a word (so its first token tokenizes as in context)."""
    return pos == 0 or full[pos - 1].isspace()


def _word_edge_after(full: str, pos: int) -> bool:
    return pos >= len(full) or full[pos].isspace()


def chunk_document(doc: CleanDocument, doc_id: str, chunker: Chunker) -> list[Chunk]:
    """Chunks of one cleaned document with their context-budget (tiktoken) counts filled in."""
    return list(ChunkStream(doc, doc_id, chunker))


class ChunkStream:
    """The chunks of one cleaned document, cut and counted (tiktoken) as they are taken, at
    most ``limit`` of them (None: all).

    Iterate it once. When it stops at ``limit`` with text left, :attr:`cut_at` is the
    character of the document's full text where indexing stopped (the end of the last chunk
    given); otherwise it stays None. :attr:`given` counts the chunks given so far.
    """

    def __init__(
        self, doc: CleanDocument, doc_id: str, chunker: Chunker, limit: int | None = None
    ) -> None:
        self._chunks: Iterator[Chunk] | None = chunker.iter_chunks(doc, doc_id)
        self._limit = limit
        self.given = 0
        self.cut_at: int | None = None
        self._last_end = 0

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        from models.tokens import count_budget_tokens

        if self._chunks is None:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._chunks = None  # the document's text is let go
            raise
        if self._limit is not None and self.given >= self._limit:
            self.cut_at = self._last_end
            self._chunks = None
            raise StopIteration
        # one by one: the batch call starts a thread pool, costlier than the counting here
        chunk.tokens = count_budget_tokens(chunk.text)
        self.given += 1
        self._last_end = chunk.char_end
        return chunk
