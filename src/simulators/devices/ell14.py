"""Wire-level emulator of a Thorlabs Elliptec ELL14 rotation mount.

The mount reads packets with no terminator: its bus address (one hex digit), two lowercase letters
and, for commands that take one, a fixed-length argument (8 hex digits for ``ma``/``mr``/``sj``/
``so``, 2 for ``sv``, one character for ``ho`` and ``ca``). Stray ``\\r``/``\\n`` between packets
are skipped (Micro-Manager appends ``\\r``); one arriving inside an argument ends a short,
malformed packet. Replies carry the address, two uppercase letters and data, ended by ``\\r\\n``.

Motions reply only when they end (``PO`` and the final position), at the configured speed; while
one is under way ``gs`` answers ``09`` (busy) and further motion commands are refused with
``GS09``. A malformed argument answers ``GS04`` (value out of range), an unknown command ``GS03``;
packets for another address are ignored. The error code stays latched until ``gs`` reads it
(pylablib clears it that way), unless the config says otherwise.

``i1``/``i2`` (motor 1 and 2 info) answer ``I1``/``I2`` and 22 characters, the layout both
public clients parse (pylablib's ``ElliptecMotor.get_motor_info``, roesel/elliptec's
``tools.parse``): loop state and motor state (one character each, ``1`` on, ``0`` off), then
4 hex digits each of the current (1866 per ampere), the ramp-up and ramp-down rates (PWM steps
per ms), and the forward and backward periods (14 740 000 / frequency in Hz), e.g.
``0i1`` → ``0I111074A010001000E140E14`` (roesel/elliptec's own test bytes, this emulator's
default). The values are config fields, UNVERIFIED: no unit has been read; ``i3`` and above
answer ``GS03`` as any command the ELL14 lacks.

Positions are kept in signed 32-bit pulses and not wrapped to one turn; ``angle_deg`` takes them
modulo one revolution for the virtual microscope. The time a home takes is modelled as a straight
move to the home offset, whichever direction was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.devices.emulator import Emulator, Reply
from simulators.devices.faults import FaultInjector

__all__ = ["Ell14Emulator", "Ell14EmulatorConfig"]

_HEX_DIGITS = b"0123456789ABCDEF"
_LINE_ENDS = b"\r\n"
#: Argument length of each command that takes one; every other command takes none.
_ARGUMENT_LENGTH = {b"ma": 8, b"mr": 8, b"sj": 8, b"so": 8, b"sv": 2, b"ho": 1, b"ca": 1}
_MOTIONS = frozenset({"ma", "mr", "ho", "fw", "bw"})
_INT32 = 1 << 32

OK, NOT_SUPPORTED, OUT_OF_RANGE, BUSY = 0, 3, 4, 9


def _wrap32(value: int) -> int:
    """Wrap to a signed 32-bit count, as the mount's position register does."""
    return (value + (1 << 31)) % _INT32 - (1 << 31)


def _parse_hex(text: str, digits: int) -> int | None:
    if len(text) != digits or any(c not in "0123456789ABCDEF" for c in text):
        return None
    return int(text, 16)


@dataclass(frozen=True)
class Ell14EmulatorConfig:
    """The emulated mount's identity and timing; defaults are an ELL14 as the reference gives it.

    ``pulses_per_revolution`` (143360) is second-hand, ``jog_step_pulses``, the initial velocity
    and ``latch_errors`` are not from the reference: all configurable.
    """

    address: str = "0"
    model_code: int = 0x0E
    serial: str = "11400001"
    year: int = 2023
    firmware: int = 0x17
    hardware: int = 0x01
    travel_deg: int = 360
    pulses_per_revolution: int = 143_360
    speed_deg_per_s: float = 430.0
    velocity_percent: int = 100
    home_offset_pulses: int = 0
    jog_step_pulses: int = 143_360 // 36
    initial_position_pulses: int = 0
    latch_errors: bool = True
    #: ``i1``/``i2`` fields (module docstring; UNVERIFIED values), the same for both motors but
    #: the periods, one per motor
    motor_loop_on: bool = True
    motor_on: bool = True
    motor_current: int = 0x074A  # 1866 per A: 1.0 A
    motor_ramp_up: int = 0x0100
    motor_ramp_down: int = 0x0100
    motor_forward_periods: tuple[int, int] = (0x0E14, 0x0E14)
    motor_backward_periods: tuple[int, int] = (0x0E14, 0x0E14)

    def __post_init__(self) -> None:
        if len(self.address) != 1 or self.address.upper() not in "0123456789ABCDEF":
            raise ValueError(f"address {self.address!r} is not one hex digit 0..F")
        object.__setattr__(self, "address", self.address.upper())  # the mount sends uppercase
        if not 0 <= self.model_code <= 0xFF:
            raise ValueError(f"model code {self.model_code} is outside 0..255")
        if len(self.serial) != 8 or not self.serial.isalnum():
            raise ValueError(f"serial {self.serial!r} is not 8 letters or digits")
        if not 0 <= self.year <= 9999:
            raise ValueError(f"year {self.year} is outside 0..9999")
        if not (0 <= self.firmware <= 0xFF and 0 <= self.hardware <= 0xFF):
            raise ValueError(f"firmware {self.firmware} / hardware {self.hardware} outside 0..255")
        if not 0 < self.travel_deg <= 0xFFFF:
            raise ValueError(f"travel {self.travel_deg} deg is outside 1..65535 deg")
        if not 0 < self.pulses_per_revolution < 1 << 31:
            raise ValueError(
                f"pulses per revolution {self.pulses_per_revolution} is outside 1..2^31-1"
            )
        if not 0 < self.speed_deg_per_s <= 1e5:
            raise ValueError(f"speed {self.speed_deg_per_s} deg/s is outside 0..1e5 deg/s")
        if not 0 <= self.velocity_percent <= 100:
            raise ValueError(f"velocity {self.velocity_percent} % is outside 0..100 %")
        for name in ("home_offset_pulses", "jog_step_pulses", "initial_position_pulses"):
            value = getattr(self, name)
            if _wrap32(value) != value:
                raise ValueError(f"{name} {value} is outside the signed 32-bit range")
        for name in ("motor_current", "motor_ramp_up", "motor_ramp_down"):
            if not 0 <= getattr(self, name) <= 0xFFFF:
                raise ValueError(f"{name} {getattr(self, name)} is outside 0..0xFFFF")
        for name in ("motor_forward_periods", "motor_backward_periods"):
            periods = tuple(getattr(self, name))
            if len(periods) != 2 or not all(0 < p <= 0xFFFF for p in periods):
                raise ValueError(f"{name} {periods} is not two periods in 1..0xFFFF")
            object.__setattr__(self, name, periods)  # a TOML array arrives as a list


@dataclass(frozen=True)
class _Motion:
    start_s: float
    end_s: float
    start_pulses: int
    target_pulses: int

    def position_at(self, now_s: float) -> int:
        if now_s >= self.end_s:
            return self.target_pulses
        fraction = max(0.0, (now_s - self.start_s) / (self.end_s - self.start_s))
        return self.start_pulses + round((self.target_pulses - self.start_pulses) * fraction)


class Ell14Emulator(Emulator):
    """One ELL14 mount on an Elliptec bus."""

    reply_terminator = b"\r\n"

    def __init__(
        self,
        config: Ell14EmulatorConfig | None = None,
        *,
        time_scale: float = 1.0,
        faults: FaultInjector | None = None,
        name: str = "ELL14 emulator",
    ) -> None:
        super().__init__(name, time_scale=time_scale, faults=faults)
        self.config = config or Ell14EmulatorConfig()
        self._address = self.config.address
        self._position = self.config.initial_position_pulses
        self._motion: _Motion | None = None
        self._velocity_percent = self.config.velocity_percent
        self._home_offset = self.config.home_offset_pulses
        self._jog_step = self.config.jog_step_pulses
        self._latched_error = OK
        self.motions_started = 0

    # --- the physical state, for the virtual microscope -------------------------------------

    @property
    def position_pulses(self) -> int:
        """Encoder position now (signed 32-bit pulses), interpolated during a motion."""
        with self.lock:
            return self._position_at(self.clock.now_s())

    @property
    def angle_deg(self) -> float:
        """Angle of the mount now, in degrees in [0, 360)."""
        pulses_per_rev = self.config.pulses_per_revolution
        return (self.position_pulses % pulses_per_rev) * 360.0 / pulses_per_rev

    @property
    def is_moving(self) -> bool:
        """Whether a motion is under way at the current device time."""
        with self.lock:
            return self._moving(self.clock.now_s())

    @property
    def address(self) -> str:
        """The bus address the mount answers to (``ca`` changes it)."""
        return self._address

    @property
    def velocity_percent(self) -> int:
        """Motor velocity in percent of ``speed_deg_per_s``."""
        return self._velocity_percent

    # --- framing ----------------------------------------------------------------------------

    def split_commands(self, buffer: bytes) -> tuple[list[bytes], bytes]:
        commands: list[bytes] = []
        i, end = 0, len(buffer)
        while i < end:
            if buffer[i] in _LINE_ENDS or buffer[i] not in _HEX_DIGITS:
                i += 1  # line ends between packets, or noise before an address
                continue
            mnemonic = buffer[i + 1 : i + 3]
            wanted = 3 + _ARGUMENT_LENGTH.get(mnemonic, 0)
            chunk = buffer[i : i + wanted]
            cut = min((chunk.find(c) for c in (b"\r", b"\n") if c in chunk), default=-1)
            if cut > 0:
                commands.append(chunk[:cut])  # a line end inside the packet: it is short
                i += cut
            elif len(chunk) == wanted:
                commands.append(chunk)
                i += wanted
            else:
                break  # the rest of the packet has not arrived yet
        return commands, buffer[i:]

    # --- behaviour --------------------------------------------------------------------------

    def respond(self, command: bytes) -> Reply | None:
        text = command.decode("latin-1")
        if not text or text[0] != self._address:
            return None
        now_s = self.clock.now_s()
        mnemonic, argument = text[1:3], text[3:]
        if mnemonic in _MOTIONS:
            return self._motion_command(mnemonic, argument, now_s)
        if mnemonic == "gs":
            if self._moving(now_s):
                return self._reply("GS", f"{BUSY:02X}")
            code, self._latched_error = self._latched_error, OK
            return self._reply("GS", f"{code:02X}")
        if mnemonic == "in":
            return self._reply("IN", self._info())
        if mnemonic in ("i1", "i2"):
            return self._reply(mnemonic.upper(), self._motor_info(int(mnemonic[1]) - 1))
        if mnemonic == "gp":
            return self._reply("PO", f"{self._position_at(now_s) % _INT32:08X}")
        if mnemonic == "gv":
            return self._reply("GV", f"{self._velocity_percent:02X}")
        if mnemonic == "gj":
            return self._reply("GJ", f"{self._jog_step % _INT32:08X}")
        if mnemonic == "go":
            return self._reply("HO", f"{self._home_offset % _INT32:08X}")
        if mnemonic == "sv":
            value = _parse_hex(argument, 2)
            if value is None or value > 100:
                return self._status(OUT_OF_RANGE)
            self._velocity_percent = value
            return self._status(OK)
        if mnemonic in ("sj", "so"):
            value = _parse_hex(argument, 8)
            if value is None:
                return self._status(OUT_OF_RANGE)
            if mnemonic == "sj":
                self._jog_step = _wrap32(value)
            else:
                self._home_offset = _wrap32(value)
            return self._status(OK)
        if mnemonic == "us":
            return self._status(OK)
        if mnemonic == "ca":
            if _parse_hex(argument, 1) is None:
                return self._status(OUT_OF_RANGE)
            self._address = argument
            return self._status(OK)
        return self._status(NOT_SUPPORTED)

    def _motion_command(self, mnemonic: str, argument: str, now_s: float) -> Reply:
        value = 0
        if mnemonic in ("ma", "mr"):
            parsed = _parse_hex(argument, 8)
            if parsed is None:
                return self._status(OUT_OF_RANGE)
            value = parsed
        elif mnemonic == "ho" and argument not in ("0", "1"):
            return self._status(OUT_OF_RANGE)
        if self._moving(now_s):
            return self._status(BUSY)
        start = self._position_at(now_s)
        if mnemonic == "ma":
            target = _wrap32(value)
        elif mnemonic == "mr":
            target = _wrap32(start + _wrap32(value))
        elif mnemonic == "ho":
            target = self._home_offset
        else:
            step = self._jog_step if mnemonic == "fw" else -self._jog_step
            target = _wrap32(start + step)
        speed_deg_per_s = self.config.speed_deg_per_s * max(self._velocity_percent, 1) / 100.0
        duration_s = (
            abs(target - start) * 360.0 / self.config.pulses_per_revolution / speed_deg_per_s
        )
        self._position = start
        self._motion = _Motion(now_s, now_s + duration_s, start, target)
        self.motions_started += 1
        return Reply(self._line("PO", f"{target % _INT32:08X}"), after_s=duration_s)

    # --- helpers ----------------------------------------------------------------------------

    def _moving(self, now_s: float) -> bool:
        return self._motion is not None and now_s < self._motion.end_s

    def _position_at(self, now_s: float) -> int:
        if self._motion is None:
            return self._position
        return self._motion.position_at(now_s)

    def _info(self) -> str:
        c = self.config
        return (
            f"{c.model_code:02X}{c.serial}{c.year:04d}{c.firmware:02X}{c.hardware:02X}"
            f"{c.travel_deg:04X}{c.pulses_per_revolution:08X}"
        )

    def _motor_info(self, motor: int) -> str:
        c = self.config
        return (
            f"{int(c.motor_loop_on)}{int(c.motor_on)}{c.motor_current:04X}"
            f"{c.motor_ramp_up:04X}{c.motor_ramp_down:04X}"
            f"{c.motor_forward_periods[motor]:04X}{c.motor_backward_periods[motor]:04X}"
        )

    def _status(self, code: int) -> Reply:
        if code not in (OK, BUSY) and self.config.latch_errors:
            self._latched_error = code
        return self._reply("GS", f"{code:02X}")

    def _line(self, code: str, data: str) -> bytes:
        return f"{self._address}{code}{data}".encode("ascii") + self.reply_terminator

    def _reply(self, code: str, data: str) -> Reply:
        return Reply(self._line(code, data))
