"""The fast analytic spectral model: effective-medium film plus Mie-like resonance dips.

The approximation, per design and polarization p in {x, y}:

1. **Effective film.** From the 128x128 raster take, for every column, the fill along y and, for
   every row, the fill along x. For E along x, a column (fixed x) is a stack of layers normal to
   y with the field tangential to them, so it mixes in parallel, <eps>_y; the columns then sit
   side by side along x with the field crossing their boundaries, so they mix in series:
   eps_lo = 1 / <1 / <eps>_y>_x. Taking the rows first gives the other order,
   eps_hi = <1 / <1/eps>_x>_y. These are the Wiener-type bounds of a 2-D bitmap (Grann,
   Moharam & Pommet style; physics.md section 3) and eps_x is their mean; for y the axes swap.
   Only histograms of the row and column fills enter (``fills.line_fills`` counts them with the
   raster's pixel-centre rule), so the result cannot depend on where the pattern sits. The film of index sqrt(eps_p) and the design's thickness sits on
   fused silica in an Airy stack (``film.airy_stack``).
2. **Resonance dips.** Each primitive is a silicon resonator. Its size for polarization p is
   D_p = s * L_par^a * L_perp^(1-a), with L_par its extent along p, L_perp across, a = 0.65 (the
   field-parallel extent sets the dipole length, as for nanobars), and s the equal-area-disk
   factor (1 for an ellipse, sqrt(4/pi) for a rectangle, sqrt(1 - hole/outer) for a ring).
   Its centre wavelength solves lambda_c = Re n_Si(lambda_c) * sqrt(D_p * h), the disk rule
   physics.md checked with RCWA (paired dips bracket it). Three Lorentzian dips sit at
   0.80 lambda_c (quadrupole-like, Q 8), 0.96 lambda_c (electric-dipole-like, Q 10) and
   1.05 lambda_c (magnetic-dipole-like, Q 20), each broadened by absorption
   (1/Q += 0.75 k/n). A dip's depth is its mode depth (0.6, 0.8, 0.9) x coupling x gap:
   coupling = min(1, 4 x (3 lambda^2 / 2 pi) / P^2), because a resonant particle's extinction
   approaches the dipole's unitary limit, wavelength-sized, not its geometric area; gap =
   1 - (L_x L_y / P^2)^4, so the dips fade as a primitive fills the cell and vanish for a
   film. Dips of all primitives multiply.
3. **Diffraction.** Once lambda < n_glass P, the (+-1, 0) and (0, +-1) orders carry power out of
   the zero order. A thin-element estimate of that power, |e^{i phi} - 1|^2 |m_G|^2 per order
   (phi the silicon's extra phase, m_G the raster's Fourier coefficient, taken from the column
   and row fills), weighted by the order's obliquity sqrt(1 - (lambda / n_glass P)^2) and by 4,
   multiplies the transmission by (1 - loss), loss <= 0.9. It is polarization-blind.

The constants were set by a coarse grid search against torcwa at order [3,3] on 60 random
designs (seed 2024, P 300-600 nm, 178 nm a-Si:H): overall correlation 0.59, RMSE 0.26. The
weight of 4 on the diffraction term is larger than the thin-element estimate justifies: it
stands in for everything else that makes patterned cells transmit less than their EMT film.

What it gets wrong (it is a stand-in with the right symmetries and the right kind of spectra,
not a solver; ``benchmarks/bench_spectral.py`` reports its agreement with RCWA):

* The EMT film is badly wrong for these resonant cells on its own (physics.md: a 1-D grating's
  T_TM of 0.035 at 550 nm comes out 0.96); the dips pull it toward the truth, not onto it.
* Dip positions come from a disk heuristic good to about +-40 nm for disks; bars, rings and
  crowded cells are mapped onto equal-area disks, which they are not. One crude
  quadrupole-like term and nothing higher, no guided-mode (grating) resonances, no near-field coupling between primitives, no lattice
  (Rayleigh-anomaly) sharp features, no Fano asymmetry: resonances only ever reduce T, never
  add the transmission peaks real cells show between dips.
* The diagonal diffraction orders and polarization dependence of diffraction are ignored, and
  there is no cross-polarized transmission.
* The physics is right where it is exact: an unpatterned film is exactly the Airy result, any
  circular shift of the raster gives the same spectra, transposing a design swaps x and y, and
  a design with 90-degree rotational symmetry gives equal x and y.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from layout.design import DesignLibrary, Kind
from layout.raster import IMAGE_SIZE
from simulators.materials import SUBSTRATE, get_material, refractive_index
from simulators.spectral.base import DEFAULT_MATERIAL, apply_size_bias, check_request
from simulators.spectral.fills import line_fills
from simulators.spectral.film import airy_stack

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]


@dataclass(frozen=True)
class Mode:
    """One resonance of a primitive: centre = ``shift`` x lambda_c, radiative ``q``, peak
    depth (before coupling and gap factors)."""

    shift: float
    q: float
    depth: float


DEFAULT_MODES = (
    Mode(shift=0.80, q=8.0, depth=0.6),  # quadrupole-like, the blue shoulder of large particles
    Mode(shift=0.96, q=10.0, depth=0.8),  # electric-dipole-like
    Mode(shift=1.05, q=20.0, depth=0.9),  # magnetic-dipole-like, the sharpest
)


@dataclass(frozen=True)
class AnalyticConfig:
    """The rule constants of the module docstring; change them only with a reason."""

    raster_size: int = IMAGE_SIZE
    anisotropy: float = 0.65
    modes: tuple[Mode, ...] = DEFAULT_MODES
    cross_section: float = 4.0  # x the dipole's unitary-limit cross-section 3 lambda^2 / 2 pi
    loss_damping: float = 0.75
    gap_power: float = 4.0
    diffraction_weight: float = 4.0
    max_diffraction_loss: float = 0.9
    batch_size: int = 512
    workers: int = 0  # 0: one per CPU core

    def __post_init__(self) -> None:
        if self.raster_size <= 0 or self.raster_size % 64:
            raise ValueError(f"raster_size={self.raster_size} must be a positive multiple of 64")
        if not 0.0 <= self.anisotropy <= 1.0:
            raise ValueError(f"anisotropy={self.anisotropy} must be in [0, 1]")
        for mode in self.modes:
            if not (mode.shift > 0 and mode.q > 0 and 0.0 <= mode.depth < 1.0):
                raise ValueError(f"{mode}: need shift > 0, q > 0 and depth in [0, 1)")
        if not 0.0 <= self.max_diffraction_loss < 1.0:
            raise ValueError(f"max_diffraction_loss={self.max_diffraction_loss} must be in [0, 1)")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size={self.batch_size} must be > 0")
        if min(self.cross_section, self.loss_damping, self.diffraction_weight, self.workers) < 0:
            raise ValueError(
                "cross_section, loss_damping, diffraction_weight, workers must be >= 0"
            )


class AnalyticModel:
    """See the module docstring; vectorized over designs, threaded over batches."""

    name = "analytic"

    def __init__(self, config: AnalyticConfig | None = None) -> None:
        self.config = config or AnalyticConfig()

    def describe(self) -> dict[str, Any]:
        return asdict(self.config)

    def spectra(
        self,
        library: DesignLibrary,
        wavelength_nm: ArrayLike,
        *,
        thickness_nm: float,
        material: str = DEFAULT_MATERIAL,
        size_bias_nm: float | ArrayLike = 0.0,
    ) -> FloatArray:
        lam, bias = check_request(library, wavelength_nm, thickness_nm, material, size_bias_nm)
        fabricated = apply_size_bias(library, bias)
        optics = _Optics.build(lam, material, float(thickness_nm))
        out = np.empty((len(library), 2, lam.size), dtype=np.float64)
        cfg = self.config
        starts = range(0, len(library), cfg.batch_size)

        def work(start: int) -> None:
            part = fabricated.take(slice(start, start + cfg.batch_size))
            out[start : start + len(part)] = _batch_spectra(part, optics, cfg)

        workers = min(len(starts), cfg.workers or os.cpu_count() or 1) or 1
        if workers == 1:
            for s in starts:
                work(s)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(work, starts))
        return out


@dataclass(frozen=True)
class _Optics:
    """Everything that depends on wavelength and material only, computed once per call."""

    wavelength_nm: FloatArray  # (W,)
    thickness_nm: float
    eps_si: ComplexArray  # (W,)
    n_glass: FloatArray  # (W,)
    silicon_phase: FloatArray  # (W,) |e^{i phi} - 1|^2
    g_nm: FloatArray  # (G,) lambda / Re n, strictly increasing: inverts lambda = n sqrt(D h)
    g_wavelength_nm: FloatArray  # (G,)
    g_n: ComplexArray  # (G,)

    @staticmethod
    def build(lam: FloatArray, material: str, thickness_nm: float) -> _Optics:
        n_si = refractive_index(material, lam)
        n_glass = refractive_index(SUBSTRATE, lam).real
        phase = 2 * np.pi * (n_si.real - 1) * thickness_nm / lam
        mat = get_material(material)
        lo = max(mat.min_wavelength_nm, 200.0)
        hi = min(mat.max_wavelength_nm, 3000.0)
        grid = np.linspace(lo, hi, int(hi - lo) + 1)
        n_grid = refractive_index(material, grid)
        g = grid / n_grid.real
        # Keep the strictly increasing part (below ~400 nm silicon's n rises with lambda).
        keep = g > np.maximum.accumulate(np.concatenate([[-np.inf], g[:-1]]))
        return _Optics(
            lam,
            thickness_nm,
            n_si**2,
            n_glass,
            np.abs(np.exp(1j * phase) - 1) ** 2,
            g[keep],
            grid[keep],
            n_grid[keep],
        )

    def resonance_wavelength(self, size_nm: FloatArray) -> tuple[FloatArray, ComplexArray]:
        """lambda_c with lambda_c / Re n(lambda_c) = size, and n there; beyond the material's
        data n is held at the edge value, so lambda_c = size * n_edge."""
        lam_c = np.interp(size_nm, self.g_nm, self.g_wavelength_nm)
        below, above = size_nm < self.g_nm[0], size_nm > self.g_nm[-1]
        lam_c = np.where(below, size_nm * self.g_n[0].real, lam_c)
        lam_c = np.where(above, size_nm * self.g_n[-1].real, lam_c)
        lam_clip = np.clip(lam_c, self.g_wavelength_nm[0], self.g_wavelength_nm[-1])
        n_c = np.interp(lam_clip, self.g_wavelength_nm, self.g_n.real) + 1j * np.interp(
            lam_clip, self.g_wavelength_nm, self.g_n.imag
        )
        return lam_c, n_c


def _histogram(counts: NDArray[np.int64], size: int) -> FloatArray:
    """(N, size + 1): fraction of lines with each possible fill count."""
    n = counts.shape[0]
    flat = (np.arange(n)[:, None] * (size + 1) + counts).ravel()
    hist = np.bincount(flat, minlength=n * (size + 1)).reshape(n, size + 1)
    out: FloatArray = hist / size
    return out


def _emt_permittivity(
    columns: NDArray[np.int64], rows: NDArray[np.int64], eps: ComplexArray, size: int
) -> ComplexArray:
    """(N, 2, W) effective permittivity for E along x and along y (module docstring, step 1)."""
    fill = np.arange(size + 1)[:, None] / size
    inv_parallel = 1.0 / (1.0 + (eps[None, :] - 1.0) * fill)  # 1/<eps> of a line with that fill
    series = 1.0 / (1.0 + (1.0 / eps[None, :] - 1.0) * fill)  # 1/<1/eps> of that line
    h_col = _histogram(columns, size).astype(np.complex128)
    h_row = _histogram(rows, size).astype(np.complex128)
    lo_x, hi_x = 1.0 / (h_col @ inv_parallel), h_row @ series
    lo_y, hi_y = 1.0 / (h_row @ inv_parallel), h_col @ series
    out: ComplexArray = np.stack([(lo_x + hi_x) / 2, (lo_y + hi_y) / 2], axis=1)
    return out


def _diffraction_loss(
    columns: NDArray[np.int64],
    rows: NDArray[np.int64],
    period_nm: FloatArray,
    optics: _Optics,
    cfg: AnalyticConfig,
) -> FloatArray:
    """(N, W) fraction of the zero order lost to the four axis orders (docstring, step 3)."""
    size = columns.shape[1]
    wave = np.exp(-2j * np.pi * np.arange(size) / size)
    m10 = (columns @ wave) / size**2
    m01 = (rows @ wave) / size**2
    order_power = 2 * (np.abs(m10) ** 2 + np.abs(m01) ** 2)  # (N,)
    ratio = optics.wavelength_nm[None, :] / (optics.n_glass[None, :] * period_nm[:, None])
    obliquity = np.sqrt(np.maximum(1.0 - ratio**2, 0.0))
    loss = cfg.diffraction_weight * optics.silicon_phase[None, :] * order_power[:, None] * obliquity
    out: FloatArray = np.minimum(loss, cfg.max_diffraction_loss)
    return out


def _resonances(library: DesignLibrary, optics: _Optics, cfg: AnalyticConfig) -> FloatArray:
    """(N, 2, W) product of every primitive's dip factors (docstring, step 2)."""
    present = library.present
    w = np.where(present, library.width_nm, 0.0)
    h = np.where(present, library.height_nm, 0.0)
    ring = library.kind == Kind.RING
    hole = np.where(ring, library.inner_width_nm * library.inner_height_nm, 0.0)
    box = w * h
    solid = np.divide(box - hole, box, out=np.zeros_like(box), where=box > 0)
    shape = np.where(library.kind == Kind.RECTANGLE, np.sqrt(4 / np.pi), np.sqrt(solid))
    period = library.period_nm[:, None]
    box_fill = np.minimum(w, period) * np.minimum(h, period) / period**2
    gap = np.maximum(1.0 - box_fill**cfg.gap_power, 0.0)
    strength = np.where(present & (box > 0), gap, 0.0)[..., None, None]  # (N, K, 1, 1)
    a = cfg.anisotropy
    size = np.stack(
        [shape * w**a * h ** (1 - a), shape * h**a * w ** (1 - a)], axis=-1
    )  # (N, K, 2): polarization x, y
    lam_c, n_c = optics.resonance_wavelength(np.sqrt(size * optics.thickness_nm))
    damping = (cfg.loss_damping * n_c.imag / n_c.real)[..., None]
    lam = optics.wavelength_nm
    cell = (period**2)[..., None, None]  # (N, 1, 1, 1)
    factor = np.ones((*size.shape, lam.size))
    for mode in cfg.modes:
        center = (mode.shift * lam_c)[..., None]
        half_width = center * (1.0 / mode.q + damping) / 2
        coupling = np.minimum(cfg.cross_section * 3 * center**2 / (2 * np.pi) / cell, 1.0)
        lorentz = half_width**2 / ((lam - center) ** 2 + half_width**2)
        factor *= 1.0 - mode.depth * coupling * strength * lorentz
    out: FloatArray = np.prod(factor, axis=1)
    return out


def _batch_spectra(library: DesignLibrary, optics: _Optics, cfg: AnalyticConfig) -> FloatArray:
    columns, rows = line_fills(library, cfg.raster_size)
    eps = _emt_permittivity(columns, rows, optics.eps_si, cfg.raster_size)
    film, _ = airy_stack(np.sqrt(eps), optics.thickness_nm, optics.wavelength_nm, optics.n_glass)
    loss = _diffraction_loss(columns, rows, library.period_nm, optics, cfg)
    T = film * (1.0 - loss)[:, None, :] * _resonances(library, optics, cfg)
    out: FloatArray = np.clip(T, 0.0, 1.0)
    return out
