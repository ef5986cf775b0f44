"""Builders of inverse-design targets (:mod:`dataset.targets_file`) from what a user has.

Three sources, each a :class:`Targets` on a given band grid:

* :func:`from_pairs`: measured or simulated spectra of a pairs file's split, the honest test of
  a design search (the true geometry is known, so a search can be scored against it);
* :func:`from_csv`: a spectrum someone drew or measured, interpolated onto the model's bands;
* :func:`from_filters`: parametric filters (``"bandpass x 600 40 0.8"``), the usual request.

:func:`weight_window` then narrows what counts to a band window and one polarization. The grid
the targets live on is the model's (:func:`model_wavelengths_nm`): a target on other bands
could not be compared with what the model predicts.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from common.values import COUNT, SEED, Bounds
from common.versioned_hdf5 import open_versioned
from dataset import pairs_file
from dataset.conventions import check_wavelengths
from dataset.pairs_io import is_moclip_npz, load_pairs
from dataset.targets_file import POLARIZATIONS, SPECTRA, Targets

log = logging.getLogger(__name__)

FILTER_KINDS = ("bandpass", "notch", "longpass", "shortpass")
FILTER_POLARIZATIONS = ("x", "y", "both")
FILTER_GRAMMAR = "KIND POL CENTRE_NM WIDTH_NM DEPTH, e.g. 'bandpass x 600 40 0.8'"
CENTRE_NM = Bounds(0.0, None, unit="nm", lo_open=True)
WIDTH_NM = Bounds(0.0, None, unit="nm", lo_open=True)
DEPTH = Bounds(0.0, 1.0)
WINDOW_NM = Bounds(0.0, None, unit="nm", lo_open=True)
CSV_COLUMNS = ("wavelength_nm", "tx", "ty")
CSV_ID_COLUMN = "target_id"
MOCLIP_WAVELENGTHS = 29  # 450..730 nm every 10 nm

_FWHM = 4.0 * math.log(2.0)  # exp(-_FWHM x^2 / w^2) is 1/2 at x = +-w/2
_EDGE = 2.0 * math.log(9.0)  # a logistic of scale w/_EDGE rises 10 % -> 90 % over w


def default_wavelengths_nm() -> NDArray[np.float64]:
    """450..730 nm every 10 nm (29 bands): the MOCLIP grid every default model is trained on."""
    return np.arange(450.0, 731.0, 10.0)


def model_wavelengths_nm(model_dir: Path) -> NDArray[np.float64]:
    """The band grid a trained model predicts on.

    A model directory records its number of bands, not the bands themselves, so the grid is
    read from the training pairs file its ``config.json`` names (``train.pairs`` or ``pairs``)
    when that file is still there; otherwise a 29-band model is on the MOCLIP grid, and for any
    other the user must say with ``--pairs``."""
    from models.model_dir import read_config  # torch: only when a model is asked for

    config = read_config(Path(model_dir))
    bands = int(config.get("model", {}).get("num_wavelengths", MOCLIP_WAVELENGTHS))
    train = config.get("train", {})
    recorded = [train.get("pairs") if isinstance(train, dict) else None, config.get("pairs")]
    for name in recorded:
        if isinstance(name, str) and Path(name).is_file():
            grid = pairs_wavelengths_nm(Path(name))
            if grid.size != bands:
                raise ValueError(
                    f"model {model_dir} predicts {bands} bands but its training pairs {name} "
                    f"hold {grid.size}; give the grid with --pairs"
                )
            return grid
    if bands == MOCLIP_WAVELENGTHS:
        log.info("model %s: training pairs not found; using the MOCLIP grid", model_dir)
        return default_wavelengths_nm()
    raise ValueError(
        f"model {model_dir} predicts {bands} bands and its training pairs file is not found; "
        "give a pairs file on the same grid with --pairs"
    )


def pairs_wavelengths_nm(path: Path) -> NDArray[np.float64]:
    """The band grid of a pairs file, without reading its geometry (an HDF5 pairs file) where
    the layout allows."""
    path = Path(path)
    if is_moclip_npz(path):
        return load_pairs(path).wavelength_nm
    with open_versioned(path, pairs_file.SCHEMA, pairs_file.SCHEMA_VERSION, "pairs file") as f:
        grid = np.asarray(f["wavelength_nm"][()], dtype=np.float64)
    check_wavelengths(grid, f"{path}: wavelength_nm")
    return grid


# --- from a pairs file ---------------------------------------------------------------------


def from_pairs(
    pairs_path: Path, split: str = "test", limit: int | None = None, seed: int = 0
) -> Targets:
    """The spectra of ``split`` in a pairs file (HDF5 or MOCLIP ``.npz``) as targets of weight
    one; ``limit`` keeps a random subset of that many rows drawn with ``seed`` (kept in file
    order, so the same arguments always give the same targets). Ids are
    ``pairs:{design_id}:{row}``: the design tells a search what the right answer was."""
    if split not in pairs_file.SPLIT_NAMES:
        raise ValueError(
            f"split {split!r} is not known; known: {', '.join(pairs_file.SPLIT_NAMES)}"
        )
    if limit is not None:
        COUNT.check("limit", limit)
    SEED.check("seed", seed)
    pairs = load_pairs(Path(pairs_path))
    rows = np.flatnonzero(pairs.split == pairs_file.SPLIT_NAMES.index(split))
    if rows.size == 0:
        raise ValueError(f"pairs file {pairs_path} has no rows in split {split!r}")
    if limit is not None and limit < rows.size:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=limit, replace=False))
    ids = tuple(f"pairs:{int(pairs.design_id[r])}:{int(r)}" for r in rows)
    return Targets.build(
        pairs.spectra[rows],
        pairs.wavelength_nm,
        None,
        ids,
        {"source": "pairs", "pairs": str(pairs_path), "split": split, "rows": rows.tolist()},
        material=pairs.material,  # measured on (or computed in) that film
    )


# --- from a CSV file -----------------------------------------------------------------------


def from_csv(csv_path: Path, wavelength_nm: ArrayLike) -> Targets:
    """Targets from a CSV with a header: ``wavelength_nm, tx, ty`` (one target, named after the
    file's stem), or the same with a ``target_id`` column (one target per id, in order of first
    appearance; the rows of one id need not be adjacent). Each target's tx and ty are linearly
    interpolated onto ``wavelength_nm``, which its own wavelengths must cover: extrapolating a
    filter edge would invent a target nobody asked for."""
    path = Path(csv_path)
    grid = np.asarray(wavelength_nm, dtype=np.float64)
    check_wavelengths(grid)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {path} does not exist")
    rows: dict[str, list[tuple[int, float, float, float]]] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(
            f"{path} is not a UTF-8 text CSV (a binary file?); expected a header "
            f"{','.join(CSV_COLUMNS)}"
        ) from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise ValueError(f"{path} is empty; expected a header {','.join(CSV_COLUMNS)}")
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"{path} lacks the column(s) {', '.join(missing)} (header: {', '.join(header)}); "
                f"expected {','.join(CSV_COLUMNS)}[,{CSV_ID_COLUMN}]"
            )
        reader.fieldnames = header
        long = CSV_ID_COLUMN in header
        for record in reader:
            line = reader.line_num
            if all(v is None or not str(v).strip() for v in record.values()):
                continue  # a blank line
            name = (record.get(CSV_ID_COLUMN) or "").strip() if long else path.stem
            if not name:
                raise ValueError(f"{path} line {line}: empty {CSV_ID_COLUMN}")
            lam, tx, ty = (_csv_number(path, line, c, record.get(c)) for c in CSV_COLUMNS)
            for column, value in (("tx", tx), ("ty", ty)):
                if not SPECTRA.contains(value):
                    raise ValueError(
                        f"{path} line {line}: {column} {value:g} is outside the allowed range "
                        f"{SPECTRA.describe()} (relative transmission)"
                    )
            rows.setdefault(name, []).append((line, lam, tx, ty))
    if not rows:
        raise ValueError(f"{path} has a header but no rows")
    spectra = np.empty((len(rows), 2, grid.size))
    for k, (name, points) in enumerate(rows.items()):
        table = np.array([p[1:] for p in points])
        band_nm = table[:, 0]
        steps = np.diff(band_nm)
        if np.any(steps <= 0):
            bad = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise ValueError(
                f"{path} line {points[bad][0]}: wavelength_nm {band_nm[bad]:g} of target {name!r} "
                f"does not increase (previous {band_nm[bad - 1]:g}); sort each target by wavelength"
            )
        outside = (grid < band_nm[0]) | (grid > band_nm[-1])
        if np.any(outside):
            band = grid[np.flatnonzero(outside)[0]]
            raise ValueError(
                f"{path}: target {name!r} covers {band_nm[0]:g}..{band_nm[-1]:g} nm, which does not "
                f"include the band {band:g} nm (the bands are {grid[0]:g}..{grid[-1]:g} nm)"
            )
        spectra[k, 0] = np.interp(grid, band_nm, table[:, 1])
        spectra[k, 1] = np.interp(grid, band_nm, table[:, 2])
    return Targets.build(spectra, grid, None, tuple(rows), {"source": "csv", "csv": str(path)})


def _csv_number(path: Path, line: int, column: str, text: str | None) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        raise ValueError(f"{path} line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{path} line {line}: {column} is {text!r}; give a finite number")
    return value


# --- parametric filters --------------------------------------------------------------------


@dataclass(frozen=True)
class FilterSpec:
    """One parametric filter: a smooth transmission shape between a floor of ``1 - depth`` and
    full transmission 1, so ``depth`` is the contrast asked for.

    With g(l) = exp(-4 ln2 (l - c)^2 / w^2) (a Gaussian of FWHM w at c) and
    s(l) = 1 / (1 + exp(-2 ln9 (l - c) / w)) (a logistic edge rising 10 % -> 90 % over w):

    * bandpass: T = 1 - depth + depth g  (1 at c, 1 - depth/2 at c +- w/2, 1 - depth far off);
    * notch: T = 1 - depth g  (1 - depth at c, 1 - depth/2 at c +- w/2, 1 far off);
    * longpass: T = 1 - depth + depth s  (1 - depth below, 1 - depth/2 at c, 1 above);
    * shortpass: T = 1 - depth s  (the mirror: 1 below, 1 - depth/2 at c, 1 - depth above).

    ``pol`` x or y: that polarization has weight 1 and the other weight 0 (it holds the same
    curve, which then counts for nothing); ``both``: both have the curve and weight 1.
    """

    kind: str
    pol: str
    centre_nm: float
    width_nm: float
    depth: float

    def __post_init__(self) -> None:
        if self.kind not in FILTER_KINDS:
            raise ValueError(
                f"filter kind {self.kind!r} is not known; known: {', '.join(FILTER_KINDS)}"
            )
        if self.pol not in FILTER_POLARIZATIONS:
            raise ValueError(
                f"filter polarization {self.pol!r} is not known; known: "
                f"{', '.join(FILTER_POLARIZATIONS)}"
            )
        CENTRE_NM.check("filter centre_nm", self.centre_nm)
        WIDTH_NM.check("filter width_nm", self.width_nm)
        DEPTH.check("filter depth", self.depth)

    @property
    def spec(self) -> str:
        """The normalized spec string, which is also the target's id."""
        numbers = (_number_text(v) for v in (self.centre_nm, self.width_nm, self.depth))
        return " ".join((self.kind, self.pol, *numbers))

    def transmission(self, wavelength_nm: NDArray[np.float64]) -> NDArray[np.float64]:
        """T(l) on the given bands (see the class docstring)."""
        x = (np.asarray(wavelength_nm, dtype=np.float64) - self.centre_nm) / self.width_nm
        if self.kind in ("bandpass", "notch"):
            shape = np.exp(-_FWHM * x * x)
        else:
            shape = 0.5 * (1.0 + np.tanh(0.5 * _EDGE * x))  # the logistic, without overflow
        lifted = 1.0 - self.depth + self.depth * shape
        dipped = 1.0 - self.depth * shape
        out: NDArray[np.float64] = lifted if self.kind in ("bandpass", "longpass") else dipped
        return out


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def parse_filter(spec: str) -> FilterSpec:
    """``"KIND POL CENTRE_NM WIDTH_NM DEPTH"`` (whitespace-separated, case-insensitive words)
    to a checked :class:`FilterSpec`."""
    parts = spec.split()
    if len(parts) != 5:
        raise ValueError(f"filter {spec!r} must be {FILTER_GRAMMAR}")
    kind, pol = parts[0].lower(), parts[1].lower()
    numbers: list[float] = []
    for label, text in zip(("centre_nm", "width_nm", "depth"), parts[2:], strict=True):
        try:
            numbers.append(float(text))
        except ValueError:
            raise ValueError(
                f"filter {spec!r}: {label} {text!r} is not a number ({FILTER_GRAMMAR})"
            ) from None
    try:
        return FilterSpec(kind, pol, *numbers)
    except ValueError as exc:
        raise ValueError(f"filter {spec!r}: {exc}") from None


def from_filters(specs: Sequence[str], wavelength_nm: ArrayLike) -> Targets:
    """One target per filter spec (see :class:`FilterSpec`), id the normalized spec; the same
    filter twice is refused (as a duplicate id), since it would count twice in a search."""
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise ValueError(f"no filters given; give at least one ({FILTER_GRAMMAR})")
    grid = np.asarray(wavelength_nm, dtype=np.float64)
    check_wavelengths(grid)
    filters = [parse_filter(s) for s in specs]
    spectra = np.empty((len(filters), 2, grid.size))
    weight = np.ones_like(spectra)
    for k, flt in enumerate(filters):
        spectra[k] = flt.transmission(grid)
        if flt.pol != "both":
            weight[k, 1 - POLARIZATIONS.index(flt.pol)] = 0.0
    ids = tuple(f.spec for f in filters)
    return Targets.build(spectra, grid, weight, ids, {"source": "filters", "filters": list(ids)})


# --- weights -------------------------------------------------------------------------------


def weight_window(
    targets: Targets, lo_nm: float, hi_nm: float, polarization: str | None = None
) -> Targets:
    """The same targets with weight zero outside the bands in [lo_nm, hi_nm] and, when
    ``polarization`` is x or y, in the other polarization: "only this part of the spectrum
    matters". A window with no band inside is refused, and so is one that leaves a target with
    no weight at all (the error names it)."""
    WINDOW_NM.check("window lo_nm", lo_nm)
    WINDOW_NM.check("window hi_nm", hi_nm)
    if not lo_nm < hi_nm:
        raise ValueError(f"window {lo_nm:g},{hi_nm:g} nm must have lo < hi")
    if polarization is not None and polarization not in POLARIZATIONS:
        raise ValueError(
            f"window polarization {polarization!r} is not known; known: {', '.join(POLARIZATIONS)}"
        )
    grid = targets.wavelength_nm
    inside = (grid >= lo_nm) & (grid <= hi_nm)
    if not np.any(inside):
        raise ValueError(
            f"window {lo_nm:g}..{hi_nm:g} nm holds no band; the bands are "
            f"{grid[0]:g}..{grid[-1]:g} nm"
        )
    mask = np.broadcast_to(inside.astype(np.float64), (2, grid.size)).copy()
    if polarization is not None:
        mask[1 - POLARIZATIONS.index(polarization)] = 0.0
    provenance: dict[str, Any] = {
        **targets.provenance,
        "window_nm": [float(lo_nm), float(hi_nm)],
        "window_polarization": polarization or "both",
    }
    try:
        return Targets(
            targets.spectra.copy(),
            grid.copy(),
            targets.weight * mask,
            targets.target_id,
            provenance,
            material=targets.material,
        )
    except ValueError as exc:
        raise ValueError(f"window {lo_nm:g}..{hi_nm:g} nm: {exc}") from None
