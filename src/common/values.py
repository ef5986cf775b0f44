"""The one check every number from a command line or a config passes where it enters.

A NaN compares false with everything, so a check written as ``if value < 0: raise`` lets it
through and a chip is built with every coordinate NaN. Every bound here is tested as "inside",
never as "not outside", and a non-finite value is refused before any bound is looked at. The
message names the option, the value and the allowed range, in one line.

The same :class:`Bounds` serves three places, so a range is written once: as a Typer option
(``bounds.option(...)``, checked while the command line is parsed, before any work or any
socket is opened), as a check inside a config's ``__post_init__`` (``bounds.check(name, v)``),
and in the option's ``--help`` text (``bounds.describe()``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer


@dataclass(frozen=True)
class Bounds:
    """An allowed range of a number: ``lo``/``hi`` inclusive unless ``*_open``; ``None`` is
    unbounded on that side (a value must still be finite); ``integer`` also refuses fractions."""

    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        """``[0, 100] nm``, ``> 0 s``, ``>= 1``: the range as a person reads it."""
        unit = f" {self.unit}" if self.unit else ""
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"{left}{_show(self.lo)}, {_show(self.hi)}{right}{unit}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_show(self.lo)}{unit}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {_show(self.hi)}{unit}"
        return f"any finite number{unit}"

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def check(self, name: str, value: Any) -> Any:
        """``value`` itself when it is allowed; otherwise a one-line ValueError naming ``name``.

        Booleans are refused: ``True`` is an int to Python, never a count to a person."""
        kind = "an integer" if self.integer else "a finite number"
        where = self.describe()
        if self.lo is not None and self.hi is not None:
            where = f"in {where}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} {value!r} must be {kind} {where}") from None
        else:
            number = float(value)
        if not math.isfinite(number) or (self.integer and number != int(number)):
            raise ValueError(f"{name} {value!r} must be {kind} {where}")
        if not self.contains(number):
            raise ValueError(f"{name} {value!r} is outside the allowed range {self.describe()}")
        return value

    def check_all(self, name: str, values: Sequence[Any]) -> tuple[Any, ...]:
        """Every element checked; the message says which one failed."""
        if not values:
            raise ValueError(f"{name} is empty; give at least one value {self.describe()}")
        return tuple(self.check(name, v) for v in values)

    # --- as Typer options ----------------------------------------------------------------------

    def option(self, *decls: str, help: str = "", **kwargs: Any) -> Any:
        """A ``typer.Option`` checked against these bounds while the command line is parsed."""
        return typer.Option(*decls, help=_with_range(help, self), callback=self._callback, **kwargs)

    def list_option(self, *decls: str, help: str = "", **kwargs: Any) -> Any:
        """A comma-separated list option (``300,400,500``) parsed to a tuple and checked; the
        parameter is annotated ``Any`` (Typer would take a tuple type for a fixed-length one)."""
        kwargs.setdefault("metavar", "INT,INT,..." if self.integer else "NUM,NUM,...")
        return typer.Option(
            *decls, help=_with_range(help, self), callback=self._list_callback, **kwargs
        )

    def _callback(self, param: typer.CallbackParam, value: Any) -> Any:
        if value is None:
            return value
        name = option_name(param)
        if isinstance(value, list | tuple):
            return type(value)(self.check(name, v) for v in value)
        return self.check(name, value)

    def _list_callback(self, param: typer.CallbackParam, value: Any) -> Any:
        if value is None:
            return value
        return self.parse_list(option_name(param), value)

    def parse_list(self, name: str, text: str | Sequence[Any]) -> tuple[Any, ...]:
        """``"300,400"`` (or a sequence) to a checked tuple; integers as ``int``."""
        if isinstance(text, str):
            parts: Sequence[Any] = [p.strip() for p in text.split(",")]
        else:
            parts = text
        values: list[Any] = []
        for part in parts:
            try:
                number = float(part)
            except (TypeError, ValueError):
                kind = "integers, e.g. 300,400" if self.integer else "numbers, e.g. 150,178"
                raise ValueError(f"{name} {text!r} must be comma-separated {kind}") from None
            integral = self.integer and math.isfinite(number) and number == int(number)
            values.append(int(number) if integral else number)
        return self.check_all(name, values)


def option_name(param: typer.CallbackParam) -> str:
    """The long form of an option (``--pad-gap-um``), as the user most likely typed it."""
    opts = list(getattr(param, "opts", []) or [])
    long = [o for o in opts if o.startswith("--")]
    return str((long or opts or [str(param.name)])[0])


def _with_range(help: str, bounds: Bounds) -> str:
    return f"{help} Allowed: {bounds.describe()}.".strip()


def _show(x: float) -> str:
    if isinstance(x, int) or (float(x).is_integer() and abs(x) < 1e15):
        return str(int(x))
    return f"{x:g}"


# Ranges several commands share; a command-specific range is written beside its option.
SEED = Bounds(0, 2**32 - 1, integer=True)  # what every generator here (numpy, torch) takes
COUNT = Bounds(1, 10**9, integer=True)
PORT = Bounds(1, 65535, integer=True)
FRACTION = Bounds(0.0, 1.0)
POSITIVE_S = Bounds(0.0, 10**7, unit="s", lo_open=True)
