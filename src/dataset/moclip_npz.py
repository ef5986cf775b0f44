"""The public MOCLIP release's ``.npz`` layout (contract 5's import and export).

Keys, N pairs, W bands (the release has W = 29, 450-730 nm, and 128 px cells):

* ``wvl`` (W,): wavelengths in nm, strictly increasing.
* ``geom`` (N, S, S): the unit-cell raster, binary (uint8, bool or float 0/1).
* ``params`` (N, 2): period and film thickness in micrometres.
* ``spectra_x``, ``spectra_y`` (N, W): zero-order transmission (0-1) per polarization.

The release carries no design ids and no splits. Rows with the same geometry bits and the
same params are the same physical design (a user's file may hold replicas), so the id is a
hash of exactly those: identical rows share it, :func:`assign_splits` groups by it, and a
design never straddles splits. The id is stable across runs, machines and row order, but it is
not the layout's ``design_id``: a pairs file exported and imported again gets hashed ids and
fresh splits (same seed, same splits).

The layout records no film material either. MOCLIP's chips are LPCVD amorphous silicon, so an
import is of material ``a-Si`` (``layout.material.MOCLIP_MATERIAL``) unless the caller says
otherwise; an exported file of another material must be imported with that material named.

Loading never unpickles: ``np.load(allow_pickle=False)`` refuses object arrays, which is how a
crafted ``.npz`` would run code.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from common.atomic import atomic_output
from dataset.pairs_file import Pairs, assign_splits
from layout.material import MOCLIP_MATERIAL, check_name

log = logging.getLogger(__name__)

FORMAT = "moclip_npz"
KEYS = ("wvl", "geom", "params", "spectra_x", "spectra_y")
DESIGN_ID_RULE = (
    "blake2b-64 over the cell size (int64 LE), the packed geometry bits (row-major, 1 = "
    "material) and params as float64 LE, top bit cleared"
)
_ID_MASK = (1 << 63) - 1
_CHUNK_ROWS = 2048  # bounds the temporaries of the 0/1 check on float geometry
# Beyond these the numbers are in the other unit: MOCLIP periods are 0.3-0.6 um, bands
# 450-730 nm. No metasurface cell is 100 um; no optical band lies below 50 nm.
_MAX_PARAM_UM = 100.0
_MIN_WVL_NM = 50.0


def content_design_ids(
    geometry: NDArray[np.bool_], params: NDArray[np.float64]
) -> NDArray[np.int64]:
    """A non-negative int64 per row from its geometry bits and params, equal for equal rows.

    Hashing (rather than numbering distinct rows) keeps an id the same whatever else the file
    holds, so two files with the same design agree on its id.
    """
    n = geometry.shape[0]
    packed = np.packbits(geometry.reshape(n, -1), axis=1)
    p = np.ascontiguousarray(params, dtype="<f8") + 0.0  # + 0.0 folds -0.0 into 0.0
    header = np.asarray(geometry.shape[1:], dtype="<i8").tobytes()
    ids = np.empty(n, dtype=np.int64)
    for i in range(n):
        h = hashlib.blake2b(header, digest_size=8)
        h.update(packed[i].tobytes())
        h.update(p[i].tobytes())
        ids[i] = int.from_bytes(h.digest(), "little") & _ID_MASK
    return ids


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_arrays(path: Path) -> tuple[dict[str, NDArray[Any]], list[str]]:
    """The five arrays (and the names of any other keys), read without pickle; file closed."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable .npz archive ({exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path} holds a single .npy array, expected an .npz archive with keys {list(KEYS)}"
        )
    with loaded:
        found = list(loaded.files)
        missing = [k for k in KEYS if k not in found]
        if missing:
            raise ValueError(
                f"{path}: missing key(s) {missing}; a MOCLIP npz holds {list(KEYS)}, found {found}"
            )
        arrays: dict[str, NDArray[Any]] = {}
        for key in KEYS:
            try:
                arrays[key] = np.asarray(loaded[key])
            except ValueError as exc:  # numpy's refusal of object (pickled) arrays lands here
                raise ValueError(
                    f"{path}: key {key!r} cannot be read without pickle ({exc}); "
                    "store it as a numeric array"
                ) from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise ValueError(f"{path}: key {key!r} is corrupt ({exc})") from None
    return arrays, [k for k in found if k not in KEYS]


def _need(ok: bool, path: Path, key: str, arr: NDArray[Any], expected: str) -> None:
    if not ok:
        raise ValueError(
            f"{path}: {key} has shape {arr.shape} dtype {arr.dtype}, expected {expected}"
        )


def _is_real(arr: NDArray[Any], kinds: str = "iuf") -> bool:
    return arr.dtype.kind in kinds


def _binary(geom: NDArray[Any]) -> bool:
    if geom.dtype == np.bool_ or geom.size == 0:
        return True
    for start in range(0, geom.shape[0], _CHUNK_ROWS):
        part = geom[start : start + _CHUNK_ROWS]
        if not np.all((part == 0) | (part == 1)):
            return False
    return True


_Checked = tuple[
    NDArray[np.bool_], NDArray[np.float64], NDArray[np.floating[Any]], NDArray[np.float64], int
]


def _check(path: Path, a: dict[str, NDArray[Any]], clip_spectra: bool) -> _Checked:
    """Every key checked against the layout, naming the key at fault; returns geometry,
    params, spectra (N, 2, W), wavelengths and how many spectral values were clipped."""
    wvl, geom, params = a["wvl"], a["geom"], a["params"]
    _need(
        wvl.ndim == 1 and wvl.size > 0 and _is_real(wvl),
        path,
        "wvl",
        wvl,
        "(W,) real numbers in nm",
    )
    w = wvl.size
    wvl = wvl.astype(np.float64)
    if not np.all(np.isfinite(wvl)) or np.any(np.diff(wvl) <= 0) or wvl[0] <= 0:
        raise ValueError(f"{path}: wvl must be positive, finite and strictly increasing (nm)")
    if wvl[-1] < _MIN_WVL_NM:
        raise ValueError(
            f"{path}: wvl spans {wvl[0]:g}..{wvl[-1]:g}, which looks like um; the layout stores nm"
        )
    _need(
        geom.ndim == 3 and geom.shape[0] > 0 and geom.shape[1] == geom.shape[2] > 0
        and _is_real(geom, "biuf"),
        path, "geom", geom, "(N, S, S) binary, e.g. (N, 128, 128)",
    )  # fmt: skip
    n = geom.shape[0]
    if not _binary(geom):
        raise ValueError(f"{path}: geom values must be 0 or 1 (a binary raster)")
    _need(params.shape == (n, 2) and _is_real(params), path, "params", params, f"({n}, 2) in um")
    params = params.astype(np.float64)
    if not np.all(np.isfinite(params)) or np.any(params <= 0):
        raise ValueError(f"{path}: params (period, thickness in um) must be finite and positive")
    if params.max() >= _MAX_PARAM_UM:
        raise ValueError(
            f"{path}: params reach {params.max():g}, which looks like nm; the layout stores "
            "period and thickness in um (e.g. 0.4, 0.178)"
        )
    spectra = []
    clipped = 0
    for key in ("spectra_x", "spectra_y"):
        s = a[key]
        _need(
            s.shape == (n, w) and _is_real(s, "f"), path, key, s, f"({n}, {w}) float transmission"
        )
        if not np.all(np.isfinite(s)):
            raise ValueError(
                f"{path}: {key} holds {int(np.count_nonzero(~np.isfinite(s)))} NaN/inf values"
            )
        lo, hi = float(s.min()), float(s.max())
        if lo < 0 or hi > 1:
            if not clip_spectra:
                hint = (
                    " (percent? divide by 100)"
                    if hi > 1.5
                    else " (pass clip_spectra / --clip-spectra to clip)"
                )
                raise ValueError(
                    f"{path}: {key} spans {lo:g}..{hi:g}; transmission must be a fraction in [0, 1]{hint}"
                )
            clipped += int(np.count_nonzero((s < 0) | (s > 1)))
            s = np.clip(s, 0.0, 1.0)
        spectra.append(s)
    dtype = np.result_type(*spectra)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    stacked = np.stack(spectra, axis=1).astype(dtype, copy=False)
    return np.asarray(geom, dtype=bool), params, stacked, wvl, clipped


def read_moclip_npz(
    path: Path,
    *,
    split_seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    clip_spectra: bool = False,
    material: str = MOCLIP_MATERIAL,
) -> Pairs:
    """The pairs in a MOCLIP-layout ``.npz``, with content-hash design ids and grouped splits.

    ``clip_spectra`` clips transmission outside [0, 1] (measurement noise around full
    transmission) instead of refusing it; the count clipped goes into the provenance.
    ``material`` is the film the spectra were measured on (the layout has no place for it):
    MOCLIP's own by default.
    """
    check_name(material, "material")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOCLIP npz {path} does not exist")
    arrays, extra = _load_arrays(path)
    if extra:
        log.warning("%s: ignoring keys outside the MOCLIP layout: %s", path, extra)
    geometry, params, spectra, wavelength_nm, clipped = _check(path, arrays, clip_spectra)
    ids = content_design_ids(geometry, params)
    provenance: dict[str, Any] = {
        "source": FORMAT,
        "source_file": path.name,
        "source_sha256": _sha256(path),
        "split_seed": split_seed,
        "split_fractions": [float(f) for f in fractions],
        "design_id_rule": DESIGN_ID_RULE,
    }
    if clip_spectra:
        provenance["spectra_clipped"] = clipped
    if extra:
        provenance["ignored_keys"] = extra
    pairs = Pairs(
        geometry,
        params,
        spectra,
        wavelength_nm,
        ids,
        assign_splits(ids, fractions, split_seed),
        provenance,
        material=material,
    )
    log.info("read %d pairs (%d designs) from %s", len(pairs), np.unique(ids).size, path)
    return pairs


def write_moclip_npz(path: Path, pairs: Pairs) -> None:
    """Write ``pairs`` in the MOCLIP layout, atomically, to exactly ``path``.

    Design ids, splits, provenance and the material have no place in the layout and are
    dropped; spectra go out as float32, as the release stores them for its float32 model.
    """
    path = Path(path)
    arrays = {
        "wvl": np.asarray(pairs.wavelength_nm, dtype=np.float64),
        "geom": pairs.geometry.astype(np.uint8),
        "params": np.asarray(pairs.params, dtype=np.float64),
        "spectra_x": pairs.spectra[:, 0].astype(np.float32),
        "spectra_y": pairs.spectra[:, 1].astype(np.float32),
    }
    # Through an open file, so numpy cannot append ".npz" to the temporary name.
    with atomic_output(path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
    log.info("wrote %d pairs to %s", len(pairs), path)
