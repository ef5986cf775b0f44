"""Write-then-rename, so a crash or a bad input never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, on error delete it.

    The parent directory must exist: creating it silently would hide a typo in an output path.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {path.parent} does not exist")
    # Not mkstemp: its 0600 mode would make results unreadable to the rest of the lab; O_EXCL
    # with the default 0666 lets the user's umask decide, as for any other file they write.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Figure(Protocol):
    def savefig(self, fname: Path, *, dpi: int, format: str) -> None: ...


def save_png(figure: _Figure, path: Path, dpi: int = 110) -> None:
    """A matplotlib figure as a PNG, written atomically (a plot is an output like any other)."""
    with atomic_output(Path(path)) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")
