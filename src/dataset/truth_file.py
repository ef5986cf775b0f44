"""The truth file: what a simulated chip really transmits, for scoring the processing pipeline.

Written by ``metascan sim truth`` from a chip manifest and a spectral model; one row per pad of
the manifest, in manifest order. HDF5, datasets at the root (N pads, B bands):

* ``array_id``, ``replica``, ``row``, ``col`` (N,) int32 and ``role`` (N,) int8: copied from the
  manifest's pad table (roles named in the ``roles`` attribute), so the file joins on its own.
* ``design_id`` (N,) int64 (-1 for fiducials).
* ``size_bias_nm`` (N,) float64: the dilation each pad was fabricated with (mean chip bias plus
  its own random part; 0 for fiducials, which are not designs).
* ``defect`` (N,) int8: ``Defect`` codes (named in the ``defects`` attribute), so curation tests
  can check that what they flagged is what was planted.
* ``transmission`` (N, 2, B) float64: per pad, x and y polarization, the transmission averaged
  over each band's real passband (integral T S F / integral S F; ``simulators.passband``).
* ``band_center_nm`` (B,) float64 and ``glass_transmission`` (B,) float64: the bare glass around
  the pads through the same passbands. A flat-fielded measurement reports
  ``transmission / glass_transmission`` (``Truth.relative_transmission``), exactly.

Root attributes: ``schema`` = "metascan.truth", ``schema_version``, ``software_version``,
``bandwidth_mode``, ``roles``, ``defects`` and the writer's provenance (chip_id, manifest path,
``material``, spectral model and its settings, fabrication and passband configs; scalars as
attributes, anything else as JSON). ``material`` (the chip manifest's film, the one every pad was
computed in) has been written by every ``metascan sim truth``; the reader requires it
(:mod:`layout.material`) and :attr:`Truth.material` gives it to whoever compares the truth with
pairs or models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from common.atomic import write_hdf5
from common.versioned_hdf5 import decode_attr, open_versioned, write_header
from dataset import conventions
from dataset.columns import check_pad_columns
from layout import material as film
from layout.manifest import Role

SCHEMA = "metascan.truth"
SCHEMA_VERSION = 1
_RESERVED = {
    "schema",
    "schema_version",
    "software_version",
    "bandwidth_mode",
    "roles",
    "defects",
    conventions.ATTRIBUTE,
}
_PAD_COLUMNS: dict[str, type[np.generic]] = {
    "array_id": np.int32,
    "replica": np.int32,
    "row": np.int32,
    "col": np.int32,
    "role": np.int8,
    "design_id": np.int64,
    "size_bias_nm": np.float64,
    "defect": np.int8,
}


class Defect(IntEnum):
    """Fabrication defects the virtual chip can plant; stored as int8."""

    NONE = 0
    MISSING = 1  # pattern never written: the etch cleared the film, bare glass remains
    CONTAMINATED = 2  # a particle shadows part of the pad: transmission scaled down


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class Truth:
    """Ground truth per pad; the constructor checks shapes and ranges."""

    array_id: NDArray[np.int32]
    replica: NDArray[np.int32]
    row: NDArray[np.int32]
    col: NDArray[np.int32]
    role: NDArray[np.int8]
    design_id: NDArray[np.int64]
    size_bias_nm: NDArray[np.float64]
    defect: NDArray[np.int8]
    transmission: NDArray[np.float64]  # (N, 2, B)
    band_center_nm: NDArray[np.float64]  # (B,)
    glass_transmission: NDArray[np.float64]  # (B,)
    bandwidth_mode: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = check_pad_columns(self, _PAD_COLUMNS)
        b = self.band_center_nm
        if b.ndim != 1 or b.size == 0 or np.any(np.diff(b) <= 0):
            raise ValueError("band_center_nm must be a non-empty strictly increasing 1-D array")
        if self.glass_transmission.shape != b.shape:
            raise ValueError(f"glass_transmission must be ({b.size},)")
        t = self.transmission
        if t.shape != (n, 2, b.size):
            raise ValueError(f"transmission must be (N={n}, 2, B={b.size}), got {t.shape}")
        for name, values in (("transmission", t), ("glass_transmission", self.glass_transmission)):
            if not np.all(np.isfinite(values)) or (
                values.size and (values.min() < 0 or values.max() > 1)
            ):
                raise ValueError(f"{name} must be finite fractions in [0, 1]")
        if n and not np.all(np.isin(self.defect, [d.value for d in Defect])):
            raise ValueError(f"defect codes must be in {[int(d) for d in Defect]}")
        if n and not np.all(np.isin(self.role, [r.value for r in Role])):
            raise ValueError(f"role codes must be in {[int(r) for r in Role]}")

    def __len__(self) -> int:
        return int(self.array_id.shape[0])

    @property
    def material(self) -> str:
        """The film the chip was simulated in (its manifest's, recorded in the provenance)."""
        return film.stored(self.provenance, "truth", "metascan sim truth")

    def relative_transmission(self) -> NDArray[np.float64]:
        """What a measurement flat-fielded on the bare glass reports: (N, 2, B)."""
        out: NDArray[np.float64] = self.transmission / self.glass_transmission
        return out


def write_truth(path: Path, truth: Truth, provenance: dict[str, Any] | None = None) -> None:
    """Write ``truth`` atomically; ``provenance`` is merged over ``truth.provenance``."""
    attrs = {**truth.provenance, **(provenance or {})}

    def fill(f: h5py.File) -> None:
        fixed = {
            "bandwidth_mode": truth.bandwidth_mode,
            "roles": {r.name.lower(): int(r) for r in Role},
            "defects": {d.name.lower(): int(d) for d in Defect},
            # ``transmission`` is absolute; ``relative_transmission()`` divides by the glass.
            conventions.ATTRIBUTE: conventions.ABSOLUTE,
        }
        write_header(f, SCHEMA, SCHEMA_VERSION, fixed, attrs, _RESERVED, "truth")
        for name in _PAD_COLUMNS:
            f.create_dataset(name, data=getattr(truth, name))
        f.create_dataset(
            "transmission", data=truth.transmission, compression="gzip", compression_opts=1
        )
        f.create_dataset("band_center_nm", data=truth.band_center_nm)
        f.create_dataset("glass_transmission", data=truth.glass_transmission)

    write_hdf5(path, fill)


def design_truth(truth: Truth, design_ids: NDArray[np.int64]) -> NDArray[np.float64]:
    """The noise-free relative transmission (N, 2, B) of each design in ``design_ids``: the mean
    over its dataset pads fabricated without a planted defect, replicas included, which is
    what curation's replica mean estimates. A design with no such pad is an error."""
    ok = (truth.role == Role.DATASET) & (truth.defect == Defect.NONE)
    ids = truth.design_id[ok]
    spectra = truth.relative_transmission()[ok]
    unique, inverse = np.unique(ids, return_inverse=True)
    sums = np.zeros((unique.size, *spectra.shape[1:]))
    np.add.at(sums, inverse, spectra)
    means = sums / np.bincount(inverse, minlength=unique.size)[:, None, None]
    wanted = np.asarray(design_ids, dtype=np.int64)
    missing = wanted[~np.isin(wanted, unique)]
    if missing.size:
        raise ValueError(
            f"design {int(missing[0])} has no defect-free pad in the truth "
            f"({missing.size} of {wanted.size} rows)"
        )
    where = np.searchsorted(unique, wanted)
    out: NDArray[np.float64] = means[where]
    return out


def read_truth(path: Path) -> Truth:
    """The truth in ``path``, checked on the way in; provenance attributes come back decoded."""
    with open_versioned(path, SCHEMA, SCHEMA_VERSION, "truth file") as f:
        provenance = {k: decode_attr(v) for k, v in f.attrs.items() if k not in _RESERVED}
        source = f"truth file {path}"
        conventions.require(
            conventions.stored(f.attrs, source, conventions.ABSOLUTE), conventions.ABSOLUTE, source
        )
        film.stored(f.attrs, source, "metascan sim truth")
        columns = {name: np.asarray(f[name][()], dtype=dt) for name, dt in _PAD_COLUMNS.items()}
        return Truth(
            **columns,
            transmission=np.asarray(f["transmission"][()], dtype=np.float64),
            band_center_nm=np.asarray(f["band_center_nm"][()], dtype=np.float64),
            glass_transmission=np.asarray(f["glass_transmission"][()], dtype=np.float64),
            bandwidth_mode=str(decode_attr(f.attrs["bandwidth_mode"])),
            provenance=provenance,
        )
