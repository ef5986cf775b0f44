"""Designs and the design library (contract 1 of DESIGN.md).

A design is one square unit cell of period ``period_nm`` holding a few axis-aligned primitives.
The library keeps designs in a padded columnar form, ``(N, K)`` arrays with ``kind == EMPTY`` in
unused slots, because the checker, the rasterizer and the generator all work on whole batches
with numpy and a per-design Python object would cost more than the work itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class Kind(IntEnum):
    """Primitive kinds as stored in files; ``EMPTY`` marks an unused slot."""

    EMPTY = -1
    RECTANGLE = 0
    ELLIPSE = 1
    RING = 2


@dataclass(frozen=True)
class Primitive:
    """One axis-aligned shape in unit-cell coordinates (origin at the cell's lower-left corner).

    A ring is an elliptical annulus: ``width_nm``/``height_nm`` give its outer ellipse and
    ``inner_width_nm``/``inner_height_nm`` its hole, both centred on the same point.
    """

    kind: Kind
    center_x_nm: float
    center_y_nm: float
    width_nm: float
    height_nm: float
    inner_width_nm: float = 0.0
    inner_height_nm: float = 0.0

    @staticmethod
    def rectangle(cx: float, cy: float, w: float, h: float) -> Primitive:
        return Primitive(Kind.RECTANGLE, cx, cy, w, h)

    @staticmethod
    def ellipse(cx: float, cy: float, w: float, h: float) -> Primitive:
        return Primitive(Kind.ELLIPSE, cx, cy, w, h)

    @staticmethod
    def ring(cx: float, cy: float, w: float, h: float, inner_w: float, inner_h: float) -> Primitive:
        return Primitive(Kind.RING, cx, cy, w, h, inner_w, inner_h)


@dataclass(frozen=True)
class Design:
    """One unit cell: its period and primitives; ``design_id`` is derived from the geometry."""

    period_nm: float
    primitives: tuple[Primitive, ...]

    @property
    def design_id(self) -> int:
        return int(DesignLibrary.from_designs([self]).design_id[0])


GEOMETRY_COLUMNS = (
    "center_x_nm",
    "center_y_nm",
    "width_nm",
    "height_nm",
    "inner_width_nm",
    "inner_height_nm",
)
"""The (N, K) float columns of a library, in the order ``from_arrays`` takes them."""


@dataclass(frozen=True)
class DesignLibrary:
    """N designs in padded columnar form; row ``n`` slot ``k`` is one primitive or ``EMPTY``.

    Slots are kept in canonical order (non-empty first, sorted by kind then geometry) so equal
    geometry always gives equal arrays and thus equal ``design_id``.
    """

    design_id: IntArray  # (N,) int64, content hash of the canonical geometry
    period_nm: FloatArray  # (N,)
    kind: NDArray[np.int8]  # (N, K)
    center_x_nm: FloatArray  # (N, K)
    center_y_nm: FloatArray
    width_nm: FloatArray
    height_nm: FloatArray
    inner_width_nm: FloatArray
    inner_height_nm: FloatArray

    def __len__(self) -> int:
        return int(self.period_nm.shape[0])

    @property
    def slots(self) -> int:
        return int(self.kind.shape[1])

    @property
    def present(self) -> NDArray[np.bool_]:
        """(N, K) mask of filled slots."""
        mask: NDArray[np.bool_] = self.kind != Kind.EMPTY
        return mask

    @staticmethod
    def from_arrays(
        period_nm: FloatArray,
        kind: NDArray[np.integer],
        center_x_nm: FloatArray,
        center_y_nm: FloatArray,
        width_nm: FloatArray,
        height_nm: FloatArray,
        inner_width_nm: FloatArray | None = None,
        inner_height_nm: FloatArray | None = None,
    ) -> DesignLibrary:
        """Canonicalise padded arrays (sort slots, zero empty slots and non-ring holes) and hash."""
        raw: NDArray[np.int8] = np.asarray(kind, dtype=np.int8)
        if raw.ndim != 2:
            raise ValueError(f"kind must be a 2-D (designs, slots) array, got shape {raw.shape}")
        shape = raw.shape
        zeros = np.zeros(shape)
        cols = [
            np.broadcast_to(np.asarray(c, dtype=np.float64), shape).copy()
            for c in (
                center_x_nm,
                center_y_nm,
                width_nm,
                height_nm,
                zeros if inner_width_nm is None else inner_width_nm,
                zeros if inner_height_nm is None else inner_height_nm,
            )
        ]
        empty = raw == Kind.EMPTY
        not_ring = raw != Kind.RING
        for i, c in enumerate(cols):
            c[empty] = 0.0
            if i >= 4:
                c[not_ring] = 0.0
        # Canonical slot order: filled slots first, then by kind and geometry (lexicographic).
        sort_kind = np.where(empty, np.int8(127), raw)
        order = np.lexsort([*reversed(cols), sort_kind], axis=-1)
        kind8: NDArray[np.int8] = np.take_along_axis(raw, order, axis=1)
        cols = [np.take_along_axis(c, order, axis=1) for c in cols]
        period = np.asarray(period_nm, dtype=np.float64).reshape(-1)
        if period.shape[0] != shape[0]:
            raise ValueError(f"period_nm has {period.shape[0]} entries for {shape[0]} designs")
        ids = _hash_designs(period, kind8, cols)
        return DesignLibrary(ids, period, kind8, *cols)

    @staticmethod
    def from_designs(designs: Sequence[Design]) -> DesignLibrary:
        slots = max((len(d.primitives) for d in designs), default=1) or 1
        n = len(designs)
        kind = np.full((n, slots), Kind.EMPTY, dtype=np.int8)
        cols = np.zeros((6, n, slots))
        for i, d in enumerate(designs):
            for k, p in enumerate(d.primitives):
                kind[i, k] = p.kind
                cols[:, i, k] = [getattr(p, c) for c in GEOMETRY_COLUMNS]
        period = np.array([d.period_nm for d in designs], dtype=np.float64)
        return DesignLibrary.from_arrays(period, kind, *cols)

    def design(self, index: int) -> Design:
        """The design in row ``index`` as plain objects, for inspection and hand-made tests."""
        prims = tuple(
            Primitive(
                Kind(int(self.kind[index, k])),
                *(float(getattr(self, c)[index, k]) for c in GEOMETRY_COLUMNS),
            )
            for k in range(self.slots)
            if self.kind[index, k] != Kind.EMPTY
        )
        return Design(float(self.period_nm[index]), prims)

    def designs(self) -> Iterable[Design]:
        return (self.design(i) for i in range(len(self)))

    def take(self, index: NDArray[np.integer] | slice) -> DesignLibrary:
        """A sub-library (rows selected, slots kept)."""
        return DesignLibrary(
            self.design_id[index],
            self.period_nm[index],
            *(getattr(self, c)[index] for c in ("kind", *GEOMETRY_COLUMNS)),
        )

    @staticmethod
    def concatenate(parts: Sequence[DesignLibrary]) -> DesignLibrary:
        """Join libraries, padding slot counts to the widest."""
        slots = max(p.slots for p in parts)
        padded = [p.with_slots(slots) for p in parts]
        return DesignLibrary(
            np.concatenate([p.design_id for p in padded]),
            np.concatenate([p.period_nm for p in padded]),
            np.concatenate([p.kind for p in padded]).astype(np.int8),
            *(np.concatenate([getattr(p, c) for p in padded]) for c in GEOMETRY_COLUMNS),
        )

    def with_slots(self, slots: int) -> DesignLibrary:
        """The same designs padded with empty slots to ``slots`` (never fewer than it has)."""
        extra = slots - self.slots
        if extra < 0:
            raise ValueError(f"cannot fit {self.slots} slots into {slots}")
        if extra == 0:
            return self

        def pad(a: FloatArray) -> FloatArray:
            return np.pad(a, ((0, 0), (0, extra)))

        kind = np.pad(self.kind, ((0, 0), (0, extra)), constant_values=Kind.EMPTY)
        return DesignLibrary(
            self.design_id,
            self.period_nm,
            kind.astype(np.int8),
            *(pad(getattr(self, c)) for c in GEOMETRY_COLUMNS),
        )

    def index_of(self, design_ids: NDArray[np.int64]) -> IntArray:
        """Row of each id; raises with the first unknown id."""
        design_ids = np.asarray(design_ids, dtype=np.int64)
        if len(self) == 0 and design_ids.size:
            raise KeyError(
                f"design_id {int(design_ids.flat[0])} is not in the library (it is empty)"
            )
        order = np.argsort(self.design_id)
        pos = np.searchsorted(self.design_id, design_ids, sorter=order)
        pos = np.clip(pos, 0, len(self) - 1)
        rows = order[pos]
        missing = self.design_id[rows] != design_ids
        if np.any(missing):
            bad = int(np.asarray(design_ids)[missing][0])
            raise KeyError(f"design_id {bad} is not in the library")
        return rows.astype(np.int64)


def _hash_designs(period: FloatArray, kind: NDArray[np.int8], cols: list[FloatArray]) -> IntArray:
    """Stable 63-bit content hash of period and filled slots only, quantised to 1 pm.

    Only filled slots enter the hash so the id does not depend on how wide the padding is.
    """
    per_slot = np.stack([kind.astype("<i8"), *(np.rint(c * 1000).astype("<i8") for c in cols)], -1)
    period_q = np.rint(period * 1000).astype("<i8")
    counts = np.count_nonzero(kind != Kind.EMPTY, axis=1)
    out = np.empty(kind.shape[0], dtype=np.int64)
    for i in range(kind.shape[0]):
        h = hashlib.blake2b(period_q[i].tobytes(), digest_size=8)
        h.update(np.ascontiguousarray(per_slot[i, : counts[i]]).tobytes())
        out[i] = int.from_bytes(h.digest(), "little") & 0x7FFF_FFFF_FFFF_FFFF
    return out
