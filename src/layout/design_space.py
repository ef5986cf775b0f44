"""The generator's parameters as a continuous box, for optimizers: a vector in [0, 1]^D per
candidate, decoded onto the fabrication grid and repaired into a design the checker passes.

Why a box: global optimizers (PSO, CMA-ES) and gradient steps move continuous vectors; the
design's discrete parts (whether a slot holds a primitive, its kind, the period, the film
thickness) are the largest of a few coordinates each (one-hot by argmax), its sizes and places
fractions of what the cell allows. Layout of one vector, per primitive slot (``max_primitives``
slots): presence (present above 0.5; the most present slot is always present), centre x and y
(fraction of the room the size leaves), width and height (fraction of the usable span above the
smallest size), ring hole width and height (fraction of the room the wall leaves), one score per
allowed kind; then one score per allowed period and one per allowed thickness.

Decoding follows the generator's own limits (:class:`PrimitiveLimits`): sizes on twice the grid
so every edge lies on it, ellipse tips no sharper than the rule, rings only where a hole and its
wall fit (else the slot falls back to a solid kind). Overlaps and gaps are the checker's to judge:
a decoded design that fails it is **repaired** by dropping primitives (for each failing design,
every way of keeping all but one slot, then all but two, the first variant that passes and keeps
most primitives), and a design no repair saves is reported infeasible, for the optimizer to
penalize. :class:`Decoded` counts both, so the fraction of proposals repaired or infeasible is
measured, not assumed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from layout.checker import check_library
from layout.design import DesignLibrary, Kind
from layout.rules import DesignRules

FloatArray = NDArray[np.float64]
SLOT_WIDTH = 7  # presence, cx, cy, w, h, iw, ih (kind scores come after, per allowed kind)


def _ceil_to(value: float, step: float) -> float:
    return math.ceil(value / step - 1e-9) * step


@dataclass(frozen=True)
class PrimitiveLimits:
    """What the rules allow one primitive, in nm, on the grid (the generator draws within these,
    the design space decodes within them)."""

    grid_nm: float
    margin_nm: float  # border margin, on the grid
    gap_nm: float
    min_size_nm: float  # on twice the grid
    wall_nm: float  # a ring's least wall
    hole_min_nm: float  # a ring's least hole
    curve_inset_nm: float  # curved outlines keep this from their region's edge
    tip_nm: float
    hole_tip_nm: float

    @classmethod
    def from_rules(cls, rules: DesignRules) -> PrimitiveLimits:
        g = rules.grid_nm
        return cls(
            grid_nm=g,
            margin_nm=_ceil_to(rules.border_margin_nm, g),
            gap_nm=_ceil_to(rules.min_gap_nm, g),
            min_size_nm=_ceil_to(rules.min_size_nm, 2 * g),
            wall_nm=_ceil_to(rules.min_feature_nm + rules.curve_allowance_nm, g),
            hole_min_nm=_ceil_to(
                max(2 * rules.min_hole_tip_radius_nm, rules.min_gap_nm + rules.curve_allowance_nm),
                2 * g,
            ),
            curve_inset_nm=_ceil_to(rules.curve_allowance_nm / 2, g),
            tip_nm=rules.min_tip_radius_nm,
            hole_tip_nm=rules.min_hole_tip_radius_nm,
        )

    @property
    def ring_min_nm(self) -> float:
        return self.hole_min_nm + 2 * self.wall_nm


@dataclass(frozen=True, eq=False)
class Decoded:
    """Candidates decoded: designs (one per candidate; infeasible ones hold the unrepaired
    draw), which of them passed (after repair), and which needed a repair."""

    library: DesignLibrary
    thickness_nm: FloatArray
    feasible: NDArray[np.bool_]
    repaired: NDArray[np.bool_]


def _floor_steps(value: FloatArray, step: float) -> FloatArray:
    out: FloatArray = np.floor(value / step + 1e-9) * step
    return out


@dataclass(frozen=True)
class DesignSpace:
    """The box of one set of constraints (the probe builder's: periods, kinds, thicknesses,
    rules with a larger minimum feature or gap)."""

    periods_nm: tuple[int, ...]
    thicknesses_nm: tuple[float, ...]
    kinds: tuple[Kind, ...]
    max_primitives: int
    rules: DesignRules

    def __post_init__(self) -> None:
        if not self.periods_nm or not self.thicknesses_nm or not self.kinds:
            raise ValueError("a design space needs at least one period, thickness and kind")
        if not 1 <= self.max_primitives <= 8:
            raise ValueError(f"max_primitives={self.max_primitives} must be in [1, 8]")

    def describe(self) -> dict[str, object]:
        """As JSON values, for provenance."""
        return {
            "periods_nm": list(self.periods_nm),
            "thicknesses_nm": list(self.thicknesses_nm),
            "kinds": [Kind(k).name.lower() for k in self.kinds],
            "max_primitives": self.max_primitives,
            "rules": self.rules.to_dict(),
            "dimension": self.dimension,
        }

    @property
    def slot_width(self) -> int:
        return SLOT_WIDTH + len(self.kinds)

    @property
    def dimension(self) -> int:
        return (
            self.max_primitives * self.slot_width + len(self.periods_nm) + len(self.thicknesses_nm)
        )

    def random(self, count: int, rng: np.random.Generator) -> FloatArray:
        """Uniform candidates in the box."""
        return rng.random((count, self.dimension))

    def decode(self, x: FloatArray) -> Decoded:
        """Designs on the grid for candidates ``x`` (N, D), repaired where the checker fails."""
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
        if x.ndim != 2 or x.shape[1] != self.dimension:
            raise ValueError(
                f"candidates have shape {x.shape}; this space is (N, {self.dimension})"
            )
        n, k, lim = x.shape[0], self.max_primitives, PrimitiveLimits.from_rules(self.rules)
        g = lim.grid_nm
        slots = x[:, : k * self.slot_width].reshape(n, k, self.slot_width)
        tail = x[:, k * self.slot_width :]
        periods = np.asarray(self.periods_nm, dtype=np.float64)
        period = periods[np.argmax(tail[:, : len(periods)], axis=1)]
        thickness = np.asarray(self.thicknesses_nm, dtype=np.float64)[
            np.argmax(tail[:, len(periods) :], axis=1)
        ]
        present = slots[:, :, 0] > 0.5
        present[np.arange(n), np.argmax(slots[:, :, 0], axis=1)] = True
        kinds = np.asarray(self.kinds, dtype=np.int8)
        kind = kinds[np.argmax(slots[:, :, SLOT_WIDTH:], axis=2)]
        span = np.repeat((period - 2 * lim.margin_nm)[:, None], k, axis=1)
        solid = kinds[kinds != Kind.RING]
        if solid.size:  # a ring that cannot fit its hole and wall becomes the best solid kind
            scores = slots[:, :, SLOT_WIDTH:][:, :, kinds != Kind.RING]
            fallback = solid[np.argmax(scores, axis=2)]
            kind = np.where((kind == Kind.RING) & (span < lim.ring_min_nm), fallback, kind)
        curved = kind != Kind.RECTANGLE
        room = span - 2 * np.where(curved, lim.curve_inset_nm, 0.0)
        lo = np.where(kind == Kind.RING, lim.ring_min_nm, lim.min_size_nm)
        present &= room >= lo
        room = np.maximum(room, lo)
        w = lo + _floor_steps(slots[:, :, 3] * (room - lo), 2 * g)
        h_lo = np.where(
            curved,
            np.maximum(lo, np.ceil(np.sqrt(2 * lim.tip_nm * w) / (2 * g) - 1e-9) * 2 * g),
            lo,
        )
        h_hi = np.where(curved, np.minimum(room, w * w / (2 * lim.tip_nm)), room)
        h_hi = np.maximum(_floor_steps(h_hi - h_lo, 2 * g) + h_lo, h_lo)
        h = h_lo + _floor_steps(slots[:, :, 4] * (h_hi - h_lo), 2 * g)
        hole_lo = np.full_like(w, lim.hole_min_nm)
        iw_hi = np.maximum(w - 2 * lim.wall_nm, hole_lo)
        iw = hole_lo + _floor_steps(slots[:, :, 5] * (iw_hi - hole_lo), 2 * g)
        ih_lo = np.maximum(
            hole_lo, np.ceil(np.sqrt(2 * lim.hole_tip_nm * iw) / (2 * g) - 1e-9) * 2 * g
        )
        ih_hi = np.maximum(np.minimum(h - 2 * lim.wall_nm, iw * iw / (2 * lim.hole_tip_nm)), ih_lo)
        ih = ih_lo + _floor_steps(slots[:, :, 6] * (ih_hi - ih_lo), 2 * g)
        edge = lim.margin_nm + np.where(curved, lim.curve_inset_nm, 0.0)
        cx = edge + w / 2 + _floor_steps(slots[:, :, 1] * np.maximum(room - w, 0.0), g)
        cy = edge + h / 2 + _floor_steps(slots[:, :, 2] * np.maximum(room - h, 0.0), g)
        arrays = (cx, cy, w, h, iw, ih)
        library, passed = self._library(period, kind, present, arrays)
        repaired = np.zeros(n, dtype=bool)
        for drop in (1, 2):
            failing = np.flatnonzero(~passed & (present.sum(axis=1) > drop))
            if not failing.size:
                break
            fixed = self._repair(failing, drop, period, kind, present, arrays)
            for i, keep in fixed.items():
                present[i] = keep
                repaired[i] = True
            if fixed:
                library, passed = self._library(period, kind, present, arrays)
        return Decoded(library, thickness, passed, repaired & passed)

    def contains(self, library: DesignLibrary, thickness_nm: FloatArray) -> NDArray[np.bool_]:
        """Which designs this space can hold: allowed period, thickness and kinds, no more
        primitives than its slots, and clean under its rules."""
        kinds = library.kind
        allowed = np.isin(kinds, [*self.kinds, Kind.EMPTY]).all(axis=1)
        if kinds.shape[1] > self.max_primitives:
            allowed &= (kinds[:, self.max_primitives :] < 0).all(axis=1)
        out: NDArray[np.bool_] = (
            np.isin(library.period_nm, self.periods_nm)
            & np.isin(thickness_nm, self.thicknesses_nm)
            & allowed
            & np.asarray(check_library(library, self.rules).passed, dtype=bool)
        )
        return out

    def encode(self, library: DesignLibrary, thickness_nm: FloatArray) -> FloatArray:
        """The box points that decode to these designs (the inverse of :meth:`decode` for
        designs within the space's limits, such as the generator's): how a swarm starts from
        random probes, or a refinement from retrieved ones."""
        n, k, lim = len(library), self.max_primitives, PrimitiveLimits.from_rules(self.rules)
        if library.kind.shape[1] > k and (library.kind[:, k:] >= 0).any():
            raise ValueError(f"designs hold more than this space's {k} primitives")
        x = np.zeros((n, self.dimension))
        periods = list(self.periods_nm)
        thicknesses = list(self.thicknesses_nm)
        tail = k * self.slot_width
        for i in range(n):
            period, thick = float(library.period_nm[i]), float(thickness_nm[i])
            if int(period) not in periods or thick not in thicknesses:
                raise ValueError(
                    f"design {i}: period {period:g} nm or thickness {thick:g} nm is not in this "
                    f"space ({periods} nm, {thicknesses} nm)"
                )
            x[i, tail + periods.index(int(period))] = 1.0
            x[i, tail + len(periods) + thicknesses.index(thick)] = 1.0
        span = library.period_nm - 2 * lim.margin_nm
        g = lim.grid_nm

        def frac(value: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
            width = hi - lo
            safe = np.where(width > 0, width, 1.0)
            # Half a grid step above the value: the decoder floors to the step below.
            out: FloatArray = np.where(width > 0, (value - lo + g / 4) / safe, 0.0)
            return np.clip(out, 0.0, 1.0)

        for j in range(min(k, library.kind.shape[1])):
            kind = library.kind[:, j]
            present = kind >= 0
            base = j * self.slot_width
            x[:, base] = np.where(present, 1.0, 0.0)
            curved = kind != Kind.RECTANGLE
            room = span - 2 * np.where(curved, lim.curve_inset_nm, 0.0)
            lo = np.where(kind == Kind.RING, lim.ring_min_nm, lim.min_size_nm)
            w, h = library.width_nm[:, j], library.height_nm[:, j]
            iw, ih = library.inner_width_nm[:, j], library.inner_height_nm[:, j]
            h_lo = np.where(
                curved,
                np.maximum(lo, np.ceil(np.sqrt(2 * lim.tip_nm * w) / (2 * g) - 1e-9) * 2 * g),
                lo,
            )
            h_hi = np.where(curved, np.minimum(room, w * w / (2 * lim.tip_nm)), room)
            h_hi = np.maximum(_floor_steps(h_hi - h_lo, 2 * g) + h_lo, h_lo)
            hole_lo = np.full_like(w, lim.hole_min_nm)
            ih_lo = np.maximum(
                hole_lo, np.ceil(np.sqrt(2 * lim.hole_tip_nm * iw) / (2 * g) - 1e-9) * 2 * g
            )
            ih_hi = np.maximum(
                np.minimum(h - 2 * lim.wall_nm, iw * iw / (2 * lim.hole_tip_nm)), ih_lo
            )
            edge = lim.margin_nm + np.where(curved, lim.curve_inset_nm, 0.0)
            values = (
                frac(library.center_x_nm[:, j] - edge - w / 2, np.zeros(n), room - w),
                frac(library.center_y_nm[:, j] - edge - h / 2, np.zeros(n), room - h),
                frac(w, lo, np.maximum(room, lo)),
                frac(h, h_lo, h_hi),
                frac(iw, hole_lo, np.maximum(w - 2 * lim.wall_nm, hole_lo)),
                frac(ih, ih_lo, ih_hi),
            )
            for c, v in enumerate(values, start=1):
                x[:, base + c] = np.where(present, v, 0.0)
            for c, allowed in enumerate(self.kinds):
                x[:, base + SLOT_WIDTH + c] = np.where(kind == allowed, 1.0, 0.0)
        return x

    def _library(
        self,
        period: FloatArray,
        kind: NDArray[np.int8],
        present: NDArray[np.bool_],
        arrays: tuple[FloatArray, ...],
    ) -> tuple[DesignLibrary, NDArray[np.bool_]]:
        kinds = np.where(present, kind, Kind.EMPTY).astype(np.int8)
        cols = [np.where(present, a, 0.0) for a in arrays]
        library = DesignLibrary.from_arrays(period, kinds, *cols)
        return library, np.asarray(check_library(library, self.rules).passed, dtype=bool)

    def _repair(
        self,
        rows: NDArray[np.int64],
        drop: int,
        period: FloatArray,
        kind: NDArray[np.int8],
        present: NDArray[np.bool_],
        arrays: tuple[FloatArray, ...],
    ) -> dict[int, NDArray[np.bool_]]:
        """Row -> the slots to keep, for rows that pass with ``drop`` of their primitives gone."""
        k = self.max_primitives
        variants = list(itertools.combinations(range(k), drop))
        masks = np.ones((len(variants), k), dtype=bool)
        for v, gone in enumerate(variants):
            masks[v, list(gone)] = False
        trial = present[rows][:, None, :] & masks[None, :, :]  # (R, V, K)
        useful = trial.sum(axis=2) == present[rows].sum(axis=1)[:, None] - drop
        r_idx = np.repeat(np.arange(rows.size), len(variants))
        flat = trial.reshape(-1, k)
        source = rows[r_idx]
        _, passed = self._library(
            period[source], kind[source], flat, tuple(a[source] for a in arrays)
        )
        ok = passed.reshape(rows.size, len(variants)) & useful
        out: dict[int, NDArray[np.bool_]] = {}
        for r in np.flatnonzero(ok.any(axis=1)):
            out[int(rows[r])] = trial[r, int(np.argmax(ok[r]))]
        return out
