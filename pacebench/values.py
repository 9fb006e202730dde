"""Plain values: the one parser from strings (command line, `--grid`) or TOML values to the typed fields of a config
dataclass, and the one canonical JSON text of a value (what run keys hash and what tells settings apart).

Training settings (`spec.TrainConfig`) and method hyperparameters (each method's `Config`) both go through
`parse_fields`, so `-t epochs=2.0` and `--hp interval=2.0` are read the same way (a whole number is accepted for an
integer field in any spelling: "2", "2.0", "2e0"; "2.5" is an error), and `inf` / `nan` are refused everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from enum import Enum
from functools import cache
from typing import Any

from pacebench.errors import UsageError

INT_MAX = 2**31 - 1  # whole numbers (seeds, epochs, ranks, ...) land in INTEGER columns: 32 bits on PostgreSQL


def canonical_json(value: Any) -> str:
    """`value` as compact JSON with sorted keys (dict order never matters; anything else JSON lacks as its str).

    Run keys hash this text (`plan.runkey`), so its bytes must never change: pinned keys would move.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@cache
def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a dataclass (string annotations resolved once)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_value(kind: Any, value: Any, what: str) -> Any:
    """`value` as `kind` (int, float, str, a StrEnum, or one of these or None); `what` names the setting in the
    error.

    Raises:
        UsageError: not a value of that type, a fraction for an integer, or a non-finite number.
    """
    optional = [a for a in typing.get_args(kind) if a is not type(None)] if type(None) in typing.get_args(kind) else []
    if optional:  # `float | None`: None stays None (the default it stands for), anything else parses as the type
        return None if value is None else parse_value(optional[0], value, what)
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(value)
        except ValueError:
            raise UsageError(f"{what} must be one of {', '.join(m.value for m in kind)}, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise UsageError(f"{what} must be a string, got {value!r}")
        return value
    if kind not in (int, float):
        raise TypeError(f"{what}: no parser for fields of type {kind!r}")
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be {kind.__name__}, got {value!r}") from None
    if not math.isfinite(number):
        raise UsageError(f"{what} must be a finite number, got {value!r}")
    if kind is float:
        return number
    if not number.is_integer():
        raise UsageError(f"{what} must be int (a whole number), got {value!r}")
    whole = int(value) if isinstance(value, int) else int(number)  # int("12345678901234567") keeps every digit
    if abs(whole) > INT_MAX:
        raise UsageError(f"{what} = {value} is out of range; use a whole number of at most {INT_MAX}")
    return whole


def parse_fields(
    cls: type, values: Mapping[str, Any], what: str, aliases: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Keyword arguments for dataclass `cls` from `values` (names may be `aliases`); `what` names the kind of
    setting in errors ("training setting", "method pace hyperparameter").

    Raises:
        UsageError: an unknown name (the error lists the known ones) or a value that does not parse.
    """
    types = field_types(cls)
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for raw, value in values.items():
        name = (aliases or {}).get(raw, raw)
        if name not in types:
            raise UsageError(f"unknown {what} {raw!r}; known: {', '.join(types) or 'none'}")
        if name in spelled:
            raise UsageError(f"{what} {name} is given twice ({spelled[name]!r} and {raw!r}); give it once")
        spelled[name] = raw
        out[name] = parse_value(types[name], value, f"{what} {name}")
    return out
