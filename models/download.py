"""Model files on disk: a cheap GGUF header reader and the explicit ``enclave models pull``.

The header reader reads only the metadata key/values at the start of a GGUF (no tensors), so
listing models never loads one. :func:`pull` is the only code in Enclave that reaches the
network, and it runs only when the user asks for it.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from enclave.errors import EnclaveError, UsageError

GGUF_MAGIC = b"GGUF"
DEFAULT_BASE_URL = "https://huggingface.co"

#: llama.cpp's ``general.file_type`` values (enum llama_ftype)
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE",
}  # fmt: skip

# GGUF value types -> struct format of fixed-size scalars
_SCALARS: dict[int, str] = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9


class DownloadError(EnclaveError):
    """A model download failed (not found, refused, network); exit code 1."""

    exit_code = 1


class GGUFError(ValueError):
    """The file is not a readable GGUF."""


def is_gguf(path: Path) -> bool:
    """True when ``path`` starts with the GGUF magic."""
    try:
        with path.open("rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _read(fh: IO[bytes], n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise GGUFError("truncated GGUF header")
    return data


def _read_string(fh: IO[bytes]) -> str:
    (n,) = struct.unpack("<Q", _read(fh, 8))
    if n > 1 << 26:
        raise GGUFError("implausible string length in GGUF header")
    return _read(fh, n).decode("utf-8", errors="replace")


def _read_value(fh: IO[bytes], vtype: int) -> Any:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack(fmt, _read(fh, struct.calcsize(fmt)))[0]
    if vtype == _STRING:
        return _read_string(fh)
    if vtype == _ARRAY:
        (itype,) = struct.unpack("<I", _read(fh, 4))
        (count,) = struct.unpack("<Q", _read(fh, 8))
        if itype in _SCALARS:  # skip the items: only the length is kept
            fh.seek(count * struct.calcsize(_SCALARS[itype]), os.SEEK_CUR)
        else:
            for _ in range(count):
                _read_value(fh, itype)
        return {"array_of": itype, "length": count}
    raise GGUFError(f"unknown GGUF value type {vtype}")


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The metadata key/values of a GGUF (arrays summarised by their length)."""
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise GGUFError(f"{path} is not a GGUF file")
        (version,) = struct.unpack("<I", _read(fh, 4))
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        tensors, kv_count = struct.unpack("<QQ", _read(fh, 16))
        meta: dict[str, Any] = {"GGUF.version": version, "GGUF.tensor_count": tensors}
        for _ in range(kv_count):
            key = _read_string(fh)
            (vtype,) = struct.unpack("<I", _read(fh, 4))
            meta[key] = _read_value(fh, vtype)
        return meta


def gguf_summary(path: Path) -> dict[str, Any]:
    """What ``enclave models`` shows about a GGUF: architecture, context, quantization."""
    try:
        meta = read_gguf_metadata(path)
    except (OSError, GGUFError) as exc:
        return {"error": str(exc)}
    arch = meta.get("general.architecture")
    ftype = meta.get("general.file_type")
    return {
        "name": meta.get("general.name"),
        "architecture": arch,
        "context_length": meta.get(f"{arch}.context_length") if arch else None,
        "quantization": FILE_TYPES.get(ftype, str(ftype)) if isinstance(ftype, int) else None,
        "size_label": meta.get("general.size_label"),
        "chat_template": isinstance(meta.get("tokenizer.chat_template"), str),
        "tensors": meta.get("GGUF.tensor_count"),
    }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# pull

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def local_dir_name(repo: str) -> str:
    """Folder of a repository under ``<data_dir>/models``: ``owner/name`` -> ``owner__name``."""
    return repo.replace("/", "__")


def check_repo_file(repo: str, filename: str) -> PurePosixPath:
    if not _REPO.match(repo) or ".." in repo:
        raise UsageError(f"repository must look like owner/name (got {repo!r})")
    rel = PurePosixPath(filename)
    if not filename or rel.is_absolute() or any(p in ("", ".", "..") for p in rel.parts):
        raise UsageError(f"file must be a relative path inside the repository (got {filename!r})")
    return rel


@dataclass
class PullResult:
    path: Path
    sha256: str
    size: int
    resumed_from: int = 0
    already_present: bool = False
    notes: list[str] = field(default_factory=list)


ProgressHook = Callable[[int, int | None], None]  # (bytes so far, total or None)


def _expected_sha(headers: list[Any]) -> str | None:
    """The SHA-256 Hugging Face announces for LFS files (``X-Linked-Etag``), if any."""
    for h in headers:
        for name in ("x-linked-etag", "etag"):
            value = str(h.get(name, "")).strip().strip('"').removeprefix("W/").strip('"')
            if re.fullmatch(r"[0-9a-f]{64}", value):
                return value
    return None


def pull(
    repo: str,
    filename: str,
    *,
    models_dir: Path,
    revision: str = "main",
    base_url: str = DEFAULT_BASE_URL,
    token: str | None = None,
    force: bool = False,
    timeout_s: float = 30.0,
    on_progress: ProgressHook | None = None,
) -> PullResult:
    """Download ``{base_url}/{repo}/resolve/{revision}/{filename}`` into
    ``models_dir/<owner__name>/<filename>``.

    A ``.part`` file from an interrupted run is resumed with an HTTP Range request; the file
    is moved into place only once complete and verified to be a GGUF (and to match the
    SHA-256 the server announces, when it does). Raises :class:`DownloadError`.
    """
    import httpx

    rel = check_repo_file(repo, filename)
    if not revision or ".." in revision or revision.startswith("/") or re.search(r"\s", revision):
        raise UsageError(f"invalid revision {revision!r}")
    target = models_dir / local_dir_name(repo) / Path(*rel.parts)
    if target.exists() and not force:
        if not is_gguf(target):
            raise DownloadError(f"{target} exists and is not a GGUF file; use --force")
        return PullResult(
            path=target,
            sha256=sha256_file(target),
            size=target.stat().st_size,
            already_present=True,
        )
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    url = f"{base_url.rstrip('/')}/{repo}/resolve/{revision}/{rel.as_posix()}"
    headers = {"User-Agent": "enclave-models-pull"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    notes: list[str] = []
    resumed_from = 0
    expected: str | None = None
    try:
        with httpx.Client(
            follow_redirects=True, timeout=httpx.Timeout(timeout_s, read=timeout_s * 2)
        ) as client:
            req_headers = dict(headers)
            if offset:
                req_headers["Range"] = f"bytes={offset}-"
            with client.stream("GET", url, headers=req_headers) as resp:
                expected = _expected_sha([*(r.headers for r in resp.history), resp.headers])
                if resp.status_code == 416 and offset:
                    # the .part may already hold everything; otherwise start again
                    total = _range_total(resp.headers.get("content-range"))
                    if total != offset:
                        part.unlink()
                        again = pull(
                            repo,
                            filename,
                            models_dir=models_dir,
                            revision=revision,
                            base_url=base_url,
                            token=token,
                            force=force,
                            timeout_s=timeout_s,
                            on_progress=on_progress,
                        )
                        again.notes.append("the partial download did not match; restarted")
                        return again
                    resumed_from = offset
                else:
                    _raise_for_status(resp.status_code, url, repo, filename, revision, token)
                    mode = "ab"
                    if offset and resp.status_code == 206:
                        start = _range_start(resp.headers.get("content-range"))
                        if start != offset:
                            mode, offset = "wb", 0
                            notes.append("server answered another range; restarted")
                        else:
                            resumed_from = offset
                    elif offset:
                        mode, offset = "wb", 0
                        notes.append("server does not resume downloads; restarted")
                    length = resp.headers.get("content-length")
                    total = offset + int(length) if length and length.isdigit() else None
                    done = offset
                    part.parent.mkdir(parents=True, exist_ok=True)
                    with part.open(mode) as fh:
                        if on_progress:
                            on_progress(done, total)
                        for chunk in resp.iter_bytes():
                            fh.write(chunk)
                            done += len(chunk)
                            if on_progress:
                                on_progress(done, total)
    except httpx.HTTPError as exc:
        kept = ""
        if part.exists():
            kept = f"; {part.stat().st_size} bytes kept in {part}, run the command again to resume"
        raise DownloadError(f"network failure downloading {url}: {exc}{kept}") from exc
    except OSError as exc:
        raise DownloadError(f"cannot write {part}: {exc}") from exc

    if not is_gguf(part):
        part.unlink()
        raise DownloadError(f"{url} is not a GGUF file (llama.cpp models are .gguf); removed")
    digest = sha256_file(part)
    if expected and digest != expected:
        part.unlink()
        raise DownloadError(
            f"checksum mismatch for {url}: got sha256 {digest}, the server announced {expected}"
        )
    if expected:
        notes.append("sha256 matches the server's")
    os.replace(part, target)
    return PullResult(
        path=target,
        sha256=digest,
        size=target.stat().st_size,
        resumed_from=resumed_from,
        notes=notes,
    )


def _range_start(content_range: str | None) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(?:\d+|\*)", content_range or "")
    return int(m.group(1)) if m else None


def _range_total(content_range: str | None) -> int | None:
    m = re.match(r"bytes (?:\*|\d+-\d+)/(\d+)", content_range or "")
    return int(m.group(1)) if m else None


def _raise_for_status(
    status: int, url: str, repo: str, filename: str, revision: str, token: str | None
) -> None:
    if status in (200, 206):
        return
    if status == 404:
        raise DownloadError(
            f"not found (404): {filename} in {repo} at revision {revision} ({url}); "
            "check the repository and file names"
            + ("" if token else ", or set HF_TOKEN if the repository is private or gated")
        )
    if status in (401, 403):
        hint = (
            "the token in HF_TOKEN was refused or lacks access to this repository"
            if token
            else "the repository is private or gated: set HF_TOKEN to an access token"
        )
        raise DownloadError(f"access denied ({status}) for {url}: {hint}")
    raise DownloadError(f"download failed: HTTP {status} for {url}")
