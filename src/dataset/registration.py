"""Pad-grid registration: where the chip manifest's pads really are in one tile's image.

The scan knows where it meant to look (the tile's chip centre, the nominal pixel size and the
camera's nominal orientation); the image says where it did look. Stage landing error, the
alignment's residual, the camera's small rotation against the stage and the objective's true
magnification move pads by pixels, and a pad region eroded by a micrometre or so only tolerates
a fraction of that. So every tile is registered on its own image, against the manifest.

Method (pad-grid edges; no fiducial is needed, so interior tiles of a large array register the
same way as tiles at its corners):

1. Contrast: the flat-fielded transmission of a few bands (both polarizations), and its squared
   central differences along columns and along rows, summed over bands. Pads usually abut each
   other (no gap), so a pad is not a blob: what every pad has is four edges where the spectrum
   changes, and the sum of squared gradients over bands peaks on an edge whichever way and in
   whichever band the transmission steps. A Gaussian PSF blurs an edge symmetrically, so the
   peak sits on the geometric edge.
2. Coarse shift: with the nominal transform, sample the column-gradient energy along the middle
   half of every predicted vertical pad edge for whole-pixel shifts within half a pad pitch, and
   the row-gradient energy along horizontal edges likewise; the best shift per axis wins. Half
   a pitch is the most any grid registration can resolve (the grid repeats), so the prior (the
   alignment and the stage) must be better than that, which is what the plan asks of it.
3. Sub-pixel pad centres: per pad and edge, a profile of the energy across the edge (bilinear
   samples along the middle half of the edge, averaged), its peak by a three-point Gaussian fit;
   a pad's centre offset along u is the mean of its left and right edge offsets (one edge
   suffices when the other has no contrast), along v of its top and bottom ones.
4. A similarity fit (rotation, one scale, offset; :func:`layout.affine.fit_similarity`) of pad
   centres chip -> pixel, outliers (residual above four times the median and 0.3 px) dropped
   and refitted; steps 3-4 are repeated once around the fitted transform. The residual is the
   rms distance in pixels between measured pad centres and the fit.

The nominal orientation is that of the virtual microscope's camera (and of any camera mounted
the same way): image columns run along chip +x, image rows along chip -y (row 0 is the top of
the image). Registration finds the rest; it never needs the true rotation or scale.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from layout.affine import Affine2D, AffineFit, fit_affine, fit_similarity

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
Model = Literal["similarity", "affine"]

METHOD = "pad-grid edges (multi-band gradient energy), similarity fit"
# (d col / d u, d col / d v; d row / d u, d row / d v) per µm, times 1 / pixel size.
NOMINAL_ORIENTATION = ((1.0, 0.0), (0.0, -1.0))
# Half-width (px) of the profile sampled across an edge, and of the window its peak is taken in.
_PROFILE_HALF_PX = 5
_PEAK_HALF_PX = 3
# An edge counts when its energy peak stands this many times above the image's typical
# (noise-only) energy; below that the centroid is noise.
_EDGE_SNR = 6.0
_OUTLIER_FACTOR = 4.0
_OUTLIER_FLOOR_PX = 0.3


@dataclass(frozen=True, eq=False)
class Registration:
    """Chip µm -> pixel (col, row) of one tile, and how well the pads agreed with it.

    ``pad_index`` are indices into the centres the caller passed (pads measured and used in the
    fit: outliers excluded), ``pad_residual_px`` the residual length of each of them.
    """

    transform: Affine2D
    method: str
    residual_px: float  # rms over the pads used
    max_residual_px: float
    pads_measured: int
    pad_index: NDArray[np.int64] = field(repr=False)
    pad_residual_px: FloatArray = field(repr=False)
    shift_px: tuple[float, float] = (0.0, 0.0)  # image centre, measured minus nominal
    reliable: bool = True  # False: too few pads had edges to fit more than a shift

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for provenance."""
        t = self.transform
        sx, sy = t.scale
        return {
            "method": self.method,
            "rotation_deg": round(t.rotation_deg, 5),
            "um_per_px": round(2.0 / (abs(sx) + abs(sy)), 6),
            "shear": round(t.shear, 6),
            "shift_px": [round(v, 3) for v in self.shift_px],
            "residual_px": round(self.residual_px, 4),
            "max_residual_px": round(self.max_residual_px, 4),
            "pads_used": int(self.pad_index.size),
            "pads_measured": self.pads_measured,
            "reliable": self.reliable,
        }


def nominal_transform(
    centre_chip_um: ArrayLike,
    pixel_size_um: float,
    height_px: int,
    width_px: int,
    orientation: tuple[tuple[float, float], tuple[float, float]] = NOMINAL_ORIENTATION,
) -> Affine2D:
    """Chip µm -> pixel as the scan meant it: ``centre_chip_um`` at the image centre."""
    if not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError(f"pixel_size_um={pixel_size_um!r} must be a finite number > 0")
    matrix = np.asarray(orientation, dtype=np.float64) / pixel_size_um
    centre = np.asarray(centre_chip_um, dtype=np.float64)
    if centre.shape != (2,) or not np.all(np.isfinite(centre)):
        raise ValueError(f"centre_chip_um={centre_chip_um!r} must be two finite numbers (u, v)")
    image_centre = np.array([(width_px - 1) / 2.0, (height_px - 1) / 2.0])
    return Affine2D(matrix, image_centre - matrix @ centre)


def edge_energy(images: NDArray[np.floating[Any]]) -> tuple[FloatArray, FloatArray]:
    """(along columns, along rows) squared central differences of (K, H, W) images, summed
    over K; bands holding NaN are skipped. Zero on the border pixels."""
    stack = np.asarray(images, dtype=np.float32)
    if stack.ndim != 3:
        raise ValueError(f"images must be (K, H, W), got shape {stack.shape}")
    _, h, w = stack.shape
    ex = np.zeros((h, w), dtype=np.float32)
    ey = np.zeros((h, w), dtype=np.float32)
    for image in stack:
        if not np.all(np.isfinite(image)):
            continue
        d = image[:, 2:] - image[:, :-2]
        ex[:, 1:-1] += d * d
        d = image[2:, :] - image[:-2, :]
        ey[1:-1, :] += d * d
    return ex.astype(np.float64), ey.astype(np.float64)


def _profiles(
    energy: FloatArray,
    transform: Affine2D,
    centres: FloatArray,
    half_um: float,
    pixel_um: float,
    axis: int,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Energy profiles across the two edges of every pad along ``axis`` (0: the vertical
    edges at u = centre -/+ half, 1: the horizontal edges at v = centre -/+ half).

    Returns (profiles (N, 2, n_across), inside (N, 2) True where every sample is in the
    image)."""
    n = centres.shape[0]
    along = np.linspace(-0.5 * half_um, 0.5 * half_um, max(3, round(half_um / pixel_um)))
    across = np.arange(-_PROFILE_HALF_PX, _PROFILE_HALF_PX + 1, dtype=np.float64) * pixel_um
    side = np.array([-half_um, half_um])
    # points (N, 2 sides, n_along, n_across, 2 coords) in chip µm
    pts = np.empty((n, 2, along.size, across.size, 2), dtype=np.float64)
    edge = centres[:, axis][:, None, None, None] + side[None, :, None, None] + across
    other = centres[:, 1 - axis][:, None, None, None] + along[None, None, :, None]
    pts[..., axis] = edge
    pts[..., 1 - axis] = other
    pix = transform.apply(pts.reshape(-1, 2))
    h, w = energy.shape
    inside = (pix[:, 0] >= 0) & (pix[:, 0] <= w - 1) & (pix[:, 1] >= 0) & (pix[:, 1] <= h - 1)
    values = ndimage.map_coordinates(energy, [pix[:, 1], pix[:, 0]], order=1, mode="nearest")
    values = values.reshape(n, 2, along.size, across.size)
    ok = inside.reshape(n, 2, along.size * across.size).all(axis=2)
    return values.mean(axis=2), ok


def _peaks(profiles: FloatArray, noise: float) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Sub-pixel peak offset (px, relative to the profile centre) of each profile (..., n) and
    whether it is a real edge: a clear maximum inside the peak window, well above noise."""
    n = profiles.shape[-1]
    mid = n // 2
    window = profiles[..., mid - _PEAK_HALF_PX : mid + _PEAK_HALF_PX + 1]
    k = np.argmax(window, axis=-1) + mid - _PEAK_HALF_PX
    k = np.clip(k, 1, n - 2)
    take = np.take_along_axis
    p0 = take(profiles, k[..., None], axis=-1)[..., 0]
    pm = take(profiles, (k - 1)[..., None], axis=-1)[..., 0]
    pp = take(profiles, (k + 1)[..., None], axis=-1)[..., 0]
    base = profiles.min(axis=-1)
    floor = max(noise, 1e-30)
    strong = (p0 - base > _EDGE_SNR * floor) & (p0 >= pm) & (p0 >= pp)
    # Three-point Gaussian fit on the log of the peak above the profile's floor.
    eps = 1e-3 * np.maximum(p0 - base, floor)
    lm = np.log(np.maximum(pm - base, eps))
    l0 = np.log(np.maximum(p0 - base, eps))
    lp = np.log(np.maximum(pp - base, eps))
    curvature = lm - 2.0 * l0 + lp
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(curvature < 0, 0.5 * (lm - lp) / curvature, 0.0)
    delta = np.clip(delta, -0.5, 0.5)
    return (k - mid + delta).astype(np.float64), strong


def _measure_centres(
    ex: FloatArray,
    ey: FloatArray,
    transform: Affine2D,
    centres: FloatArray,
    pad_size_um: float,
    pixel_um: float,
    noise: tuple[float, float],
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Measured chip-space offsets (N, 2) µm of the pad centres from where ``transform`` puts
    them, and which pads had at least one usable edge along each axis."""
    half = 0.5 * pad_size_um
    offsets = np.zeros_like(centres)
    valid = np.ones(centres.shape[0], dtype=bool)
    for axis, energy, floor in ((0, ex, noise[0]), (1, ey, noise[1])):
        prof, inside = _profiles(energy, transform, centres, half, pixel_um, axis)
        delta, strong = _peaks(prof, floor)
        use = strong & inside
        count = use.sum(axis=1)
        mean = np.where(count > 0, (delta * use).sum(axis=1) / np.maximum(count, 1), 0.0)
        offsets[:, axis] = mean * pixel_um
        valid &= count > 0
    return offsets, valid


def _coarse_shift(
    ex: FloatArray,
    ey: FloatArray,
    transform: Affine2D,
    centres: FloatArray,
    pad_size_um: float,
    pixel_um: float,
    search_px: int,
) -> tuple[int, int]:
    """Whole-pixel (col, row) shift maximising edge energy on the predicted pad edges."""
    half = 0.5 * pad_size_um
    along = np.linspace(-0.5 * half, 0.5 * half, max(3, round(half / pixel_um)))
    h, w = ex.shape
    shifts = np.arange(-search_px, search_px + 1)
    best: list[int] = []
    for axis, energy in ((0, ex), (1, ey)):
        pts = np.empty((centres.shape[0], 2, along.size, 2))
        pts[..., axis] = centres[:, axis][:, None, None] + np.array([-half, half])[None, :, None]
        pts[..., 1 - axis] = centres[:, 1 - axis][:, None, None] + along[None, None, :]
        pix = np.rint(transform.apply(pts.reshape(-1, 2))).astype(np.int64)
        scores = np.zeros(shifts.size)
        for i, s in enumerate(shifts):
            c = pix[:, 0] + (s if axis == 0 else 0)
            r = pix[:, 1] + (s if axis == 1 else 0)
            ok = (c >= 0) & (c < w) & (r >= 0) & (r < h)
            # Mean, not sum: a shift that pushes points off the image must not win by it.
            scores[i] = energy[r[ok], c[ok]].mean() if ok.any() else 0.0
        best.append(int(shifts[int(np.argmax(scores))]))
    return best[0], best[1]


def _fit(
    source: FloatArray, target: FloatArray, flip: Affine2D, model: Model, weights: FloatArray
) -> AffineFit:
    """Fit chip -> pixel through the mirror ``flip`` (fit_similarity never mirrors)."""
    flipped = flip.apply(source)
    used = int(np.count_nonzero(weights > 0))
    if model == "affine" and used >= 3:
        try:
            fit = fit_affine(flipped, target, weights=weights)
        except ValueError:  # collinear pads (one row or column): no affine, a similarity
            fit = fit_similarity(flipped, target, weights=weights)
    else:
        fit = fit_similarity(flipped, target, weights=weights)
    return AffineFit(fit.transform.compose(flip), fit.residuals, fit.rms_residual, fit.max_residual)


def register_grid(
    images: NDArray[np.floating[Any]],
    centres_um: ArrayLike,
    pad_size_um: float,
    pad_pitch_um: float,
    nominal: Affine2D,
    *,
    model: Model = "similarity",
    search_px: int | None = None,
    energy: tuple[FloatArray, FloatArray] | None = None,
) -> Registration:
    """Register the pads at ``centres_um`` (N, 2) chip µm to ``images`` (K, H, W) (module
    docstring); ``nominal`` maps chip µm to pixels as the scan intended. ``energy`` may pass
    :func:`edge_energy` of the images when the caller already has it."""
    if model not in ("similarity", "affine"):
        raise ValueError(f"model={model!r} must be 'similarity' or 'affine'")
    if not (0 < pad_size_um <= pad_pitch_um):
        raise ValueError(
            f"pad_size_um={pad_size_um!r} must be > 0 and <= pad_pitch_um={pad_pitch_um!r}"
        )
    centres = np.asarray(centres_um, dtype=np.float64).reshape(-1, 2)
    ex, ey = energy if energy is not None else edge_energy(images)
    sx, sy = nominal.scale
    pixel_um = 2.0 / (abs(sx) + abs(sy))
    if search_px is None:
        search_px = max(1, math.floor(0.45 * pad_pitch_um / pixel_um))
    # Typical energy away from edges: pads and glass are flat, so the median is noise.
    noise = (float(np.median(ex)), float(np.median(ey)))
    flip = Affine2D(np.diag([1.0, math.copysign(1.0, nominal.determinant)]), np.zeros(2))
    h, w = ex.shape
    half = 0.5 * pad_size_um + (_PROFILE_HALF_PX + 1) * pixel_um
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64) * half
    pix = nominal.apply((centres[:, None, :] + corners[None]).reshape(-1, 2)).reshape(-1, 4, 2)
    visible = (
        (pix[..., 0].min(axis=1) >= 0)
        & (pix[..., 0].max(axis=1) <= w - 1)
        & (pix[..., 1].min(axis=1) >= 0)
        & (pix[..., 1].max(axis=1) <= h - 1)
    )
    candidates = np.flatnonzero(visible)
    transform = nominal
    if candidates.size:
        dc, dr = _coarse_shift(
            ex, ey, nominal, centres[candidates], pad_size_um, pixel_um, search_px
        )
        transform = Affine2D(nominal.matrix, nominal.offset + np.array([dc, dr], dtype=np.float64))
    fit: AffineFit | None = None
    used = np.zeros(0, dtype=np.int64)
    residual = np.zeros(0)
    measured = 0
    for _ in range(2):
        offsets, valid = _measure_centres(
            ex, ey, transform, centres[candidates], pad_size_um, pixel_um, noise
        )
        measured = int(valid.sum())
        if measured < 2:
            break
        index = candidates[valid]
        target = transform.apply(centres[index] + offsets[valid])
        weights = np.ones(index.size)
        fit = _fit(centres[index], target, flip, model, weights)
        length = np.hypot(fit.residuals[:, 0], fit.residuals[:, 1])
        limit = max(_OUTLIER_FACTOR * float(np.median(length)), _OUTLIER_FLOOR_PX)
        keep = length <= limit
        if 2 <= keep.sum() < keep.size:
            fit = _fit(centres[index], target, flip, model, keep.astype(np.float64))
        else:
            keep[:] = True
        length = np.hypot(fit.residuals[:, 0], fit.residuals[:, 1])
        used, residual = index[keep], length[keep]
        transform = fit.transform
    centre_px = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    chip_centre = nominal.inverse().apply(centre_px)
    shift = transform.apply(chip_centre) - centre_px
    if fit is None:
        log.warning(
            "registration: %d of %d pads in the field showed edges; kept the coarse shift",
            measured,
            candidates.size,
        )
        return Registration(
            transform=transform,
            method=f"{METHOD} (too few pad edges: whole-pixel shift only)",
            residual_px=float(search_px),
            max_residual_px=float(search_px),
            pads_measured=measured,
            pad_index=np.zeros(0, dtype=np.int64),
            pad_residual_px=np.zeros(0),
            shift_px=(float(shift[0]), float(shift[1])),
            reliable=False,
        )
    return Registration(
        transform=transform,
        method=METHOD if model == "similarity" else METHOD.replace("similarity", "affine"),
        residual_px=float(math.sqrt(np.mean(residual**2))),
        max_residual_px=float(residual.max()),
        pads_measured=measured,
        pad_index=used,
        pad_residual_px=residual,
        shift_px=(float(shift[0]), float(shift[1])),
        reliable=True,
    )
