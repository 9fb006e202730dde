"""Column types that keep NaN and ±inf: a diverged run must read back as diverged, not as missing.

SQLite turns a bound NaN into NULL, and JSON has no literal for non-finite numbers. PostgreSQL's double precision
holds all three natively, so only other dialects get the text form.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import JSON, Float
from sqlalchemy.types import TypeDecorator

_TEXT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_TAG = "$float"


class _UncoercedFloat(Float):
    """Float without SQLAlchemy's float() bind coercion, which would turn our text form back into NaN (-> NULL)."""

    def bind_processor(self, dialect: Any) -> None:
        return None


class SafeFloat(TypeDecorator):
    """A float column where NaN, inf and -inf survive a round trip on every backend; NULL stays None."""

    impl = _UncoercedFloat(precision=53)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        value = float(value)
        if math.isfinite(value) or dialect.name == "postgresql":
            return value
        return _TEXT[repr(value)]  # stored as TEXT inside the REAL column (SQLite is dynamically typed)

    def process_result_value(self, value: Any, dialect: Any) -> float | None:
        return None if value is None else float(value)


def _encode(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {_TAG: _TEXT[repr(obj)]}
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TAG}:
            return float(obj[_TAG])
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


class SafeJSON(TypeDecorator):
    """JSON that is valid everywhere: non-finite floats are written as {"$float": "NaN"} and read back as floats."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else _encode(value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else _decode(value)
