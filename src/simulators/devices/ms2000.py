"""Wire-level emulator of the ASI MS-2000 XY(Z) stage controller.

It answers what the controller answers (``:A``, ``:A <payload>``, ``:N-<n>``, a bare ``N``/``B``
to the ``/`` poll) at once, as the real controller does, and then moves in device time: each
axis travels at its own speed, all axes together, and the controller is busy until the slowest
one arrives. Acceleration is ignored (constant speed from the first instant), which makes a short
move slightly quicker than on the hardware; the scan timing it feeds is dominated by long moves.

Positions on the wire are in tenths of a µm. The stage has a physical frame (its power-on
encoder frame, in which the travel limits hold and in which :attr:`Ms2000Emulator.position_um`
reports for the virtual microscope) and a reported frame that ``H`` (HERE, set origin) shifts.

Each completed move lands a seeded Gaussian distance from its target on every moved axis
(``position_error_sigma_um``), drawn from a generator keyed by the target so the same move lands
at the same place in every run (a resumed scan sees the stage where the first run saw it), and ``W`` reports that true landing point rounded to 0.1 µm, as an
encoder would. Error codes other than -1 (unknown command) and -21 (halted) are UNVERIFIED and
are config fields. Commands are upper-cased on arrival, so lower-case input is accepted too (an
assumption: the reference only shows upper case, which is what the driver sends).

Commands third-party clients send, answered as ASI documents them (www.asiimaging.com/docs,
pages ``commands/halt``, ``commands/rdstat``, ``commands/rdsbyte``):

* ``\\`` is HALT's shortcut: ``:A``, or ``:N-21`` when it stopped a move. The emulator, like for
  every command, acts on it when its CR arrives (whether the controller acts before the CR is
  UNVERIFIED; ASI says the parser handles it "quickly").
* ``RDSTAT``/``RS`` answers each named axis's status byte in decimal, ``RS X`` → ``:A 138`` (ASI's
  example): bit 0 a commanded move in progress, 1 axis enabled, 2 motor on, 3 joystick enabled,
  4/5 ramping (always 0: no acceleration is modelled), 6 upper and 7 lower limit switch closed
  (the axis at that end of its travel). ``RS X?`` answers ``N``/``B`` for the axis, ``RS X-`` the
  left LCD status character (``U``/``L`` at a limit, else ``lcd_status``); the ``+`` qualifier is
  not emulated (unknown axis). Several axes answer space-separated, ``:A 10 10`` (UNVERIFIED:
  ASI shows one axis). Micro-Manager's ASITiger adapter parses ``RS <axis>?`` at reply index 3
  and ``RS <axis>`` after index 2; python-microscope's ``motor_moving`` reads
  ``int(reply.strip()[3:]) & 1``.
* ``INFO``/``I`` (python-microscope's quick reference: "Returns a screen full of information
  about the axis") answers lines ended by ``\\r`` alone, two 33-character columns of
  ``name: value``. Its first line is the one seen on a unit, ``Axis Name    :  X                ``
  ``Limits Status: f`` (python-microscope issue 298, which also shows lines end in ``\\r`` and the
  client splits them at column 33); the two lines after it (travel limits, speed) are this
  emulator's own, in the same layout. An axis the controller lacks answers nothing, which
  python-microscope's start-up reads as "axis not present" (``info_silent_for_missing_axis``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from simulators.devices.emulator import Emulator, Reply
from simulators.devices.faults import FaultInjector
from simulators.keyed_random import keyed_normal, quantize

_TENTHS_PER_UM = 10.0
_UM_PER_MM = 1000.0
_ALL_AXES = ("X", "Y", "Z")
#: Long command names the controller also accepts, mapped to the short ones.
_ALIASES = {
    "MOVE": "M",
    "MOVREL": "R",
    "WHERE": "W",
    "SPEED": "S",
    "HERE": "H",
    "HOME": "!",
    "STATUS": "/",
    "VERSION": "V",
    "\\": "HALT",
    "RDSTAT": "RS",
    "INFO": "I",
}
#: RDSTAT status byte bits (ASI, commands/rdsbyte).
_MOVING, _ENABLED, _MOTOR_ON, _JOYSTICK = 0x01, 0x02, 0x04, 0x08
_UPPER_LIMIT, _LOWER_LIMIT = 0x40, 0x80
#: INFO's left column is 33 characters wide (python-microscope splits its lines there).
_INFO_COLUMN = 33


@dataclass(frozen=True)
class Ms2000EmulatorConfig:
    """Hardware figures of one emulated MS-2000.

    Travel limits and speeds are a typical MS-2000 with 6.35 mm-pitch leadscrews, not a measured
    unit. ``max_speed_mm_per_s`` and the error codes other than -1 and -21 are UNVERIFIED.
    """

    has_z: bool = False
    x_travel_um: tuple[float, float] = (-55_000.0, 55_000.0)
    y_travel_um: tuple[float, float] = (-55_000.0, 55_000.0)
    z_travel_um: tuple[float, float] = (-5_000.0, 5_000.0)
    x_speed_mm_per_s: float = 5.0
    y_speed_mm_per_s: float = 5.0
    z_speed_mm_per_s: float = 5.0
    max_speed_mm_per_s: float = 7.5  # UNVERIFIED
    version: str = "USB-9.2p"
    #: standard deviation of where a move lands around its target, per moved axis, in µm
    position_error_sigma_um: float = 0.0
    seed: int = 0
    error_unknown_command: int = -1
    error_unknown_axis: int = -2  # UNVERIFIED
    error_missing_argument: int = -3  # UNVERIFIED
    error_out_of_range: int = -4  # UNVERIFIED
    error_halted: int = -21
    #: RDSTAT bit 3; ASI's RDSBYTE example (0x8A) has the joystick enabled
    joystick_enabled: bool = True
    #: RDSTAT ``-`` (and INFO's Limits Status) when no limit switch is closed: ``f`` as on the one
    #: unit seen (python-microscope issue 298); ASI lists ``f``/``s`` for a joystick speed just
    #: selected, ``D`` for a disabled motor, and a space for nothing to report
    lcd_status: str = "f"
    #: INFO for an axis this controller lacks answers nothing (False: the unknown-axis error)
    info_silent_for_missing_axis: bool = True

    def __post_init__(self) -> None:
        for axis in _ALL_AXES:
            low, high = self.travel_um(axis)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"{axis} travel {low}..{high} µm must be finite with low < high")
            speed = self.speed_mm_per_s(axis)
            if not 0 < speed <= self.max_speed_mm_per_s:
                raise ValueError(
                    f"{axis} speed {speed} mm/s is outside 0..{self.max_speed_mm_per_s} mm/s"
                )
        if not (math.isfinite(self.position_error_sigma_um) and self.position_error_sigma_um >= 0):
            raise ValueError(
                f"position_error_sigma_um {self.position_error_sigma_um} must be finite and >= 0"
            )
        if len(self.lcd_status) != 1 or not (
            self.lcd_status.isascii() and self.lcd_status.isprintable()
        ):
            raise ValueError(
                f"lcd_status {self.lcd_status!r} must be one printable ASCII character"
            )

    def travel_um(self, axis: str) -> tuple[float, float]:
        """Hardware travel of ``axis`` ("X", "Y", "Z") in µm, physical frame."""
        return {"X": self.x_travel_um, "Y": self.y_travel_um, "Z": self.z_travel_um}[axis]

    def speed_mm_per_s(self, axis: str) -> float:
        """Power-on speed of ``axis`` in mm/s."""
        return {
            "X": self.x_speed_mm_per_s,
            "Y": self.y_speed_mm_per_s,
            "Z": self.z_speed_mm_per_s,
        }[axis]


@dataclass(frozen=True)
class _Motion:
    """A straight constant-speed path of one axis in device time (physical µm)."""

    start_um: float
    end_um: float
    t0_s: float
    t1_s: float

    def at(self, t_s: float) -> float:
        if t_s >= self.t1_s:
            return self.end_um
        if t_s <= self.t0_s:
            return self.start_um
        fraction = (t_s - self.t0_s) / (self.t1_s - self.t0_s)
        return self.start_um + (self.end_um - self.start_um) * fraction


class _CommandError(Exception):
    """A command the controller refuses with ``:N-<code>``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Ms2000Emulator(Emulator):
    """One MS-2000 controller with its stage, answering at the wire protocol."""

    reply_terminator = b"\r\n"

    def __init__(
        self,
        config: Ms2000EmulatorConfig | None = None,
        *,
        time_scale: float = 1.0,
        faults: FaultInjector | None = None,
        name: str = "ASI MS-2000 emulator",
    ) -> None:
        super().__init__(name, time_scale=time_scale, faults=faults)
        self.config = config or Ms2000EmulatorConfig()
        self._axes: tuple[str, ...] = _ALL_AXES if self.config.has_z else _ALL_AXES[:2]
        self._motions = {axis: _Motion(0.0, 0.0, 0.0, 0.0) for axis in self._axes}
        self._speeds = {axis: self.config.speed_mm_per_s(axis) for axis in self._axes}
        self._origin_um = dict.fromkeys(self._axes, 0.0)
        self._move_count = 0

    # --- state for the virtual microscope and tests ---------------------------------------------

    @property
    def position_um(self) -> tuple[float, float, float]:
        """Physical (x, y, z) in µm now, mid-move positions interpolated; z is 0 without Z.

        Physical means the power-on frame: ``H`` (set origin) changes what ``W`` reports, not
        where the stage is.
        """
        with self.lock:
            now = self.clock.now_s()
            x, y = self._motions["X"].at(now), self._motions["Y"].at(now)
            z = self._motions["Z"].at(now) if "Z" in self._motions else 0.0
            return (x, y, z)

    @property
    def is_moving(self) -> bool:
        """Whether any axis is still travelling at the current device time."""
        with self.lock:
            now = self.clock.now_s()
            return any(now < motion.t1_s for motion in self._motions.values())

    @property
    def speeds_mm_per_s(self) -> dict[str, float]:
        """Current speed per axis in mm/s (a copy)."""
        with self.lock:
            return dict(self._speeds)

    @property
    def move_count(self) -> int:
        """How many motion commands (M, R, !) the controller has accepted."""
        with self.lock:
            return self._move_count

    # --- framing --------------------------------------------------------------------------------

    def split_commands(self, buffer: bytes) -> tuple[list[bytes], bytes]:
        """Commands end in CR; a stray LF (a terminal sending CRLF) is ignored."""
        *commands, rest = buffer.split(b"\r")
        return [c.strip(b"\n") for c in commands], rest

    def respond(self, command: bytes) -> Reply | None:
        text = command.decode("ascii", errors="replace").strip().upper()
        if not text:
            return None
        verb, *args = text.split()
        verb = _ALIASES.get(verb, verb)
        handler: Callable[[list[str]], str | Reply | None] | None = {
            "/": self._status,
            "M": self._move_absolute,
            "R": self._move_relative,
            "W": self._where,
            "S": self._speed,
            "HALT": self._halt,
            "V": self._version,
            "H": self._here,
            "!": self._home,
            "RS": self._rdstat,
            "I": self._info,
        }.get(verb)
        try:
            if handler is None:
                raise _CommandError(self.config.error_unknown_command)
            answer = handler(args)
        except _CommandError as error:
            answer = f":N{error.code}"
        if answer is None or isinstance(answer, Reply):
            return answer
        return Reply((answer + "\r\n").encode("ascii"))

    # --- commands -------------------------------------------------------------------------------

    def _status(self, args: list[str]) -> str:
        return "B" if self.is_moving else "N"

    def _version(self, args: list[str]) -> str:
        return f":A Version: {self.config.version}"

    def _move_absolute(self, args: list[str]) -> str:
        values = self._required_values(args)
        targets = {axis: self._origin_um[axis] + v / _TENTHS_PER_UM for axis, v in values.items()}
        self._start_move(targets)
        return ":A"

    def _move_relative(self, args: list[str]) -> str:
        values = self._required_values(args)
        now = self.clock.now_s()
        targets = {
            axis: self._motions[axis].at(now) + v / _TENTHS_PER_UM for axis, v in values.items()
        }
        self._start_move(targets)
        return ":A"

    def _home(self, args: list[str]) -> str:
        """HOME runs each named axis (all when none is named) to its lower travel end."""
        axes = [self._axis(token) for token in args] if args else list(self._axes)
        self._start_move({axis: self.config.travel_um(axis)[0] for axis in axes})
        return ":A"

    def _where(self, args: list[str]) -> str:
        if not args:
            raise _CommandError(self.config.error_missing_argument)
        axes = [self._axis(token) for token in args]
        now = self.clock.now_s()
        tenths = [
            round((self._motions[axis].at(now) - self._origin_um[axis]) * _TENTHS_PER_UM)
            for axis in axes
        ]
        return ":A " + " ".join(str(t) for t in tenths)

    def _speed(self, args: list[str]) -> str:
        if not args:
            raise _CommandError(self.config.error_missing_argument)
        queries: list[str] = []
        settings: dict[str, float] = {}
        for token in args:
            if token.endswith("?"):
                queries.append(self._axis(token[:-1]))
                continue
            axis, value = self._axis_value(token)
            if not 0 < value <= self.config.max_speed_mm_per_s:
                raise _CommandError(self.config.error_out_of_range)
            settings[axis] = value
        # Applies to the next move; a move under way keeps the speed it started with.
        self._speeds.update(settings)
        if not queries:
            return ":A"
        return ":A " + " ".join(f"{axis}={self._speeds[axis]:.6f}" for axis in queries)

    def _halt(self, args: list[str]) -> str:
        if not self.is_moving:
            return ":A"
        now = self.clock.now_s()
        for axis, motion in self._motions.items():
            here = motion.at(now)
            self._motions[axis] = _Motion(here, here, now, now)
        return f":N{self.config.error_halted}"

    def _rdstat(self, args: list[str]) -> str:
        """RDSTAT: per named axis its status byte, or with ``?`` N/B, with ``-`` the LCD status."""
        if not args:
            raise _CommandError(self.config.error_missing_argument)
        now = self.clock.now_s()
        fields: list[str] = []
        for token in args:
            axis, qualifier = self._axis(token[:1]), token[1:]
            if qualifier == "":
                fields.append(str(self._status_byte(axis, now)))
            elif qualifier == "?":
                fields.append("B" if now < self._motions[axis].t1_s else "N")
            elif qualifier == "-":
                fields.append(self._lcd_left(axis, now))
            else:
                raise _CommandError(self.config.error_unknown_axis)
        return ":A " + " ".join(fields)

    def _status_byte(self, axis: str, now: float) -> int:
        motion = self._motions[axis]
        byte = _ENABLED  # MC (motor control) is not emulated: every axis stays enabled
        if now < motion.t1_s:
            byte |= _MOVING | _MOTOR_ON
        if self.config.joystick_enabled:
            byte |= _JOYSTICK
        return byte | self._limits(axis, now)

    def _limits(self, axis: str, now: float) -> int:
        """The limit-switch bits: a switch closes at its end of the (physical) travel."""
        here = self._motions[axis].at(now)
        low, high = self.config.travel_um(axis)
        return (_UPPER_LIMIT if here >= high else 0) | (_LOWER_LIMIT if here <= low else 0)

    def _lcd_left(self, axis: str, now: float) -> str:
        limits = self._limits(axis, now)
        if limits & _UPPER_LIMIT:
            return "U"
        return "L" if limits & _LOWER_LIMIT else self.config.lcd_status

    def _info(self, args: list[str]) -> Reply | None:
        """INFO: the axis's settings in two 33-character columns, lines ended by CR alone."""
        if not args:
            raise _CommandError(self.config.error_missing_argument)
        axis = args[0]
        if axis not in self._axes:
            if self.config.info_silent_for_missing_axis:
                return None
            raise _CommandError(self.config.error_unknown_axis)
        low, high = self.config.travel_um(axis)
        rows = [
            (("Axis Name", axis), ("Limits Status", self._lcd_left(axis, self.clock.now_s()))),
            (
                ("Max Lim", f"{high / _UM_PER_MM:.3f} mm"),
                ("Min Lim", f"{low / _UM_PER_MM:.3f} mm"),
            ),
            (
                ("Speed", f"{self._speeds[axis]:.4f} [S] mm/s"),
                ("Max Speed", f"{self.config.max_speed_mm_per_s:.4f} mm/s"),
            ),
        ]
        lines = [
            f"{left[0]:<13}:  {left[1]}".ljust(_INFO_COLUMN) + f"{right[0]:<13}: {right[1]}"
            for left, right in rows
        ]
        return Reply("".join(line + "\r" for line in lines).encode("ascii"))

    def _here(self, args: list[str]) -> str:
        """HERE makes the current position read as the given value (0 when none is given)."""
        if not args:
            raise _CommandError(self.config.error_missing_argument)
        now = self.clock.now_s()
        updates: dict[str, float] = {}
        for token in args:
            if "=" in token:
                axis, value = self._axis_value(token)
            else:
                axis, value = self._axis(token), 0.0
            updates[axis] = self._motions[axis].at(now) - value / _TENTHS_PER_UM
        self._origin_um.update(updates)
        return ":A"

    # --- parsing and motion ---------------------------------------------------------------------

    def _axis(self, token: str) -> str:
        if token not in self._axes:
            raise _CommandError(self.config.error_unknown_axis)
        return token

    def _axis_value(self, token: str) -> tuple[str, float]:
        name, sep, text = token.partition("=")
        axis = self._axis(name)
        if not sep or not text:
            raise _CommandError(self.config.error_missing_argument)
        try:
            value = float(text)
        except ValueError:
            raise _CommandError(self.config.error_missing_argument) from None
        if not math.isfinite(value):
            raise _CommandError(self.config.error_out_of_range)
        return axis, value

    def _required_values(self, args: list[str]) -> dict[str, float]:
        if not args:
            raise _CommandError(self.config.error_missing_argument)
        return dict(self._axis_value(token) for token in args)

    def _start_move(self, targets: dict[str, float]) -> None:
        """Check every target against the travel first, so a refused move moves nothing."""
        for axis, target in targets.items():
            low, high = self.config.travel_um(axis)
            if not low <= target <= high:
                raise _CommandError(self.config.error_out_of_range)
        now = self.clock.now_s()
        sigma = self.config.position_error_sigma_um
        for axis, target in targets.items():
            start = self._motions[axis].at(now)
            duration = abs(target - start) / (self._speeds[axis] * _UM_PER_MM)
            # Keyed by the commanded target, so a resumed scan lands where the first run did.
            error = keyed_normal(self.config.seed, "land", axis, quantize(target, 0.01))
            landing = target + (sigma * error if sigma > 0 else 0.0)
            self._motions[axis] = _Motion(start, landing, now, now + duration)
        self._move_count += 1
