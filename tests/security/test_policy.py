from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from enclave.errors import ConfigError, UsageError
from enclave.security.policy import AclPolicy, glob_to_regex

POLICY = """
[[rule]]
glob = "/shares/hr/**"
groups = ["hr"]

[[rule]]
glob = "/shares/finance/**"
groups = ["finance", "board"]

[[rule]]
glob = "**/public/**"
public = true

[[rule]]
glob = "*.handbook.md"
groups = ["staff"]
public = true
"""


@pytest.fixture
def policy() -> AclPolicy:
    return AclPolicy.from_toml(POLICY)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/shares/hr/pay/2024.xlsx", ["hr"]),
        ("/shares/hr/public/holidays.md", ["hr", "public"]),
        ("/shares/finance/q3.pdf", ["board", "finance"]),
        ("/srv/wiki/public/faq.md", ["public"]),
        ("/srv/x/welcome.handbook.md", ["public", "staff"]),
        # nothing matches: admins only (fail closed)
        ("/shares/hrx/secret.txt", []),
        ("/other/shares/hr/copy.txt", []),
        ("/srv/wiki/publications/x.md", []),
        ("/srv/wiki/public", []),
    ],
)
def test_groups_for(policy: AclPolicy, path: str, expected: list[str]) -> None:
    assert policy.groups_for(path) == expected


def test_cli_groups_are_unioned_and_validated(policy: AclPolicy) -> None:
    assert policy.groups_for("/shares/hr/a.txt", ["legal", "hr"]) == ["hr", "legal"]
    assert policy.groups_for("/nowhere/a.txt", ["legal"]) == ["legal"]
    assert AclPolicy.empty().groups_for("/shares/hr/a.txt") == []
    assert AclPolicy.load(None).groups_for("/x", ["ops"]) == ["ops"]
    with pytest.raises(UsageError, match="invalid group name"):
        policy.groups_for("/shares/hr/a.txt", ["x') OR true --"])
    assert policy.groups_for(Path("/shares/hr/b.txt")) == ["hr"]


@pytest.mark.parametrize(
    ("glob", "yes", "no"),
    [
        ("/a/*.txt", ["/a/b.txt"], ["/a/b/c.txt", "/a/b.txtx"]),
        ("/a/**/c.txt", ["/a/c.txt", "/a/b/c.txt", "/a/b/d/c.txt"], ["/a/bc.txt"]),
        ("/a/[!x]?.md", ["/a/yz.md"], ["/a/xz.md", "/a//z.md"]),
        ("docs/", ["/r/docs/a", "/docs/b/c"], ["/r/docsx/a"]),
        ("/a/b[1-3].md", ["/a/b2.md"], ["/a/b4.md"]),
        ("/a (copy)/+x.txt", ["/a (copy)/+x.txt"], ["/a copy/x.txt"]),
    ],
)
def test_glob_syntax(glob: str, yes: list[str], no: list[str]) -> None:
    rx = glob_to_regex(glob)
    assert all(rx.match(p) for p in yes)
    assert not any(rx.match(p) for p in no)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\nglob = "/a/**"\ngroups = ["hr", "x\') OR true --"]', "invalid group name"),
        ('[[rule]]\nglob = "/a/**"\ngroups = ["bad group"]', "invalid group name"),
        ('[[rule]]\nglob = "/a/**"', "give 'groups' or 'public = true'"),
        ('[[rule]]\nglob = ""\ngroups = ["hr"]', "'glob' must be a non-empty string"),
        ('[[rule]]\nglob = "/a/**"\ngroups = "hr"', "must be a list of strings"),
        ('[[rule]]\nglob = "/a/**"\npublic = "yes"', "'public' must be true or false"),
        ('[[rule]]\nglob = "/a/**"\ngroup = ["hr"]', "unknown key(s): group"),
        ('[[rules]]\nglob = "/a/**"', "unknown top-level key(s): rules"),
        ('[[rule]]\nglob = "/a/[x"\ngroups = ["hr"]', "unclosed '['"),
        ("[[rule]\n", "not valid TOML"),
    ],
)
def test_invalid_policies_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        AclPolicy.from_toml(text, source="p.toml")
    assert message in info.value.message and "p.toml" in info.value.message


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy file not found"):
        AclPolicy.load(tmp_path / "nope.toml")


def test_groups_for_is_fast(policy: AclPolicy) -> None:
    import time

    paths = [f"/shares/{d}/sub{i % 50}/file{i}.pdf" for i, d in enumerate(["hr", "x"] * 5000)]
    t0 = time.perf_counter()
    for p in paths:
        policy.groups_for(p)
    assert time.perf_counter() - t0 < 2.0


def test_policy_check_cli(cli_app: typer.Typer, tmp_path: Path) -> None:
    pfile = tmp_path / "policy.toml"
    pfile.write_text(POLICY)
    res = CliRunner().invoke(
        cli_app,
        ["policy", "check", str(pfile), "/shares/hr/a.txt", "/elsewhere/b.txt", "--json"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == {"rules": 4, "paths": {"/shares/hr/a.txt": ["hr"], "/elsewhere/b.txt": []}}
    res = CliRunner().invoke(cli_app, ["policy", "check", str(pfile), "/elsewhere/b.txt"])
    assert "(admins only)" in res.stdout
    pfile.write_text('[[rule]]\nglob = "/a"\ngroups = ["no way"]\n')
    res = CliRunner().invoke(cli_app, ["policy", "check", str(pfile)])
    assert res.exit_code == 2 and "invalid group name" in res.stderr
