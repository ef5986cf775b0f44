"""One entry point for reading pairs, whichever of the two layouts a user hands over."""

from __future__ import annotations

from pathlib import Path

from dataset.moclip_npz import read_moclip_npz
from dataset.pairs_file import Pairs, read_pairs

_ZIP_MAGIC = b"PK\x03\x04"  # every .npz is a zip archive; HDF5 starts with b"\x89HDF"


def is_moclip_npz(path: Path) -> bool:
    """By suffix, or by content for a renamed file (a wrong guess would fail with the other
    reader's less helpful message)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return True
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4) == _ZIP_MAGIC


def load_pairs(path: Path, *, split_seed: int = 0) -> Pairs:
    """The pairs in ``path``: a MOCLIP ``.npz`` (ids hashed, splits drawn with ``split_seed``)
    or a pairs HDF5 file (ids and splits as stored; ``split_seed`` unused)."""
    path = Path(path)
    if is_moclip_npz(path):
        return read_moclip_npz(path, split_seed=split_seed)
    return read_pairs(path)
