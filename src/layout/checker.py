"""The fabrication checker: every rule of ``DesignRules`` on any batch of designs.

It is independent of the generator (which calls it to keep or drop a draw) and reports each
violation with its kind, the primitives involved, the measured size and the limit, so a person
can see why a hand-made design fails. The periodic metasurface is checked as such: gaps are also
measured to the copies of every primitive in the eight neighbouring cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from layout.design import Design, DesignLibrary, Kind
from layout.geometry import clearance_inside, separation
from layout.rules import DesignRules

FloatArray = NDArray[np.float64]


class Rule(Enum):
    """Violation kinds; the value is the short name used in files and messages."""

    BAD_PERIOD = "bad_period"
    EMPTY = "empty"
    OFF_GRID = "off_grid"
    MIN_SIZE = "min_size"
    OUTSIDE_CELL = "outside_cell"
    BORDER_MARGIN = "border_margin"
    TIP_RADIUS = "tip_radius"
    RING_WALL = "ring_wall"
    RING_HOLE = "ring_hole"
    HOLE_TIP_RADIUS = "hole_tip_radius"
    OVERLAP = "overlap"
    GAP = "gap"
    PERIODIC_GAP = "periodic_gap"


_RULES = list(Rule)


@dataclass(frozen=True)
class Violation:
    """One broken rule in one design; ``primitives`` index the design's primitives as given."""

    rule: Rule
    design_index: int
    primitives: tuple[int, ...]
    size_nm: float
    limit_nm: float

    def __str__(self) -> str:
        where = ",".join(map(str, self.primitives)) or "-"
        return (
            f"design {self.design_index}: {self.rule.value} on primitive(s) {where}: "
            f"{self.size_nm:.2f} nm, limit {self.limit_nm:.2f} nm"
        )


@dataclass(frozen=True)
class CheckReport:
    """Columnar violations of a batch: one row per violation, plus a per-design verdict."""

    design_index: NDArray[np.int64]
    rule_code: NDArray[np.int64]
    primitive_a: NDArray[np.int64]
    primitive_b: NDArray[np.int64]
    size_nm: FloatArray
    limit_nm: FloatArray
    passed: NDArray[np.bool_]

    def violations(self) -> list[Violation]:
        out = []
        for i in range(self.design_index.shape[0]):
            prims = tuple(int(p) for p in (self.primitive_a[i], self.primitive_b[i]) if p >= 0)
            out.append(
                Violation(
                    _RULES[int(self.rule_code[i])],
                    int(self.design_index[i]),
                    prims,
                    float(self.size_nm[i]),
                    float(self.limit_nm[i]),
                )
            )
        return out

    def counts(self) -> dict[str, int]:
        codes, n = np.unique(self.rule_code, return_counts=True)
        return {_RULES[int(c)].value: int(k) for c, k in zip(codes, n, strict=True)}


class _Collector:
    def __init__(self) -> None:
        self.rows: list[
            tuple[
                NDArray[np.int64], int, NDArray[np.int64], NDArray[np.int64], FloatArray, FloatArray
            ]
        ] = []

    def add(
        self,
        bad: NDArray[np.bool_],
        rule: Rule,
        a: int | NDArray[np.int64],
        b: int | NDArray[np.int64],
        size: FloatArray,
        limit: float | FloatArray,
    ) -> None:
        """Record rows where ``bad`` (shape (N,)) is set."""
        idx = np.flatnonzero(bad)
        if idx.size == 0:
            return

        def pick(v: int | float | NDArray[np.generic]) -> NDArray[np.generic]:
            arr = np.asarray(v)
            return np.broadcast_to(arr, bad.shape)[idx] if arr.ndim else np.full(idx.size, arr)

        self.rows.append(
            (
                idx,
                _RULES.index(rule),
                pick(a).astype(np.int64),
                pick(b).astype(np.int64),
                pick(size).astype(np.float64),
                pick(limit).astype(np.float64),
            )
        )

    def report(self, n: int) -> CheckReport:
        if not self.rows:
            e = np.zeros(0, dtype=np.int64)
            return CheckReport(e, e, e, e, np.zeros(0), np.zeros(0), np.ones(n, dtype=bool))
        di = np.concatenate([r[0] for r in self.rows])
        code = np.concatenate([np.full(r[0].size, r[1]) for r in self.rows])
        a, b, s, lim = (np.concatenate([r[k] for r in self.rows]) for k in (2, 3, 4, 5))
        order = np.lexsort((code, di))
        passed = np.ones(n, dtype=bool)
        passed[di] = False
        return CheckReport(di[order], code[order], a[order], b[order], s[order], lim[order], passed)


def check_library(library: DesignLibrary, rules: DesignRules | None = None) -> CheckReport:
    """Check every design of a library (primitive indices refer to its canonical slot order)."""
    return check_arrays(
        library.period_nm,
        library.kind,
        library.center_x_nm,
        library.center_y_nm,
        library.width_nm,
        library.height_nm,
        library.inner_width_nm,
        library.inner_height_nm,
        rules or DesignRules(),
    )


def check_design(design: Design, rules: DesignRules | None = None) -> list[Violation]:
    """Check one design; primitive indices are positions in ``design.primitives``."""
    k = max(len(design.primitives), 1)
    kind = np.full((1, k), Kind.EMPTY, dtype=np.int8)
    cols = np.zeros((6, 1, k))
    for i, p in enumerate(design.primitives):
        kind[0, i] = p.kind
        cols[:, 0, i] = (
            p.center_x_nm,
            p.center_y_nm,
            p.width_nm,
            p.height_nm,
            p.inner_width_nm,
            p.inner_height_nm,
        )
    cx, cy, w, h, iw, ih = cols
    report = check_arrays(
        np.array([float(design.period_nm)]), kind, cx, cy, w, h, iw, ih, rules or DesignRules()
    )
    return report.violations()


def _off_grid(values: FloatArray, grid: float) -> NDArray[np.bool_]:
    q = values / grid
    return np.abs(q - np.rint(q)) > 1e-6


def check_arrays(
    period_nm: FloatArray,
    kind: NDArray[np.int8],
    cx: FloatArray,
    cy: FloatArray,
    w: FloatArray,
    h: FloatArray,
    iw: FloatArray,
    ih: FloatArray,
    rules: DesignRules,
) -> CheckReport:
    """Vectorised core: padded (N, K) primitive arrays -> all violations."""
    n, k = kind.shape
    out = _Collector()
    period = np.asarray(period_nm, dtype=np.float64)
    curved = (kind == Kind.ELLIPSE) | (kind == Kind.RING)
    allowance = rules.curve_allowance_nm

    out.add(
        (period <= 0) | _off_grid(period, rules.grid_nm),
        Rule.BAD_PERIOD,
        -1,
        -1,
        period,
        rules.grid_nm,
    )
    out.add(~np.any(kind != Kind.EMPTY, axis=1), Rule.EMPTY, -1, -1, np.zeros(n), 1.0)

    for s in range(k):
        present = kind[:, s] != Kind.EMPTY
        ring = kind[:, s] == Kind.RING
        # Grid: centres and every edge (ring holes too) on the fabrication grid; an edge between
        # grid points would also fall between the 1 nm points of the GDS file.
        grid_bad = np.zeros(n, dtype=bool)
        for centre, outer, hole in ((cx[:, s], w[:, s], iw[:, s]), (cy[:, s], h[:, s], ih[:, s])):
            grid_bad |= _off_grid(centre, rules.grid_nm)
            grid_bad |= _off_grid(centre - outer / 2, rules.grid_nm) | _off_grid(
                centre + outer / 2, rules.grid_nm
            )
            hole_bad = _off_grid(centre - hole / 2, rules.grid_nm) | _off_grid(
                centre + hole / 2, rules.grid_nm
            )
            grid_bad |= ring & hole_bad
        out.add(present & grid_bad, Rule.OFF_GRID, s, -1, np.zeros(n), rules.grid_nm)

        size = np.minimum(w[:, s], h[:, s])
        out.add(present & (size < rules.min_size_nm), Rule.MIN_SIZE, s, -1, size, rules.min_size_nm)

        border = np.minimum.reduce(
            [
                cx[:, s] - w[:, s] / 2,
                period - cx[:, s] - w[:, s] / 2,
                cy[:, s] - h[:, s] / 2,
                period - cy[:, s] - h[:, s] / 2,
            ]
        )
        outside = present & (border < 0)
        out.add(outside, Rule.OUTSIDE_CELL, s, -1, border, 0.0)
        out.add(
            present & ~outside & (border < rules.border_margin_nm),
            Rule.BORDER_MARGIN,
            s,
            -1,
            border,
            rules.border_margin_nm,
        )

        lo, hi = np.minimum(w[:, s], h[:, s]) / 2, np.maximum(w[:, s], h[:, s]) / 2
        tip = np.divide(lo**2, hi, out=np.zeros(n), where=hi > 0)
        out.add(
            present & curved[:, s] & (tip < rules.min_tip_radius_nm),
            Rule.TIP_RADIUS,
            s,
            -1,
            tip,
            rules.min_tip_radius_nm,
        )

        if np.any(ring):
            r = np.flatnonzero(ring)
            ell = np.full(r.size, Kind.ELLIPSE, dtype=np.int8)
            zero = np.zeros(r.size)
            wall = np.full(n, np.inf)
            wall[r] = clearance_inside(
                w[r, s] / 2, h[r, s] / 2, ell, iw[r, s] / 2, ih[r, s] / 2, zero, zero
            )
            wall_limit = rules.min_feature_nm + allowance
            out.add(ring & (wall < wall_limit), Rule.RING_WALL, s, -1, wall, wall_limit)
            hole = np.minimum(iw[:, s], ih[:, s])
            hole_limit = rules.min_gap_nm + allowance
            out.add(ring & (hole < hole_limit), Rule.RING_HOLE, s, -1, hole, hole_limit)
            ilo, ihi = np.minimum(iw[:, s], ih[:, s]) / 2, np.maximum(iw[:, s], ih[:, s]) / 2
            itip = np.divide(ilo**2, ihi, out=np.zeros(n), where=ihi > 0)
            out.add(
                ring & (itip < rules.min_hole_tip_radius_nm),
                Rule.HOLE_TIP_RADIUS,
                s,
                -1,
                itip,
                rules.min_hole_tip_radius_nm,
            )

    _check_pairs(out, period, kind, cx, cy, w, h, iw, ih, curved, rules)
    return out.report(n)


_NEIGHBOURS = [(sx, sy) for sx in (-1, 0, 1) for sy in (-1, 0, 1)]
_SELF_NEIGHBOURS = [(1, 0), (0, 1), (1, 1), (1, -1)]  # the other four are the same pairs mirrored


def _check_pairs(
    out: _Collector,
    period: FloatArray,
    kind: NDArray[np.int8],
    cx: FloatArray,
    cy: FloatArray,
    w: FloatArray,
    h: FloatArray,
    iw: FloatArray,
    ih: FloatArray,
    curved: NDArray[np.bool_],
    rules: DesignRules,
) -> None:
    """Gaps between every pair of primitives, in the cell and to the neighbours' copies."""
    n, k = kind.shape
    for a in range(k):
        for b in range(a, k):
            both = (kind[:, a] != Kind.EMPTY) & (kind[:, b] != Kind.EMPTY)
            if not np.any(both):
                continue
            limit = rules.min_gap_nm + np.where(
                curved[:, a] | curved[:, b], rules.curve_allowance_nm, 0.0
            )
            for sx, sy in _SELF_NEIGHBOURS if a == b else _NEIGHBOURS:
                dx = cx[:, b] + sx * period - cx[:, a]
                dy = cy[:, b] + sy * period - cy[:, a]
                gap = _pair_gap(both, kind, a, b, w, h, iw, ih, dx, dy, limit)
                rule = Rule.GAP if (sx, sy) == (0, 0) else Rule.PERIODIC_GAP
                out.add(both & (gap <= 0), Rule.OVERLAP, a, b, np.zeros(n), 0.0)
                out.add(both & (gap > 0) & (gap < limit), rule, a, b, gap, limit)


def _pair_gap(
    both: NDArray[np.bool_],
    kind: NDArray[np.int8],
    a: int,
    b: int,
    w: FloatArray,
    h: FloatArray,
    iw: FloatArray,
    ih: FloatArray,
    dx: FloatArray,
    dy: FloatArray,
    limit: FloatArray,
) -> FloatArray:
    """Gap between primitives a and b (b offset by dx, dy): the Euclidean distance between their
    outlines when apart, the clearance inside a ring's hole when one nests in the other, and 0
    when they overlap. Pairs whose bounding boxes are already far enough skip the exact solve."""
    n = dx.shape[0]
    gap = np.full(n, np.inf)
    gx = np.abs(dx) - (w[:, a] + w[:, b]) / 2
    gy = np.abs(dy) - (h[:, a] + h[:, b]) / 2
    box_gap = np.where((gx > 0) | (gy > 0), np.hypot(np.maximum(gx, 0), np.maximum(gy, 0)), 0.0)
    rect_pair = (kind[:, a] == Kind.RECTANGLE) & (kind[:, b] == Kind.RECTANGLE)
    easy = both & ((box_gap >= limit) | rect_pair)
    gap[easy] = box_gap[easy]
    hard = np.flatnonzero(both & ~easy)
    if hard.size == 0:
        return gap
    ka, kb = kind[hard, a], kind[hard, b]
    sep = separation(
        ka, w[hard, a] / 2, h[hard, a] / 2, kb, w[hard, b] / 2, h[hard, b] / 2, dx[hard], dy[hard]
    )
    result = np.maximum(sep, 0.0)
    touching = sep <= 0
    for hole_of, inner, sign in ((a, b, 1.0), (b, a, -1.0)):
        ring = touching & (kind[hard, hole_of] == Kind.RING)
        if not np.any(ring):
            continue
        r = hard[ring]
        clear = clearance_inside(
            iw[r, hole_of] / 2,
            ih[r, hole_of] / 2,
            kind[r, inner],
            w[r, inner] / 2,
            h[r, inner] / 2,
            sign * dx[r],
            sign * dy[r],
        )
        result[ring] = np.maximum(result[ring], np.maximum(clear, 0.0))
    gap[hard] = result
    return gap
