"""``enclave models pull`` and ``enclave models list`` against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from models.cli import register
from models.download import gguf_summary, read_gguf_metadata

REPO = "acme/tiny-chat-GGUF"
FILE = "tiny-chat.Q4_K_M.gguf"


def make_gguf(size: int = 300_000) -> bytes:
    """A small GGUF v3 with a real metadata header (no tensors), padded to ``size`` bytes."""

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kvs = [
        s("general.architecture") + struct.pack("<I", 8) + s("llama"),
        s("general.name") + struct.pack("<I", 8) + s("Tiny Chat"),
        s("llama.context_length") + struct.pack("<II", 4, 2048),
        s("general.file_type") + struct.pack("<II", 4, 15),
        # an array of strings, as tokenizer.ggml.tokens is
        s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + s("a") + s("b") + s("c"),
        s("tokenizer.chat_template") + struct.pack("<I", 8) + s("{{ messages }}"),
    ]
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)
    body = bytes((i * 7) % 251 for i in range(size - len(head)))
    return head + body


@dataclass
class Hub:
    """Files served at /{repo}/resolve/{revision}/{file}, like a model hub."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict[str, str | None]] = field(default_factory=list)
    #: close the connection after sending this many body bytes (simulates a network cut)
    cut_after: int | None = None
    token: str | None = None
    base_url: str = ""


@pytest.fixture
def hub() -> Iterator[Hub]:
    state = Hub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append(
                {
                    "path": self.path,
                    "range": self.headers.get("Range"),
                    "auth": self.headers.get("Authorization"),
                }
            )
            if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = state.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[len("bytes=") :].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.end_headers()
            body = data[start:]
            if state.cut_after is not None:
                self.wfile.write(body[: state.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return CliRunner()


def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """test root"""

    register(root)
    return root


def pull(cli: CliRunner, hub: Hub, data_dir: Path, *extra: str) -> tuple[int, str]:
    args = ["models", "pull", REPO, FILE, "--base-url", hub.base_url, "--data-dir", str(data_dir)]
    result = cli.invoke(app(), [*args, *extra])
    return result.exit_code, result.output


def target(data_dir: Path) -> Path:
    return data_dir / "models" / "acme__tiny-chat-GGUF" / FILE


def test_full_download_verifies_and_prints_sha256(cli: CliRunner, hub: Hub, data_dir: Path) -> None:
    data = make_gguf()
    hub.files[f"/{REPO}/resolve/main/{FILE}"] = data
    code, out = pull(cli, hub, data_dir)
    assert code == 0, out
    path = target(data_dir)
    assert path.read_bytes() == data
    assert not path.with_name(FILE + ".part").exists()
    assert f"sha256: {hashlib.sha256(data).hexdigest()}" in out
    assert "sha256 matches the server's" in out
    assert hub.requests[0]["range"] is None
    assert hub.requests[0]["auth"] is None

    # a second pull finds it and downloads nothing
    code, out = pull(cli, hub, data_dir)
    assert code == 0 and "already present" in out
    assert len(hub.requests) == 1


def test_resume_from_partial_file(cli: CliRunner, hub: Hub, data_dir: Path) -> None:
    data = make_gguf()
    hub.files[f"/{REPO}/resolve/v1.0/{FILE}"] = data
    part = target(data_dir).with_name(FILE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100_000])
    code, out = pull(cli, hub, data_dir, "--revision", "v1.0")
    assert code == 0, out
    assert hub.requests[-1]["range"] == "bytes=100000-"
    assert "resumed at byte 100000" in out
    assert target(data_dir).read_bytes() == data


def test_network_cut_keeps_part_and_next_run_resumes(
    cli: CliRunner, hub: Hub, data_dir: Path
) -> None:
    data = make_gguf()
    hub.files[f"/{REPO}/resolve/main/{FILE}"] = data
    hub.cut_after = 120_000
    code, out = pull(cli, hub, data_dir)
    assert code == 1
    assert "network failure" in out and "run the command again to resume" in out
    part = target(data_dir).with_name(FILE + ".part")
    assert part.stat().st_size == 120_000
    assert not target(data_dir).exists()

    hub.cut_after = None
    code, out = pull(cli, hub, data_dir)
    assert code == 0, out
    assert hub.requests[-1]["range"] == "bytes=120000-"
    assert target(data_dir).read_bytes() == data


def test_not_found_is_a_clear_error(cli: CliRunner, hub: Hub, data_dir: Path) -> None:
    code, out = pull(cli, hub, data_dir)
    assert code == 1
    assert "not found (404)" in out and FILE in out and "HF_TOKEN" in out
    assert not (data_dir / "models" / "acme__tiny-chat-GGUF" / (FILE + ".part")).exists()


def test_unreachable_server_is_a_network_failure(cli: CliRunner, data_dir: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["models", "pull", REPO, FILE, "--base-url", f"http://127.0.0.1:{port}"]
    result = cli.invoke(app(), [*args, "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert "network failure" in result.output
    assert not (data_dir / "models").exists()


def test_token_is_sent_and_refusal_explained(
    cli: CliRunner, hub: Hub, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_gguf()
    hub.files[f"/{REPO}/resolve/main/{FILE}"] = data
    hub.token = "secret-token"
    code, out = pull(cli, hub, data_dir)
    assert code == 1 and "access denied (401)" in out and "set HF_TOKEN" in out

    monkeypatch.setenv("HF_TOKEN", "secret-token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an explicit pull is not a hub access
    code, out = pull(cli, hub, data_dir)
    assert code == 0, out
    assert hub.requests[-1]["auth"] == "Bearer secret-token"


def test_non_gguf_is_refused_and_removed(cli: CliRunner, hub: Hub, data_dir: Path) -> None:
    hub.files[f"/{REPO}/resolve/main/{FILE}"] = b"<html>not a model</html>" * 100
    code, out = pull(cli, hub, data_dir)
    assert code == 1 and "not a GGUF" in out
    assert not target(data_dir).exists()
    assert not target(data_dir).with_name(FILE + ".part").exists()


def test_bad_repository_name_is_a_usage_error(cli: CliRunner, hub: Hub, data_dir: Path) -> None:
    result = cli.invoke(
        app(),
        [
            "models",
            "pull",
            "../etc",
            "x.gguf",
            "--base-url",
            hub.base_url,
            "--data-dir",
            str(data_dir),
        ],
    )
    assert result.exit_code == 2 and "owner/name" in result.output
    result = cli.invoke(
        app(),
        [
            "models",
            "pull",
            REPO,
            "../x.gguf",
            "--base-url",
            hub.base_url,
            "--data-dir",
            str(data_dir),
        ],
    )
    assert result.exit_code == 2 and "relative path" in result.output
    assert hub.requests == []


def test_list_shows_configured_and_pulled_models(cli: CliRunner, hub: Hub, data_dir: Path) -> None:
    hub.files[f"/{REPO}/resolve/main/{FILE}"] = make_gguf()
    assert pull(cli, hub, data_dir)[0] == 0
    partial = data_dir / "models" / "other__repo" / "big.gguf.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"GGUF")

    result = cli.invoke(app(), ["models", "list", "--json", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["generator"]["bundled"] is True
    assert report["generator"]["path"].endswith(".gguf")
    assert report["generator"]["architecture"] == "llama"
    assert report["generator"]["quantization"] == "Q4_1"
    assert report["embedder"]["bundled"] is True and report["embedder"]["size_bytes"] > 0
    pulled = {d["path"]: d for d in report["downloaded"]}
    mine = pulled[str(target(data_dir))]
    assert mine["repo"] == REPO and mine["partial"] is False
    assert mine["architecture"] == "llama" and mine["context_length"] == 2048
    assert mine["quantization"] == "Q4_K_M" and mine["chat_template"] is True
    assert pulled[str(partial)]["partial"] is True

    # the plain `enclave models` prints the same as a table
    result = cli.invoke(app(), ["models", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "Downloaded models" in result.output and "Q4_K_M" in result.output
    assert "partial download" in result.output


def test_list_reports_a_missing_generator_without_failing(
    cli: CliRunner, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENCLAVE_GENERATOR__MODEL", str(data_dir / "nope.gguf"))
    result = cli.invoke(app(), ["models", "list", "--json", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert "not found" in report["generator"]["error"]
    assert report["downloaded"] == []


def test_header_reader_reads_metadata_only(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(make_gguf())
    meta = read_gguf_metadata(path)
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.ggml.tokens"] == {"array_of": 8, "length": 3}
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert "truncated" in gguf_summary(bad)["error"]
