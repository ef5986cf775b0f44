"""Thorlabs Kurios liquid-crystal tunable filter (WL1 / VB1 / XE2) over its ASCII serial link.

The Kurios answers every command, so it fits :class:`AsciiInstrument`: a command ends with ``\\r``
and the device closes every reply with a ``>`` prompt, which is therefore the read terminator.
What stands before the prompt is the reply proper: for an accepted set command nothing or an
empty line (a bare ``>`` or ``\\r>``: which one the unit sends is unverified, and both are
accepted), one ``KEY=value`` line for most queries, several ``\\r``-separated lines for ``SP?``, or
an error line (``CMD_NOT_DEFINED``, and for a bad argument presumably another ``CMD_*`` code).

Facts not confirmed on hardware are handled leniently or made constructor arguments:

* whether the device echoes commands: an echoed first line equal to the command is dropped;
* the wavelength setter's number format (the public pyserial driver sends ``WL=%.3f``, the SDK
  takes whole nanometres): ``wavelength_format`` (an integer format such as ``%d`` rounds);
* the reply to an out-of-range argument: any ``CMD_*`` line or a line containing "error" is an
  error reply;
* how long the liquid crystals take to settle: ``wait_until_ready`` first waits until
  ``settle_s`` has passed since the last retune (the public pyserial driver sleeps 50 ms after
  ``WL=``), then polls ``ST?`` every ``poll_interval_s`` until READY.

The wavelength range and the passband modes differ between models, so :meth:`Kurios.initialize`
reads them from the unit (``SP?`` and ``OH?``) and the property validators enforce what it found.
Until then the driver assumes a VB1 (VIS range 420..730 nm, all four modes).
"""

from __future__ import annotations

import enum
import logging
import math
import re
import time
from typing import Any, ClassVar

from pymeasure.instruments import Instrument

from instruments.ascii_instrument import AsciiInstrument, RetryPolicy
from instruments.errors import DeviceBusyTimeout, DeviceReplyError, GarbledReply, InstrumentError
from instruments.protocols import BandwidthMode

log = logging.getLogger(__name__)

__all__ = ["BANDWIDTH_CODES", "Kurios", "KuriosStatus", "OutputMode"]

#: ``BW=`` codes; the SDK also reserves 16 for SUPER NARROW, which no unit we know offers.
BANDWIDTH_CODES: dict[BandwidthMode, int] = {
    BandwidthMode.BLACK: 1,
    BandwidthMode.WIDE: 2,
    BandwidthMode.MEDIUM: 4,
    BandwidthMode.NARROW: 8,
}
_MODES_BY_CODE = {code: mode for mode, code in BANDWIDTH_CODES.items()}
#: Passband modes from widest to narrowest (BLACK blocks the beam and has no passband).
_PASSBANDS = (BandwidthMode.WIDE, BandwidthMode.MEDIUM, BandwidthMode.NARROW)

#: The reference's VIS range, assumed until ``initialize`` reads the unit's own with ``SP?``.
_DEFAULT_RANGE_NM = (420.0, 730.0)

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_KEYED_LINE = re.compile(rf"([A-Za-z]+)\s*=\s*({_NUMBER})")
_LINE_SPLIT = re.compile(r"[\r\n]+")
#: Query → the keys its reply lines carry, in the order the payload lists their values.
_QUERY_KEYS: dict[str, tuple[str, ...]] = {
    "WL?": ("WL",),
    "BW?": ("BW",),
    "OM?": ("OM",),
    "ST?": ("ST",),
    "TP?": ("TP",),
    "OH?": ("OH",),
    "SP?": ("WLmin", "WLmax"),
}
_IDENTITY_QUERY = "*IDN?"
_RETUNE_COMMANDS = ("WL=", "BW=")
_INTEGER_FORMAT = re.compile(r"%[-+ 0#]*\d*[diu]")


class OutputMode(enum.IntEnum):
    """``OM=`` codes: how the filter chooses its state (we only scan in MANUAL)."""

    MANUAL = 1
    SEQUENCE_INTERNAL_CLOCK = 2
    SEQUENCE_EXTERNAL_TRIGGER = 3
    ANALOG_INTERNAL = 4
    ANALOG_EXTERNAL = 5


class KuriosStatus(enum.IntEnum):
    """``ST?`` codes; only READY means the liquid crystals hold the requested state."""

    INITIALIZING = 0
    WARMING_UP = 1
    READY = 2


def _wavelength_validator(value: float, values: tuple[float, float]) -> float:
    low, high = values
    try:
        wavelength = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"wavelength {value!r} is not a number of nm") from None
    if not (math.isfinite(wavelength) and low <= wavelength <= high):
        raise ValueError(f"wavelength {value:g} nm is outside {low:g}..{high:g} nm")
    return wavelength


def _nearest_nm(wavelength: float) -> int:
    return round(wavelength)


def _mode_validator(value: BandwidthMode | str, values: tuple[BandwidthMode, ...]) -> BandwidthMode:
    allowed = ", ".join(mode.name for mode in values)
    try:
        mode = value if isinstance(value, BandwidthMode) else BandwidthMode(str(value).lower())
    except ValueError:
        raise ValueError(f"bandwidth mode {value!r} is not one of {allowed}") from None
    if mode not in values:
        raise ValueError(f"bandwidth mode {mode.name} is not offered by this unit ({allowed})")
    return mode


def _mode_from_code(code: int) -> BandwidthMode:
    try:
        return _MODES_BY_CODE[int(code)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"unknown Kurios bandwidth code {code!r}") from None


def _output_mode_validator(value: int, values: tuple[int, ...]) -> OutputMode:
    try:
        mode = OutputMode(value)
    except ValueError:
        raise ValueError(
            f"output mode {value!r} is not one of {', '.join(str(v) for v in values)}"
        ) from None
    return mode


class Kurios(AsciiInstrument):
    """A Thorlabs Kurios tunable filter; satisfies :class:`instruments.protocols.TunableFilter`."""

    WRITE_TERMINATION: ClassVar[str] = "\r"
    READ_TERMINATION: ClassVar[str] = ">"
    BAUD_RATE: ClassVar[int] = 115200

    identity = Instrument.measurement(
        _IDENTITY_QUERY,
        """Get the identity string (model, serial number, hardware and firmware versions).""",
        cast=str,
        maxsplit=0,
    )

    wavelength_nm = Instrument.control(
        "WL?",
        "WL=%.3f",
        """Control the centre wavelength in nm; the range is the unit's own (``SP?``) once
        :meth:`initialize` has run.""",
        validator=_wavelength_validator,
        values=_DEFAULT_RANGE_NM,
        dynamic=True,
    )

    bandwidth_mode = Instrument.control(
        "BW?",
        "BW=%d",
        """Control the passband (a :class:`BandwidthMode`); BLACK blocks the beam for darks.""",
        validator=_mode_validator,
        values=tuple(BANDWIDTH_CODES),
        set_process=lambda mode: BANDWIDTH_CODES[mode],
        get_process=_mode_from_code,
        cast=int,
        dynamic=True,
    )

    output_mode = Instrument.control(
        "OM?",
        "OM=%d",
        """Control how the filter picks its state (an :class:`OutputMode`); scans use MANUAL.""",
        validator=_output_mode_validator,
        values=tuple(int(mode) for mode in OutputMode),
        get_process=lambda code: OutputMode(code),
        cast=int,
    )

    status = Instrument.measurement(
        "ST?",
        """Get the controller state (a :class:`KuriosStatus`).""",
        get_process=lambda code: KuriosStatus(code),
        cast=int,
    )

    is_ready = Instrument.measurement(
        "ST?",
        """Get whether the filter reports READY, i.e. has settled at the requested state.""",
        get_process=lambda code: code == KuriosStatus.READY,
        cast=int,
    )

    temperature_c = Instrument.measurement(
        "TP?",
        """Get the filter temperature in °C (liquid crystals tune with temperature: log it).""",
    )

    def __init__(
        self,
        adapter: Any,
        name: str = "Thorlabs Kurios",
        *,
        timeout_s: float = 1.0,
        retry: RetryPolicy | None = None,
        wavelength_format: str = "%.3f",
        poll_interval_s: float = 0.02,
        settle_s: float = 0.05,
        **kwargs: Any,
    ) -> None:
        try:
            float(wavelength_format % 550.25)
        except (TypeError, ValueError):
            raise ValueError(
                f"wavelength_format {wavelength_format!r} must format one number, e.g. '%.3f'"
            ) from None
        if not 0.001 <= poll_interval_s <= 5.0:
            raise ValueError(f"poll_interval_s {poll_interval_s} is outside 0.001..5 s")
        if not 0.0 <= settle_s <= 10.0:
            raise ValueError(f"settle_s {settle_s} is outside 0..10 s")
        super().__init__(adapter, name, timeout_s=timeout_s, retry=retry, **kwargs)
        self.poll_interval_s = poll_interval_s
        self.settle_s = settle_s
        self.wavelength_nm_set_command = "WL=" + wavelength_format
        if _INTEGER_FORMAT.search(wavelength_format):
            # "%d" would truncate 549.9 to 549; whole nanometres are meant, so round first.
            self.wavelength_nm_set_process = _nearest_nm
        self._wavelength_range_nm: tuple[float, float] = _DEFAULT_RANGE_NM
        self._modes: tuple[BandwidthMode, ...] = tuple(BANDWIDTH_CODES)
        self._options_code: int | None = None
        self._last_retune_s: float | None = None

    # --- connect-time set-up --------------------------------------------------------------------

    def initialize(self) -> None:
        """Read the unit's wavelength range and modes, then put it in manual mode.

        The power-up ``>`` prompt may still sit in the input buffer; it is dropped first so it
        is not taken for the reply to the first query.
        """
        with self._lock:
            self.discard_input()
            low, high = self._read_range()
            options = self._read_options()
            self._set_range((low, high))
            self._set_options(options)
            self.output_mode = OutputMode.MANUAL
            log.info(
                "%s: %g..%g nm, modes %s, narrowest %s",
                self.name,
                low,
                high,
                ", ".join(mode.name for mode in self._modes),
                self.narrowest_mode.name,
            )

    def _read_range(self) -> tuple[float, float]:
        reply = self.transact("SP?")
        low, high = (float(value) for value in reply.split(","))
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise InstrumentError(self.name, "SP?", "device reports an empty wavelength range")
        return low, high

    def _read_options(self) -> int:
        code = int(float(self.transact("OH?")))
        if not any(code & BANDWIDTH_CODES[mode] for mode in _PASSBANDS):
            raise InstrumentError(self.name, "OH?", f"device reports no passband mode (OH={code})")
        return code

    def _set_range(self, range_nm: tuple[float, float]) -> None:
        self._wavelength_range_nm = range_nm
        self.wavelength_nm_values = range_nm

    def _set_options(self, code: int) -> None:
        self._options_code = code
        self._modes = tuple(mode for mode, bit in BANDWIDTH_CODES.items() if code & bit)
        self.bandwidth_mode_values = self._modes

    # --- what initialize found ----------------------------------------------------------------

    @property
    def wavelength_range_nm(self) -> tuple[float, float]:
        """Get the lowest and highest centre wavelength the unit accepts (from ``SP?``)."""
        return self._wavelength_range_nm

    @property
    def available_modes(self) -> tuple[BandwidthMode, ...]:
        """Get the bandwidth modes the unit offers (``OH?`` low byte)."""
        return self._modes

    @property
    def narrowest_mode(self) -> BandwidthMode:
        """Get the narrowest passband the unit offers: WL1/XE2 units may lack NARROW."""
        return [mode for mode in _PASSBANDS if mode in self._modes][-1]

    @property
    def options_code(self) -> int | None:
        """Get the raw ``OH?`` value (high byte: 1 VIS, 2 NIR); None before :meth:`initialize`."""
        return self._options_code

    # --- settling -----------------------------------------------------------------------------

    def wait_until_ready(self, timeout_s: float) -> None:
        """Pause until ``settle_s`` has passed since the last retune, then poll ``ST?`` until
        READY. Waiting first: ``ST?`` going to READY right after a retune is not confirmed on
        hardware, and polling a filter that cannot be settled yet only adds a poll interval
        (up to 20 ms a band) after it is."""
        if not (math.isfinite(timeout_s) and 0 < timeout_s <= 600):
            raise ValueError(f"timeout_s {timeout_s} is outside 0..600 s")
        with self._lock:
            deadline = time.monotonic() + timeout_s
            if self._last_retune_s is not None:
                pause = min(self._last_retune_s + self.settle_s, deadline) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            while not self.is_ready:
                now = time.monotonic()
                if now >= deadline:
                    raise DeviceBusyTimeout(
                        self.name, "ST?", f"filter not ready within {timeout_s:g} s"
                    )
                time.sleep(min(self.poll_interval_s, deadline - now))

    # --- the transaction ----------------------------------------------------------------------

    def transact(self, command: str) -> str:
        """Send one command; remember when the filter was last retuned, for the settle pause."""
        with self._lock:
            payload = super().transact(command)
            if command.upper().startswith(_RETUNE_COMMANDS):
                self._last_retune_s = time.monotonic()
            return payload

    def parse_reply(self, command: str, reply: str) -> str:
        """Return a query's value(s) (comma-separated for ``SP?``: min, max) or ``""`` for a
        set command; raise on error lines and on replies that do not fit the command."""
        lines = [line.strip() for line in _LINE_SPLIT.split(reply)]
        lines = [line for line in lines if line]
        if lines and lines[0] == command.strip():
            lines = lines[1:]  # an echo of the command, if the unit echoes
        for line in lines:
            if line.upper().startswith("CMD_") or "error" in line.lower():
                raise DeviceReplyError(self.name, command, f"device refused: {line}", reply)
        query = command.strip().upper()
        if not query.endswith("?"):
            if lines:
                raise GarbledReply(self.name, command, "a set command got a reply", reply)
            return ""
        if query == _IDENTITY_QUERY:
            return self._identity_payload(command, lines, reply)
        keys = _QUERY_KEYS.get(query)
        if keys is None:
            return "\n".join(lines)  # a query this driver does not use: passed on unchecked
        return self._keyed_payload(command, keys, lines, reply)

    def _identity_payload(self, command: str, lines: list[str], reply: str) -> str:
        if (
            len(lines) != 1
            or "=" in lines[0]
            or not lines[0].isprintable()
            or not any(c.isalpha() for c in lines[0])
        ):
            raise GarbledReply(self.name, command, "reply is not an identity string", reply)
        return lines[0]

    def _keyed_payload(
        self, command: str, keys: tuple[str, ...], lines: list[str], reply: str
    ) -> str:
        found: dict[str, str] = {}
        for line in lines:
            match = _KEYED_LINE.fullmatch(line)
            if match is None:
                raise GarbledReply(self.name, command, f"unexpected line {line!r}", reply)
            found[match.group(1).upper()] = match.group(2)
        if len(lines) != len(keys) or set(found) != {key.upper() for key in keys}:
            expected = ", ".join(f"{key}=<number>" for key in keys)
            raise GarbledReply(self.name, command, f"reply is not {expected}", reply)
        return ",".join(found[key.upper()] for key in keys)
