"""Building the int8 embedder once, and finding the build again.

Recipe (version :data:`models.variants.INT8_RECIPE`):

1. load the sentence-transformers model folder offline, with eager attention (a graph that
   traces the same for every batch);
2. ``torch.onnx.export`` (TorchScript tracer) of the whole pipeline (transformer, pooling,
   normalisation, as the folder's ``modules.json`` declares them), with dynamic batch and
   sequence axes, traced on a padded batch so that the attention mask stays in the graph;
3. for BERT-family models, ONNX Runtime's transformer fusions (attention, layer norm, GELU);
4. ``onnxruntime.quantization.quantize_dynamic``: int8 weights, one scale per output channel
   (``QInt8``, ``per_channel=True``; one scale per tensor dropped the cosine to fp32 to 0.86,
   unsigned weights ran slower on the machines measured);
5. checks on :data:`CHECK_TEXTS`: the exported fp32 graph gives the model's vectors (cosine
   >= 0.9999), the saved tokenizer gives sentence-transformers' tokens, offsets and model
   inputs, and the int8 vectors stay within cosine :data:`MIN_BUILD_COSINE` of fp32, each text
   alone and in a batch. A build that fails a check is refused (use the fp32 variant).

The build lands in ``<cache>/<label>-<key>/`` where ``key`` hashes the recipe version and the
content of the model folder's files, so a changed model is rebuilt and an unchanged one never
is. It is written into a temporary folder and renamed into place when complete, under a lock
file, so concurrent first uses build it once and a killed build leaves nothing half-made.
``enclave models build-int8`` (run by ``make install`` and the Docker build) builds it ahead of
the first ingest; otherwise the first load builds it and says so in the log.

One module over 500 lines, on purpose: the int8 build is one recipe (export, fusions,
quantisation, checks, the cache folder and its lock) whose steps share the recipe version and
file names; split, each part would only be read with the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from enclave.errors import ConfigError
from models.onnx_embedder import (
    CHECK_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxEmbedder,
    read_manifest,
)
from models.variants import INT8_RECIPE, INT8_TAG

log = logging.getLogger(__name__)

#: the least cosine to the fp32 vectors a build must keep on every check text, when built and
#: on each machine that loads it (int8 kernels differ between CPUs: without VNNI, ONNX Runtime's
#: u8s8 products can saturate)
MIN_BUILD_COSINE = 0.98
#: how many of the check texts (the first ones: queries and short paragraphs) each load embeds
#: to check the build on the machine it runs on (tens of milliseconds)
LOAD_CHECK_TEXTS = 8
#: the least cosine of the exported fp32 graph to the model itself (an export check)
MIN_EXPORT_COSINE = 0.9999
#: sentence-transformers modules the export supports (others: use the fp32 variant)
SUPPORTED_MODULES = frozenset({"Transformer", "Pooling", "Normalize", "Dense"})
#: model types whose graph gets ONNX Runtime's BERT fusions before quantisation
FUSED_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta"})
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_KEY_SUFFIXES = frozenset({".json", ".safetensors", ".bin", ".txt", ".model", ".py"})
_KEY_SKIP_DIRS = frozenset({"onnx", "openvino"})

_PARAGRAPH = (
    "The retention policy applies to every record created by the finance department, "
    "including invoices, purchase orders, expense reports and the correspondence attached "
    "to them. Records are kept for seven years after the end of the fiscal year in which "
    "they were closed, then destroyed unless a legal hold is in place. Employees who find "
    "a record that should have been destroyed report it to the records manager, who logs "
    "the finding and decides within ten working days. "
)

#: a fixed sample (queries, prose, reference text, code, tables, other scripts, a text longer
#: than the model's window) on which every build is checked, and the tests compare variants
CHECK_TEXTS: tuple[str, ...] = (
    "How many vacation days do I get?",
    "what is the default value of shared_buffers",
    "Who approves expense reports above 5,000 EUR?",
    "reset password",
    "The quick brown fox jumps over the lazy dog.",
    "Checkpoints are points in the sequence of transactions at which it is guaranteed that "
    "the heap and index data files have been updated with all information written before "
    "that checkpoint. At checkpoint time, all dirty data pages are flushed to disk and a "
    "special checkpoint record is written to the log file.",
    "TRUNCATE quickly removes all rows from a set of tables. It has the same effect as an "
    "unqualified DELETE on each table, but since it does not actually scan the tables it is "
    "faster. Furthermore, it reclaims disk space immediately, rather than requiring a "
    "subsequent VACUUM operation. This is most useful on large tables.",
    "autovacuum_naptime (integer): Specifies the minimum delay between autovacuum runs on any "
    "given database. In each round the daemon examines the database and issues VACUUM and "
    "ANALYZE commands as needed for tables in that database. If this value is specified "
    "without units, it is taken as seconds. The default is one minute (1min).",
    _PARAGRAPH,
    "Section 4.2 Travel > Booking: Flights longer than six hours may be booked in premium "
    "economy. Hotel rates above the city ceiling need the approval of a director, given in "
    "writing before the stay. Receipts are scanned and attached to the claim within 30 days.",
    "def embed(texts):\n    vecs = model.encode(texts, normalize_embeddings=True)\n"
    "    return vecs.astype('float32')\n\nfor row in embed(['a', 'b']):\n    print(row[:4])",
    "SELECT name, setting, unit FROM pg_settings WHERE name LIKE 'autovacuum%' ORDER BY name;",
    "| region | Q1 | Q2 | Q3 | Q4 |\n| --- | --- | --- | --- | --- |\n| north | 1.2 | 1.4 | "
    "1.1 | 1.9 |\n| south | 0.8 | 0.9 | 1.0 | 1.3 |",
    "Ünïcödé café naïve façade: « guillemets », ‘quotes’ — dashes… and emoji 🙂 mixed in.",
    "Die Kündigungsfrist beträgt drei Monate zum Quartalsende, sofern nichts anderes "
    "vereinbart ist.",
    "会議は毎週月曜日の午前十時に始まります。議事録は共有フォルダに保存してください。",
    "Q: Can contractors access the HR portal? A: No. Contractors receive a guest account "
    "limited to the project workspace; HR data stays with employees and their managers.",
    'ERROR:  duplicate key value violates unique constraint "users_email_key"\nDETAIL:  Key '
    "(email)=(a@example.com) already exists.",
    "In 1851 the whaling ship left Nantucket with a crew of thirty; the captain, obsessed "
    "with the white whale that had taken his leg, steered them across three oceans.",
    "Passwords must be at least 14 characters long, must not reuse any of the last 12 "
    "passwords, and are changed only when there is reason to believe they were disclosed.",
    "invoice",
    "   leading and trailing spaces   ",
    _PARAGRAPH * 4,  # over the model's window: truncated the same way by both variants
)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/enclave/embedders``, i.e. ``~/.cache/enclave/embedders``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "enclave" / "embedders"


def source_key(source: Path) -> str:
    """SHA-256 of the recipe version and the model folder's files (names and contents:
    weights, configuration, tokenizer), so any change to the model gives another key."""
    h = hashlib.sha256(INT8_TAG.encode())
    for f in sorted(source.rglob("*")):
        rel = f.relative_to(source)
        if (
            not f.is_file()
            or f.suffix not in _KEY_SUFFIXES
            or rel.parts[0] in _KEY_SKIP_DIRS
            or any(p.startswith(".") for p in rel.parts)
        ):
            continue
        h.update(rel.as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def build_folder(source: Path, label: str, cache_dir: Path | None = None) -> Path:
    """Where the int8 build of the model folder ``source`` lives (built or not)."""
    return _folder(label, source_key(source), cache_dir)


def _folder(label: str, key: str, cache_dir: Path | None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "model"
    return (cache_dir or default_cache_dir()) / f"{safe}-{key[:16]}"


def ensure_int8_model(
    source: Path,
    *,
    label: str,
    identity: str,
    cache_dir: Path | None = None,
    threads: int = 0,
    force: bool = False,
) -> Path:
    """The folder of the int8 build of ``source``, built first when missing (or ``force``).

    ``label`` names the folder (the model's display name), ``identity`` is the fp32 identity
    recorded in the manifest. Raises :class:`ConfigError` when the cache cannot be written or
    the build fails a check.
    """
    key = source_key(source)
    folder = _folder(label, key, cache_dir)
    if not force and read_manifest(folder) is not None:
        return folder
    root = folder.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_file = (root / f".{folder.name}.lock").open("a")
    except OSError as exc:
        raise ConfigError(_unwritable(folder, exc)) from None
    with lock_file, _locked(lock_file.fileno()):
        if not force and read_manifest(folder) is not None:
            return folder  # built by another process while this one waited
        return _build(source, folder, key=key, label=label, identity=identity, threads=threads)


def load_int8_embedder(
    source: Path,
    *,
    label: str,
    identity: str,
    name: str,
    cache_dir: Path | None = None,
    batch_size: int = 32,
    threads: int = 0,
) -> OnnxEmbedder:
    """The int8 embedder of the model folder ``source`` (built first when missing), checked on
    this machine: the first :data:`LOAD_CHECK_TEXTS` check texts must keep cosine
    :data:`MIN_BUILD_COSINE` to the fp32 vectors stored with the build. Raises ConfigError
    otherwise."""
    folder = ensure_int8_model(
        source, label=label, identity=identity, cache_dir=cache_dir, threads=threads
    )
    emb = OnnxEmbedder(folder, name=name, batch_size=batch_size, threads=threads)
    worst = check_on_this_machine(emb)
    if worst < MIN_BUILD_COSINE:
        raise ConfigError(
            f"the int8 embedder in {folder} drifts from fp32 on this machine (cosine "
            f"{worst:.4f} < {MIN_BUILD_COSINE} on the check texts; this CPU's int8 kernels "
            'differ from the ones it was built on); set embedder.variant = "fp32"'
        )
    return emb


def check_on_this_machine(emb: OnnxEmbedder, count: int = LOAD_CHECK_TEXTS) -> float:
    """The least cosine between ``emb``'s vectors of the first ``count`` check texts and the
    fp32 vectors stored with its build."""
    import numpy as np

    ref = np.load(emb.folder / CHECK_FILE)[:count]
    return float(_cosines(emb.embed(list(CHECK_TEXTS[:count])), ref).min())


def _build(
    source: Path, folder: Path, *, key: str, label: str, identity: str, threads: int
) -> Path:
    """Build into a temporary folder beside ``folder``, then rename it into place."""
    root = folder.parent
    log.warning(
        "building the int8 embedder for %s: ONNX export and quantisation, once per model "
        "(about 30 s on 2 cores) into %s",
        label,
        folder,
    )
    t0 = time.perf_counter()
    for stale in root.glob(f".tmp-{folder.name}-*"):  # left by a killed build (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{folder.name}-{os.getpid()}-{threading.get_ident()}"
    try:
        tmp.mkdir()
        manifest = build_int8_model(source, tmp, identity=identity, threads=threads)
        manifest["source_key"] = key
        manifest["source_path"] = str(source)
        manifest["build_seconds"] = round(time.perf_counter() - t0, 1)
        _write_json(tmp / MANIFEST_FILE, manifest)
        old = root / f".old-{folder.name}-{os.getpid()}"
        if folder.exists():
            os.rename(folder, old)
        os.rename(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise ConfigError(_unwritable(folder, exc)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    check = manifest["check"]
    log.warning(
        "int8 embedder built in %.1f s (cosine to fp32 on %d check texts: min %.4f, mean %.4f): %s",
        manifest["build_seconds"],
        check["texts"],
        check["cosine_min"],
        check["cosine_mean"],
        folder,
    )
    return folder


def _unwritable(folder: Path, exc: OSError) -> str:
    return (
        f"cannot build the int8 embedder in {folder}: {exc}. Set embedder.cache_dir "
        "(ENCLAVE_EMBEDDER__CACHE_DIR) to a writable folder, build it there with "
        '`enclave models build-int8`, or set embedder.variant = "fp32"'
    )


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    """An exclusive lock on the open file ``fd`` (POSIX ``flock``; none where there is none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), "utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's tracer warnings and the quantiser's advice, which it logs through
    ``logging.warning`` (installing a handler on the root logger: removed again here)."""
    root = logging.getLogger()
    ort_log = logging.getLogger("onnxruntime")
    levels = (root.level, ort_log.level)
    handlers = list(root.handlers)
    root.setLevel(logging.ERROR)
    ort_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(levels[0])
        ort_log.setLevel(levels[1])


def _cosines(a: Any, b: Any) -> Any:
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def build_int8_model(
    source: Path, out: Path, *, identity: str, threads: int = 0, texts: Sequence[str] = CHECK_TEXTS
) -> dict[str, Any]:
    """Export, fuse, quantise and check the model folder ``source`` into the empty folder
    ``out`` (``model-int8.onnx``, ``tokenizer.json``, ``manifest.json``); returns the manifest.
    Needs torch, sentence-transformers, onnx and onnxruntime; never reaches the network."""
    from enclave.offline import enforce_offline

    enforce_offline()
    import numpy as np
    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    if threads > 0:
        torch.set_num_threads(threads)
    with _quiet():
        st: Any = SentenceTransformer(
            str(source),
            device="cpu",
            local_files_only=True,
            model_kwargs={"attn_implementation": "eager"},
        )
    kinds = [type(m).__name__ for m in st]
    unsupported = sorted(set(kinds) - SUPPORTED_MODULES)
    if unsupported:
        raise ConfigError(
            f"the int8 embedder cannot export {source}: modules {unsupported} are not supported "
            f'(supported: {sorted(SUPPORTED_MODULES)}); set embedder.variant = "fp32"'
        )
    tokenizer: Any = st.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ConfigError(
            f"the int8 embedder needs a fast tokenizer (tokenizer.json) for {source}; set "
            'embedder.variant = "fp32"'
        )
    preprocess = getattr(st, "preprocess", None) or st.tokenize
    feats = preprocess(list(texts))
    names = [n for n in INPUT_NAMES if n in feats]
    extra = [k for k, v in feats.items() if k not in names and isinstance(v, torch.Tensor)]
    if "input_ids" not in names or "attention_mask" not in names or extra:
        raise ConfigError(
            f"the int8 embedder cannot export {source}: unexpected model inputs "
            f'{sorted(feats)}; set embedder.variant = "fp32"'
        )
    if bool(feats["attention_mask"].all()):
        raise ConfigError("the check texts must make a padded batch")  # the mask must be traced
    with torch.inference_mode():
        ref = st.encode(
            list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )

    class _Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.st(dict(zip(names, tensors, strict=True)))[
                "sentence_embedding"
            ]
            return out

    fp32_path = out / "model-fp32.onnx"
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["sentence_embedding"] = {0: "batch"}
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            _Pipeline().eval(),
            tuple(feats[n] for n in names),
            str(fp32_path),
            dynamo=False,
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes=axes,
            opset_version=17,
            do_constant_folding=True,
        )
    feeds = {n: feats[n].numpy().astype(np.int64) for n in names}
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        str(fp32_path), options, providers=["CPUExecutionProvider"]
    )
    export_cos = _cosines(session.run(None, feeds)[0], ref)
    del session
    if float(export_cos.min()) < MIN_EXPORT_COSINE:
        raise ConfigError(
            f"the ONNX export of {source} does not reproduce the model (cosine "
            f'{float(export_cos.min()):.5f}); set embedder.variant = "fp32"'
        )

    config: Any = st[0].auto_model.config
    to_quantise = fp32_path
    fused = False
    if config.model_type in FUSED_MODEL_TYPES:
        from onnxruntime.transformers.optimizer import optimize_model

        with _quiet():
            optimized = optimize_model(
                str(fp32_path),
                model_type="bert",
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
                opt_level=1,
                use_gpu=False,
            )
            to_quantise = out / "model-fp32-fused.onnx"
            optimized.save_model_to_file(str(to_quantise))
        fused = True
    with _quiet():
        quantize_dynamic(
            str(to_quantise),
            str(out / MODEL_FILE),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    for f in (fp32_path, out / "model-fp32-fused.onnx"):
        f.unlink(missing_ok=True)
    backend.save(str(out / TOKENIZER_FILE))
    np.save(out / CHECK_FILE, np.asarray(ref, dtype=np.float32))

    get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    manifest: dict[str, Any] = {
        "recipe": INT8_RECIPE,
        "tag": INT8_TAG,
        "identity": identity,
        "modules": kinds,
        "model_type": config.model_type,
        "fused": fused,
        "weights": "QInt8, per channel",
        "dimension": int(get_dim()),
        "max_seq_length": int(st.max_seq_length),
        "do_lower_case": bool(getattr(st[0], "do_lower_case", False)),
        "inputs": names,
        "pad_token": str(tokenizer.pad_token),
        "pad_token_id": int(tokenizer.pad_token_id),
        "pad_token_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        "padding_side": str(tokenizer.padding_side),
        "truncation_side": str(tokenizer.truncation_side),
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json(out / MANIFEST_FILE, manifest)
    manifest["check"] = _check_build(out, st, feats, names, ref, texts, export_cos)
    return manifest


def _check_build(
    out: Path,
    st: Any,
    feats: Any,
    names: list[str],
    ref: Any,
    texts: Sequence[str],
    export_cos: Any,
) -> dict[str, Any]:
    """Load the build as the runtime does and hold it against the fp32 model."""
    import numpy as np

    emb = OnnxEmbedder(out, name="check", batch_size=len(texts))
    mine = emb.features(texts)
    for n in names:
        if not np.array_equal(mine[n], feats[n].numpy()):
            raise ConfigError(f"the saved tokenizer gives other {n} than the model's")
    for text in texts:
        enc = st.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, truncation=False
        )
        want = [(int(a), int(b)) for a, b in enc["offset_mapping"]]
        if emb.token_spans(text) != want or emb.count_tokens(text) != len(enc["input_ids"]):
            raise ConfigError(f"the saved tokenizer counts tokens differently: {text[:40]!r}")
    batch = _cosines(emb.embed(texts), ref)
    alone = _cosines(np.vstack([emb.embed([t]) for t in texts]), ref)
    worst = float(min(batch.min(), alone.min()))
    if worst < MIN_BUILD_COSINE:
        raise ConfigError(
            f"the int8 build of this model drifts from fp32 (cosine {worst:.4f} < "
            f'{MIN_BUILD_COSINE} on the check texts); set embedder.variant = "fp32"'
        )
    both = np.concatenate([batch, alone])
    return {
        "texts": len(texts),
        "cosine_min": round(worst, 5),
        "cosine_mean": round(float(both.mean()), 5),
        "export_cosine_min": round(float(export_cos.min()), 6),
    }
