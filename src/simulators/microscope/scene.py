"""What transmission the camera sees at each pixel: the chip's pads and fiducials in the field.

Every feature of the chip is an axis-aligned rectangle in chip coordinates (pads on a regular
grid, fiducial crosses as three disjoint bars) on bare glass. A pixel integrates the PSF-blurred
transmission over its own footprint, so for a rectangle [a, b] along one axis it sees

    P(x) = (1 / w) integral_{x - w/2}^{x + w/2} (erf((b - t) / s) - erf((a - t) / s)) / 2 dt,

with w the pixel pitch and s = sqrt(2) sigma: area-weighted edges and Gaussian blur in closed
form (with G(z) = z erf z + exp(-z^2) / sqrt(pi), the antiderivative of erf). A Gaussian PSF is
isotropic, so blurring in the chip frame is exact; the pixel footprint is taken as a square
aligned with the chip, which is off by the chip-camera rotation (a fraction of a degree).

Pads: a pixel at cell (i, j) of an array sees its own pad and, along each axis, the nearer
neighbour only (blur plus a pixel must stay well inside half a pitch; this is checked). The
per-pixel cell indices and positions inside the cell depend only on where the stage is, so a
view is built once per stage position and reused for every band, polarisation and frame; a band
then costs four small-table lookups of the 1-D profiles and four of the pad values.
"""

from __future__ import annotations

import json
import logging
import math
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf

from layout.manifest import ChipManifest, Role
from simulators.microscope.blocks import row_blocks, run_blocks

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
_LUT_SIZE = 4096
_MARGIN_SIGMAS = 5.0


@dataclass(frozen=True)
class PixelMap:
    """Chip µm of pixel (row, col): ``origin + col * col_step + row * row_step``."""

    origin_um: tuple[float, float]
    col_step_um: tuple[float, float]
    row_step_um: tuple[float, float]
    height_px: int
    width_px: int

    @property
    def pixel_um(self) -> float:
        return math.hypot(*self.col_step_um)

    def to_pixel(self, u_um: FloatArray, v_um: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(row, col) of chip points, the inverse map (fractional)."""
        m = np.array([self.col_step_um, self.row_step_um]).T  # columns: d(chip)/d(col), d/d(row)
        inv = np.linalg.inv(m)
        du = np.asarray(u_um) - self.origin_um[0]
        dv = np.asarray(v_um) - self.origin_um[1]
        col = inv[0, 0] * du + inv[0, 1] * dv
        row = inv[1, 0] * du + inv[1, 1] * dv
        return row, col

    def chip_coords(self, rows: slice, cols: slice) -> tuple[FloatArray, FloatArray]:
        """(u, v) in chip µm over a window, float64 (positions need more than float32's 7 digits)."""
        r = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None]
        c = np.arange(cols.start, cols.stop, dtype=np.float64)[None, :]
        u = self.origin_um[0] + c * self.col_step_um[0] + r * self.row_step_um[0]
        v = self.origin_um[1] + c * self.col_step_um[1] + r * self.row_step_um[1]
        return u, v


def box_blur_profile(
    x: FloatArray, a: float, b: float, pixel_um: float, sigma_um: float
) -> FloatArray:
    """P(x) of the module docstring: a pixel's share of the interval [a, b] (0..1)."""
    s = math.sqrt(2.0) * max(sigma_um, 1e-4)
    h = 0.5 * pixel_um

    def g(z: FloatArray) -> FloatArray:
        out: FloatArray = z * erf(z) + np.exp(-(z**2)) / math.sqrt(math.pi)
        return out

    x = np.asarray(x, dtype=np.float64)
    total = g((b - x + h) / s) - g((b - x - h) / s) - g((a - x + h) / s) + g((a - x - h) / s)
    out: FloatArray = np.clip(total * s / (4.0 * h), 0.0, 1.0)
    return out


@dataclass(frozen=True)
class _Grid:
    """One placed array as a pad grid, with the pad-table row of each cell."""

    origin_um: tuple[float, float]
    rows: int
    cols: int
    pad_row: NDArray[np.int64]  # (rows, cols) -> pad-table row


@dataclass(frozen=True)
class _Rect:
    x0: float
    x1: float
    y0: float
    y1: float


@dataclass
class _GridView:
    rows: slice
    cols: slice
    q_u: NDArray[np.int32]
    q_v: NDArray[np.int32]
    own: NDArray[np.int32]  # value-table index of (own column, own row)
    nb_u: NDArray[np.int32]  # (neighbour column, own row)
    nb_v: NDArray[np.int32]  # (own column, neighbour row)
    nb_uv: NDArray[np.int32]


@dataclass
class View:
    """Stage-position-dependent geometry of one frame, reusable across bands."""

    pixels: PixelMap
    grids: list[_GridView]
    fiducials: list[tuple[slice, slice, FloatArray, FloatArray, _Rect, int]]  # ..., pad-table row


def _fiducial_shape(attrs: dict[str, Any]) -> tuple[float, float]:
    config = attrs.get("config", {})
    if isinstance(config, str):
        config = json.loads(config)
    return float(config.get("fiducial_arm_um", 10.0)), float(config.get("fiducial_width_um", 2.0))


class ChipScene:
    """The chip of a manifest as rectangles of known transmission on glass."""

    def __init__(self, manifest: ChipManifest) -> None:
        self.pitch_um = manifest.pad_pitch_um
        self.pad_um = manifest.pad_size_um
        pads = manifest.pads
        self.n_pads = len(pads)
        self.grids: list[_Grid] = []
        a = manifest.arrays
        for k in range(len(a.name)):
            sel = manifest.pads_of(k)
            table = np.full((int(a.rows[k]), int(a.cols[k])), self.n_pads, dtype=np.int64)
            table[pads.row[sel], pads.col[sel]] = sel
            self.grids.append(
                _Grid((float(a.origin_x_um[k]), float(a.origin_y_um[k])), *table.shape, table)
            )
        arm, width = _fiducial_shape(manifest.attrs)
        self.fiducial_rows = np.flatnonzero(pads.role == Role.FIDUCIAL)
        self.fiducial_rects: list[tuple[int, _Rect]] = []
        for row in self.fiducial_rows:
            x, y, w = float(pads.x_um[row]), float(pads.y_um[row]), width / 2
            # A cross as three disjoint bars, so overlapping arms are not counted twice.
            for rect in (
                _Rect(x - arm, x + arm, y - w, y + w),
                _Rect(x - w, x + w, y + w, y + arm),
                _Rect(x - w, x + w, y - arm, y - w),
            ):
                self.fiducial_rects.append((int(row), rect))

    # -- geometry -------------------------------------------------------------------------------

    def view(
        self,
        pixels: PixelMap,
        max_sigma_um: float,
        blocks: int = 1,
        executor: Executor | None = None,
    ) -> View:
        """Which features fall in the frame, and per-pixel cell indices for the pad grids.

        Each grid's window is cut into ``blocks`` row bands that render independently (threads).
        """
        margin = _MARGIN_SIGMAS * max_sigma_um + 2 * pixels.pixel_um
        if margin >= 0.5 * self.pitch_um:
            raise ValueError(
                f"blur sigma {max_sigma_um:.3g} µm is too wide for a {self.pitch_um:g} µm pad "
                "pitch: the renderer needs 5 sigma + 2 pixels < half a pitch"
            )
        parts: list[tuple[_Grid, slice, slice]] = []
        for grid in self.grids:
            x0, y0 = grid.origin_um
            x1, y1 = x0 + grid.cols * self.pitch_um, y0 + grid.rows * self.pitch_um
            window = self._window(pixels, x0 - margin, x1 + margin, y0 - margin, y1 + margin)
            if window is not None:
                rows, cols = window
                for part in row_blocks(rows.stop - rows.start, blocks):
                    band = slice(rows.start + part.start, rows.start + part.stop)
                    parts.append((grid, band, cols))
        grids: list[_GridView | None] = [None] * len(parts)

        def build(index: int) -> None:
            grid, band, cols = parts[index]
            grids[index] = self._grid_view(pixels, grid, band, cols)

        run_blocks(executor, build, range(len(parts)))
        fiducials = []
        for row, rect in self.fiducial_rects:
            window = self._window(
                pixels, rect.x0 - margin, rect.x1 + margin, rect.y0 - margin, rect.y1 + margin
            )
            if window is not None:
                u, v = pixels.chip_coords(*window)
                fiducials.append((window[0], window[1], u, v, rect, row))
        return View(pixels, [g for g in grids if g is not None], fiducials)

    @staticmethod
    def _window(
        pixels: PixelMap, x0: float, x1: float, y0: float, y1: float
    ) -> tuple[slice, slice] | None:
        rows, cols = pixels.to_pixel(np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
        r0 = max(math.floor(rows.min()), 0)
        r1 = min(math.ceil(rows.max()) + 1, pixels.height_px)
        c0 = max(math.floor(cols.min()), 0)
        c1 = min(math.ceil(cols.max()) + 1, pixels.width_px)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def _grid_view(self, pixels: PixelMap, grid: _Grid, rows: slice, cols: slice) -> _GridView:
        u, v = pixels.chip_coords(rows, cols)
        p = self.pitch_um
        cu = (u - grid.origin_um[0]) / p
        cv = (v - grid.origin_um[1]) / p
        iu = np.floor(cu)
        iv = np.floor(cv)
        fu = cu - iu  # position inside the cell, 0..1 of a pitch
        fv = cv - iv
        q_u = np.minimum((fu * _LUT_SIZE).astype(np.int32), _LUT_SIZE - 1)
        q_v = np.minimum((fv * _LUT_SIZE).astype(np.int32), _LUT_SIZE - 1)
        nu = iu + np.where(fu < 0.5, -1, 1)
        nv = iv + np.where(fv < 0.5, -1, 1)

        def lookup(i: FloatArray, j: FloatArray) -> NDArray[np.int32]:
            inside = (i >= 0) & (i < grid.cols) & (j >= 0) & (j < grid.rows)
            ii = np.clip(i, 0, grid.cols - 1).astype(np.int64)
            jj = np.clip(j, 0, grid.rows - 1).astype(np.int64)
            out = np.where(inside, grid.pad_row[jj, ii], self.n_pads)
            return out.astype(np.int32)

        return _GridView(
            rows, cols, q_u, q_v, lookup(iu, iv), lookup(nu, iv), lookup(iu, nv), lookup(nu, nv)
        )

    # -- rendering ------------------------------------------------------------------------------

    def profiles(self, pixel_um: float, sigma_um: float) -> tuple[NDArray[np.float32], ...]:
        """(own, neighbour) 1-D profiles over the cell position, as lookup tables."""
        p, s = self.pitch_um, self.pad_um
        f = (np.arange(_LUT_SIZE) + 0.5) / _LUT_SIZE * p
        own = box_blur_profile(f, 0.0, s, pixel_um, sigma_um)
        left = box_blur_profile(f, -p, s - p, pixel_um, sigma_um)
        right = box_blur_profile(f, p, p + s, pixel_um, sigma_um)
        neighbour = np.where(f < 0.5 * p, left, right)
        return own.astype(np.float32), neighbour.astype(np.float32)

    def transmission(
        self,
        view: View,
        sigma_um: float,
        pad_transmission: FloatArray,
        glass_transmission: float,
        executor: Executor | None = None,
    ) -> NDArray[np.float32]:
        """Per-pixel transmission (H, W) float32 for per-pad values (N_pads,) and the glass."""
        px = view.pixels
        if pad_transmission.shape != (self.n_pads,):
            raise ValueError(
                f"pad_transmission has shape {pad_transmission.shape}, expected ({self.n_pads},)"
            )
        image = np.full((px.height_px, px.width_px), glass_transmission, np.float32)
        g = np.float32(glass_transmission)
        rel = np.append(pad_transmission - glass_transmission, 0.0).astype(np.float32)
        own_lut, nb_lut = self.profiles(px.pixel_um, sigma_um)

        def render_grid(gv: _GridView) -> None:
            xo = own_lut[gv.q_u]
            xn = nb_lut[gv.q_u]
            yo = own_lut[gv.q_v]
            yn = nb_lut[gv.q_v]
            acc = yo * rel[gv.own]
            acc += yn * rel[gv.nb_v]
            acc *= xo
            side = yo * rel[gv.nb_u]
            side += yn * rel[gv.nb_uv]
            side *= xn
            acc += side
            acc += g
            image[gv.rows, gv.cols] = acc

        run_blocks(executor, render_grid, view.grids)
        for rows, cols, u, v, rect, row in view.fiducials:
            value = float(pad_transmission[row])
            weight = box_blur_profile(u, rect.x0, rect.x1, px.pixel_um, sigma_um) * (
                box_blur_profile(v, rect.y0, rect.y1, px.pixel_um, sigma_um)
            )
            image[rows, cols] += (weight * (value - glass_transmission)).astype(np.float32)
        return image
