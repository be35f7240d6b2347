"""The Dockerfile, checked without a Docker engine: it is parsed and held against the repository
(build context, .dockerignore), pyproject.toml, the Makefile and the server's settings.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

from enclave.offline import offline_env
from enclave.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            out.update(parse_env(ins.args))
        return out


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages). Continuation lines are joined; comment lines dropped."""
    logical: list[tuple[str, int]] = []
    buf = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue  # Docker drops comment lines, even inside a continuation
        if not buf:
            start = number
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        buf += raw
        logical.append((buf.strip(), start))
        buf = ""
    assert not buf, "the Dockerfile ends inside a line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, number in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
            continue
        if not stages:
            assert keyword == "ARG", f"line {number}: only ARG may come before the first FROM"
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip().strip('"')
            continue
        stages[-1].instructions.append(Instruction(keyword, args, number))
    return global_args, stages


def parse_env(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy "ENV KEY value"
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def exec_form(args: str) -> list[str]:
    """An exec-form (JSON array) instruction argument; shell form is a failure here."""
    import json

    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (negated, regex) pairs; Docker's rules: last match wins, `!` re-includes,
    a pattern that matches a directory excludes everything below it."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    if not DOCKERIGNORE.is_file():
        return rules
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((negated, re.compile(regex + r"\Z")))
    return rules


def is_ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = rel.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negated, regex in rules:
        if any(regex.match(c) for c in candidates):
            ignored = not negated
    return ignored


@pytest.fixture(scope="module")
def parsed() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(parsed: tuple[dict[str, str], list[Stage]]) -> Stage:
    return parsed[1][-1]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def copy_sources(stage: Stage) -> list[str]:
    sources: list[str] = []
    for ins in stage.all("COPY") + stage.all("ADD"):
        words = shlex.split(ins.args)
        if any(w.startswith("--from") for w in words):
            continue
        plain = [w for w in words if not w.startswith("--")]
        sources.extend(plain[:-1])
    return sources


def test_multi_stage_with_a_slim_runtime(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = parsed
    assert len(stages) >= 2
    names = {s.name for s in stages if s.name}
    final_stage = stages[-1]
    froms = [w for i in final_stage.all("COPY") for w in i.args.split() if w.startswith("--from=")]
    assert froms, "the runtime stage copies nothing from the builder"
    assert {f.split("=", 1)[1] for f in froms} <= names
    # base images are build arguments, so a CUDA base can be swapped in
    assert stages[0].base == "${BASE_IMAGE}" and "BASE_IMAGE" in global_args
    assert final_stage.base == "${RUNTIME_IMAGE}" and "RUNTIME_IMAGE" in global_args
    assert "slim" in global_args["RUNTIME_IMAGE"]
    # no compiler in the runtime stage
    runtime_runs = " ".join(i.args for i in final_stage.all("RUN"))
    assert "build-essential" not in runtime_runs


def test_every_copied_source_is_in_the_build_context(
    parsed: tuple[dict[str, str], list[Stage]],
) -> None:
    rules = ignore_patterns()
    sources = [src for stage in parsed[1] for src in copy_sources(stage)]
    assert sources
    for src in sources:
        path = ROOT / src
        assert path.exists(), f"COPY source {src} is missing from the repository"
        rel = path.relative_to(ROOT).as_posix()
        assert not is_ignored(rel, rules), f"COPY source {src} is excluded by .dockerignore"
        if path.is_dir():
            kept = [
                p
                for p in path.rglob("*.py")
                if not is_ignored(p.relative_to(ROOT).as_posix(), rules)
            ]
            assert kept, f"every Python file under {src} is excluded by .dockerignore"


def test_dockerignore_matcher_follows_docker_rules() -> None:
    rules = [
        (False, re.compile(r"tests\Z")),
        (False, re.compile(r"(?:.*/)?__pycache__\Z")),
        (True, re.compile(r"tests/keep\.py\Z")),
    ]
    assert is_ignored("tests/test_x.py", rules)
    assert is_ignored("server/__pycache__/app.cpython-311.pyc", rules)
    assert not is_ignored("tests/keep.py", rules)
    assert not is_ignored("server/app.py", rules)


def test_the_image_holds_the_whole_project(
    parsed: tuple[dict[str, str], list[Stage]], pyproject: dict[str, object]
) -> None:
    """Every package setuptools would install and the readme it needs are copied in."""
    copied = {Path(s).as_posix().strip("/") for st in parsed[1] for s in copy_sources(st)}
    project = pyproject["project"]
    assert isinstance(project, dict)
    assert project["readme"] in copied
    assert "pyproject.toml" in copied
    setuptools_cfg = pyproject["tool"]["setuptools"]  # type: ignore[index]
    includes = setuptools_cfg["packages"]["find"]["include"]
    packages = [
        d.name
        for d in ROOT.iterdir()
        if d.is_dir()
        and (d / "__init__.py").is_file()
        and any(re.fullmatch(p.replace("*", ".*"), d.name) for p in includes)
    ]
    assert "server" in packages and "enclave" in packages
    missing = sorted(set(packages) - copied)
    assert not missing, f"packages not copied into the image: {missing}"
    # the web UI ships as package data of `server`
    assert (ROOT / "server" / "static" / "index.html").is_file()


def test_entrypoint_is_the_enclave_cli(final: Stage, pyproject: dict[str, object]) -> None:
    (entrypoint,) = final.all("ENTRYPOINT")
    assert exec_form(entrypoint.args) == ["enclave"]
    scripts = pyproject["project"]["scripts"]  # type: ignore[index]
    target = scripts["enclave"]
    module_name, _, func = target.partition(":")
    import importlib

    assert callable(getattr(importlib.import_module(module_name), func))
    (cmd,) = final.all("CMD")
    args = exec_form(cmd.args)
    assert args[0] == "serve"
    assert args[args.index("--host") + 1] == "0.0.0.0"


def test_ports_agree(final: Stage) -> None:
    default_port = ServerSettings().port
    (expose,) = final.all("EXPOSE")
    assert expose.args.split() == [str(default_port)]
    args = exec_form(final.all("CMD")[0].args)
    assert args[args.index("--port") + 1] == str(default_port)
    (health,) = final.all("HEALTHCHECK")
    urls = re.findall(r"https?://[^\s'\"]+", health.args)
    assert urls, health.args
    url = urlparse(urls[0])
    assert url.hostname == "127.0.0.1" and url.port == default_port
    assert url.path == "/healthz"


def test_healthcheck_needs_only_python(final: Stage) -> None:
    (health,) = final.all("HEALTHCHECK")
    _, _, command = health.args.partition("CMD ")
    argv = exec_form(command.strip())
    assert argv[0] == "python"
    assert "curl" not in health.args and "wget" not in health.args
    # the command itself is valid Python
    compile(argv[argv.index("-c") + 1], "<healthcheck>", "exec")


def test_runs_as_a_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the image runs as root"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"
    runs = " ".join(i.args for i in final.all("RUN"))
    assert "--uid 10001" in runs


def test_data_directory_is_a_volume(final: Stage) -> None:
    env = final.env()
    data_dir = env["ENCLAVE_DATA_DIR"]
    volumes: list[str] = []
    for ins in final.all("VOLUME"):
        volumes += exec_form(ins.args) if ins.args.startswith("[") else ins.args.split()
    assert data_dir in volumes
    # writable by the non-root user, so a fresh named volume inherits the ownership
    runs = " ".join(i.args for i in final.all("RUN"))
    assert re.search(rf"chown\s+10001(:10001)?\s+{re.escape(data_dir)}", runs)


def test_no_egress_environment(final: Stage) -> None:
    env = final.env()
    egress = ("OFFLINE", "TELEMETRY", "TRACK", "ANALYTICS")
    switches = {k: v for k, v in offline_env().items() if any(m in k for m in egress)}
    assert len(switches) >= 4
    for key, value in switches.items():
        assert env.get(key) == value, f"{key} should be {value!r} in the image"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["SCARF_NO_ANALYTICS"] == "true"


def test_cuda_build_argument(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    builder = parsed[1][0]
    args = {i.args.split("=")[0] for i in builder.all("ARG")}
    assert "LLAMA_CUDA" in args
    runs = [i.args for i in builder.all("RUN")]
    llama = [r for r in runs if "llama-cpp-python" in r]
    assert llama, "llama-cpp-python is not built in the builder"
    assert "LLAMA_CUDA" in llama[0] and "-DGGML_CUDA=on" in llama[0]


def test_pins_match_the_makefile(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    """CPU torch from the PyTorch index, the same versions `make install` uses."""
    makefile = (ROOT / "Makefile").read_text()
    builder = parsed[1][0]
    defaults = {
        k.strip(): v.strip().strip('"')
        for k, _, v in (i.args.partition("=") for i in builder.all("ARG"))
    }
    torch_pin = re.search(r"torch==([\d.]+)", makefile)
    assert torch_pin and defaults["TORCH_VERSION"] == torch_pin.group(1)
    assert defaults["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    inference_pin = re.search(r"unstructured-inference==([\d.]+)", makefile)
    assert inference_pin
    assert defaults["UNSTRUCTURED_INFERENCE_VERSION"] == inference_pin.group(1)
    runs = " ".join(i.args for i in builder.all("RUN"))
    assert '"torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"' in runs
    assert "--no-deps" in runs and "unstructured-inference==" in runs


def test_parser_sees_continuations_and_exec_forms() -> None:
    text = (
        "ARG BASE=python:3.11-slim\n"
        "FROM ${BASE} AS b\n"
        "# comment\n"
        "ENV A=1 \\\n"
        "    # comment inside a continuation\n"
        '    B="two words"\n'
        "FROM ${BASE}\n"
        'CMD ["serve", "--port", "8000"]\n'
    )
    global_args, stages = parse_dockerfile(text)
    assert global_args == {"BASE": "python:3.11-slim"}
    assert [s.name for s in stages] == ["b", None]
    assert stages[0].env() == {"A": "1", "B": "two words"}
    assert exec_form(stages[1].all("CMD")[0].args) == ["serve", "--port", "8000"]


def test_cmd_is_accepted_by_the_serve_command(final: Stage) -> None:
    """The image's CMD parses with the real `enclave serve` options (nothing is started)."""
    import typer

    from server.cli import register

    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """enclave"""

    register(app)
    group = typer.main.get_command(app)
    args = exec_form(final.all("CMD")[0].args)
    ctx = group.make_context("enclave", list(args))
    command = group.get_command(ctx, args[0])  # type: ignore[attr-defined]
    assert command is not None, f"no `enclave {args[0]}` command"
    sub = command.make_context(args[0], list(args[1:]), parent=ctx)
    assert sub.params["host"] == "0.0.0.0"
    assert sub.params["port"] == ServerSettings().port
