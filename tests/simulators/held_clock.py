"""A device clock a test can hold still, so that what an emulator is doing lasts until looked at.

An emulator's device time is wall time scaled (:class:`DeviceClock`), so a motion, a settle pause
or a warm-up ends a fixed number of wall milliseconds after it starts, however busy the machine
is. A test that starts one and then checks that it is under way is racing the clock: on a loaded
machine the check can come after the end. Held, device time stands still; while it is held the
emulator answers exactly as it would at that instant, for as long as the test needs. Released, it
is the emulator's own clock again (never earlier than where it was held), so replies that the
emulator timed in wall time when they were sent (a motion that answers at its end) still agree
with its state when they arrive.

A held clock lets go by itself once it has been held ``limit_s`` wall seconds (the next time the
emulator asks it the time): a test whose driver never gives up waiting on a held state then
fails, instead of waiting for ever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from simulators.devices.emulator import DeviceClock, Emulator

#: Wall seconds after which a held clock lets go by itself (far beyond any test's work).
LIMIT_S = 60.0


class HeldClock(DeviceClock):
    """The emulator's clock, with :meth:`hold`, :meth:`advance` and :meth:`release`."""

    def __init__(self, clock: DeviceClock) -> None:
        super().__init__(clock.time_scale)
        self._running = clock
        self._held_s: float | None = None
        self._floor_s = 0.0
        self._let_go_at = 0.0  # wall (monotonic) time at which a held clock releases itself

    def now_s(self) -> float:
        held = self._held_s
        if held is not None and time.monotonic() < self._let_go_at:
            return held
        if held is not None:
            self.release()
        return max(self._running.now_s(), self._floor_s)

    def hold(self, at_s: float | None = None, limit_s: float = LIMIT_S) -> HeldClock:
        """Stop device time now (or at ``at_s`` device seconds, e.g. 0: just switched on)."""
        self._held_s = self.now_s() if at_s is None else at_s
        self._let_go_at = time.monotonic() + limit_s
        return self

    def advance(self, device_s: float) -> None:
        """Move held device time on by ``device_s``."""
        if self._held_s is None:
            raise RuntimeError("advance() needs a held clock")
        self._held_s += device_s

    def release(self) -> None:
        """Let device time run again: the emulator's own time, never before where it stood."""
        held = self._held_s
        if held is not None:
            self._floor_s = max(self._floor_s, held)
        self._held_s = None

    def release_when(self, condition: Callable[[], bool], timeout_s: float = LIMIT_S) -> None:
        """Release from another thread as soon as ``condition()`` is true (polled every ms)."""

        def watch() -> None:
            deadline = time.monotonic() + timeout_s
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.001)
            self.release()

        threading.Thread(target=watch, name="release-held-clock", daemon=True).start()


def held_clock(emulator: Emulator) -> HeldClock:
    """Give ``emulator`` a clock the test can hold (not yet held) and return it."""
    clock = HeldClock(emulator.clock)
    emulator.clock = clock
    return clock
