"""Evaluation datasets in the BEIR layout.

```
DATASET/
  corpus.jsonl      {"_id", "title", "text"}             one passage a line
  documents/        or: real files; corpus ids are their paths relative to documents/
  queries.jsonl     {"_id", "text", "answers": [...]}      answers optional
  qrels/test.tsv    query-id <TAB> corpus-id <TAB> score   header line first; score > 0 = relevant
```

A golden set that scores an existing index in place (``enclave eval --release``, the release
gate) may have neither corpus.jsonl nor documents/: its corpus ids are then path suffixes of
the indexed documents (``policies/leave.txt`` matches ``/shares/hr/policies/leave.txt``), and
the corpus is what the qrels name (kind ``paths``).

A query may also carry, for answer metrics by fact:

* ``keys``: short alternatives; an answer is right when it contains any one of them
  (:func:`eval.answer_metrics.contains_key`);
* ``unanswerable: true``: the documents do not hold the answer; right = the answer abstains
  (no keys, no qrels);
* ``history``: the earlier turns of a conversation, OpenAI message shape
  (``[{"role": "user"|"assistant", "content": ...}]``, alternating, ending with the
  assistant); ``text`` is the follow-up question asked after them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from enclave.errors import UsageError

CorpusKind = Literal["jsonl", "documents", "paths"]

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")
_SKIP_NAMES = {".DS_Store", "Thumbs.db"}


@dataclass
class Query:
    id: str
    text: str
    answers: list[str] = field(default_factory=list)
    #: alternatives any one of which makes an answer right
    keys: list[str] = field(default_factory=list)
    #: the documents do not hold the answer: right = the answer abstains
    unanswerable: bool = False
    #: earlier turns (OpenAI message shape) before ``text``
    history: list[dict[str, str]] = field(default_factory=list)

    @property
    def follow_up(self) -> bool:
        return bool(self.history)

    @property
    def scored_by_fact(self) -> bool:
        """Whether answer metrics by fact apply (keys to find, or an abstention to expect)."""
        return bool(self.keys) or self.unanswerable

    def messages(self) -> list[dict[str, str]]:
        """The conversation to send: the history, then the question."""
        return [*self.history, {"role": "user", "content": self.text}]


@dataclass
class CorpusEntry:
    """One corpus document: a JSONL passage (title + text) or a real file (path)."""

    id: str
    title: str = ""
    text: str = ""
    path: Path | None = None


@dataclass
class Dataset:
    root: Path
    kind: CorpusKind
    corpus: dict[str, CorpusEntry]
    queries: list[Query]
    #: query id -> {corpus id: graded relevance > 0}
    qrels: dict[str, dict[str, float]]
    corpus_hash: str
    hash: str
    qrels_file: str = "qrels/test.tsv"
    warnings: list[str] = field(default_factory=list)

    @property
    def documents_dir(self) -> Path:
        return self.root / "documents"

    def query_by_id(self) -> dict[str, Query]:
        return {q.id: q for q in self.queries}

    def describe(self) -> dict[str, object]:
        return {
            "path": str(self.root),
            "corpus": self.kind,
            "documents": len(self.corpus),
            "queries": len(self.queries),
            "queries_with_qrels": sum(1 for q in self.queries if q.id in self.qrels),
            "queries_with_answers": sum(1 for q in self.queries if q.answers),
            "queries_with_keys": sum(1 for q in self.queries if q.keys),
            "follow_ups": sum(1 for q in self.queries if q.follow_up),
            "unanswerable": sum(1 for q in self.queries if q.unanswerable),
            "qrels": sum(len(v) for v in self.qrels.values()),
            "qrels_file": self.qrels_file,
            "corpus_hash": self.corpus_hash,
            "hash": self.hash,
        }


def corpus_file_name(doc_id: str) -> str:
    """File name a JSONL passage is written under; ``<id>.txt`` when the id is file-safe."""
    if _SAFE_ID.match(doc_id) and not doc_id.endswith("."):
        return f"{doc_id}.txt"
    return "id-" + hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:32] + ".txt"


def passage_text(entry: CorpusEntry) -> str:
    """What a JSONL passage's file holds: the title as first line when there is one."""
    if entry.title.strip():
        return f"{entry.title.strip()}\n\n{entry.text}"
    return entry.text


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            except UnicodeDecodeError as exc:
                raise UsageError(f"{path}:{number}: not UTF-8") from exc
            if not isinstance(row, dict):
                raise UsageError(f"{path}:{number}: expected a JSON object per line")
            rows.append(row)
    return rows


def _str_field(row: dict[str, object], key: str, where: str, *, required: bool = True) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise UsageError(f"{where}: missing {key!r}")
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool) and key == "_id":
        return str(value)
    if not isinstance(value, str):
        raise UsageError(f"{where}: {key!r} must be a string")
    return value


def _load_corpus_jsonl(path: Path) -> dict[str, CorpusEntry]:
    corpus: dict[str, CorpusEntry] = {}
    for i, row in enumerate(_read_jsonl(path), start=1):
        where = f"{path} (passage {i})"
        doc_id = _str_field(row, "_id", where)
        if not doc_id:
            raise UsageError(f"{where}: empty '_id'")
        if doc_id in corpus:
            raise UsageError(f"{where}: duplicate _id {doc_id!r}")
        corpus[doc_id] = CorpusEntry(
            id=doc_id,
            title=_str_field(row, "title", where, required=False),
            text=_str_field(row, "text", where),
        )
    return corpus


def _load_corpus_documents(folder: Path) -> dict[str, CorpusEntry]:
    corpus: dict[str, CorpusEntry] = {}
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or f.name in _SKIP_NAMES:
            continue
        rel = f.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        corpus[rel] = CorpusEntry(id=rel, title=f.stem, path=f)
    return corpus


def _load_queries(path: Path) -> list[Query]:
    queries: list[Query] = []
    seen: set[str] = set()
    for i, row in enumerate(_read_jsonl(path), start=1):
        where = f"{path} (query {i})"
        qid = _str_field(row, "_id", where)
        if qid in seen:
            raise UsageError(f"{where}: duplicate _id {qid!r}")
        seen.add(qid)
        text = _str_field(row, "text", where)
        if not text.strip():
            raise UsageError(f"{where}: empty 'text'")
        raw = row.get("answers") or []
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            raise UsageError(f"{where}: 'answers' must be a list of strings")
        answers = [a for a in raw if isinstance(a, str) and a.strip()]
        keys = _string_list(row.get("keys"), "keys", where)
        unanswerable = row.get("unanswerable", False)
        if not isinstance(unanswerable, bool):
            raise UsageError(f"{where}: 'unanswerable' must be true or false")
        if unanswerable and keys:
            raise UsageError(f"{where}: an unanswerable question has no keys")
        history = _history(row.get("history"), where)
        queries.append(
            Query(
                id=qid,
                text=text,
                answers=answers,
                keys=keys,
                unanswerable=unanswerable,
                history=history,
            )
        )
    return queries


def _string_list(value: object, name: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {name!r} must be a list of strings")
    return [v for v in value if v.strip()]


def _history(value: object, where: str) -> list[dict[str, str]]:
    """Earlier turns: user/assistant messages, alternating, starting with the user and ending
    with the assistant (the question in ``text`` is the next user turn)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise UsageError(f"{where}: 'history' must be a list of messages")
    out: list[dict[str, str]] = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise UsageError(f"{where}: history[{i}] must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise UsageError(f"{where}: history[{i}].role must be {expected!r} (turns alternate)")
        if not isinstance(content, str) or not content.strip():
            raise UsageError(f"{where}: history[{i}].content must be a non-empty string")
        out.append({"role": role, "content": content})
    if out and out[-1]["role"] != "assistant":
        raise UsageError(f"{where}: 'history' must end with the assistant's answer")
    return out


def _load_qrels(path: Path) -> dict[str, dict[str, float]]:
    qrels: dict[str, dict[str, float]] = {}
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            parts = line.split()
        if len(parts) < 3:
            raise UsageError(f"{path}:{number}: expected query-id, corpus-id, score")
        qid, did, raw = parts[0].strip(), parts[1].strip(), parts[-1].strip()
        try:
            score = float(raw)
        except ValueError:
            if number == 1:
                continue  # the header line
            raise UsageError(f"{path}:{number}: score {raw!r} is not a number") from None
        if score > 0:
            qrels.setdefault(qid, {})[did] = max(score, qrels.get(qid, {}).get(did, 0.0))
    return qrels


def _hash_files(h: hashlib._Hash, files: list[tuple[str, Path]]) -> None:
    for name, f in files:
        h.update(name.encode("utf-8") + b"\0")
        with f.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")


def load_dataset(root: Path | str, *, in_place: bool = False) -> Dataset:
    """Read and validate a dataset folder; every problem is a :class:`UsageError`.
    ``in_place``: scoring an existing index, so the corpus may be the qrels' path suffixes."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"dataset folder not found: {root}")
    corpus_jsonl = root / "corpus.jsonl"
    documents = root / "documents"
    queries_path = root / "queries.jsonl"
    qrels_path = root / "qrels" / "test.tsv"
    if corpus_jsonl.is_file() and documents.is_dir():
        raise UsageError(f"{root} has both corpus.jsonl and documents/: keep one of them")
    paths_only = in_place and not corpus_jsonl.is_file() and not documents.is_dir()
    if not corpus_jsonl.is_file() and not documents.is_dir() and not paths_only:
        raise UsageError(
            f"{root} has neither corpus.jsonl nor a documents/ folder "
            "(expected the BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv)"
        )
    if not queries_path.is_file():
        raise UsageError(f"{root} has no queries.jsonl")
    if not qrels_path.is_file():
        others = sorted(p.name for p in (root / "qrels").glob("*.tsv"))
        hint = f" (found: {', '.join(others)})" if others else ""
        raise UsageError(f"{root} has no qrels/test.tsv{hint}")

    kind: CorpusKind
    corpus_files: list[tuple[str, Path]]
    if paths_only:
        kind = "paths"
        corpus = {
            d: CorpusEntry(id=d, title=Path(d).stem)
            for rel in _load_qrels(qrels_path).values()
            for d in rel
        }
        corpus_files = [("qrels/test.tsv", qrels_path)]
    elif corpus_jsonl.is_file():
        kind = "jsonl"
        corpus = _load_corpus_jsonl(corpus_jsonl)
        corpus_files = [("corpus.jsonl", corpus_jsonl)]
    else:
        kind = "documents"
        corpus = _load_corpus_documents(documents)
        corpus_files = [
            (f"documents/{e.id}", e.path) for e in corpus.values() if e.path is not None
        ]
    if not corpus:
        raise UsageError(f"the corpus of {root} is empty")
    queries = _load_queries(queries_path)
    if not queries:
        raise UsageError(f"{queries_path} holds no queries")
    qrels = _load_qrels(qrels_path)

    warnings: list[str] = []
    known_queries = {q.id for q in queries}
    unknown_q = sorted(set(qrels) - known_queries)
    if unknown_q:
        raise UsageError(
            f"{qrels_path} names {len(unknown_q)} query id(s) missing from queries.jsonl, "
            f"e.g. {unknown_q[0]!r}"
        )
    unknown_d = sorted({d for rel in qrels.values() for d in rel} - set(corpus))
    if unknown_d:
        what = "files under documents/" if kind == "documents" else "passages in corpus.jsonl"
        raise UsageError(
            f"{qrels_path} names {len(unknown_d)} corpus id(s) that are not {what}, "
            f"e.g. {unknown_d[0]!r}"
        )
    if not qrels and not any(q.answers or q.scored_by_fact for q in queries):
        raise UsageError(f"{root}: no relevance judgements and no reference answers to score")
    judged_unanswerable = sorted(q.id for q in queries if q.unanswerable and q.id in qrels)
    if judged_unanswerable:
        raise UsageError(
            f"{qrels_path}: unanswerable query {judged_unanswerable[0]!r} has relevant "
            "documents; an unanswerable question has none"
        )
    missing = len(known_queries - set(qrels) - {q.id for q in queries if q.unanswerable})
    if missing:
        warnings.append(f"{missing} queries have no relevant documents in qrels: not scored")

    h_corpus = hashlib.sha256()
    h_corpus.update(kind.encode())
    _hash_files(h_corpus, corpus_files)
    corpus_hash = h_corpus.hexdigest()
    h_all = hashlib.sha256(corpus_hash.encode())
    _hash_files(h_all, [("queries.jsonl", queries_path), ("qrels/test.tsv", qrels_path)])
    return Dataset(
        root=root,
        kind=kind,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        corpus_hash=corpus_hash,
        hash=h_all.hexdigest(),
        warnings=warnings,
    )
