"""The output policy every command follows, checked before any work is done.

* An output is never one of the command's inputs, under any name: paths are compared resolved,
  and by inode where both exist (a hard link or a bind mount is still the same file). This is
  refused even with ``--force``: overwriting an input destroys what the output was made from.
* Outputs derived from one name (``chip.gds`` -> ``chip.h5``) are checked like named ones, so a
  derived name cannot land on an input or on another output either.
* An existing output is refused unless ``--force``.
* A write that fails for lack of space says so in one line (:class:`OutputError`), naming the
  file; the previous output stays, because writers go through :mod:`common.atomic`.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py

# errnos that mean "the disk (or quota) is full": the one write failure a user can fix.
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# HDF5 reports a failed write inside its own message, not as the OSError's errno.
_FULL_TEXT = ("no space left", "errno = 28", "disk quota", "file too large")


class OutputError(OSError):
    """An output that cannot or may not be written: one line for the user, no traceback."""


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: equal when resolved, or the same inode."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist yet
        return False


def check_outputs(
    outputs: Mapping[str, Path],
    inputs: Mapping[str, Path | None],
    force: bool,
    *,
    directories: bool = False,
    schemas: Mapping[str, str] | None = None,
) -> None:
    """Refuse, before any reading or writing, outputs that cannot or may not be written.

    ``outputs`` and ``inputs`` map how the user knows each path (``--output``, ``manifest
    beside --output``, ``--designs``) to the path, so the message can say which clash. With
    ``directories`` the outputs are folders to be created or filled (their own files are
    checked by the command with another call). ``schemas`` gives, per output label, the schema
    of the HDF5 file that will be written: ``--force`` replaces a previous output of that kind,
    never a file of another kind that happens to have the name (a design library where a
    manifest is derived)."""
    named = {label: Path(p) for label, p in outputs.items()}
    for label, path in named.items():
        if not path.parent.is_dir():
            raise FileNotFoundError(f"output directory {path.parent} (for {label}) does not exist")
        if directories:
            if path.exists() and not path.is_dir():
                raise FileExistsError(f"{label} {path} is a file; give a directory")
        elif path.is_dir():
            raise IsADirectoryError(f"{label} {path} is a directory; give a file name")
    labels = list(named)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if same_file(named[a], named[b]):
                raise ValueError(f"{a} {named[a]} and {b} {named[b]} are the same file")
    for label, path in named.items():
        for in_label, in_path in inputs.items():
            if in_path is not None and same_file(path, Path(in_path)):
                raise ValueError(
                    f"{label} {path} is the input {in_label} {in_path}; writing it would "
                    "destroy the input: give another output name"
                )
    if directories:
        return
    for label, path in named.items():
        if not path.exists():
            continue
        if not force:
            raise FileExistsError(f"{label} {path} exists; pass --force to overwrite it")
        expected = (schemas or {}).get(label)
        if expected is not None:
            found = hdf5_schema(path)
            if found != expected:
                raise ValueError(
                    f"{label} {path} exists and holds {found or 'something else'}, not a "
                    f"previous {expected}; --force replaces only that: give another output name"
                )


def hdf5_schema(path: Path) -> str | None:
    """The ``schema`` attribute of a project HDF5 file, or None for anything else."""
    try:
        if not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as f:
            value = f.attrs.get("schema")
    except OSError:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return value if isinstance(value, str) else None


def check_free_space(folder: Path, bytes_needed: int, what: str) -> None:
    """Refuse a write the disk cannot hold, before it starts (a full disk mid-write costs the
    work done so far and, for some libraries, the process)."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if bytes_needed > free:
        raise OutputError(
            f"not enough disk space for {what}: needs {_size(bytes_needed)}, "
            f"{_size(free)} free on {folder}"
        )


def is_disk_full(exc: BaseException) -> bool:
    """Whether an exception (an OSError, or h5py's OSError-with-text) means a full disk."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    text = str(exc).lower()
    return any(t in text for t in _FULL_TEXT)


@contextlib.contextmanager
def write_errors_named(path: Path, what: str) -> Iterator[None]:
    """Turn a failed write into one line naming the file; a full disk is said to be one."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        if is_disk_full(exc):
            raise OutputError(
                f"no space left on the device writing {what} {path}; free space and run again "
                "(the previous output, if any, is untouched)"
            ) from None
        raise OutputError(f"writing {what} {path} failed: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"
