"""What a refused request is told: pydantic's validation errors, said for a person.

A 400 names the field as JSON addresses it (``messages[0].content``, also the error's
``param``) and what was expected there (``expected a string or a list of text parts``), never
pydantic's internals (``function-after[_clean(), str]``). Only the first problem is told, with
a count of the others. The alternatives of a union are one problem: when one of them got
past the type check, its own error is told (``messages[0].content[0].type: expected 'text'``);
when each failed on its type, what they expected together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Error = Mapping[str, Any]

#: what a type error expected, by pydantic error type
_EXPECTED = {
    "string_type": "a string",
    "list_type": "a list",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
}
_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}
#: names pydantic gives the members of a union in a location (never one of Enclave's fields)
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "bytes"}
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
#: where the request part a location starts with
_SOURCES = ("body", "query", "path", "header")


def validation_message(errors: Sequence[Error]) -> tuple[str, str | None]:
    """The message and the ``param`` of a 400 for these pydantic errors (in their order)."""
    if not errors:
        return "invalid request", None
    if errors[0].get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    locs = [[p for p in e.get("loc", ()) if p not in _SOURCES] for e in errors]
    group = _union_of_first(errors, locs)
    others = len({_path(_fields(loc)) for i, loc in enumerate(locs) if i not in group})
    if len(group) > 1:
        cut = next(i for i, p in enumerate(locs[0]) if _is_tag(p))
        # the alternative that got furthest; at equal depth, one past its type check
        deepest = max(
            group, key=lambda i: (len(_fields(locs[i])), _expected(errors[i], None) is None)
        )
        wanted = [_expected(errors[i], str(locs[i][cut])) for i in group]
        if len(_fields(locs[deepest])) == cut and None not in wanted:
            problem = "expected " + " or ".join(dict.fromkeys(w for w in wanted if w))
            return _told(problem, _path(locs[0][:cut]) or None, others)
        first, loc = errors[deepest], _fields(locs[deepest])
    else:
        first, loc = errors[0], _fields(locs[0])
    param = _path(loc) or None
    if param is None and first.get("type") == "missing":
        return _told("the request body is required: a JSON object", None, others)
    if param is None and _expected(first, None) is not None:
        return _told("the request body must be a JSON object", None, others)
    return _told(_problem(first), param, others)


def _union_of_first(errors: Sequence[Error], locs: list[list[Any]]) -> list[int]:
    """The indexes of the errors that are alternatives of the union the first error is in
    (just ``[0]`` when it is in none)."""
    loc = locs[0]
    cut = next((i for i, p in enumerate(loc) if _is_tag(p)), None)
    if cut is None or errors[0].get("type") == "extra_forbidden":
        return [0]
    return [
        i
        for i, other in enumerate(locs)
        if other[:cut] == loc[:cut] and len(other) > cut and _is_tag(other[cut])
    ]


def _is_tag(part: object) -> bool:
    """A union member's name in an error location, not a field name or an index."""
    return isinstance(part, str) and (part in _TYPE_TAGS or not _FIELD.match(part))


def _fields(loc: Sequence[Any]) -> list[Any]:
    return [p for p in loc if not _is_tag(p)]


def _path(loc: Sequence[Any]) -> str:
    """``["messages", 0, "content"]`` -> ``messages[0].content``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _items(tag: str) -> str:
    """What a list holds, from its union tag: ``list[TextPart]`` -> ``text parts``,
    ``list[function-after[_clean(), str]]`` -> ``strings``."""
    inner = tag[5:-1]
    if re.search(r"\bstr\]*$", inner):
        return "strings"
    if re.fullmatch(r"[A-Z][A-Za-z]*", inner):
        return re.sub(r"(?<!^)([A-Z])", r" \1", inner).lower() + "s"
    return "items"


def _expected(error: Error, tag: str | None) -> str | None:
    """What a type error expected (``a list of text parts``); None for other errors."""
    kind = str(error.get("type", ""))
    if kind not in _EXPECTED:
        return None
    if kind == "list_type" and tag is not None and tag.startswith("list[") and tag.endswith("]"):
        return "a list of " + _items(tag)
    return _EXPECTED[kind]


def _problem(error: Error) -> str:
    """One error, said for a person."""
    kind = str(error.get("type", ""))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    given = error.get("input")
    if kind == "missing":
        return "this field is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("literal_error", "enum"):
        shown = repr(given) if isinstance(given, str | int | float | bool) else ""
        got = f" (got {shown})" if shown and len(shown) <= 40 else ""
        return f"expected {ctx.get('expected', 'one of the allowed values')}{got}"
    if kind in ("too_short", "string_too_short"):
        unit = "characters" if kind == "string_too_short" else "items"
        return f"expected at least {ctx.get('min_length')} {unit}"
    if kind in ("too_long", "string_too_long"):
        unit = "characters" if kind == "string_too_long" else "items"
        return f"expected at most {ctx.get('max_length')} {unit}"
    if kind in _BOUNDS:
        limit = next((v for k, v in ctx.items() if k in ("ge", "gt", "le", "lt")), "")
        return f"expected a number {_BOUNDS[kind]} {limit}"
    if kind == "string_pattern_mismatch":
        return f"expected text matching {ctx.get('pattern')}"
    if kind == "value_error":
        return str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    expected = _expected(error, None)
    return f"expected {expected}" if expected else str(error.get("msg", "invalid value"))


def _told(problem: str, param: str | None, others: int) -> tuple[str, str | None]:
    where = f"{param}: " if param else ""
    more = f" (and {others} more {'error' if others == 1 else 'errors'})" if others else ""
    return f"{where}{problem}{more}", param
