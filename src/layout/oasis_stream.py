"""A minimal OASIS (SEMI P39) writer that streams: records go to the file as they are made.

Why it exists: gdstk's ``Library.write_oas`` and KLayout's writer both write a whole layout held
in memory, and gdstk's streaming ``GdsWriter`` writes GDSII only. A wafer of 3e8 pads as one
in-memory layout grows with the wafer; here memory is one tile of records.

What it writes (nothing else of the format is needed):

* the magic and ``START`` (version 1.0, the database unit as grid steps per µm, table offsets in
  ``START``, all "not recorded": names may be anywhere, which every reader accepts);
* ``CELLNAME`` records with implicit reference numbers 0, 1, ... (one per cell, written first, so
  a placement names its cell in one or two bytes instead of the name string);
* ``CELL`` by reference number, each followed by ``XYABSOLUTE`` (coordinates are absolute);
* ``POLYGON`` with a general (g-delta) point list, every field explicit (no modal variable is
  relied on), for the unit cells' shapes;
* ``PLACEMENT`` without transformation, every field explicit, with a regular repetition
  (type 1: columns x rows; type 2 or 3 for a single row or column) for the run AREFs, encoded
  for a whole tile at once with numpy (a dithered image can have a run per pad);
* ``CBLOCK`` (raw DEFLATE) around each tile's placements when ``compression_level > 0``;
* ``END`` padded so that it is the file's last 256 bytes, validation scheme 0 (the manifest
  records the file's SHA-256, computed here as the bytes are written).

Integers follow the spec: unsigned-integer is 7 bits per byte, low bits first, high bit set on
every byte but the last; signed-integer has its sign in bit 0 of the magnitude shifted left by
one; a g-delta of form 2 is ``(|dx| << 2) | (dx < 0) << 1 | 1`` then ``dy`` as a signed-integer;
reals are written as type 0 (a positive whole number).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

MAGIC = b"%SEMI-OASIS\r\n"
END_RECORD_BYTES = 256

# Record ids (SEMI P39 table 3).
PAD, START, END, CELLNAME_IMPLICIT = 0, 1, 2, 3
CELL_REFNUM, XYABSOLUTE = 13, 15
PLACEMENT, POLYGON, CBLOCK = 17, 21, 34
_MAX_VARINT_BYTES = 10  # 64 bits in 7-bit groups


def unsigned(value: int) -> bytes:
    """An OASIS unsigned-integer."""
    if value < 0:
        raise ValueError(f"unsigned-integer {value} is negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def signed(value: int) -> bytes:
    """An OASIS signed-integer: sign in bit 0, magnitude above it."""
    return unsigned((abs(value) << 1) | (1 if value < 0 else 0))


def n_string(text: str) -> bytes:
    """A name string: printable ASCII without spaces (0x21-0x7E), as cell names must be."""
    raw = text.encode("latin-1", errors="replace")  # anything outside ASCII fails below
    if not raw or any(b < 0x21 or b > 0x7E for b in raw) or not text.isascii():
        raise ValueError(f"OASIS name {text!r} must be 1+ printable ASCII characters, no spaces")
    return unsigned(len(raw)) + raw


def g_delta(dx: int, dy: int) -> bytes:
    """A g-delta of form 2 (any displacement)."""
    return unsigned((abs(dx) << 2) | ((1 if dx < 0 else 0) << 1) | 1) + signed(dy)


def _varints(values: NDArray[np.uint64]) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """Unsigned-integers of many values at once: (byte count per value, (N, 10) bytes)."""
    v = np.asarray(values, dtype=np.uint64)
    count = np.ones(v.shape[0], np.int64)
    out = np.zeros((v.shape[0], _MAX_VARINT_BYTES), np.uint8)
    for b in range(_MAX_VARINT_BYTES):
        group = (v >> np.uint64(7 * b)) & np.uint64(0x7F)
        out[:, b] = group.astype(np.uint8)
        if b:
            count += (v >> np.uint64(7 * b)) > 0
    more = np.arange(_MAX_VARINT_BYTES)[None, :] < (count - 1)[:, None]
    out |= (more * 0x80).astype(np.uint8)
    return count, out


def _signed_varints(values: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    v = np.asarray(values, dtype=np.int64)
    return _varints((np.abs(v).astype(np.uint64) << np.uint64(1)) | (v < 0).astype(np.uint64))


def _records(fields: Sequence[tuple[NDArray[np.int64], NDArray[np.uint8]]]) -> bytes:
    """Concatenate, record by record, fields given as (byte count per record, bytes per
    record); a field of count 0 is absent from that record."""
    counts = np.stack([c for c, _ in fields], axis=1)
    total = counts.sum(axis=1)
    out = np.zeros(int(total.sum()), np.uint8)
    pos = np.concatenate([[0], np.cumsum(total)[:-1]]).astype(np.int64)
    for count, data in fields:
        for b in range(data.shape[1]):
            m = count > b
            if not m.any():
                break
            out[pos[m] + b] = data[m, b]
        pos = pos + count
    return out.tobytes()


def _const(
    n: int, value: int, present: NDArray[np.bool_] | None = None
) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    count = np.ones(n, np.int64) if present is None else present.astype(np.int64)
    return count, np.full((n, 1), value, np.uint8)


def _masked(
    field: tuple[NDArray[np.int64], NDArray[np.uint8]], present: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    return np.where(present, field[0], 0), field[1]


def placements(
    cell: NDArray[np.int64],
    x: NDArray[np.int64],
    y: NDArray[np.int64],
    columns: NDArray[np.int64],
    rows: NDArray[np.int64],
    dx: NDArray[np.int64],
    dy: NDArray[np.int64],
) -> bytes:
    """PLACEMENT records (no rotation, no mirror) of cells by reference number at (x, y) in
    database units, each repeated ``columns`` x ``rows`` times at steps ``dx``, ``dy`` (>= 0).
    A single placement has no repetition; one row or one column uses repetition type 2 or 3."""
    n = int(cell.shape[0])
    if n == 0:
        return b""
    if (columns < 1).any() or (rows < 1).any() or (dx < 0).any() or (dy < 0).any():
        raise ValueError("placement repetitions need columns, rows >= 1 and steps >= 0")
    many_x, many_y = columns > 1, rows > 1
    repeated = many_x | many_y
    info = np.where(repeated, 0xF8, 0xF0)  # C N X Y R: explicit refnum, x, y (+ repetition)
    rep_type = np.where(many_x & many_y, 1, np.where(many_x, 2, 3))
    return _records(
        [
            _const(n, PLACEMENT),
            (np.ones(n, np.int64), info.astype(np.uint8)[:, None]),
            _varints(cell.astype(np.uint64)),
            _signed_varints(x),
            _signed_varints(y),
            (repeated.astype(np.int64), rep_type.astype(np.uint8)[:, None]),
            _masked(_varints(np.maximum(columns - 2, 0).astype(np.uint64)), many_x),
            _masked(_varints(np.maximum(rows - 2, 0).astype(np.uint64)), many_y),
            _masked(_varints(dx.astype(np.uint64)), many_x),
            _masked(_varints(dy.astype(np.uint64)), many_y),
        ]
    )


def polygon(layer: int, datatype: int, points: NDArray[np.int64]) -> bytes:
    """A POLYGON record of (V, 2) vertices in database units (V >= 3; closed implicitly)."""
    pts = np.asarray(points, dtype=np.int64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 3:
        raise ValueError(f"a polygon needs (V >= 3, 2) vertices, got shape {pts.shape}")
    deltas = np.diff(pts, axis=0)
    body = b"".join(g_delta(int(a), int(b)) for a, b in deltas)
    point_list = bytes([4]) + unsigned(len(deltas)) + body  # type 4: general g-deltas
    x0, y0 = (int(v) for v in pts[0])
    info = 0x3B  # P X Y D L (no repetition)
    return (
        bytes([POLYGON, info])
        + unsigned(layer)
        + unsigned(datatype)
        + point_list
        + signed(x0)
        + signed(y0)
    )


def deflate_raw(data: bytes, level: int) -> bytes:
    """DEFLATE (RFC 1951, no zlib header) as a CBLOCK of compression type 0 holds it."""
    packer = zlib.compressobj(level, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


class Writable(Protocol):
    """Where the stream goes: anything with ``write`` (a file, a guard around one)."""

    def write(self, data: bytes, /) -> int: ...


class OasisStream:
    """Writes one OASIS file to ``out`` in order: ``cells`` (names, fixing reference numbers),
    then ``begin_cell`` / shapes and placements / ..., then ``close``. Counts and hashes every
    byte written (``bytes_written``, ``sha256``)."""

    def __init__(self, out: Writable, grid_per_um: int = 1000, compression_level: int = 6) -> None:
        if not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level={compression_level} must be in [0, 9]")
        self._out = out
        self._hash = hashlib.sha256()
        self.bytes_written = 0
        self.compression_level = compression_level
        self._names: dict[str, int] = {}
        self._closed = False
        # START: version, unit, offset-flag 0 and six (flag, offset) = (0, 0): no tables.
        self._emit(MAGIC + bytes([START]) + n_string("1.0") + bytes([0]) + unsigned(grid_per_um))
        self._emit(bytes([0]) + bytes(12))

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self._hash.update(data)
        self.bytes_written += len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def cells(self, names: Sequence[str]) -> dict[str, int]:
        """Declare every cell once, before any cell is written; returns name -> refnum."""
        if self._names:
            raise RuntimeError("cells() is called once, before the first cell")
        if len(set(names)) != len(names):
            raise ValueError("cell names must be unique")
        self._emit(b"".join(bytes([CELLNAME_IMPLICIT]) + n_string(n) for n in names))
        self._names = {n: i for i, n in enumerate(names)}
        return dict(self._names)

    def begin_cell(self, name: str) -> None:
        self._emit(bytes([CELL_REFNUM]) + unsigned(self._names[name]) + bytes([XYABSOLUTE]))

    def records(self, data: bytes) -> None:
        """Whole records of the current cell, in a CBLOCK when compressing (and when that is
        smaller)."""
        if not data:
            return
        if self.compression_level:
            packed = deflate_raw(data, self.compression_level)
            head = bytes([CBLOCK, 0]) + unsigned(len(data)) + unsigned(len(packed))
            if len(head) + len(packed) < len(data):
                self._emit(head + packed)
                return
        self._emit(data)

    def close(self) -> None:
        """The END record, padded to the file's last 256 bytes, validation scheme 0."""
        if self._closed:
            return
        # END id (1) + padding b-string (length, then zeros) + validation scheme (1) = 256.
        pad = END_RECORD_BYTES - 2 - 2  # a 2-byte length holds 128..16383
        self._emit(bytes([END]) + unsigned(pad) + bytes(pad) + bytes([0]))
        self._closed = True


def placement_bytes_bound(cells: int, max_coordinate: int, max_count: int, max_step: int) -> int:
    """Bytes one uncompressed PLACEMENT of ``placements`` takes at most: for estimating a
    file's size before writing it."""
    return (
        2
        + len(unsigned(max(cells - 1, 0)))
        + 2 * len(signed(-abs(max_coordinate)))
        + 1
        + 2 * len(unsigned(max(max_count - 2, 0)))
        + 2 * len(unsigned(max_step))
    )
