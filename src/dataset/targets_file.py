"""The targets file (contract 7 of DESIGN.md): what inverse design is asked to reach, in HDF5.

A target is a wanted spectrum and how much each band of it matters. Keeping targets in a file
of their own, rather than as command-line arguments of the design search, means the search, its
report and a later re-run all read the same numbers, and the weights that say "only x between
550 and 650 nm" travel with the spectrum they qualify.

Datasets at the root, N targets, W wavelengths:

* ``spectra`` (N, 2, W) float64: target transmission relative to the bare substrate
  (:mod:`dataset.conventions`), axis 1 = x, y polarization; finite, in [0, 1.5] (a relative
  transmission may exceed 1 a little where a pad transmits better than bare glass).
* ``wavelength_nm`` (W,) float64: positive, strictly increasing.
* ``weight`` (N, 2, W) float64: finite, >= 0, each target's total > 0 (a target no band counts
  for is no target); a zero weight means "don't care", e.g. the polarization a filter ignores.
* ``target_id`` (N,) variable-length UTF-8 strings: unique, non-empty.

Root attributes: ``schema`` = "metascan.targets", ``schema_version``, ``software_version``,
``spectra_convention`` (always ``relative_to_substrate``: what the model learned from),
``material`` and the writer's provenance (scalars as attributes, anything else as JSON).
``material`` is the film the target spectra were computed with or measured on (targets drawn
from a pairs file, spectra a model predicted from one), so a search with a model of another film
is refused; targets no film made (CSV files, parametric filters) say ``any``
(``Targets.material`` None) and suit every model. A version-1 file lacks it and is refused with
one line: write it again with ``metascan design targets``.

:func:`weighted_mse` is the objective of inverse design, written once here so the search, its
ranking and its report can never disagree on what "closest" means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, NDArray

from common.atomic import write_hdf5
from common.values import Bounds
from common.versioned_hdf5 import decode_attr, open_versioned, write_header
from dataset import conventions
from layout import material as film

SCHEMA = "metascan.targets"
SCHEMA_VERSION = 2  # 2: material recorded
ANY_MATERIAL = "any"  # on disk: targets of no film (Targets.material None)
SPECTRA = Bounds(0.0, 1.5)  # relative transmission; a little above 1 is physical
POLARIZATIONS = ("x", "y")  # axis 1 of spectra and weight
DATASETS = ("spectra", "wavelength_nm", "weight", "target_id")
_RESERVED = {"schema", "schema_version", "software_version", conventions.ATTRIBUTE, film.ATTRIBUTE}

Index = int | slice | Sequence[int] | NDArray[np.integer[Any]] | NDArray[np.bool_]


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class Targets:
    """N target spectra with their weights; the constructor checks every shape and range."""

    spectra: NDArray[np.float64]  # (N, 2, W)
    wavelength_nm: NDArray[np.float64]  # (W,)
    weight: NDArray[np.float64]  # (N, 2, W)
    target_id: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    material: str | None = field(default=None, kw_only=True)  # None: no film made them

    def __post_init__(self) -> None:
        if self.material is not None:
            film.check_name(self.material, "targets material")
        ids = self.target_id
        if not isinstance(ids, tuple) or not all(isinstance(i, str) for i in ids):
            raise ValueError("target_id must be a tuple of strings")
        n = len(ids)
        if n == 0:
            raise ValueError("targets are empty; give at least one target")
        blank = [i for i, name in enumerate(ids) if not name.strip()]
        if blank:
            raise ValueError(f"target_id at index {blank[0]} is empty; every target needs a name")
        dup = _first_duplicate(ids)
        if dup is not None:
            raise ValueError(f"target_id {dup!r} is given more than once; ids must be unique")
        conventions.check_wavelengths(self.wavelength_nm)
        w = self.wavelength_nm.size
        for name in ("spectra", "weight", "wavelength_nm"):
            dtype = getattr(self, name).dtype
            if dtype != np.float64:
                raise ValueError(f"{name} must be float64, got {dtype}")
        s = self.spectra
        if s.shape != (n, 2, w):
            raise ValueError(f"spectra must be (N={n}, 2, W={w}), got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError(
                f"spectra hold {int(np.count_nonzero(~np.isfinite(s)))} NaN/inf values"
            )
        if not (SPECTRA.contains(float(s.min())) and SPECTRA.contains(float(s.max()))):
            raise ValueError(
                f"spectra must be relative transmission in {SPECTRA.describe()}, "
                f"found {s.min():g}..{s.max():g}"
            )
        wt = self.weight
        if wt.shape != (n, 2, w):
            raise ValueError(f"weight must be (N={n}, 2, W={w}), got shape {wt.shape}")
        if not np.all(np.isfinite(wt)):
            raise ValueError(
                f"weight holds {int(np.count_nonzero(~np.isfinite(wt)))} NaN/inf values"
            )
        if np.any(wt < 0):
            raise ValueError(f"weight must be >= 0, found {wt.min():g}")
        total = wt.sum(axis=(1, 2))
        if np.any(total <= 0):
            i = int(np.flatnonzero(total <= 0)[0])
            raise ValueError(
                f"target {ids[i]!r} has zero total weight: no band of it counts; give it a "
                "positive weight somewhere"
            )
        if not isinstance(self.provenance, dict):
            raise ValueError(f"provenance must be a dict, got {type(self.provenance).__name__}")

    def __len__(self) -> int:
        return len(self.target_id)

    @staticmethod
    def build(
        spectra: ArrayLike,
        wavelength_nm: ArrayLike,
        weight: ArrayLike | None = None,
        target_id: Sequence[str] = (),
        provenance: dict[str, Any] | None = None,
        *,
        material: str | None = None,
    ) -> Targets:
        """Coerce array-likes to float64 (``weight`` None: all ones) and check them."""
        spec = np.asarray(spectra, dtype=np.float64)
        wt = np.ones_like(spec) if weight is None else np.asarray(weight, dtype=np.float64)
        return Targets(
            spec,
            np.asarray(wavelength_nm, dtype=np.float64),
            wt,
            tuple(str(i) for i in target_id),
            dict(provenance or {}),
            material=material,
        )

    def take(self, index: Index) -> Targets:
        """The targets at ``index`` (an int, a slice, integer positions or a boolean mask), in
        that order; the provenance is kept, since they still come from the same source."""
        rows = np.atleast_1d(np.arange(len(self))[index])
        return Targets(
            self.spectra[rows],
            self.wavelength_nm.copy(),
            self.weight[rows],
            tuple(self.target_id[int(i)] for i in rows),
            dict(self.provenance),
            material=self.material,
        )

    @staticmethod
    def concatenate(parts: Sequence[Targets]) -> Targets:
        """One set of targets from several, in order. Their band grids must be identical: a
        target interpolated silently onto another grid would no longer be what was asked for.
        The provenance is the single part's own, or ``{"parts": [...]}`` of each part's. Parts
        of two film materials are refused; the material is the one the parts of a film share."""
        if not parts:
            raise ValueError("no targets to concatenate; give at least one set")
        first = parts[0]
        for i, p in enumerate(parts[1:], start=1):
            if not np.array_equal(p.wavelength_nm, first.wavelength_nm):
                raise ValueError(
                    f"targets part {i} has another wavelength grid ({p.wavelength_nm.size} bands, "
                    f"{p.wavelength_nm[0]:g}..{p.wavelength_nm[-1]:g} nm) than part 0 "
                    f"({first.wavelength_nm.size} bands, {first.wavelength_nm[0]:g}.."
                    f"{first.wavelength_nm[-1]:g} nm)"
                )
        ids = tuple(i for p in parts for i in p.target_id)
        dup = _first_duplicate(ids)
        if dup is not None:
            raise ValueError(f"target_id {dup!r} appears in more than one part; ids must be unique")
        provenance = (
            dict(first.provenance) if len(parts) == 1 else {"parts": [p.provenance for p in parts]}
        )
        of_film = [(f"targets part {i}", p.material) for i, p in enumerate(parts) if p.material]
        return Targets(
            np.concatenate([p.spectra for p in parts]),
            first.wavelength_nm.copy(),
            np.concatenate([p.weight for p in parts]),
            ids,
            provenance,
            material=film.common(of_film) if of_film else None,
        )

    def check_material(self, material: str, source: str, what: str = "the targets") -> None:
        """Refuse targets of another film than ``material`` (that of ``source``, e.g. a model);
        targets of no film suit any."""
        if self.material is not None:
            film.require(self.material, what, material, source)


def _first_duplicate(names: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def weighted_mse(
    spectra: ArrayLike, target_spectra: ArrayLike, weight: ArrayLike
) -> NDArray[np.float64]:
    """Per row, ``sum(w * (s - t)^2) / sum(w)`` over polarization and band: THE objective of
    inverse design (lower is closer), in one place.

    The three broadcast to (M, 2, W) (one target against M candidates: (1, 2, W) or (2, W)
    targets and weights). A weighted mean rather than a sum, so targets weighted over few bands
    and over many are ranked on the same scale. A row with zero total weight is refused: it has
    no answer, and a NaN would sort anywhere."""
    s = np.asarray(spectra, dtype=np.float64)
    t = np.asarray(target_spectra, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    try:
        shape = np.broadcast_shapes(s.shape, t.shape, w.shape)
    except ValueError:
        raise ValueError(
            f"spectra {s.shape}, target_spectra {t.shape} and weight {w.shape} do not broadcast"
        ) from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[1] != 2:
        raise ValueError(f"spectra, targets and weight must broadcast to (M, 2, W), got {shape}")
    w3 = np.broadcast_to(w, shape)
    if np.any(w3 < 0):
        raise ValueError(f"weight must be >= 0, found {w3.min():g}")
    total = w3.sum(axis=(1, 2))
    if np.any(total <= 0):
        raise ValueError(
            f"weight row {int(np.flatnonzero(total <= 0)[0])} has zero total weight; "
            "a weighted error is undefined there"
        )
    diff = np.broadcast_to(s, shape) - np.broadcast_to(t, shape)
    out: NDArray[np.float64] = (w3 * diff * diff).sum(axis=(1, 2)) / total
    return out


def write_targets(path: Path, targets: Targets) -> None:
    """Write ``targets`` atomically (the previous file stays if anything fails)."""

    def fill(f: h5py.File) -> None:
        fixed = {
            conventions.ATTRIBUTE: conventions.RELATIVE,  # the only one targets hold
            film.ATTRIBUTE: targets.material or ANY_MATERIAL,
        }
        write_header(f, SCHEMA, SCHEMA_VERSION, fixed, targets.provenance, _RESERVED, "targets")
        f.create_dataset("spectra", data=targets.spectra)
        f.create_dataset("wavelength_nm", data=targets.wavelength_nm)
        f.create_dataset("weight", data=targets.weight)
        f.create_dataset(
            "target_id",
            data=np.array(targets.target_id, dtype=object),
            dtype=h5py.string_dtype("utf-8"),
        )

    write_hdf5(path, fill)


def read_targets(path: Path) -> Targets:
    """The targets in ``path``, checked on the way in; provenance attributes come back decoded.
    Another spectra convention is refused: targets are compared with spectra a model learned
    from relative measurements."""
    source = f"targets file {path}"
    with open_versioned(path, SCHEMA, SCHEMA_VERSION, "targets file") as f:
        conventions.require(conventions.stored(f.attrs, source), conventions.RELATIVE, source)
        recorded = decode_attr(f.attrs.get(film.ATTRIBUTE))
        material = (
            None
            if recorded == ANY_MATERIAL
            else film.stored(f.attrs, source, "metascan design targets")
        )
        missing = [name for name in DATASETS if name not in f]
        if missing:
            raise ValueError(f"{source} lacks the dataset(s) {', '.join(missing)}")
        provenance = {k: decode_attr(v) for k, v in f.attrs.items() if k not in _RESERVED}
        ids = f["target_id"]
        if ids.ndim != 1 or ids.dtype.kind not in "OSU":
            raise ValueError(
                f"{source}: target_id must be 1-D strings, got {ids.dtype} {ids.shape}"
            )
        names = tuple(str(i) for i in ids.asstr()[()])
        try:
            return Targets.build(
                f["spectra"][()],
                f["wavelength_nm"][()],
                f["weight"][()],
                names,
                provenance,
                material=material,
            )
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None


def nearest_weighted_mse(
    candidates: NDArray[np.floating[Any]],
    target_spectra: NDArray[np.floating[Any]],
    weight: NDArray[np.floating[Any]],
    chunk: int = 64,
) -> NDArray[np.float64]:
    """Per target, the smallest :func:`weighted_mse` over all ``candidates`` (M, 2, W): what the
    best pick from a database could score (the oracle). The square is expanded so the cost is
    a matrix product, a chunk of targets at a time."""
    flat = np.asarray(candidates, dtype=np.float64).reshape(candidates.shape[0], -1)
    t_all = np.asarray(target_spectra, dtype=np.float64).reshape(target_spectra.shape[0], -1)
    w_all = np.asarray(weight, dtype=np.float64).reshape(weight.shape[0], -1)
    out = np.empty(t_all.shape[0])
    for start in range(0, t_all.shape[0], chunk):
        t, w = t_all[start : start + chunk], w_all[start : start + chunk]
        d = (w * t * t).sum(1)[:, None] - 2 * (w * t) @ flat.T + w @ (flat * flat).T
        out[start : start + chunk] = np.maximum(d.min(axis=1), 0.0) / w.sum(1)
    return out


QUANTILES = (25, 50, 75, 95)


def mse_quantiles(mse: NDArray[np.float64]) -> dict[str, float]:
    """The quantiles every inverse-design report gives (``q25`` ... ``q95``) and the mean."""
    out = {f"q{p}": float(np.quantile(mse, p / 100)) for p in QUANTILES}
    out["mean"] = float(mse.mean())
    return out
