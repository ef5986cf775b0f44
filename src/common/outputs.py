"""The output policy every command follows, checked before any work is done.

* An output is never one of the command's inputs, under any name: paths are compared resolved,
  and by inode where both exist (a hard link or a bind mount is still the same file). This is
  refused even with ``--force``: overwriting an input destroys what the output was made from.
* Outputs derived from one name (``chip.gds`` -> ``chip.h5``) are checked like named ones, so a
  derived name cannot land on an input or on another output either.
* An existing output is refused unless ``--force``.
* Writes themselves go through :mod:`common.atomic`: a failure (a full disk included) is one
  line naming the file, and the previous output stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from common.versioned_hdf5 import schema_of


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
    never another project file that happens to have the name (a design library where a
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
    for label, path in named.items():
        for in_label, in_path in inputs.items():
            if in_path is not None and same_file(path, Path(in_path)):
                named_input = in_label if str(in_path) in in_label else f"{in_label} {in_path}"
                raise ValueError(
                    f"{label} {path} is the input {named_input}; writing it would destroy the "
                    "input: give another output name"
                )
    labels = list(named)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if same_file(named[a], named[b]):
                raise ValueError(f"{a} {named[a]} and {b} {named[b]} are the same file")
    if directories:
        return
    for label, path in named.items():
        if not path.exists():
            continue
        if not force:
            raise FileExistsError(f"{label} {path} exists; pass --force to overwrite it")
        expected = (schemas or {}).get(label)
        found = schema_of(path) if expected is not None else None
        if found is not None and found != expected:
            raise ValueError(
                f"{label} {path} exists and holds a {found}, not a previous {expected}; "
                "--force replaces only that: give another output name"
            )
