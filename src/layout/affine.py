"""Least-squares 2-D affine and similarity fits between two point sets.

Chip-to-stage alignment (manifest µm → stage µm, from three or more fiducials) and image
registration (chip µm ↔ camera pixels) need the same fit; it lives here, once, because both
acquisition and dataset may import layout.

Every function here is unit-agnostic: a transform maps whatever units its source points were in
to whatever units its target points were in, and residuals are in target units. Callers name
the units (``stage_from_chip``, ``residual_px``).

Decomposition used by :attr:`Affine2D.rotation_deg`, :attr:`Affine2D.scale` and
:attr:`Affine2D.shear` (applied right to left to a column vector)::

    matrix = R(rotation) @ diag(sx, sy) @ [[1, shear], [0, 1]]

so ``rotation_deg`` is the direction of the image of the source x axis, ``sx`` the length of
that image, ``sy`` carries the sign of the determinant (negative for a mirrored transform) and
``shear`` is the x displacement per unit y applied before scaling (0 for a similarity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Points whose spread about their centroid is below this fraction of their largest coordinate
# magnitude are one point as far as float64 can tell (differences keep < 7 significant digits).
COINCIDENT_RATIO = 1e-9
# An affine fit is refused when the smaller singular value of the centred source points is below
# this fraction of the larger: the points are (nearly) collinear, and noise across the line would
# be amplified by the inverse of this ratio into the fitted matrix.
COLLINEAR_RATIO = 1e-6


def _rotation(rotation_deg: float) -> NDArray[np.float64]:
    t = math.radians(rotation_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s], [s, c]], dtype=np.float64)


def _frozen(values: ArrayLike, shape: tuple[int, ...], name: str) -> NDArray[np.float64]:
    array = np.array(values, dtype=np.float64)  # a copy: the caller's array may change later
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class Affine2D:
    """``target = matrix @ source + offset`` for 2-D points; see the module for units and the
    decomposition of ``matrix``."""

    matrix: NDArray[np.float64]  # (2, 2)
    offset: NDArray[np.float64]  # (2,)

    def __post_init__(self) -> None:
        # Frozen means frozen: read-only float64 copies, so a transform cannot drift under
        # whoever holds it.
        object.__setattr__(self, "matrix", _frozen(self.matrix, (2, 2), "matrix"))
        object.__setattr__(self, "offset", _frozen(self.offset, (2,), "offset"))

    @classmethod
    def identity(cls) -> Affine2D:
        return cls(np.eye(2), np.zeros(2))

    @classmethod
    def from_similarity(
        cls, scale: float, rotation_deg: float, offset: ArrayLike = (0.0, 0.0)
    ) -> Affine2D:
        """Uniform ``scale`` (> 0) times a rotation by ``rotation_deg`` (counter-clockwise),
        then ``offset``."""
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale={scale} must be a finite number > 0")
        return cls(scale * _rotation(rotation_deg), np.asarray(offset, dtype=np.float64))

    @classmethod
    def from_components(
        cls,
        rotation_deg: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        shear: float = 0.0,
        offset: ArrayLike = (0.0, 0.0),
    ) -> Affine2D:
        """The inverse of the decomposition: ``R(rotation) @ diag(sx, sy) @ [[1, shear], [0, 1]]``
        (``sx`` > 0; a negative ``sy`` mirrors)."""
        sx, sy = (float(v) for v in scale)
        if not (math.isfinite(sx) and sx > 0) or not math.isfinite(sy) or sy == 0:
            raise ValueError(f"scale={scale} must be (sx > 0, sy != 0), both finite")
        upper = np.array([[sx, sx * shear], [0.0, sy]], dtype=np.float64)
        return cls(_rotation(rotation_deg) @ upper, np.asarray(offset, dtype=np.float64))

    def apply(self, points: ArrayLike) -> NDArray[np.float64]:
        """Map (N, 2) points, or one (2,) point, returning the same shape."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim not in (1, 2) or p.shape[-1] != 2:
            raise ValueError(f"points must have shape (N, 2) or (2,), got {p.shape}")
        out: NDArray[np.float64] = p @ self.matrix.T + self.offset
        return out

    @property
    def determinant(self) -> float:
        return float(np.linalg.det(self.matrix))

    def inverse(self) -> Affine2D:
        """The transform back; refused when the smaller singular value of the matrix is within
        16 float64 epsilons of the larger (a degenerate fit: the target points were collinear)."""
        sv = np.linalg.svd(self.matrix, compute_uv=False)
        if sv[1] <= np.finfo(np.float64).eps * 16 * sv[0]:
            raise ValueError(
                f"matrix {self.matrix.tolist()} is singular (singular values {sv.tolist()}); "
                "it has no inverse"
            )
        inv = np.asarray(np.linalg.inv(self.matrix), dtype=np.float64)
        return Affine2D(inv, -inv @ self.offset)

    def compose(self, other: Affine2D) -> Affine2D:
        """``self ∘ other``: apply ``other`` first, then ``self``."""
        return Affine2D(self.matrix @ other.matrix, self.matrix @ other.offset + self.offset)

    def _first_column_length(self) -> float:
        sx = math.hypot(self.matrix[0, 0], self.matrix[1, 0])
        if sx == 0:
            raise ValueError(
                f"matrix {self.matrix.tolist()} maps the x axis to a point; "
                "it has no rotation/scale/shear decomposition"
            )
        return sx

    @property
    def rotation_deg(self) -> float:
        """Counter-clockwise angle of the image of the source x axis, in (-180, 180]."""
        self._first_column_length()
        return math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0]))

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``: ``sx`` > 0 is the length of the image of the x axis; ``sy`` is negative
        when the transform mirrors."""
        sx = self._first_column_length()
        return sx, self.determinant / sx

    @property
    def shear(self) -> float:
        """x displacement per unit y, applied before scaling; 0 for a similarity."""
        sx = self._first_column_length()
        return float(self.matrix[:, 0] @ self.matrix[:, 1]) / sx**2

    def __repr__(self) -> str:
        return f"Affine2D(matrix={self.matrix.tolist()}, offset={self.offset.tolist()})"


@dataclass(frozen=True, eq=False)
class AffineFit:
    """A fitted transform and how well it explains the points, in target units.

    ``residuals`` (N, 2) is ``target - transform(source)`` for every point, including points
    given zero weight (so a rejected outlier still shows how far off it is);
    ``rms_residual`` (root of the weighted mean squared residual length) and ``max_residual``
    (largest residual length) cover only points with positive weight.
    """

    transform: Affine2D
    residuals: NDArray[np.float64]
    rms_residual: float
    max_residual: float


def _check_points(
    source: ArrayLike, target: ArrayLike, weights: ArrayLike | None, minimum: int, what: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    for name, p in (("source", src), ("target", dst)):
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"{name} points must have shape (N, 2), got {p.shape}")
    if src.shape != dst.shape:
        raise ValueError(
            f"source and target must have the same shape, got {src.shape} and {dst.shape}"
        )
    for name, p in (("source", src), ("target", dst)):
        bad = int(np.count_nonzero(~np.isfinite(p)))
        if bad:
            raise ValueError(f"{name} points hold {bad} NaN/inf values")
    n = src.shape[0]
    if weights is None:
        w = np.ones(n, dtype=np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and >= 0")
    used = int(np.count_nonzero(w > 0))
    if used < minimum:
        raise ValueError(f"{what} needs at least {minimum} points with positive weight, got {used}")
    return src, dst, w


def _centred(
    points: NDArray[np.float64], w: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    mean: NDArray[np.float64] = (w @ points) / w.sum()
    return mean, points - mean


def _check_spread(
    points: NDArray[np.float64], centred: NDArray[np.float64], w: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Singular values of the weighted, centred source points, after refusing coincident ones."""
    used = w > 0
    magnitude = float(np.abs(points[used]).max())
    sv = np.linalg.svd(
        centred[used] * np.sqrt(w[used])[:, None] / math.sqrt(w.sum()), compute_uv=False
    )
    spread = float(math.hypot(*sv))  # rms distance from the centroid
    if spread <= COINCIDENT_RATIO * magnitude:
        raise ValueError(
            f"source points coincide (rms spread {spread:.3g} <= {COINCIDENT_RATIO:g} x "
            f"coordinate magnitude {magnitude:.3g})"
        )
    return np.asarray(sv, dtype=np.float64)


def _fit(
    transform: Affine2D, src: NDArray[np.float64], dst: NDArray[np.float64], w: NDArray[np.float64]
) -> AffineFit:
    residuals = dst - transform.apply(src)
    length = np.hypot(residuals[:, 0], residuals[:, 1])
    used = w > 0
    rms = math.sqrt(float(w @ length**2) / float(w.sum()))
    return AffineFit(transform, residuals, rms, float(length[used].max()))


def fit_affine(
    source: ArrayLike, target: ArrayLike, *, weights: ArrayLike | None = None
) -> AffineFit:
    """Full 6-degree-of-freedom weighted least squares, ``target ≈ A @ source + b``.

    Minimises ``sum(w_i * |A s_i + b - t_i|^2)``. Centring both point sets on their weighted
    centroids separates the offset from the matrix, so the solve is well conditioned even for
    stage coordinates far from the origin. Refused (one-line ValueError) for fewer than 3 points
    with positive weight, shapes other than matching (N, 2), NaN/inf, coincident points
    (:data:`COINCIDENT_RATIO`) and collinear points (:data:`COLLINEAR_RATIO`).
    """
    src, dst, w = _check_points(source, target, weights, 3, "an affine fit")
    src_mean, src_c = _centred(src, w)
    dst_mean, dst_c = _centred(dst, w)
    sv = _check_spread(src, src_c, w)
    if sv[1] <= COLLINEAR_RATIO * sv[0]:
        raise ValueError(
            f"source points are collinear (singular value ratio {sv[1] / sv[0]:.3g} <= "
            f"{COLLINEAR_RATIO:g}); an affine fit needs points spanning two dimensions"
        )
    root = np.sqrt(w)[:, None]
    solution, *_ = np.linalg.lstsq(src_c * root, dst_c * root, rcond=None)
    matrix = np.asarray(solution.T, dtype=np.float64)
    return _fit(Affine2D(matrix, dst_mean - matrix @ src_mean), src, dst, w)


def fit_similarity(
    source: ArrayLike, target: ArrayLike, *, weights: ArrayLike | None = None
) -> AffineFit:
    """Rotation, uniform scale and offset (4 degrees of freedom), never a mirror: Umeyama (1991),
    "Least-squares estimation of transformation parameters between two point patterns",
    weighted. Collinear points are fine here (two distinct points determine a similarity);
    coincident ones are refused (:data:`COINCIDENT_RATIO`).
    """
    src, dst, w = _check_points(source, target, weights, 2, "a similarity fit")
    src_mean, src_c = _centred(src, w)
    dst_mean, dst_c = _centred(dst, w)
    sv = _check_spread(src, src_c, w)
    total = float(w.sum())
    covariance = (dst_c * w[:, None]).T @ src_c / total
    u, d, vt = np.linalg.svd(covariance)
    flip = np.diag([1.0, math.copysign(1.0, float(np.linalg.det(u) * np.linalg.det(vt)))])
    rotation = u @ flip @ vt
    variance = float(sv @ sv)  # weighted mean squared distance of the source from its centroid
    scale = float(np.trace(np.diag(d) @ flip)) / variance
    if not scale > 0:
        raise ValueError(
            f"fitted scale is {scale:.3g}: the target points coincide, or mirror the source "
            "with no preferred rotation"
        )
    matrix = scale * rotation
    return _fit(Affine2D(matrix, dst_mean - matrix @ src_mean), src, dst, w)
