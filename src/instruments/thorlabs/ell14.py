"""Thorlabs Elliptec ELL14 motorized rotation mount over its ASCII serial protocol.

Every packet starts with the mount's bus address (one hex digit, ``0``-``F``): the host sends the
address, two lowercase letters and fixed-length uppercase hex data with no terminator; the mount
answers with the address, two uppercase letters and data, ended by ``\\r\\n``
(``0gp`` → ``0PO00004600``). :meth:`ELL14.ask` and :meth:`ELL14.write` take the mnemonic and data
and prefix the address, so :meth:`~AsciiInstrument.transact`, :meth:`parse_reply` and every error
see the bytes on the wire.

What the protocol forces on the driver:

* The conversion between degrees and encoder pulses comes from the mount's own ``in`` reply
  (ELL14: 143360 pulses per revolution, a second-hand figure), so :meth:`ELL14.initialize` must
  run before any angle is read or commanded; until then those calls raise :class:`RuntimeError`.
* A move (``ma``/``mr``/``ho``) answers only when the motion has ended, with ``PO`` and the final
  position, or with ``GS`` and a status code; its reply timeout is therefore ``move_timeout_s``
  (30 s, as pylablib). A nonzero ``GS`` raises :class:`DeviceReplyError` with the decoded
  message, except 9 (busy: another motion, e.g. from the mount's buttons, is under way), which is
  polled with ``gs`` until idle; an absolute move or home is then sent again, a relative one is
  not (we cannot know whether it was executed).
* A mount keeps a fault status until it is read, so after any error reply the driver sends one
  ``gs`` to clear it (as pylablib does).
* A move sent too soon after the previous one may go to 0 (pylablib), so motions are at least
  ``move_pause_s`` apart, measured from the end of the previous motion. The same pause is used to
  drain stale input: a late ``PO`` answering an earlier query has the very shape of a move's
  reply and would otherwise be taken for the end of the next move.
* ``BO``/``BS`` lines (sent unprompted, e.g. when the mount's buttons are used) are skipped:
  :meth:`parse_reply` reads the next line with the command's own timeout. Reading there keeps
  the base class's transaction, retry and timeout handling untouched; the extra read lies inside
  the same locked transaction.

Angles: ``angle_deg`` reports the position modulo one revolution, in [0, 360); ``move_to``
accepts [0, 360) and commands that pulse count directly, so the mount may turn the long way round
if earlier relative moves left its position outside one revolution.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from pymeasure.instruments import Instrument

from instruments.ascii_instrument import AsciiInstrument, RetryPolicy
from instruments.errors import (
    DeviceBusyTimeout,
    DeviceReplyError,
    GarbledReply,
    InstrumentError,
)

log = logging.getLogger(__name__)

__all__ = ["ELL14", "STATUS_MESSAGES", "Ell14Info", "Ell14Status"]

#: ``GS`` status codes (ELLx protocol manual via pylablib and Micro-Manager).
STATUS_MESSAGES: dict[int, str] = {
    0: "ok",
    1: "communication timeout",
    2: "mechanical timeout",
    3: "command error or not supported",
    4: "value out of range",
    5: "module isolated",
    6: "module out of isolation",
    7: "initializing error",
    8: "thermal error",
    9: "busy",
    10: "sensor error",
    11: "motor error",
    12: "out of range",
    13: "over current",
}
_BUSY = 9
_HOME_DIRECTIONS = {"cw": "0", "ccw": "1"}
_HEX_DIGITS = "0123456789ABCDEF"

#: Data length of each reply code; ``IN`` is checked field by field with ``_INFO``.
_DATA_LENGTH = {"GS": 2, "PO": 8, "GV": 2, "GJ": 8, "HO": 8, "IN": 30}
_UNSOLICITED = {"BO": 8, "BS": 2}
_MAX_UNSOLICITED = 8
_INFO = re.compile(
    r"(?P<model>[0-9A-F]{2})(?P<serial>[0-9A-Za-z]{8})(?P<year>\d{4})(?P<fw>[0-9A-F]{2})"
    r"(?P<hw>[0-9A-F]{2})(?P<travel>[0-9A-F]{4})(?P<pulses>[0-9A-F]{8})"
)
_HEX = re.compile(r"[0-9A-F]+")

#: Commands whose reply comes only when a motion ends (``PO``) or with a status (``GS``).
_MOTIONS = frozenset({"ma", "mr", "ho", "fw", "bw"})
#: Motions whose effect depends on where the mount was: never sent twice.
_NOT_REPEATABLE = frozenset({"mr", "fw", "bw"})
#: Reply codes each query answers with; any other command answers ``GS``.
_QUERY_REPLIES = {"in": "IN", "gs": "GS", "gp": "PO", "gv": "GV", "gj": "GJ", "go": "HO"}

_INT32 = 1 << 32


def _signed32(hex_text: str) -> int:
    value = int(hex_text, 16)
    return value - _INT32 if value >= 1 << 31 else value


def _hex32(value: int) -> str:
    return f"{value % _INT32:08X}"


@dataclass(frozen=True)
class Ell14Status:
    """A ``GS`` status code with the manual's meaning."""

    code: int

    @property
    def message(self) -> str:
        """Get the manual's meaning of the code."""
        return STATUS_MESSAGES.get(self.code, f"reserved status code {self.code}")

    @property
    def ok(self) -> bool:
        """Get whether the mount reports no fault and no motion."""
        return self.code == 0

    @property
    def busy(self) -> bool:
        """Get whether a motion is under way."""
        return self.code == _BUSY

    @classmethod
    def from_hex(cls, data: str) -> Ell14Status:
        return cls(int(data, 16))


@dataclass(frozen=True)
class Ell14Info:
    """The identity and calibration a mount reports to ``in``."""

    model_code: int
    serial: str
    year: int
    firmware: int
    hardware: int
    travel_deg: int
    pulses_per_revolution: int

    @classmethod
    def parse(cls, data: str) -> Ell14Info:
        """Decode the 30 characters after ``IN``; ValueError if they do not have that shape."""
        match = _INFO.fullmatch(data)
        if match is None:
            raise ValueError(f"device info {data!r} does not have the 30-character IN layout")
        return cls(
            model_code=int(match["model"], 16),
            serial=match["serial"],
            year=int(match["year"]),
            firmware=int(match["fw"], 16),
            hardware=int(match["hw"], 16),
            travel_deg=int(match["travel"], 16),
            pulses_per_revolution=int(match["pulses"], 16),
        )


def _velocity_validator(value: float, values: tuple[int, int]) -> int:
    low, high = values
    if not (isinstance(value, int | float) and math.isfinite(value) and low <= value <= high):
        raise ValueError(f"velocity {value} % is outside {low}..{high} %")
    return round(value)


class ELL14(AsciiInstrument):
    """Thorlabs Elliptec ELL14 rotation mount: one address on an Elliptec serial bus.

    ``timeout_s`` bounds the reply to a query (Micro-Manager uses 1.2 s), ``move_timeout_s`` a
    motion's reply, which comes at its end; ``move_pause_s`` is the least time between the end of
    one motion and the next motion command; ``busy_poll_s`` paces ``gs`` polls while busy.
    A motion holds the driver's lock until the mount reports its end, so ``is_busy`` asked from
    another thread answers once the motion is over: the serial line carries nothing else then.
    """

    WRITE_TERMINATION: ClassVar[str] = ""
    READ_TERMINATION: ClassVar[str] = "\r\n"
    BAUD_RATE: ClassVar[int] = 9600

    def __init__(
        self,
        adapter: Any,
        name: str | None = None,
        *,
        address: str = "0",
        timeout_s: float = 1.2,
        move_timeout_s: float = 30.0,
        move_pause_s: float = 0.1,
        busy_poll_s: float = 0.05,
        home_direction: str = "cw",
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        if not (isinstance(address, str) and len(address) == 1 and address.upper() in _HEX_DIGITS):
            raise ValueError(f"address {address!r} is not one hex digit 0..F")
        if not 0.01 <= move_timeout_s <= 300:
            raise ValueError(f"move_timeout_s {move_timeout_s} is outside 0.01..300 s")
        if not 0 <= move_pause_s <= 5:
            raise ValueError(f"move_pause_s {move_pause_s} is outside 0..5 s")
        if not 0.001 <= busy_poll_s <= 5:
            raise ValueError(f"busy_poll_s {busy_poll_s} is outside 0.001..5 s")
        if home_direction not in _HOME_DIRECTIONS:
            raise ValueError(f"home direction {home_direction!r} is not one of 'cw', 'ccw'")
        self._address = address.upper()
        super().__init__(
            adapter,
            name or f"Thorlabs ELL14 (address {self._address})",
            timeout_s=timeout_s,
            retry=retry,
            **kwargs,
        )
        self.move_timeout_s = move_timeout_s
        self.move_pause_s = move_pause_s
        self.busy_poll_s = busy_poll_s
        self.home_direction = home_direction
        self._info: Ell14Info | None = None
        self._last_motion_end_s: float | None = None

    # --- identity ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """Get the mount's bus address (one uppercase hex digit)."""
        return self._address

    def initialize(self) -> Ell14Info:
        """Read the mount's identity and calibration; angles work only after this."""
        with self._lock:
            reply = self.ask("in")
            info = Ell14Info.parse(reply)
            if info.pulses_per_revolution <= 0:
                raise DeviceReplyError(
                    self.name,
                    f"{self._address}in",
                    "device reports no pulses per revolution",
                    reply,
                )
            if info.model_code != 0x0E:
                log.warning(
                    "%s: model code %02X is not an ELL14 (0E); angles use its own calibration",
                    self.name,
                    info.model_code,
                )
            self._info = info
            log.info("%s: %s", self.name, info)
            return info

    @property
    def info(self) -> Ell14Info:
        """Get the identity read by :meth:`initialize`."""
        if self._info is None:
            raise RuntimeError(f"{self.name}: device info unknown; call initialize() first")
        return self._info

    @property
    def identity(self) -> str:
        """Get model, serial and firmware from the ``in`` reply read by :meth:`initialize`."""
        info = self.info
        return (
            f"Thorlabs Elliptec model {info.model_code:02X} SN {info.serial} "
            f"FW {info.firmware} HW {info.hardware}"
        )

    @property
    def pulses_per_revolution(self) -> int:
        """Get the encoder pulses per revolution the mount reported to ``in``."""
        return self.info.pulses_per_revolution

    # --- state ------------------------------------------------------------------------------

    status = Instrument.measurement(
        "gs",
        """Get the mount's status (``gs``) as an :class:`Ell14Status`; reading it also clears a
        latched fault.""",
        cast=str,
        get_process=Ell14Status.from_hex,
    )

    position_pulses = Instrument.measurement(
        "gp",
        """Measure the position in encoder pulses (signed 32-bit; not wrapped to one turn).""",
        cast=str,
        get_process=_signed32,
    )

    velocity_percent = Instrument.control(
        "gv",
        "sv%02X",
        """Control the motor velocity in percent of the maximum (0..100).""",
        validator=_velocity_validator,
        values=(0, 100),
        cast=str,
        get_process=lambda data: int(data, 16),
    )

    @property
    def angle_deg(self) -> float:
        """Measure the angle in degrees in [0, 360): the position modulo one revolution."""
        pulses_per_rev = self._require_calibration("angle")
        pulses: int = self.position_pulses
        return (pulses % pulses_per_rev) * 360.0 / pulses_per_rev

    @property
    def is_busy(self) -> bool:
        """Get whether the mount reports a motion under way (``gs`` code 9)."""
        return bool(self.status.busy)

    # --- motion -----------------------------------------------------------------------------

    def move_to(self, angle_deg: float) -> None:
        """Turn to an absolute angle in [0, 360) and return when the motion has ended."""
        pulses_per_rev = self._require_calibration("move_to")
        if not (math.isfinite(angle_deg) and 0 <= angle_deg < 360):
            raise ValueError(f"angle {angle_deg} deg is outside 0..360 deg (360 excluded)")
        pulses = round(angle_deg * pulses_per_rev / 360.0) % pulses_per_rev
        self._move("ma", _hex32(pulses))

    def move_by(self, delta_deg: float) -> None:
        """Turn by ``delta_deg`` (negative: the other way) and return when it has ended.

        Never retried: if the reply is lost, nobody knows whether the mount turned.
        """
        pulses_per_rev = self._require_calibration("move_by")
        limit_deg = ((1 << 31) - 1) * 360.0 / pulses_per_rev
        if not (math.isfinite(delta_deg) and abs(delta_deg) <= limit_deg):
            raise ValueError(
                f"relative move {delta_deg} deg is outside -{limit_deg:g}..{limit_deg:g} deg"
            )
        self._move("mr", _hex32(round(delta_deg * pulses_per_rev / 360.0)))

    def home(self, direction: str | None = None) -> None:
        """Find the home position turning ``"cw"`` or ``"ccw"`` (default: the constructor's)."""
        direction = self.home_direction if direction is None else direction
        if direction not in _HOME_DIRECTIONS:
            raise ValueError(f"home direction {direction!r} is not one of 'cw', 'ccw'")
        self._move("ho", _HOME_DIRECTIONS[direction])

    def _require_calibration(self, what: str) -> int:
        if self._info is None:
            raise RuntimeError(
                f"{self.name}: {what} needs the pulses per revolution; call initialize() first"
            )
        return self._info.pulses_per_revolution

    def _move(self, mnemonic: str, data: str) -> int:
        """Run one motion to its end; return the final position in pulses."""
        command = f"{self._address}{mnemonic}{data}"
        with self._lock:
            deadline = time.monotonic() + self.move_timeout_s
            while True:
                if time.monotonic() >= deadline:
                    raise DeviceBusyTimeout(
                        self.name, command, f"not done after {self.move_timeout_s} s"
                    )
                self._before_motion()
                try:
                    reply = self.ask(mnemonic + data)
                finally:
                    self._last_motion_end_s = time.monotonic()
                if reply.startswith("PO"):
                    position = _signed32(reply[2:])
                    log.debug("%s: %s ended at %d pulses", self.name, command, position)
                    return position
                # GS00 or GS09: the motion has not reported its end; wait until the mount is idle.
                self._wait_until_idle(command, deadline)
                if reply == "GS00":
                    position = int(self.position_pulses)
                    return position
                if not self.is_repeatable(command):
                    raise DeviceReplyError(
                        self.name,
                        command,
                        "mount was busy with another motion; a relative move is not sent again",
                        f"{self._address}{reply}",
                    )
                log.warning("%s: %s found the mount busy; sending it again", self.name, command)

    def _before_motion(self) -> None:
        """Drain stale replies, then keep ``move_pause_s`` since the previous motion ended."""
        self.discard_input()
        if self._last_motion_end_s is not None:
            remaining = self.move_pause_s - (time.monotonic() - self._last_motion_end_s)
            if remaining > 0:
                time.sleep(remaining)

    def _wait_until_idle(self, command: str, deadline: float) -> None:
        while True:
            status: Ell14Status = self.status
            if not status.busy:
                if not status.ok:
                    raise DeviceReplyError(
                        self.name, command, f"device status {status.code}: {status.message}"
                    )
                return
            if time.monotonic() >= deadline:
                raise DeviceBusyTimeout(
                    self.name, command, f"still busy after {self.move_timeout_s} s"
                )
            time.sleep(self.busy_poll_s)

    # --- the transaction hooks --------------------------------------------------------------

    def write(self, command: str, **kwargs: Any) -> None:
        """Send a mnemonic with its data to this mount's address and consume its ``GS`` reply."""
        super().write(self._address + command, **kwargs)

    def ask(self, command: str, query_delay: float | None = None) -> str:
        """Send a mnemonic with its data to this mount's address and return the checked payload.

        The payload is the reply's data; for motions, whose reply may be ``PO`` or ``GS``, it is
        the reply code followed by the data.
        """
        return super().ask(self._address + command, query_delay)

    def transact(self, command: str) -> str:
        """One transaction; after an error reply, read the status once to clear the fault."""
        with self._lock:
            try:
                return super().transact(command)
            except DeviceReplyError:
                if command[1:3] != "gs":
                    self._clear_fault(command)
                raise

    def _clear_fault(self, command: str) -> None:
        try:
            super().transact(f"{self._address}gs")
        except InstrumentError as exc:
            log.warning("%s: could not clear the fault after %r: %s", self.name, command, exc)

    def is_repeatable(self, command: str) -> bool:
        """Relative moves and jogs depend on where the mount was, so they are never repeated."""
        return command[1:3] not in _NOT_REPEATABLE

    def reply_timeout_s(self, command: str) -> float:
        """A motion replies only when it ends, so it gets ``move_timeout_s``."""
        return self.move_timeout_s if command[1:3] in _MOTIONS else self.timeout_s

    def parse_reply(self, command: str, reply: str) -> str:
        """Check address, reply code and data shape; decode ``GS`` error codes."""
        reply = self._skip_unsolicited(command, reply)
        mnemonic = command[1:3]
        motion = mnemonic in _MOTIONS
        expected = ("PO", "GS") if motion else (_QUERY_REPLIES.get(mnemonic, "GS"),)
        if len(reply) < 3 or reply[0] != self._address:
            raise GarbledReply(
                self.name, command, f"reply is not from address {self._address}", reply
            )
        code, data = reply[1:3], reply[3:]
        if code not in expected:
            raise GarbledReply(
                self.name, command, f"reply code {code!r} does not answer {mnemonic!r}", reply
            )
        length = _DATA_LENGTH[code]
        shaped = _INFO.fullmatch(data) if code == "IN" else _HEX.fullmatch(data)
        if len(data) != length or shaped is None:
            raise GarbledReply(
                self.name, command, f"{code} data is not {length} uppercase hex characters", reply
            )
        if code == "GS" and mnemonic != "gs":
            status = Ell14Status.from_hex(data)
            if not (status.ok or (motion and status.busy)):
                raise DeviceReplyError(
                    self.name, command, f"device status {status.code}: {status.message}", reply
                )
        return code + data if motion else data

    def _skip_unsolicited(self, command: str, reply: str) -> str:
        for _ in range(_MAX_UNSOLICITED):
            length = _UNSOLICITED.get(reply[1:3]) if len(reply) >= 3 else None
            if length is None or len(reply) != 3 + length or reply[0] not in _HEX_DIGITS:
                return reply
            log.info("%s: skipped unsolicited %r while waiting for %r", self.name, reply, command)
            reply = self.read_reply(command)
        raise GarbledReply(
            self.name, command, f"more than {_MAX_UNSOLICITED} unsolicited lines", reply
        )
