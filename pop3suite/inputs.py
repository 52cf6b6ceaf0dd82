"""Strict TOML input files: one schema library (pydantic v2), one error line.

Scenario files, capacity grids, conformance target files and expectations
files are read through :func:`load_toml`: the file is parsed, validated
against a model that forbids unknown keys and coerces nothing (``users =
"two"`` is an error, not ``int("two")``) at any depth, and every failure
(unreadable file, TOML syntax, unknown key, wrong type, bad value) becomes
one :class:`InputError` whose message names the file and the dotted key::

    pop3suite/scenarios/x.toml: slo.min_sesions: unknown key
    x.toml: clients[0].users: expected an integer, got "two"
    x.toml: cannot read: No such file or directory

Commands print that line and exit 2.  This module imports nothing of the
project (stdlib + pydantic), so load, conformance and the CLI can share it.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["InputError", "StrictModel", "display_path", "load_toml", "read_toml", "validate"]


class InputError(ValueError):
    """An input file the suite cannot use; the message is one line naming
    the file and the key."""


class StrictModel(BaseModel):
    """Base of every input schema: unknown keys rejected, no type coercion
    (an int is accepted where a float is meant, as TOML writes ``20`` for
    20 seconds), immutable once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)


M = TypeVar("M", bound=BaseModel)


def display_path(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies under it
    (``pop3suite/scenarios/smoke.toml``), else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def read_toml(path: str | Path, label: str | None = None) -> dict[str, Any]:
    """The TOML document at ``path``.

    Raises:
        InputError: the file cannot be read or is not TOML (one line).
    """
    where = label or display_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"{where}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{where}: cannot read: not UTF-8 text ({error.reason})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{where}: TOML syntax error: {error}") from None


def load_toml(path: str | Path, model: type[M], label: str | None = None) -> M:
    """Read ``path`` and validate it against ``model``; see the module doc."""
    where = label or display_path(path)
    return validate(read_toml(path, where), model, where)


def validate(data: Any, model: type[M], where: str) -> M:
    """``data`` validated against ``model``; errors become one InputError
    line prefixed with ``where`` (the file)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InputError(describe(error, where)) from None


def describe(error: ValidationError, where: str) -> str:
    """The first validation error as ``where: dotted.key: what is wrong``
    (plus how many more there are)."""
    problems = error.errors(include_url=False)
    first = problems[0]
    key = dotted(first["loc"])
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {key + ': ' if key else ''}{_what(first)}{more}"


def dotted(loc: tuple[int | str, ...]) -> str:
    """``("clients", 0, "users")`` -> ``clients[0].users``; keys that are not
    bare TOML keys are quoted (``slo.steps."RETR*"``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if part.replace("_", "").replace("-", "").isalnum() else json.dumps(part)
        out += ("." if out else "") + text
    return out


def _value(value: Any) -> str:
    """A value as TOML spells it: strings in double quotes, true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _what(problem: dict[str, Any]) -> str:
    kind = problem["type"]
    ctx = problem.get("ctx") or {}
    got = _value(problem.get("input"))
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing (required)"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {got}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the allowed values')}, got {got}"
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}, got {got}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}, got {got}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}, got {got}"
    if kind == "less_than":
        return f"must be < {ctx.get('lt')}, got {got}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s), got {got}"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} item(s), got {got}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    return f"{problem['msg']}, got {got}"
