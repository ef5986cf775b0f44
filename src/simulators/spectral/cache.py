"""An HDF5 cache of solved spectra, so a slow model solves each design of a chip once.

Layout: root attributes ``schema`` = "metascan.spectra_cache" and ``schema_version``; one group
per model setting, named by a hash of everything besides the design that changes a spectrum
(thickness, material, wavelengths, orders, raster size, precision; the period is part of
``design_id``), with that setting as JSON in its ``key`` attribute and three growing datasets:
``design_id`` (M,) int64, ``size_bias_pm`` (M,) int64 (the fabrication bias, in picometres so
it compares exactly) and ``spectra`` (M, 2, W) float64.

The file is created atomically and then only appended to, one short open-append-close per
batch of designs, so an interrupted run keeps every batch it finished and an append is the
only moment a kill could damage the file. A damaged or locked file is reported, never
silently replaced: it may hold hours of solving.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from common.atomic import atomic_output
from common.versioned_hdf5 import check_schema, write_version

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SCHEMA = "metascan.spectra_cache"
SCHEMA_VERSION = 1


def bias_pm(size_bias_nm: FloatArray) -> IntArray:
    """The size bias as it is matched in the cache: whole picometres."""
    out: IntArray = np.rint(np.asarray(size_bias_nm) * 1000).astype(np.int64)
    return out


class SpectraCache:
    """The cache entries of one model setting (``key``) in one file."""

    def __init__(self, path: Path, key: dict[str, Any]) -> None:
        self.path = Path(path)
        self.key_json = json.dumps(key, sort_keys=True)
        self.group = hashlib.sha256(self.key_json.encode()).hexdigest()[:16]
        if not self.path.exists():
            with atomic_output(self.path) as tmp, h5py.File(tmp, "w") as f:
                write_version(f, SCHEMA, SCHEMA_VERSION)
        with self._open("r") as f:
            check_schema(f, SCHEMA, SCHEMA_VERSION, "spectra cache", str(self.path))

    def _open(self, mode: str) -> h5py.File:
        try:
            return h5py.File(self.path, mode)
        except OSError as exc:
            raise ValueError(
                f"spectra cache {self.path} cannot be opened ({exc}); another run may hold it, "
                "or an interrupted append damaged it: delete it or give another cache path"
            ) from None

    def lookup(
        self, design_id: IntArray, size_bias_pm: IntArray
    ) -> tuple[NDArray[np.bool_], FloatArray | None]:
        """``(found (N,), spectra (N, 2, W) or None)``; rows not found are left as NaN."""
        found = np.zeros(design_id.shape[0], dtype=bool)
        with self._open("r") as f:
            if self.group not in f:
                return found, None
            g = f[self.group]
            ids = np.asarray(g["design_id"][()], dtype=np.int64)
            biases = np.asarray(g["size_bias_pm"][()], dtype=np.int64)
            stored = np.asarray(g["spectra"][()], dtype=np.float64)
        where = {(int(i), int(b)): row for row, (i, b) in enumerate(zip(ids, biases, strict=True))}
        out = np.full((design_id.shape[0], *stored.shape[1:]), np.nan)
        for n, (i, b) in enumerate(zip(design_id.tolist(), size_bias_pm.tolist(), strict=True)):
            row = where.get((i, b))
            if row is not None:
                out[n] = stored[row]
                found[n] = True
        return found, out

    def append(self, design_id: IntArray, size_bias_pm: IntArray, spectra: FloatArray) -> None:
        with self._open("a") as f:
            if self.group not in f:
                g = f.create_group(self.group)
                g.attrs["key"] = self.key_json
                g.create_dataset(
                    "design_id", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,)
                )
                g.create_dataset(
                    "size_bias_pm", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,)
                )
                g.create_dataset(
                    "spectra", shape=(0, *spectra.shape[1:]), maxshape=(None, *spectra.shape[1:]),
                    dtype=np.float64, chunks=(256, *spectra.shape[1:]),
                )  # fmt: skip
            g = f[self.group]
            start, count = g["design_id"].shape[0], design_id.shape[0]
            for name, values in (
                ("design_id", design_id),
                ("size_bias_pm", size_bias_pm),
                ("spectra", spectra),
            ):
                g[name].resize(start + count, axis=0)
                g[name][start:] = values
