"""Seeded random generator of fabricable unit cells.

Each draw splits the usable part of the cell (inside the border margin) into 1-4 regions by
random guillotine cuts that leave ``min_gap_nm`` between regions, then places one primitive of a
random kind, size and position in each region. Drawing inside separated regions keeps the
acceptance rate high (most draws pass), which is what makes >= 20,000 designs/s possible, while
the checker still decides: a draw is kept only if ``check_arrays`` finds nothing.

Consequences worth knowing: the generator never nests a primitive inside a ring's hole (the
checker handles such designs) and the number of primitives is drawn uniformly but a period too
small to hold that many is redrawn, so small periods hold fewer primitives. Sizes are drawn on
twice the grid so that every edge, not only every centre, falls on the fabrication grid.
Batches have a fixed size, so generating N designs gives a prefix of generating M > N.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from common.values import Bounds
from layout.checker import check_library
from layout.design import DesignLibrary, Kind
from layout.design_space import PrimitiveLimits
from layout.rules import DesignRules

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]


PERIOD_NM = Bounds(100, 5000, unit="nm", integer=True)
MAX_PRIMITIVES = Bounds(1, 8, integer=True)


@dataclass(frozen=True)
class GeneratorConfig:
    """What the generator may draw; the rules are the checker's."""

    periods_nm: tuple[int, ...] = (300, 400, 500, 600)
    max_primitives: int = 4
    kinds: tuple[Kind, ...] = (Kind.RECTANGLE, Kind.ELLIPSE, Kind.RING)
    rules: DesignRules = field(default_factory=DesignRules)
    batch_size: int = 4096

    def __post_init__(self) -> None:
        g = self.rules.grid_nm
        if not self.periods_nm:
            raise ValueError("periods_nm is empty; give at least one period, e.g. 400")
        for p in self.periods_nm:
            PERIOD_NM.check("period_nm", p)
            if abs(p / g - round(p / g)) > 1e-9:
                raise ValueError(f"period {p} nm must be a positive multiple of the {g} nm grid")
            usable = p - 2 * self._margin
            if usable < self.rules.min_size_nm:
                raise ValueError(
                    f"period {p} nm cannot hold a {self.rules.min_size_nm:g} nm primitive with "
                    f"{self._margin:g} nm border margins; use >= "
                    f"{self.rules.min_size_nm + 2 * self._margin:g} nm"
                )
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1 (default 4096)")
        MAX_PRIMITIVES.check("max_primitives", self.max_primitives)
        if not self.kinds or Kind.EMPTY in self.kinds:
            raise ValueError(
                f"kinds={self.kinds} must name at least one of rectangle, ellipse, ring"
            )

    @property
    def _margin(self) -> float:
        return PrimitiveLimits.from_rules(self.rules).margin_nm


def generate(
    count: int, seed: int, config: GeneratorConfig | None = None, progress: bool = False
) -> DesignLibrary:
    """``count`` unique designs (by ``design_id``) that pass the checker; same seed, same designs."""
    cfg = config or GeneratorConfig()
    if count < 1:
        raise ValueError(f"count={count} must be >= 1")
    rng = np.random.default_rng(seed)
    kept: list[DesignLibrary] = []
    seen: set[int] = set()
    total = drawn = 0
    with tqdm(total=count, desc="designs", unit="design", disable=not progress) as bar:
        while total < count:
            batch = _draw_batch(rng, cfg)
            drawn += cfg.batch_size
            ok = check_library(batch, cfg.rules).passed
            rows = []
            for i in np.flatnonzero(ok):
                did = int(batch.design_id[i])
                if did not in seen:
                    seen.add(did)
                    rows.append(i)
                    if total + len(rows) == count:
                        break
            kept.append(batch.take(np.asarray(rows, dtype=np.int64)))
            total += len(rows)
            bar.update(len(rows))
            if drawn > 200 * max(count, cfg.batch_size) and total < count:
                raise RuntimeError(
                    f"only {total} unique valid designs after {drawn} draws; the rules and periods "
                    f"leave too few distinct designs for count={count}"
                )
    log.info("generated %d designs from %d draws (%.0f%% kept)", count, drawn, 100 * count / drawn)
    return DesignLibrary.concatenate(kept)


def _ceil_grid(values: FloatArray | np.float64, step: float) -> FloatArray:
    """Round up to the next multiple of ``step`` (a hair of slack for float noise)."""
    return np.ceil(values / step - 1e-9) * step


def _uniform_steps(
    rng: np.random.Generator, lo: FloatArray, hi: FloatArray, step: float
) -> FloatArray:
    """Uniform draw from {lo, lo+step, ..., <= hi} elementwise (hi >= lo assumed)."""
    n_steps = np.floor((hi - lo) / step + 1e-9).astype(np.int64)
    return lo + step * np.floor(rng.random(lo.shape) * (n_steps + 1))


def _draw_batch(rng: np.random.Generator, cfg: GeneratorConfig) -> DesignLibrary:
    """One batch of raw draws (not yet checked); infeasible splits come back empty-handed."""
    rules, g, b, k = cfg.rules, cfg.rules.grid_nm, cfg.batch_size, cfg.max_primitives
    period = rng.choice(np.asarray(cfg.periods_nm, dtype=np.float64), b)
    n_prims = rng.integers(1, k + 1, b)
    lim = PrimitiveLimits.from_rules(rules)
    margin = lim.margin_nm
    # Regions as (B, K) boxes; slot 0 starts as the usable cell.
    x0 = np.full((b, k), margin)
    y0 = np.full((b, k), margin)
    x1 = np.repeat((period - margin)[:, None], k, axis=1)
    y1 = x1.copy()
    feasible = np.ones(b, dtype=bool)
    gap, smin = lim.gap_nm, lim.min_size_nm
    rows = np.arange(b)
    for new_slot in range(1, k):
        splitting = n_prims > new_slot
        # Split a random existing slot: a random tree of cuts, not only a strip.
        src = np.floor(rng.random(b) * new_slot).astype(np.int64)
        bx0, bx1, by0, by1 = (a[rows, src] for a in (x0, x1, y0, y1))
        can_v = (bx1 - bx0) >= 2 * smin + gap
        can_h = (by1 - by0) >= 2 * smin + gap
        vertical = np.where(can_v & can_h, rng.random(b) < 0.5, can_v)
        feasible &= ~splitting | can_v | can_h
        lo = np.where(vertical, bx0, by0) + smin
        hi = np.maximum(np.where(vertical, bx1, by1) - gap - smin, lo)
        cut = _uniform_steps(rng, lo, hi, g)
        m = splitting & feasible
        v, hz = m & vertical, m & ~vertical
        x0[v, new_slot], x1[v, new_slot] = cut[v] + gap, bx1[v]
        y0[v, new_slot], y1[v, new_slot] = by0[v], by1[v]
        x1[v, src[v]] = cut[v]
        x0[hz, new_slot], x1[hz, new_slot] = bx0[hz], bx1[hz]
        y0[hz, new_slot], y1[hz, new_slot] = cut[hz] + gap, by1[hz]
        y1[hz, src[hz]] = cut[hz]

    present = (np.arange(k)[None, :] < n_prims[:, None]) & feasible[:, None]
    rw, rh = x1 - x0, y1 - y0
    kinds = np.asarray(cfg.kinds, dtype=np.int8)
    kind = kinds[rng.integers(0, kinds.size, (b, k))]
    wall, hole_min, ring_min = lim.wall_nm, lim.hole_min_nm, lim.ring_min_nm
    fallback = kinds[kinds != Kind.RING]
    if fallback.size:
        too_small = (kind == Kind.RING) & ((rw < ring_min) | (rh < ring_min))
        kind = np.where(too_small, fallback[rng.integers(0, fallback.size, (b, k))], kind)
    curved = kind != Kind.RECTANGLE
    # Curved outlines need the curve allowance from region edges: inset them by it on the grid.
    inset = np.where(curved, lim.curve_inset_nm, 0.0)
    x0, x1, y0, y1 = x0 + inset, x1 - inset, y0 + inset, y1 - inset
    rw, rh = x1 - x0, y1 - y0
    lo = np.where(kind == Kind.RING, ring_min, smin)
    w = _uniform_steps(rng, lo, np.maximum(rw, lo), 2 * g)
    # Ellipse tips: (short/2)^2 / (long/2) >= r  <=>  long <= short^2 / (2 r), drawn within it.
    tip = lim.tip_nm
    h_lo = np.where(curved, np.maximum(lo, _ceil_grid(np.sqrt(2 * tip * w), 2 * g)), lo)
    h_hi = np.where(curved, np.minimum(rh, w * w / (2 * tip)), rh)
    h = _uniform_steps(rng, h_lo, np.maximum(h_hi, h_lo), 2 * g)
    hole_tip = lim.hole_tip_nm
    iw = _uniform_steps(rng, np.full((b, k), hole_min), np.maximum(w - 2 * wall, hole_min), 2 * g)
    ih_lo = np.maximum(hole_min, _ceil_grid(np.sqrt(2 * hole_tip * iw), 2 * g))
    ih_hi = np.minimum(h - 2 * wall, iw * iw / (2 * hole_tip))
    ih = _uniform_steps(rng, ih_lo, np.maximum(ih_hi, ih_lo), 2 * g)
    # Half the draws transpose (w, h) so neither axis is favoured by the order of drawing.
    swap = rng.random((b, k)) < 0.5
    fits = (h <= rw) & (w <= rh)
    swap &= fits
    w, h = np.where(swap, h, w), np.where(swap, w, h)
    iw, ih = np.where(swap, ih, iw), np.where(swap, iw, ih)
    cx = x0 + w / 2 + _uniform_steps(rng, np.zeros((b, k)), np.maximum(rw - w, 0), g)
    cy = y0 + h / 2 + _uniform_steps(rng, np.zeros((b, k)), np.maximum(rh - h, 0), g)
    kind = np.where(present, kind, Kind.EMPTY).astype(np.int8)
    # Draws whose cuts could not be made are dropped here; the rest go to the checker.
    lib = DesignLibrary.from_arrays(period, kind, cx, cy, w, h, iw, ih)
    return lib.take(np.flatnonzero(feasible))
