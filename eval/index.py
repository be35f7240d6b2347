"""The evaluation index: a dataset's corpus ingested by the real pipeline into an index of its
own, ``<data_dir>/eval/<key>``, reused while the corpus and the settings that shape the index
(embedder, chunking, redaction) stay the same.

A ``corpus.jsonl`` passage is written as ``<index>/corpus/<_id>.txt`` (title as first line) and
ingested from there; a ``documents/`` folder is ingested where it lies. Hits map back to corpus
ids through the document path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.errors import EnclaveError
from eval.dataset import Dataset, corpus_file_name, passage_text
from store.records import normalise_path

if TYPE_CHECKING:
    from enclave.settings import Settings
    from models.embedder import Embedder
    from store.db import Store

log = logging.getLogger(__name__)

#: bump when the way the eval index is laid out changes
EVAL_INDEX_FORMAT = 1
MARKER_FILE = "eval-index.json"


def index_settings_fingerprint(settings: Settings, embedder_name: str) -> dict[str, Any]:
    """The settings an index depends on (and nothing that does not change it)."""
    ingest = settings.ingest
    fp: dict[str, Any] = {
        "format": EVAL_INDEX_FORMAT,
        "embedder": embedder_name,
        "chunk_tokens": ingest.chunk_tokens,
        "chunk_overlap": ingest.chunk_overlap,
        "max_file_mb": ingest.max_file_mb,
        "include": list(ingest.include),
        "exclude": list(ingest.exclude),
    }
    security = getattr(settings, "security", None)
    for name in ("redact_pii", "flag_injection", "policy_file"):
        if security is not None and hasattr(security, name):
            value = getattr(security, name)
            fp[name] = str(value) if isinstance(value, Path) else value
    return fp


def index_key(dataset: Dataset, settings: Settings, embedder_name: str) -> str:
    payload = json.dumps(
        {
            "corpus": dataset.corpus_hash,
            "settings": index_settings_fingerprint(settings, embedder_name),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


class DocMapper:
    """Maps a hit's ``source`` (a document path) to the corpus id it stands for.

    Exact paths first (the eval index); then, for an index built elsewhere (``--url``), the file
    name ``<_id>.txt`` of a JSONL passage or the longest path suffix that is a path relative to
    ``documents/``.
    """

    def __init__(self, dataset: Dataset, exact: dict[str, str] | None = None) -> None:
        self.kind = dataset.kind
        self.exact = dict(exact or {})
        self.by_name = (
            {corpus_file_name(i): i for i in dataset.corpus} if dataset.kind == "jsonl" else {}
        )
        self.relative = set(dataset.corpus) if dataset.kind != "jsonl" else set()
        self._cache: dict[str, str | None] = {}

    def __call__(self, source: str) -> str | None:
        if source in self._cache:
            return self._cache[source]
        found = self.exact.get(source)
        if found is None:
            norm = source.replace("\\", "/")
            if self.kind == "jsonl":
                found = self.by_name.get(norm.rsplit("/", 1)[-1])
            else:
                parts = [p for p in norm.split("/") if p]
                for i in range(len(parts)):
                    candidate = "/".join(parts[i:])
                    if candidate in self.relative:
                        found = candidate
                        break
        self._cache[source] = found
        return found


@dataclass
class EvalIndex:
    dir: Path
    settings: Settings
    store: Store
    reused: bool
    mapper: DocMapper
    ingest: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    key: str = ""

    @property
    def release(self) -> str | None:
        """The evaluation index's live release (its ingest runs promote at once)."""
        from store.registry import Registry

        live = Registry.at(self.store.location).live()
        return None if live is None else live.release


def _write_corpus_files(dataset: Dataset, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    exact: dict[str, str] = {}
    for entry in dataset.corpus.values():
        path = folder / corpus_file_name(entry.id)
        data = passage_text(entry).encode("utf-8")
        if not path.is_file() or path.stat().st_size != len(data) or path.read_bytes() != data:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        exact[normalise_path(path)] = entry.id
    return exact


def build_index(
    dataset: Dataset,
    settings: Settings,
    embedder: Embedder,
    *,
    progress: bool = False,
) -> EvalIndex:
    """Ingest ``dataset``'s corpus with the real pipeline, or reuse the index built before."""
    from store.db import Store

    key = index_key(dataset, settings, embedder.name)
    root = Path(settings.data_dir).resolve() / "eval" / key
    root.mkdir(parents=True, exist_ok=True)
    from enclave.settings import ReleaseSettings, StoreSettings

    # its own releases promote at once: no golden set, no rails (a new corpus is a new index)
    plain = ReleaseSettings(max_removed_share=1.0, max_failure_jump=1.0)
    # ... and it stays on this host's disk, wherever the served index lives
    eval_settings = settings.model_copy(
        update={"data_dir": root, "release": plain, "store": StoreSettings()}
    )
    if dataset.kind == "jsonl":
        corpus_dir = root / "corpus"
        exact = _write_corpus_files(dataset, corpus_dir)
        paths: list[Path] = [corpus_dir]
    else:
        exact = {
            normalise_path(e.path): e.id for e in dataset.corpus.values() if e.path is not None
        }
        paths = [dataset.documents_dir]
    mapper = DocMapper(dataset, exact)
    store = Store(eval_settings.lance_dir)
    marker = root / MARKER_FILE
    if marker.is_file():
        try:
            info = json.loads(marker.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            info = {}
        if info.get("key") == key and store.count_chunks() > 0:
            log.info("reusing the evaluation index at %s", root)
            return EvalIndex(
                dir=root,
                settings=eval_settings,
                store=store,
                reused=True,
                mapper=mapper,
                ingest=dict(info.get("ingest") or {}),
                seconds=0.0,
                key=key,
            )
        marker.unlink(missing_ok=True)

    from ingest.pipeline import ingest_paths

    t0 = time.perf_counter()
    summary = ingest_paths(
        eval_settings, paths, prune=True, embedder=embedder, store=store, progress=progress
    )
    seconds = time.perf_counter() - t0
    result = summary.to_dict()
    if store.count_chunks() == 0:
        failed = result.get("failed") or []
        why = f" (first failure: {failed[0].get('error')})" if failed else ""
        raise EnclaveError(f"ingesting the corpus of {dataset.root} produced no chunks{why}")
    marker.write_text(
        json.dumps(
            {
                "key": key,
                "dataset": str(dataset.root),
                "corpus_hash": dataset.corpus_hash,
                "settings": index_settings_fingerprint(settings, embedder.name),
                "ingest": result,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        ),
        "utf-8",
    )
    return EvalIndex(
        dir=root,
        settings=eval_settings,
        store=store,
        reused=False,
        mapper=mapper,
        ingest=result,
        seconds=seconds,
        key=key,
    )
