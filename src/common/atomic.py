"""Write-then-rename, so a crash, a full disk or a bad input never leaves a half-written output
behind, and never costs the previous output.

``atomic_output`` is one file; ``atomic_outputs`` is several that belong together (a layout and
its manifest): all are written to temporary names and renamed only when every one is complete.
``write_stream`` fills a temporary from memory and reports a full disk as one ``OSError`` naming
the output, and ``require_free_space`` refuses before a byte is written what cannot fit.
``write_hdf5`` is how every whole HDF5 file is written: made in memory, then streamed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import h5py

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""errnos that mean the file system (or the user's quota) is full."""

# A file system without hard links answers one of these (FAT: EPERM).
_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}
)
_SLACK_BYTES = 16 * 1024  # per file, for blocks and metadata beyond the bytes themselves


def _check_parent(path: Path) -> None:
    # Creating the directory silently would hide a typo in an output path.
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {path.parent} does not exist")


def _reserve(path: Path, tag: str = "part") -> Path:
    """Create an empty, unused temporary name beside ``path`` (hidden, so no glob picks it up)."""
    # Not mkstemp: its 0600 mode would make results unreadable to the rest of the lab; O_EXCL
    # with the default 0666 lets the user's umask decide, as for any other file they write.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.{tag}"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    return tmp


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, on error delete it.

    The parent directory must exist: creating it silently would hide a typo in an output path.
    """
    path = Path(path)
    _check_parent(path)
    tmp = _reserve(path)
    try:
        yield tmp
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in DISK_FULL_ERRNOS:
            raise disk_full(path) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def hdf5_image(fill: Callable[[h5py.File], None]) -> bytes:
    """An HDF5 file's bytes, made in memory by ``fill``.

    HDF5 on a full disk does not fail cleanly: a dataset whose flush fails on close is flushed
    again when the file closes, and the library crashes (h5py#914; SIGSEGV in
    ``H5D__flush_all_cb``). Made in memory, the file meets the disk only as bytes, whose size is
    known before the first one is written."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
    return buffer.getvalue()


def write_hdf5(path: Path, fill: Callable[[h5py.File], None]) -> None:
    """The one way whole HDF5 files are written here: made in memory (:func:`hdf5_image`),
    checked against the free space, written to a temporary name, synced and renamed."""
    path = Path(path)
    (path,) = check_targets([path])
    image = hdf5_image(fill)
    require_free_space({path: len(image)})
    with atomic_output(path) as tmp:
        write_stream(tmp, image, path)


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths``, in order; rename them all into place
    only when the body has completed, delete them all if it fails.

    A failure anywhere leaves every previous file exactly as it was and no temporary behind:
    the body's (one file failing fails all), and a rename's too, which is rolled back from hard
    links to the previous files taken just before the first rename. Without hard links (a file
    system that has none) the renames go ahead unguarded; they fail only if the directory itself
    changes under us.
    """
    targets = check_targets(paths)
    temps: list[Path] = []
    try:
        for p in targets:
            temps.append(_reserve(p))
        yield list(temps)
        _rename_all(temps, targets)
    except BaseException:
        for t in temps:
            t.unlink(missing_ok=True)
        raise


def check_targets(paths: Sequence[Path]) -> list[Path]:
    """What ``atomic_outputs`` refuses before it creates anything, for a caller to ask before
    long work: a missing directory, a directory where a file goes, one file named twice."""
    targets = [Path(p) for p in paths]
    for p in targets:
        _check_parent(p)
        if p.is_dir():
            raise IsADirectoryError(f"output {p} is a directory; give a file name")
    resolved = [p.parent.resolve() / p.name for p in targets]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"outputs {', '.join(map(str, targets))} name one file twice")
    return targets


def _rename_all(temps: list[Path], targets: list[Path]) -> None:
    """Rename each temporary onto its target; if one rename fails, put back what was there."""
    backups: dict[Path, Path] = {}
    renamed: list[Path] = []
    try:
        for p in targets:
            if os.path.lexists(p):
                b = p.parent / f".{p.name}.{secrets.token_hex(6)}.prev"
                try:
                    os.link(p, b, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno in DISK_FULL_ERRNOS:  # nothing is renamed yet: nothing is lost
                        raise disk_full(p, "no room for a directory entry") from None
                    if exc.errno not in _NO_HARD_LINKS:
                        raise
                    continue
                backups[p] = b
        for t, p in zip(temps, targets, strict=True):
            t.replace(p)
            renamed.append(p)
    except BaseException:
        for p in reversed(renamed):
            if p in backups:
                backups.pop(p).replace(p)
            else:
                p.unlink(missing_ok=True)
        raise
    finally:
        for b in backups.values():
            b.unlink(missing_ok=True)


def disk_full(path: Path | str, detail: str = "") -> OSError:
    """The one-line error for a file the disk cannot hold (errno ENOSPC, so callers can tell)."""
    more = f" ({detail})" if detail else ""
    return OSError(
        errno.ENOSPC,
        f"no space left on device for {path}{more}; free some space and run again "
        "(any previous file of that name is untouched)",
    )


def require_free_space(sizes: Mapping[Path, int]) -> None:
    """Refuse, before anything is written, outputs their file system cannot hold all at once:
    ``sizes`` maps each output to its size in bytes (both old and new file exist until the
    rename, so replacing a file needs its full size again)."""
    by_device: dict[int, list[Path]] = {}
    for p in sizes:
        by_device.setdefault(Path(p).parent.stat().st_dev, []).append(Path(p))
    for group in by_device.values():
        need = sum(int(sizes[p]) + _SLACK_BYTES for p in group)
        free = shutil.disk_usage(group[0].parent).free
        if need > free:
            names = " and ".join(str(p) for p in group)
            raise disk_full(
                names, f"needs {_megabytes(need)}, {_megabytes(free)} free on {group[0].parent}"
            )


def write_stream(tmp: Path, source: BinaryIO | bytes, output: Path) -> None:
    """Write all of ``source`` (a file from its start, or bytes) to the temporary ``tmp`` and
    sync it to disk. A failed write is one ``OSError`` naming ``output`` with the errno kept: a
    full disk is ``disk_full(output)``, anything else (a file-size limit, an I/O error) says so.

    Syncing is what surfaces a full disk that a file system only reports on write-back (network
    file systems), and what makes the rename that follows keep the new bytes after a power cut.
    """
    try:
        with Path(tmp).open("wb") as f:
            if isinstance(source, bytes | bytearray | memoryview):
                f.write(source)
            else:
                source.seek(0)
                shutil.copyfileobj(source, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            raise disk_full(output) from None
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"writing {output} failed: {reason}") from None


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


class _Figure(Protocol):
    def savefig(self, fname: Path, *, dpi: int, format: str) -> None: ...


def save_png(figure: _Figure, path: Path, dpi: int = 110) -> None:
    """A matplotlib figure as a PNG, written atomically (a plot is an output like any other)."""
    with atomic_output(Path(path)) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")


def save_json(obj: Any, path: Path) -> None:
    """JSON through a temporary file and ``os.replace``."""
    with atomic_output(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
