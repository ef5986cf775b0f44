"""Config dataclasses built from TOML tables that list only the fields that differ."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def dataclass_from_table(cls: type[Any], fields: dict[str, Any], table: str, **fixed: Any) -> Any:
    """``cls(**fields, **fixed)``, refusing unknown fields with a one-line error naming ``[table]``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"[{table}] has unknown field(s) {unknown}; known: {sorted(known)}")
    for name, value in fields.items():
        # A NaN compares false with every bound a dataclass checks; refuse it here, for all.
        numbers = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ValueError(f"[{table}] {name} = {value!r} must be finite")
    return cls(**{**fields, **fixed})
