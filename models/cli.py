"""``enclave models``: what models are configured and on disk; ``enclave models pull``.

``pull`` is the one command that reaches the network, and only when the user runs it.

Exit codes: 0 success, 1 download failure, 2 usage error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from enclave.cli_options import ConfigOpt, DataDirOpt, build_settings, fail
from enclave.errors import EnclaveError

if TYPE_CHECKING:
    from enclave.settings import EmbedderSettings

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe_embedder(settings: EmbedderSettings, bound: str | None = None) -> dict[str, Any]:
    """The configured embedder, located on disk (not loaded): its folder, the variant it
    runs in for an index bound to ``bound`` (None: a new index) and, for int8, where its build
    lives and whether it is built."""
    from models.bundled import BUNDLED_EMBEDDER_NAME, resolve_embedder
    from models.variants import resolve_variant

    model = settings.model
    info: dict[str, Any] = {"setting": model, "bundled": model == "bundled"}
    from models.embedder import is_hash_model

    if is_hash_model(model):
        return {**info, "name": "hash (test embedder)", "path": None}
    try:
        path = resolve_embedder(model)
    except EnclaveError as exc:
        return {**info, "path": None, "error": exc.message}
    name = BUNDLED_EMBEDDER_NAME if model == "bundled" else path.name
    variant = resolve_variant(settings, bound)
    info.update(
        name=name,
        path=str(path),
        size_bytes=_dir_size(path),
        variant_setting=settings.variant,
        variant=variant,
        index_embedder=bound,
    )
    if variant == "int8":
        from models.int8 import build_folder
        from models.onnx_embedder import read_manifest

        folder = build_folder(path, name, settings.cache_dir)
        manifest = read_manifest(folder)
        info["int8"] = {
            "path": str(folder),
            "built": manifest is not None,
            "size_bytes": _dir_size(folder) if manifest is not None else None,
            "check": (manifest or {}).get("check"),
        }
    return info


def describe_gguf(path: Path) -> dict[str, Any]:
    from models.download import gguf_summary

    return {"path": str(path), "size_bytes": path.stat().st_size, **gguf_summary(path)}


def describe_generator(model: str) -> dict[str, Any]:
    """The configured generator GGUF with its header metadata (the model is not loaded)."""
    from models.llama_cpp import resolve_generator_path

    info: dict[str, Any] = {"setting": model, "bundled": model == "bundled"}
    if model == "fake":
        return {**info, "name": "fake (test generator)", "path": None}
    try:
        path = resolve_generator_path(model)
    except EnclaveError as exc:
        return {**info, "path": None, "error": exc.message}
    return {**info, **describe_gguf(path)}


def downloaded_models(models_dir: Path) -> list[dict[str, Any]]:
    """GGUF files under ``<data_dir>/models`` (and unfinished ``.part`` downloads)."""
    out: list[dict[str, Any]] = []
    if not models_dir.is_dir():
        return out
    for f in sorted(models_dir.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(models_dir)
        repo = rel.parts[0].replace("__", "/") if len(rel.parts) > 1 else None
        if f.name.endswith(".part"):
            out.append(
                {"path": str(f), "repo": repo, "size_bytes": f.stat().st_size, "partial": True}
            )
        elif f.suffix.lower() == ".gguf":
            out.append({"repo": repo, "partial": False, **describe_gguf(f)})
    return out


def models_report(settings: Any) -> dict[str, Any]:
    from store.records import read_index_meta

    models_dir = Path(settings.data_dir) / "models"
    bound = read_index_meta(settings.index).get("embedder")
    return {
        "embedder": describe_embedder(settings.embedder, str(bound) if bound else None),
        "generator": describe_generator(settings.generator.model),
        "models_dir": str(models_dir),
        "downloaded": downloaded_models(models_dir),
    }


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return "–"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, soft_wrap=True, highlight=False)
    table = Table(title="Configured models", title_justify="left")
    for col in ("role", "model", "path", "size", "details"):
        table.add_column(col, overflow="fold")
    for role in ("embedder", "generator"):
        m = report[role]
        if m.get("error"):
            details = f"[red]{m['error']}[/]"
        elif role == "generator" and m.get("path"):
            details = _gguf_details(m)
        elif role == "embedder" and m.get("variant"):
            details = _variant_details(m)
        else:
            details = ""
        label = Path(m["path"]).name if role == "generator" and m.get("path") else None
        label = label or m.get("name") or m["setting"]
        if m.get("bundled"):
            label = f"{label} (bundled)"
        table.add_row(role, str(label), m.get("path") or "–", _size(m.get("size_bytes")), details)
    console.print(table)
    downloaded = report["downloaded"]
    if not downloaded:
        console.print(f"No downloaded models in {report['models_dir']}")
        return
    files = Table(title=f"Downloaded models ({report['models_dir']})", title_justify="left")
    for col in ("repository", "path", "size", "details"):
        files.add_column(col, overflow="fold")
    for m in downloaded:
        details = "[yellow]partial download[/]" if m["partial"] else _gguf_details(m)
        files.add_row(m.get("repo") or "–", m["path"], _size(m.get("size_bytes")), details)
    console.print(files)


def _variant_details(m: dict[str, Any]) -> str:
    why = "follows the index" if m.get("index_embedder") else "default for a new index"
    text = str(m["variant"]) + (f" (auto: {why})" if m.get("variant_setting") == "auto" else "")
    int8 = m.get("int8")
    if int8:
        if int8["built"]:
            check = int8.get("check") or {}
            text += f", built: {int8['path']} ({_size(int8['size_bytes'])}"
            if check:
                text += f", cosine to fp32 >= {check['cosine_min']:.3f}"
            text += ")"
        else:
            text += f", not built yet (enclave models build-int8): {int8['path']}"
    return text


def _gguf_details(m: dict[str, Any]) -> str:
    if m.get("error"):
        return f"[red]{m['error']}[/]"
    parts = [
        f"arch {m['architecture']}" if m.get("architecture") else "",
        f"ctx {m['context_length']}" if m.get("context_length") else "",
        str(m["quantization"]) if m.get("quantization") else "",
        "" if m.get("chat_template") else "no chat template",
    ]
    return ", ".join(p for p in parts if p)


def register(app: typer.Typer) -> None:
    """Add ``enclave models`` (list, pull) to the main app."""
    models_app = typer.Typer(
        help="Show the configured models and download GGUF models (explicitly).",
        no_args_is_help=False,
        invoke_without_command=True,
    )

    @models_app.callback()
    def models_main(
        ctx: typer.Context,
        as_json: JsonOpt = False,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """List the configured embedder and generator and the downloaded GGUF files."""
        if ctx.invoked_subcommand is None:
            _list(as_json, config, data_dir)

    @models_app.command("list")
    def list_cmd(
        as_json: JsonOpt = False,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """List the configured embedder and generator and the downloaded GGUF files."""
        _list(as_json, config, data_dir)

    @models_app.command("pull")
    def pull_cmd(
        repo: Annotated[str, typer.Argument(help="Hugging Face repository, owner/name")],
        file: Annotated[str, typer.Argument(help="file in the repository, e.g. x.Q4_K_M.gguf")],
        revision: Annotated[str, typer.Option(help="branch, tag or commit")] = "main",
        base_url: Annotated[
            str | None,
            typer.Option(help="hub address (default: $HF_ENDPOINT or https://huggingface.co)"),
        ] = None,
        force: Annotated[bool, typer.Option(help="download again if the file exists")] = False,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Download a GGUF into <data_dir>/models/<owner__name>/ (resumable).

        This is an explicit user action: it reaches the network even when HF_HUB_OFFLINE is
        set. HF_TOKEN, when set, is sent as a bearer token.
        """
        from models.download import DEFAULT_BASE_URL, pull

        try:
            settings = build_settings(config, data_dir)
            models_dir = Path(settings.data_dir) / "models"
            base = base_url or os.environ.get("HF_ENDPOINT") or DEFAULT_BASE_URL
            with _Progress(f"{repo}/{file}") as progress:
                result = pull(
                    repo,
                    file,
                    models_dir=models_dir,
                    revision=revision,
                    base_url=base,
                    token=os.environ.get("HF_TOKEN") or None,
                    force=force,
                    on_progress=progress.update,
                )
        except EnclaveError as exc:
            raise fail(exc) from None
        if result.already_present:
            typer.echo(f"already present: {result.path} (use --force to download again)")
        else:
            if result.resumed_from:
                typer.echo(f"resumed at byte {result.resumed_from}")
            typer.echo(f"downloaded: {result.path} ({_size(result.size)})")
        for note in result.notes:
            typer.echo(note)
        typer.echo(f"sha256: {result.sha256}")
        typer.echo(f"use it: ENCLAVE_GENERATOR__MODEL={result.path}")

    @models_app.command("build-int8")
    def build_int8_cmd(
        force: Annotated[bool, typer.Option(help="build again even if a build exists")] = False,
        as_json: JsonOpt = False,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Build the int8 variant of the configured embedder now (ONNX export and
        quantisation, once per model, about 30 s on 2 cores) and check it on this machine.

        The first ingest or server start builds it otherwise. Offline: it needs only the
        model folder. The build lands in embedder.cache_dir, keyed by the model's files.
        """
        try:
            settings = build_settings(config, data_dir)
            report = build_int8(settings.embedder, force=force)
        except EnclaveError as exc:
            raise fail(exc) from None
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        check = report["check"]
        typer.echo(f"int8 embedder: {report['path']} ({_size(report['size_bytes'])})")
        typer.echo(f"name recorded in an index: {report['name']}")
        typer.echo(
            f"cosine to fp32 on {check['texts']} check texts: min {check['cosine_min']:.4f}, "
            f"mean {check['cosine_mean']:.4f}; on this machine: min "
            f"{report['cosine_min_here']:.4f}"
        )
        typer.echo(
            "built in {:.1f} s".format(report["build_seconds"])
            if report["built_now"]
            else "already built (use --force to build again)"
        )

    app.add_typer(models_app, name="models")


def build_int8(settings: EmbedderSettings, *, force: bool = False) -> dict[str, Any]:
    """Build (or find) the int8 embedder of ``settings.model`` and check it on this machine."""
    import time

    from enclave.errors import ConfigError
    from models.embedder import is_hash_model, model_source
    from models.int8 import (
        build_folder,
        check_on_this_machine,
        ensure_int8_model,
        load_int8_embedder,
    )
    from models.onnx_embedder import read_manifest
    from models.variants import variant_name

    if is_hash_model(settings.model):
        raise ConfigError(f"the test embedder {settings.model!r} has no int8 variant")
    path, label, identity = model_source(settings)
    built_now = force or read_manifest(build_folder(path, label, settings.cache_dir)) is None
    t0 = time.perf_counter()
    if force:
        ensure_int8_model(
            path,
            label=label,
            identity=identity,
            cache_dir=settings.cache_dir,
            threads=settings.threads,
            force=True,
        )
    emb = load_int8_embedder(  # builds when missing; refuses a build that drifts here
        path,
        label=label,
        identity=identity,
        name=variant_name(identity, "int8"),
        cache_dir=settings.cache_dir,
        threads=settings.threads,
    )
    return {
        "path": str(emb.folder),
        "name": emb.name,
        "size_bytes": _dir_size(emb.folder),
        "built_now": built_now,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "check": emb.manifest["check"],
        "cosine_min_here": round(check_on_this_machine(emb), 5),
        "manifest": emb.manifest,
    }


def _list(as_json: bool, config: Path | None, data_dir: Path | None) -> None:
    try:
        settings = build_settings(config, data_dir)
        report = models_report(settings)
    except EnclaveError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_report(report)


class _Progress:
    """A rich progress bar on stderr fed by the downloader's (done, total) callbacks."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self._task = self._progress.add_task(label, total=None)

    def __enter__(self) -> _Progress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, done: int, total: int | None) -> None:
        self._progress.update(self._task, completed=done, total=total)
