"""Fault injection for device emulators: the link failures a lab actually sees.

A USB-serial bridge drops or garbles a reply now and then, a busy controller answers late, and a
cable gets pulled. Drivers must turn each of these into a retry or a clear error, never a hang, so
every emulator can be told to misbehave on its next replies (tests) or at random with seeded rates
(long simulated scans).

Random faults are drawn connection by connection: every session an emulator opens (an in-process
adapter, a TCP client) gets its own generator, keyed by the seed, the injector's ``stream`` (which
device, which run: :func:`simulators.devices.sim_config.build_emulators`) and the connection's
index. A reconnection, or a resumed scan that builds its emulators again for the next run, draws
faults of its own instead of replaying the ones that stopped the last connection at the same byte;
the same seed and the same sequence of runs and connections still replays the whole session.
"""

from __future__ import annotations

import enum
import random
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from simulators.keyed_random import KeyPart, key_words


class Fault(enum.Enum):
    """What happens to one reply."""

    DROP = "drop"  # the reply never arrives
    GARBLE = "garble"  # the reply's body is replaced by junk, its terminator kept
    DELAY = "delay"  # the reply arrives, but ``delay_s`` late
    DISCONNECT = "disconnect"  # the connection closes instead of replying


@dataclass(frozen=True)
class FaultRates:
    """Per-reply probabilities of each fault, for randomly failing benches."""

    drop: float = 0.0
    garble: float = 0.0
    delay: float = 0.0
    disconnect: float = 0.0
    delay_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("drop", "garble", "delay", "disconnect"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {name}={value} is outside the allowed range 0..1")
        if self.drop + self.garble + self.delay + self.disconnect > 1.0:
            raise ValueError("fault rates add up to more than 1")
        if not 0.0 <= self.delay_s <= 60.0:
            raise ValueError(f"fault delay_s {self.delay_s} is outside the allowed range 0..60 s")


_GARBAGE = b"#?~@!%^*&$"


class FaultInjector:
    """Decides, reply by reply, whether and how to misbehave; counts what it did.

    ``seed`` and ``stream`` key the random draws (module docstring); :meth:`connect` starts the
    generator of one connection. Scheduled faults (:meth:`inject`) apply to the next replies
    whatever connection sends them.
    """

    def __init__(
        self, rates: FaultRates | None = None, seed: int = 0, *, stream: Sequence[KeyPart] = ()
    ) -> None:
        self.rates = rates or FaultRates()
        self.seed = seed
        self.stream: tuple[KeyPart, ...] = tuple(stream)
        self._scheduled: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.injected: Counter[Fault] = Counter()
        self.connections = 0
        # Replies sent outside any connection's generator use connection 0's draws.
        self._default = self._generator(0)

    def _generator(self, connection: int) -> random.Random:
        words = key_words(self.seed, *self.stream, "connection", connection)
        return random.Random(int.from_bytes(b"".join(w.to_bytes(4, "little") for w in words)))

    def connect(self) -> random.Random:
        """The fault generator of a new connection (the first is connection 0)."""
        with self._lock:
            generator = self._generator(self.connections)
            self.connections += 1
            return generator

    def inject(self, fault: Fault, count: int = 1) -> None:
        """Apply ``fault`` to each of the next ``count`` replies."""
        if count < 1:
            raise ValueError(f"fault count {count} must be at least 1")
        with self._lock:
            self._scheduled.extend([fault] * count)

    def next_fault(self, generator: random.Random | None = None) -> Fault | None:
        """The fault for the reply about to be sent on the connection drawing from ``generator``."""
        with self._lock:
            if self._scheduled:
                fault: Fault | None = self._scheduled.popleft()
            else:
                fault = self._draw(generator or self._default)
            if fault is not None:
                self.injected[fault] += 1
            return fault

    def _draw(self, generator: random.Random) -> Fault | None:
        r = generator.random()
        for fault, rate in (
            (Fault.DROP, self.rates.drop),
            (Fault.GARBLE, self.rates.garble),
            (Fault.DELAY, self.rates.delay),
            (Fault.DISCONNECT, self.rates.disconnect),
        ):
            if r < rate:
                return fault
            r -= rate
        return None

    def garble(
        self, reply: bytes, terminator: bytes, generator: random.Random | None = None
    ) -> bytes:
        """Junk of at least three bytes in place of the body; the terminator survives so the
        reader still sees one (wrong) reply rather than a timeout."""
        body = reply[: -len(terminator)] if terminator and reply.endswith(terminator) else reply
        with self._lock:
            draw = generator or self._default
            junk = bytes(draw.choice(_GARBAGE) for _ in range(max(3, len(body))))
        return junk + (terminator if reply.endswith(terminator) else b"")
