"""What a report says it measured: Enclave's version and the models' files with their sha256
(cached by path, size and mtime, so a second run does not hash gigabytes again)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enclave.settings import Settings
    from models.embedder import Embedder


def enclave_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("enclave-rag")
    except PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------ model file hashes
class HashCache:
    """sha256 of files, cached by path + size + mtime in ``<data_dir>/eval/file-hashes.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._data: dict[str, str] = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            self._data = {}
        self._dirty = False

    def sha256(self, f: Path) -> str:
        st = f.stat()
        key = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key not in self._data:
            h = hashlib.sha256()
            with f.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    h.update(block)
            self._data[key] = h.hexdigest()
            self._dirty = True
        return self._data[key]

    def save(self) -> None:
        if self._dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._data, indent=1), "utf-8")
            os.replace(tmp, self.path)


def _model_files(path: Path, cache: HashCache) -> list[dict[str, Any]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    root = path.parent if path.is_file() else path
    return [
        {"path": str(f.relative_to(root)), "size": f.stat().st_size, "sha256": cache.sha256(f)}
        for f in files
    ]


def describe_models(
    settings: Settings, embedder: Embedder | None, generator: Any, cache: HashCache
) -> dict[str, Any]:
    from models.bundled import resolve_embedder, resolve_generator

    out: dict[str, Any] = {}
    if embedder is not None:
        from models.variants import variant_of

        entry: dict[str, Any] = {
            "name": embedder.name,
            "setting": settings.embedder.model,
            "variant": variant_of(embedder.name),
        }
        if getattr(embedder, "variant", None) == "int8":
            entry["build"] = embedder.describe().get("path")
        from models.embedder import is_hash_model

        if not is_hash_model(settings.embedder.model):
            try:
                path = resolve_embedder(settings.embedder.model)
                entry["path"] = str(path)
                entry["files"] = _model_files(path, cache)
            except Exception as exc:  # a missing model folder only costs the file list
                entry["error"] = str(exc)
        out["embedder"] = entry
    if generator is not None:
        gentry: dict[str, Any] = {
            "name": getattr(generator, "name", type(generator).__name__),
            "setting": settings.generator.model,
            "context_size": getattr(generator, "context_size", None),
        }
        if settings.generator.model != "fake":
            try:
                gpath = resolve_generator(settings.generator.model)
                gentry["path"] = str(gpath)
                gentry["files"] = _model_files(gpath, cache)
            except Exception as exc:
                gentry["error"] = str(exc)
        out["generator"] = gentry
    return out
