"""The core every device emulator shares: a device clock, command framing, timed replies.

An emulator is one stateful device. Clients talk to it through sessions (one per in-process
adapter or TCP connection); each session has its own input framing and output queue, while the
device state is shared, as on a real controller behind one serial line. Replies leave at the time
the real device would send them (a move that answers when it ends answers late), scaled by the
clock's ``time_scale`` so tests run a 1 s motion in 10 ms.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import threading
import time
from dataclasses import dataclass

from simulators.devices.faults import Fault, FaultInjector


class DeviceClock:
    """Device time runs ``1 / time_scale`` times faster than wall time."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if not 1e-6 <= time_scale <= 100.0:
            raise ValueError(f"time_scale {time_scale} is outside the allowed range 1e-6..100")
        self.time_scale = time_scale
        self._start = time.monotonic()

    def now_s(self) -> float:
        """Seconds of device time since the emulator was switched on."""
        return (time.monotonic() - self._start) / self.time_scale

    def to_wall_s(self, device_s: float) -> float:
        return device_s * self.time_scale


@dataclass(frozen=True)
class Reply:
    """Bytes a device sends in answer to one command, ``after_s`` device seconds later."""

    data: bytes
    after_s: float = 0.0


class Emulator(abc.ABC):
    """A device answering byte commands the way the real one does."""

    #: how each reply ends; the garble fault keeps it so framing survives.
    reply_terminator: bytes = b"\r\n"

    def __init__(
        self, name: str, *, time_scale: float = 1.0, faults: FaultInjector | None = None
    ) -> None:
        self.name = name
        self.clock = DeviceClock(time_scale)
        self.faults = faults or FaultInjector()
        self.lock = threading.RLock()
        self.commands_seen = 0

    @abc.abstractmethod
    def split_commands(self, buffer: bytes) -> tuple[list[bytes], bytes]:
        """Cut complete commands off the front of ``buffer``; return them and the rest."""

    @abc.abstractmethod
    def respond(self, command: bytes) -> Reply | None:
        """Update the device state for one command and return its reply (None: silent)."""

    def open_session(self) -> EmulatorSession:
        return EmulatorSession(self)


class EmulatorSession:
    """One client's byte stream to an emulator, with a millisecond ``timeout`` like a VISA
    resource so drivers can set it the same way on both. Each session is one connection and draws
    its random faults from its own generator (:meth:`FaultInjector.connect`)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._fault_draws = emulator.faults.connect()
        self.timeout: int = 1000
        self.closed = False
        self._inbox = b""
        self._pending: list[tuple[float, int, bytes]] = []  # heap of (wall deadline, seq, bytes)
        self._sequence = itertools.count()
        self._last_in_order = 0.0
        self._ready = bytearray()
        self._cond = threading.Condition()

    # --- client side ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionError(f"{self.emulator.name}: connection closed")
        emulator = self.emulator
        with emulator.lock:
            commands, self._inbox = emulator.split_commands(self._inbox + data)
            for command in commands:
                emulator.commands_seen += 1
                reply = emulator.respond(command)
                if reply is not None:
                    self._send(reply)

    def _send(self, reply: Reply) -> None:
        emulator = self.emulator
        fault = emulator.faults.next_fault(self._fault_draws)
        data, extra_wall_s = reply.data, 0.0
        if fault is Fault.DROP:
            return
        if fault is Fault.DISCONNECT:
            self.close()
            return
        if fault is Fault.GARBLE:
            data = emulator.faults.garble(data, emulator.reply_terminator, self._fault_draws)
        elif fault is Fault.DELAY:
            extra_wall_s = emulator.faults.rates.delay_s
        deadline = time.monotonic() + emulator.clock.to_wall_s(reply.after_s)
        with self._cond:
            # The device answers in order; a reply held up by a DELAY fault is a straggler that
            # must not hold up the replies after it (that is what makes it stale when it lands).
            deadline = max(deadline, self._last_in_order)
            self._last_in_order = deadline
            heapq.heappush(self._pending, (deadline + extra_wall_s, next(self._sequence), data))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # --- reading ----------------------------------------------------------------------------------

    def _collect_due(self) -> float | None:
        """Move due bytes to the ready buffer; return wall seconds until the next is due."""
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= now:
            self._ready += heapq.heappop(self._pending)[2]
        return self._pending[0][0] - now if self._pending else None

    def read_until(self, terminator: bytes, timeout_s: float) -> bytes:
        """Bytes up to and including ``terminator``; TimeoutError if it does not come in time."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while True:
                self._collect_due()
                index = self._ready.find(terminator) if terminator else -1
                if index >= 0:
                    cut = index + len(terminator)
                    out = bytes(self._ready[:cut])
                    del self._ready[:cut]
                    return out
                self._wait(end)

    def read_exactly(self, count: int, timeout_s: float) -> bytes:
        end = time.monotonic() + timeout_s
        with self._cond:
            while True:
                self._collect_due()
                if len(self._ready) >= count:
                    out = bytes(self._ready[:count])
                    del self._ready[:count]
                    return out
                self._wait(end)

    def read_available(self, quiet_s: float) -> bytes:
        """Everything that arrives until ``quiet_s`` passes with nothing new."""
        out = bytearray()
        end = time.monotonic() + quiet_s
        with self._cond:
            while True:
                self._collect_due()
                if self._ready:
                    out += self._ready
                    self._ready.clear()
                    end = time.monotonic() + quiet_s
                    continue
                try:
                    self._wait(end)
                except (TimeoutError, ConnectionError):
                    return bytes(out)

    def _wait(self, end: float) -> None:
        if self.closed and not self._ready:
            raise ConnectionError(f"{self.emulator.name}: connection closed")
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{self.emulator.name}: no complete reply in time")
        next_due = self._collect_due()
        self._cond.wait(remaining if next_due is None else min(remaining, next_due))

    # --- for servers ------------------------------------------------------------------------------

    def take_due(self) -> tuple[bytes, float | None]:
        """Bytes due now, and wall seconds until more are due (None: nothing pending)."""
        with self._cond:
            wait = self._collect_due()
            out = bytes(self._ready)
            self._ready.clear()
            return out, wait
