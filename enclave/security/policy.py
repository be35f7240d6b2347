"""Document ACL policy: which groups may read a document, decided by its path.

A TOML file of rules::

    [[rule]]
    glob = "/shares/hr/**"
    groups = ["hr"]

    [[rule]]
    glob = "**/public/**"
    public = true

A document's groups are the union of the groups of every rule whose glob matches its
(normalised, absolute, '/'-separated) path, plus the ``--groups`` given to ``enclave ingest``;
``public = true`` adds the reserved group ``public`` that every key can read. A document that
no rule matches and that got no ``--groups`` has no groups: only admins can read it (fail
closed).

Glob syntax: ``**`` matches any number of path segments (including none), ``*`` any characters
within one segment, ``?`` one character, ``[abc]`` / ``[!abc]`` a character class. A glob that
does not start with ``/`` or ``**`` matches at any depth (as if prefixed with ``**/``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from enclave.errors import ConfigError
from enclave.security.access import PUBLIC_GROUP
from enclave.security.keys import validate_groups
from store.records import valid_group

_RULE_KEYS = frozenset({"glob", "groups", "public", "comment"})


def glob_to_regex(glob: str) -> re.Pattern[str]:
    """Compile a path glob (see the module docstring) to an anchored regular expression."""
    glob = glob.strip()
    if not glob:
        raise ConfigError("empty glob")
    if glob.startswith("**"):
        glob = "/" + glob
    elif not glob.startswith("/"):
        glob = "/**/" + glob
    if glob.endswith("/"):
        glob += "**"
    segments = glob[1:].split("/")
    regex = "/"
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            regex += ".*" if last else "(?:[^/]*/)*"
        else:
            regex += _segment_regex(seg, glob) + ("" if last else "/")
    try:
        return re.compile(regex + r"\Z", re.DOTALL)
    except re.error as exc:
        raise ConfigError(f"invalid glob {glob!r}: {exc}") from exc


def _segment_regex(seg: str, glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            while i + 1 < n and seg[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            first = i + 2 if i + 1 < n and seg[i + 1] in "!^" else i + 1
            j = seg.find("]", first + 1)
            if j < 0:
                raise ConfigError(f"unclosed '[' in glob {glob!r}")
            body = seg[i + 1 : j]
            if body[:1] in ("!", "^"):
                body = "^/" + body[1:]  # a negated class still never matches '/'
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class AclRule:
    glob: str
    groups: tuple[str, ...] = ()
    public: bool = False
    pattern: re.Pattern[str] = field(default=re.compile(r"(?!)"), compare=False, repr=False)

    def matches(self, path: str) -> bool:
        return self.pattern.match(path) is not None

    def granted(self) -> tuple[str, ...]:
        return (*self.groups, PUBLIC_GROUP) if self.public else self.groups


class AclPolicy:
    """An ordered list of rules; :meth:`groups_for` is pure, thread-safe and cached per path."""

    _CACHE_MAX = 65536

    def __init__(self, rules: tuple[AclRule, ...] = (), source: str = "") -> None:
        self.rules = rules
        self.source = source
        self._cache: dict[str, tuple[str, ...]] = {}

    @classmethod
    def empty(cls) -> AclPolicy:
        """No rules: documents get only the groups given on the command line."""
        return cls()

    @classmethod
    def load(cls, path: Path | str | None) -> AclPolicy:
        """Read a policy file; ``None`` gives the empty policy. Raises ConfigError if invalid."""
        if path is None:
            return cls.empty()
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"policy file not found: {p}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read policy file {p}: {exc}") from exc
        return cls.from_toml(text, source=str(p))

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<policy>") -> AclPolicy:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
        extra = set(data) - {"rule"}
        if extra:
            raise ConfigError(f"{source}: unknown top-level key(s): {', '.join(sorted(extra))}")
        raw_rules = data.get("rule", [])
        if not isinstance(raw_rules, list):
            raise ConfigError(f"{source}: 'rule' must be an array of tables ([[rule]])")
        rules = tuple(_parse_rule(r, i, source) for i, r in enumerate(raw_rules, 1))
        return cls(rules=rules, source=source)

    def groups_for(
        self, path: str | PurePath, cli_groups: list[str] | tuple[str, ...] | None = None
    ) -> list[str]:
        """The sorted groups of the document at ``path`` (its normalised absolute path).

        ``[]`` means admins only. Raises UsageError on an invalid ``cli_groups`` name.
        """
        extra = validate_groups(list(cli_groups or ()))
        key = path.as_posix() if isinstance(path, PurePath) else str(path)
        return sorted(set(self._rule_groups(key)).union(extra))

    def _rule_groups(self, path: str) -> tuple[str, ...]:
        hit = self._cache.get(path)
        if hit is not None:
            return hit
        found: set[str] = set()
        for rule in self.rules:
            if rule.matches(path):
                found.update(rule.granted())
        result = tuple(sorted(found))
        if len(self._cache) >= self._CACHE_MAX:
            self._cache.clear()
        self._cache[path] = result
        return result

    def explain(self, path: str) -> list[AclRule]:
        """The rules that match ``path`` (for ``enclave policy check``)."""
        return [r for r in self.rules if r.matches(path)]


def _parse_rule(raw: Any, index: int, source: str) -> AclRule:
    where = f"{source}: rule {index}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    extra = set(raw) - _RULE_KEYS
    if extra:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(extra))}")
    glob = raw.get("glob")
    if not isinstance(glob, str) or not glob.strip():
        raise ConfigError(f"{where}: 'glob' must be a non-empty string")
    groups = raw.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ConfigError(f"{where}: 'groups' must be a list of strings")
    public = raw.get("public", False)
    if not isinstance(public, bool):
        raise ConfigError(f"{where}: 'public' must be true or false")
    if not groups and not public:
        raise ConfigError(f"{where}: give 'groups' or 'public = true'")
    for g in groups:
        if not valid_group(g):
            raise ConfigError(
                f"{where}: invalid group name {g!r}: use 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
    try:
        pattern = glob_to_regex(glob)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc
    return AclRule(glob=glob.strip(), groups=tuple(groups), public=public, pattern=pattern)
