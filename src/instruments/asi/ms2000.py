"""Driver for the ASI MS-2000 XY(Z) stage controller.

The MS-2000 acknowledges a move at once (``:A``) and reports motion through a separate busy poll
(``/`` → ``N`` idle, ``B`` busy), so a move and the wait for its end are two steps here as well:
:meth:`MS2000.move_to` returns on the acknowledgement, :meth:`MS2000.wait_until_idle` polls, and
:meth:`MS2000.move_to_and_wait` does both.

The busy poll stays ``/``: two bytes out and ``N``/``B`` back for all axes at once. ``RDSTAT``
(``RS X Y`` → ``:A 10 10``) carries the same busy flag per axis (bit 0 of each status byte,
"synonymous with the STATUS command" in ASI's RDSBYTE page) but costs seven bytes out and ten
back a poll, so it is not a cheaper idle poll and the driver does not send it.

Units: the public API is in µm and mm/s. The controller counts positions in tenths of a µm, so
every coordinate is sent as an integer number of tenths, rounded to the nearest tenth with
Python's :func:`round` (an exact tie goes to the even tenth): 12.34 µm is sent as ``X=123``,
12.36 µm as ``X=124``. Soft limits are checked against the rounded target, the position the
stage is actually told to go to.

Facts marked UNVERIFIED in the project's instrument reference are constructor arguments, not
constants: the upper speed limit (``max_speed_mm_per_s``, default 7.5 mm/s) and the meaning of
the error codes other than -1 and -21 (``error_messages``).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pymeasure.instruments import Instrument

from instruments.ascii_instrument import AsciiInstrument, RetryPolicy
from instruments.errors import DeviceBusyTimeout, DeviceReplyError, GarbledReply

log = logging.getLogger(__name__)

#: ``:N-<n>`` error codes and what they mean. -1 and -21 are confirmed by Micro-Manager's ASI
#: adapter; -2..-5 are UNVERIFIED (taken from ASI's manual layout, never seen on our unit) and
#: can be replaced per instance with the ``error_messages`` constructor argument.
ERROR_MESSAGES: Mapping[int, str] = {
    -1: "unknown command",
    -2: "unrecognized axis parameter (UNVERIFIED)",
    -3: "missing parameters (UNVERIFIED)",
    -4: "parameter out of range (UNVERIFIED)",
    -5: "operation failed (UNVERIFIED)",
    -21: "halted",
}

#: The reply ``HALT`` gives when it stopped a motion; for that command it means success.
HALTED_CODE = -21

#: Slowest speed we send: one device unit (0.1 µm) per second, the last digit of the format.
MIN_SPEED_MM_PER_S = 1e-4
#: UNVERIFIED default ceiling for the XY speed; the real ceiling depends on the leadscrew pitch.
DEFAULT_MAX_SPEED_MM_PER_S = 7.5
#: Busy-poll interval: the reference gives none; 50 ms keeps the serial line mostly idle.
DEFAULT_POLL_INTERVAL_S = 0.05

_TENTHS_PER_UM = 10.0
_SUPPORTED_BAUD_RATES = (9600, 115200)
_ERROR_REPLY = re.compile(r":N(-?\d+)")
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def _format_speed(value: float) -> str:
    """Four decimals (0.1 µm/s resolution) without trailing zeros: 5 → "5", 2.5 → "2.5"."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _speed_validator(value: float, values: tuple[float, float]) -> float:
    low, high = values
    speed = float(value)
    if not (math.isfinite(speed) and low <= speed <= high):
        raise ValueError(f"speed {value} mm/s is outside {low:g}..{high:g} mm/s")
    return speed


def _to_tenths(value_um: float) -> int:
    return round(value_um * _TENTHS_PER_UM)


class MS2000(AsciiInstrument):
    """ASI MS-2000 XY stage, optionally with a Z (focus) axis, at its ASCII wire protocol.

    ``soft_limits_um`` maps an axis name (``"x"``, ``"y"``, ``"z"``; either case) to the
    ``(low, high)`` travel in µm this bench allows; an axis left out is limited only by the
    hardware. Limits are enforced before any byte is sent, for absolute and relative moves.
    ``poll_interval_s`` is the pause between busy polls. ``baud_rate`` picks 9600 or 115200 for a
    serial port (an explicit ``asrl`` dict overrides everything). ``error_messages`` replaces
    entries of :data:`ERROR_MESSAGES`.
    """

    WRITE_TERMINATION: ClassVar[str] = "\r"
    READ_TERMINATION: ClassVar[str] = "\r\n"
    BAUD_RATE: ClassVar[int] = 115200

    speed_mm_per_s = Instrument.control(
        "S X?",
        "S X=%s Y=%s",
        """Control the XY move speed in mm/s (float); sets X and Y alike and reads X back.
        Z keeps its own speed. Range MIN_SPEED_MM_PER_S..max_speed_mm_per_s.""",
        validator=_speed_validator,
        values=(MIN_SPEED_MM_PER_S, DEFAULT_MAX_SPEED_MM_PER_S),
        set_process=lambda v: (_format_speed(v), _format_speed(v)),
        dynamic=True,
    )

    is_busy = Instrument.measurement(
        "/",
        """Get whether any axis is still moving (bool), from the ``/`` status poll.""",
        get_process=lambda v: v == "B",
    )

    def __init__(
        self,
        adapter: Any,
        name: str = "ASI MS-2000",
        *,
        has_z: bool = False,
        soft_limits_um: Mapping[str, tuple[float, float]] | None = None,
        max_speed_mm_per_s: float = DEFAULT_MAX_SPEED_MM_PER_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        error_messages: Mapping[int, str] | None = None,
        baud_rate: int | None = None,
        timeout_s: float = 1.0,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        if not (math.isfinite(max_speed_mm_per_s) and max_speed_mm_per_s >= MIN_SPEED_MM_PER_S):
            raise ValueError(
                f"max_speed_mm_per_s {max_speed_mm_per_s} must be at least {MIN_SPEED_MM_PER_S}"
            )
        if not (math.isfinite(poll_interval_s) and 0 < poll_interval_s <= 10):
            raise ValueError(f"poll_interval_s {poll_interval_s} is outside 0..10 s (exclusive 0)")
        if baud_rate is not None:
            if baud_rate not in _SUPPORTED_BAUD_RATES:
                raise ValueError(
                    f"baud_rate {baud_rate} is not one of {', '.join(map(str, _SUPPORTED_BAUD_RATES))}"
                )
            kwargs.setdefault(
                "asrl",
                {
                    "baud_rate": baud_rate,
                    "write_termination": self.WRITE_TERMINATION,
                    "read_termination": self.READ_TERMINATION,
                },
            )
        self.axes: tuple[str, ...] = ("x", "y", "z") if has_z else ("x", "y")
        limits = self._checked_limits(soft_limits_um or {})
        super().__init__(adapter, name, timeout_s=timeout_s, retry=retry, **kwargs)
        self.has_z = has_z
        self.max_speed_mm_per_s = float(max_speed_mm_per_s)
        self.speed_mm_per_s_values = (MIN_SPEED_MM_PER_S, self.max_speed_mm_per_s)
        self.poll_interval_s = poll_interval_s
        self.error_messages: dict[int, str] = {**ERROR_MESSAGES, **(error_messages or {})}
        self._soft_limits_um = limits

    def _checked_limits(
        self, limits: Mapping[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        checked: dict[str, tuple[float, float]] = {}
        for key, pair in limits.items():
            axis = key.lower()
            if axis not in self.axes:
                raise ValueError(f"soft limit axis {key!r} is not one of {', '.join(self.axes)}")
            low, high = (float(v) for v in pair)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(
                    f"soft limits {pair} for axis {axis} must be finite with low < high"
                )
            checked[axis] = (low, high)
        return checked

    # --- connect-time ---------------------------------------------------------------------------

    def initialize(self) -> str:
        """Read the firmware version, proving the link and the framing work; return it."""
        version = self.version
        log.info("%s: connected, firmware %s", self.name, version)
        return version

    # --- reading state --------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """Get the firmware version (str), e.g. ``USB-9.2p``, from ``V``."""
        payload = self.transact("V")
        return payload.removeprefix("Version:").strip()

    @property
    def identity(self) -> str:
        """Get the controller and its firmware version (the MS-2000 reports no serial number)."""
        return f"ASI MS-2000 {self.version}"

    @property
    def position_um(self) -> tuple[float, ...]:
        """Measure the encoder position in µm: (x, y), or (x, y, z) when the stage has Z."""
        command = "W " + " ".join(axis.upper() for axis in self.axes)
        fields = self.transact(command).split()
        return tuple(float(v) / _TENTHS_PER_UM for v in fields)

    @property
    def soft_limits_um(self) -> dict[str, tuple[float, float]]:
        """Get the bench's soft limits, axis name → (low, high) in µm (a copy)."""
        return dict(self._soft_limits_um)

    # --- motion ---------------------------------------------------------------------------------

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Start an absolute move; returns on the controller's immediate acknowledgement.

        Soft limits are checked first: a target outside them raises ValueError and sends nothing.
        """
        targets = self._tenths("position", x_um, y_um, z_um)
        for axis, tenths in targets.items():
            self._check_limit(axis, tenths / _TENTHS_PER_UM, "target")
        self.transact("M " + self._axis_args(targets))

    def move_by(self, dx_um: float, dy_um: float, dz_um: float | None = None) -> None:
        """Start a relative move; returns on the acknowledgement. Never retried if the
        acknowledgement is lost, because the stage may already have moved.

        When any moved axis has a soft limit, the position is read first (one extra ``W``
        query) so that position + step can be checked before ``R`` is sent; the read and the
        move are one locked operation so no other command can move the stage in between.
        """
        steps = self._tenths("step", dx_um, dy_um, dz_um)
        with self._lock:
            if any(axis in self._soft_limits_um for axis in steps):
                position = dict(zip(self.axes, self.position_um, strict=True))
                for axis, tenths in steps.items():
                    target = round(position[axis] * _TENTHS_PER_UM) + tenths
                    self._check_limit(axis, target / _TENTHS_PER_UM, "relative move target")
            self.transact("R " + self._axis_args(steps))

    def wait_until_idle(self, timeout_s: float) -> None:
        """Poll ``/`` every ``poll_interval_s`` until no axis moves; DeviceBusyTimeout after
        ``timeout_s``.

        The loop does not hold the instrument lock between polls, so :meth:`halt` from another
        thread (an abort) is never stuck behind a long wait; each poll is its own transaction.
        """
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s {timeout_s} must be a positive number of seconds")
        deadline = time.monotonic() + timeout_s
        while self.is_busy:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceBusyTimeout(self.name, "/", f"stage still moving after {timeout_s:g} s")
            time.sleep(min(self.poll_interval_s, remaining))

    def move_to_and_wait(
        self, x_um: float, y_um: float, z_um: float | None = None, *, timeout_s: float = 30.0
    ) -> None:
        """Move to an absolute position and return when the motion has ended."""
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s {timeout_s} must be a positive number of seconds")
        self.move_to(x_um, y_um, z_um)
        self.wait_until_idle(timeout_s)

    def halt(self) -> None:
        """Stop every axis at once. ``:N-21`` (motion was halted) counts as success."""
        self.transact("HALT")

    # --- helpers --------------------------------------------------------------------------------

    def _tenths(self, what: str, x_um: float, y_um: float, z_um: float | None) -> dict[str, int]:
        values: dict[str, float] = {"x": x_um, "y": y_um}
        if z_um is not None:
            if not self.has_z:
                raise ValueError(f"z {what} {z_um} µm given but this stage has no Z axis")
            values["z"] = z_um
        for axis, value in values.items():
            if not math.isfinite(value):
                raise ValueError(f"{axis} {what} {value} µm is not a finite number")
        return {axis: _to_tenths(value) for axis, value in values.items()}

    def _check_limit(self, axis: str, value_um: float, what: str) -> None:
        limits = self._soft_limits_um.get(axis)
        if limits is not None and not limits[0] <= value_um <= limits[1]:
            raise ValueError(
                f"{axis} {what} {value_um:g} µm is outside the soft limits "
                f"{limits[0]:g}..{limits[1]:g} µm"
            )

    @staticmethod
    def _axis_args(tenths: Mapping[str, int]) -> str:
        return " ".join(f"{axis.upper()}={value}" for axis, value in tenths.items())

    # --- AsciiInstrument hooks ------------------------------------------------------------------

    def is_repeatable(self, command: str) -> bool:
        """A relative move sent twice moves twice."""
        return not command.startswith("R ")

    def parse_reply(self, command: str, reply: str) -> str:
        """Check a reply's shape against the command and return its payload.

        ``/`` answers a bare ``N``/``B``; everything else answers ``:A[ payload]`` or ``:N-<n>``.
        The payload is checked per command (field count for ``W``, ``X=<v>`` for a speed query,
        empty for acknowledgements) so a late reply to an earlier command is caught as garbled.
        """
        text = reply.strip()
        error = _ERROR_REPLY.fullmatch(text)
        if error is not None:
            code = int(error.group(1))
            if command == "HALT" and code == HALTED_CODE:
                return ""
            meaning = self.error_messages.get(code, "undocumented error code")
            raise DeviceReplyError(self.name, command, f"error {code}: {meaning}", reply)
        if command == "/":
            if text in ("N", "B"):
                return text
            raise GarbledReply(self.name, command, "expected N or B", reply)
        if text != ":A" and not text.startswith(":A "):
            raise GarbledReply(self.name, command, "reply does not start with :A or :N", reply)
        payload = text[2:].strip()
        verb, *args = command.split()
        if verb == "W":
            fields = payload.split()
            if len(fields) != len(args) or not all(_NUMBER.fullmatch(f) for f in fields):
                raise GarbledReply(
                    self.name, command, f"expected {len(args)} numbers after :A", reply
                )
            return payload
        if verb == "S" and command.endswith("?"):
            axis = args[0].rstrip("?")
            key, _, value = payload.partition("=")
            if key != axis or not _NUMBER.fullmatch(value):
                raise GarbledReply(self.name, command, f"expected {axis}=<speed>", reply)
            return value
        if verb == "V":
            if not payload:
                raise GarbledReply(self.name, command, "empty version", reply)
            return payload
        if payload:
            raise GarbledReply(self.name, command, "expected a bare :A", reply)
        return payload
