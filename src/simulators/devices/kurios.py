"""A byte-level emulator of the Thorlabs Kurios liquid-crystal tunable filter.

It answers the ASCII protocol of the reference (instruments.md section 1): a command ends with
``\\r``; every reply ends with a ``>`` prompt; a query's answer is ``KEY=value`` followed by
``\\r`` before the prompt; an accepted set command is answered by an empty line and the prompt,
``\\r>`` (``set_reply``, below); an unknown or empty command by ``CMD_NOT_DEFINED\\r>``. The first
client to connect after power-up finds the power-up ``>`` prompt waiting, as a serial port opened
after switching the unit on would.

Choices where the reference is silent, each a :class:`KuriosEmulatorConfig` field because a real
unit may differ (UNVERIFIED):

* what an accepted set command sends before the prompt (``set_reply``): ``\\r`` by default, so
  every reply ends ``\\r>``. The evidence, all second-hand: the public pyserial Kurios client
  (instruments.md's K-SER) sends every command, sets included, and reads until ``b"\\r>"`` with a
  1 s timeout, which a bare ``>`` would stall after every set; pylabnet's Kurios driver reads
  with ``read_termination="\\r>"``, does not read after a set, and repeats every query while it
  reads an empty string, the residue a ``\\r>`` acknowledgement leaves; and a query's answer line
  ends in ``\\r`` before the prompt, so an empty answer is ``\\r>``. ``set_reply = ""`` gives
  the bare ``>`` (the manual's "``>`` after an accepted command" read literally);
* no echo of commands by default (``echo``): pylabnet documents the ``SP?`` answer as
  ``WLmax=730.000\\rWLmin=420.000`` with nothing before it;
* ``SP?`` lines are separated by ``\\r`` (``line_separator``);
* an out-of-range or malformed argument is answered ``CMD_ARG_INVALID\\r>``
  (``invalid_argument_reply``);
* while the liquid crystals settle after a ``WL=`` or ``BW=`` change, ``ST?`` reports 1 (the
  warm-up code) for ``settle_s``; at power-up ``ST?`` reports 0 for ``initialization_s`` and 1 for
  ``warm_up_s``;
* mnemonics are matched case-insensitively (the manual shows ``*IDN?`` and ``*idn?``);
* sequence and trigger commands (``SS``, ``IS``, ``DS``, ``TI``) are not emulated and answer
  ``CMD_NOT_DEFINED``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from instruments.protocols import BandwidthMode
from simulators.devices.emulator import Emulator, EmulatorSession, Reply
from simulators.devices.faults import FaultInjector

__all__ = ["KuriosEmulator", "KuriosEmulatorConfig"]

PROMPT = b">"
_BANDWIDTH_MODES = {
    1: BandwidthMode.BLACK,
    2: BandwidthMode.WIDE,
    4: BandwidthMode.MEDIUM,
    8: BandwidthMode.NARROW,
}
_OUTPUT_MODES = range(1, 6)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_INTEGER = re.compile(r"[-+]?\d+")


@dataclass(frozen=True)
class KuriosEmulatorConfig:
    """How the emulated unit identifies itself and behaves; defaults describe a KURIOS-VB1.

    ``options_code`` is the ``OH?`` value: high byte the range (1 VIS, 2 NIR), low byte the
    modes it offers (1 BLACK, 2 WIDE, 4 MEDIUM, 8 NARROW); a unit without NARROW is e.g. 0x107.
    Times are device seconds.
    """

    identity: str = "THORLABS KURIOS-VB1 SN-M00000001 HW1.0 FW3.1 CN-00000001"
    wavelength_min_nm: float = 420.0
    wavelength_max_nm: float = 730.0
    options_code: int = 0x10F
    initial_wavelength_nm: float = 550.0
    initial_bandwidth_code: int = 8
    temperature_c: float = 37.0
    echo: bool = False
    set_reply: str = "\r"
    settle_s: float = 0.05
    initialization_s: float = 0.0
    warm_up_s: float = 0.0
    power_up_prompt: bool = True
    line_separator: str = "\r"
    not_defined_reply: str = "CMD_NOT_DEFINED"
    invalid_argument_reply: str = "CMD_ARG_INVALID"

    def __post_init__(self) -> None:
        low, high = self.wavelength_min_nm, self.wavelength_max_nm
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise ValueError(f"wavelength range {low}..{high} nm is empty or not positive")
        if not low <= self.initial_wavelength_nm <= high:
            raise ValueError(
                f"initial wavelength {self.initial_wavelength_nm} nm is outside {low}..{high} nm"
            )
        if not 0 <= self.options_code <= 0xFFFF or self.options_code & 0xF0:
            raise ValueError(
                f"options_code {self.options_code:#x}: low byte may only hold bits 1, 2, 4, 8"
            )
        if not self.options_code & 0x0E:
            raise ValueError(f"options_code {self.options_code:#x} offers no passband mode")
        if not self.initial_bandwidth_code & self.options_code & 0x0F or (
            self.initial_bandwidth_code not in _BANDWIDTH_MODES
        ):
            raise ValueError(
                f"initial bandwidth code {self.initial_bandwidth_code} is not offered by "
                f"options_code {self.options_code:#x}"
            )
        for name in ("settle_s", "initialization_s", "warm_up_s"):
            value = getattr(self, name)
            if not 0.0 <= value <= 3600.0:
                raise ValueError(f"{name} {value} is outside 0..3600 s")
        for name in ("identity", "line_separator", "not_defined_reply", "invalid_argument_reply"):
            text = getattr(self, name)
            if not text or not text.isascii() or ">" in text:
                raise ValueError(f"{name} {text!r} must be non-empty ASCII without '>'")
        if self.set_reply.strip("\r\n"):
            raise ValueError(f"set_reply {self.set_reply!r} may hold only line ends ('' or '\\r')")

    @property
    def mode_codes(self) -> tuple[int, ...]:
        """The ``BW=`` codes this unit accepts."""
        return tuple(code for code in _BANDWIDTH_MODES if code & self.options_code)


class _KuriosSession(EmulatorSession):
    """A session that can hold bytes the device sent before anyone asked (the power-up prompt);
    they bypass fault injection, which models faults on replies to commands."""

    def preload(self, data: bytes) -> None:
        with self._cond:
            self._ready += data
            self._cond.notify_all()


class KuriosEmulator(Emulator):
    """One Kurios filter: centre wavelength, passband, output mode, settling, temperature."""

    reply_terminator = PROMPT

    def __init__(
        self,
        config: KuriosEmulatorConfig | None = None,
        *,
        time_scale: float = 1.0,
        faults: FaultInjector | None = None,
        name: str = "emulated Kurios",
    ) -> None:
        super().__init__(name, time_scale=time_scale, faults=faults)
        self.config = config or KuriosEmulatorConfig()
        self._wavelength_nm = self.config.initial_wavelength_nm
        self._bandwidth_code = self.config.initial_bandwidth_code
        self._output_mode = 1
        self._settled_at_s = 0.0
        self._prompt_pending = self.config.power_up_prompt
        self.retunes = 0

    # --- state for the virtual microscope ------------------------------------------------------

    @property
    def wavelength_nm(self) -> float:
        """The centre wavelength last accepted (the passband reaches it once settled)."""
        with self.lock:
            return self._wavelength_nm

    @property
    def bandwidth_code(self) -> int:
        """The ``BW`` code in force: 1 BLACK, 2 WIDE, 4 MEDIUM, 8 NARROW."""
        with self.lock:
            return self._bandwidth_code

    @property
    def bandwidth_mode(self) -> BandwidthMode:
        """The passband in force."""
        return _BANDWIDTH_MODES[self.bandwidth_code]

    @property
    def black(self) -> bool:
        """Whether the filter blocks the beam (BLACK mode)."""
        return self.bandwidth_code == 1

    @property
    def output_mode_code(self) -> int:
        """The ``OM`` code in force (1 manual)."""
        with self.lock:
            return self._output_mode

    @property
    def is_settled(self) -> bool:
        """Whether warm-up is over and the liquid crystals hold the last requested state."""
        return self.status_code == 2

    @property
    def status_code(self) -> int:
        """What ``ST?`` reports now: 0 initialization, 1 warm-up or settling, 2 ready."""
        config = self.config
        with self.lock:
            now = self.clock.now_s()
            if now < config.initialization_s:
                return 0
            if now < config.initialization_s + config.warm_up_s or now < self._settled_at_s:
                return 1
            return 2

    @property
    def temperature_c(self) -> float:
        """The filter temperature in °C."""
        return self.config.temperature_c

    # --- framing -------------------------------------------------------------------------------

    def open_session(self) -> EmulatorSession:
        session = _KuriosSession(self)
        with self.lock:
            if self._prompt_pending:
                self._prompt_pending = False
                session.preload(PROMPT)
        return session

    def split_commands(self, buffer: bytes) -> tuple[list[bytes], bytes]:
        *commands, rest = buffer.split(b"\r")
        return commands, rest

    def respond(self, command: bytes) -> Reply | None:
        text = command.decode("ascii", errors="replace").strip()
        body = self._answer(text)
        out = b""
        if self.config.echo:
            out += command.strip() + b"\r"
        if body is not None:
            out += body.encode("ascii") + b"\r"
        else:
            out += self.config.set_reply.encode("ascii")
        return Reply(out + PROMPT)

    # --- commands ------------------------------------------------------------------------------

    def _answer(self, text: str) -> str | None:
        """The reply line(s) for one command, None for an accepted set (``set_reply``)."""
        config = self.config
        upper = text.upper()
        if upper.endswith("?"):
            return self._query(upper[:-1])
        key, equals, argument = upper.partition("=")
        if not equals:
            return config.not_defined_reply
        setter = {"WL": self._set_wavelength, "BW": self._set_bandwidth, "OM": self._set_output}
        if key.strip() not in setter:
            return config.not_defined_reply
        if not setter[key.strip()](argument.strip()):
            return config.invalid_argument_reply
        return None

    def _query(self, key: str) -> str:
        config = self.config
        sep = config.line_separator
        answers = {
            "*IDN": lambda: config.identity,
            "WL": lambda: f"WL={self._wavelength_nm:.3f}",
            "BW": lambda: f"BW={self._bandwidth_code}",
            "OM": lambda: f"OM={self._output_mode}",
            "ST": lambda: f"ST={self.status_code}",
            "TP": lambda: f"TP={config.temperature_c:.1f}",
            "SP": lambda: (
                f"WLmax={config.wavelength_max_nm:.3f}{sep}WLmin={config.wavelength_min_nm:.3f}"
            ),
            "OH": lambda: f"OH={config.options_code}",
        }
        answer = answers.get(key.strip())
        return config.not_defined_reply if answer is None else answer()

    def _set_wavelength(self, argument: str) -> bool:
        if not _NUMBER.fullmatch(argument):
            return False
        wavelength = round(float(argument), 3)
        if not self.config.wavelength_min_nm <= wavelength <= self.config.wavelength_max_nm:
            return False
        if wavelength != self._wavelength_nm:
            self._wavelength_nm = wavelength
            self._start_settling()
        return True

    def _set_bandwidth(self, argument: str) -> bool:
        if not _INTEGER.fullmatch(argument) or int(argument) not in self.config.mode_codes:
            return False
        if int(argument) != self._bandwidth_code:
            self._bandwidth_code = int(argument)
            self._start_settling()
        return True

    def _set_output(self, argument: str) -> bool:
        if not _INTEGER.fullmatch(argument) or int(argument) not in _OUTPUT_MODES:
            return False
        self._output_mode = int(argument)
        return True

    def _start_settling(self) -> None:
        self.retunes += 1
        self._settled_at_s = self.clock.now_s() + self.config.settle_s
