"""Base for ASCII devices that answer every command with exactly one reply.

The Kurios, the Elliptec mounts and the ASI stage all reply to *every* command (a prompt, an ack,
a position, or an error code). Treating a command and its reply as one locked transaction makes a
driver thread-safe and fixes PyMeasure's non-atomic set-then-check (pymeasure#847): PyMeasure's
``write`` and ``ask`` are both routed through :meth:`AsciiInstrument.transact`, so ``control``
properties keep working unchanged.

Retry policy (stated once, here): a *transient* fault (no reply within the timeout, a reply that
does not have the shape this command's reply must have) is retried up to
``RetryPolicy.attempts`` times in total, after discarding whatever late bytes are still arriving,
but only for commands that are safe to repeat. A relative move is never repeated: if its reply was
lost we cannot know whether it moved. Error replies from the device and lost connections are
persistent and raised at once. Every retry is logged at WARNING.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from pymeasure.instruments import Instrument
from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError

from instruments.errors import (
    DeviceDisconnected,
    DeviceTimeout,
    GarbledReply,
    InstrumentError,
    TransientFault,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before a transient link fault becomes the caller's problem."""

    attempts: int = 3
    backoff_s: float = 0.02
    drain_s: float = 0.05

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 10:
            raise ValueError(f"retry attempts {self.attempts} is outside the allowed range 1..10")
        if not 0 <= self.backoff_s <= 5 or not 0 < self.drain_s <= 5:
            raise ValueError(
                f"retry backoff_s {self.backoff_s} / drain_s {self.drain_s} outside 0..5 s"
            )


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    return isinstance(exc, VisaIOError) and exc.error_code == StatusCode.error_timeout


class AsciiInstrument(Instrument):
    """A PyMeasure instrument whose every command is one locked write-and-read transaction.

    Subclasses state their framing once in ``WRITE_TERMINATION``, ``READ_TERMINATION`` and
    ``BAUD_RATE``; the same values configure a serial port, a TCP socket bridge, and the
    in-process emulator adapter.
    """

    WRITE_TERMINATION: ClassVar[str] = "\r"
    READ_TERMINATION: ClassVar[str] = "\r\n"
    BAUD_RATE: ClassVar[int] = 9600

    def __init__(
        self,
        adapter: Any,
        name: str,
        *,
        timeout_s: float = 1.0,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0.01 <= timeout_s <= 120:
            raise ValueError(f"timeout_s {timeout_s} is outside the allowed range 0.01..120 s")
        kwargs.setdefault("timeout", round(timeout_s * 1000))
        framing = {
            "write_termination": self.WRITE_TERMINATION,
            "read_termination": self.READ_TERMINATION,
        }
        kwargs.setdefault("asrl", {"baud_rate": self.BAUD_RATE, **framing})
        kwargs.setdefault("tcpip", dict(framing))
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._lock = threading.RLock()

    # --- what each device defines -------------------------------------------------------------

    def parse_reply(self, command: str, reply: str) -> str:
        """Check ``reply`` against ``command``; return its payload or raise.

        Raise :class:`DeviceReplyError` for an error code and :class:`GarbledReply` for a reply
        whose shape does not fit the command (including a late reply to an earlier command).
        """
        return reply

    def is_repeatable(self, command: str) -> bool:
        """Whether sending ``command`` twice has the same effect as once."""
        return True

    def reply_timeout_s(self, command: str) -> float:
        """How long the reply to ``command`` may take (a move that replies at its end is slow)."""
        return self.timeout_s

    # --- PyMeasure hooks ------------------------------------------------------------------------

    def write(self, command: str, **kwargs: Any) -> None:
        """Send a command and consume its acknowledgement as one transaction."""
        self.transact(command)

    def ask(self, command: str, query_delay: float | None = None) -> str:
        """Send a query and return its checked payload as one transaction."""
        return self.transact(command)

    def check_errors(self) -> list[str]:
        """Errors are raised by :meth:`transact` as they arrive, so there is nothing to poll."""
        return []

    # --- the transaction ------------------------------------------------------------------------

    def transact(self, command: str) -> str:
        """Send ``command``, read its one reply, retry transient faults per :class:`RetryPolicy`."""
        with self._lock:
            attempts = self.retry.attempts if self.is_repeatable(command) else 1
            for attempt in range(1, attempts + 1):
                try:
                    return self.parse_reply(command, self._exchange(command))
                except TransientFault as fault:
                    if attempt == attempts:
                        raise
                    log.warning("%s; retry %d of %d", fault, attempt, attempts - 1)
                    self.discard_input()
                    time.sleep(self.retry.backoff_s)
            raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, command: str) -> str:
        with self._link_errors(command):
            self.adapter.write(command)
        return self.read_reply(command)

    def read_reply(self, command: str) -> str:
        """Read one reply line to ``command`` within its timeout, link faults mapped to
        :class:`InstrumentError` subclasses. Drivers whose devices interleave unsolicited lines
        call it again from ``parse_reply``."""
        connection = self.adapter.connection
        previous = getattr(connection, "timeout", None)
        wanted_ms = round(self.reply_timeout_s(command) * 1000)
        try:
            if previous is not None and previous != wanted_ms:
                connection.timeout = wanted_ms
            with self._link_errors(command, wanted_ms):
                reply: str = self.adapter.read()
            return reply
        finally:
            if previous is not None and previous != wanted_ms:
                connection.timeout = previous

    @contextlib.contextmanager
    def _link_errors(self, command: str, timeout_ms: int | None = None) -> Iterator[None]:
        """Adapter exceptions (pyvisa, pyserial, the emulator link) as device faults."""
        try:
            yield
        except InstrumentError:
            raise
        except UnicodeDecodeError as exc:
            raise GarbledReply(self.name, command, "reply is not ASCII", repr(exc.object)) from exc
        except Exception as exc:
            if _is_timeout(exc):
                raise DeviceTimeout(self.name, command, f"no reply within {timeout_ms} ms") from exc
            if isinstance(exc, (ConnectionError, OSError, EOFError, VisaIOError)):
                raise DeviceDisconnected(self.name, command, f"connection lost: {exc}") from exc
            raise

    def discard_input(self) -> None:
        """Wait ``RetryPolicy.drain_s`` of quiet and drop what arrives, so a late reply to a
        failed attempt is not taken for the reply to the next command."""
        connection = self.adapter.connection
        previous = getattr(connection, "timeout", None)
        try:
            if previous is not None:
                connection.timeout = max(1, round(self.retry.drain_s * 1000))
            dropped = self.adapter.read_bytes(-1)
            if dropped:
                log.info("%s: discarded %r after a fault", self.name, dropped)
        except Exception as exc:  # the link may be dead; the next attempt will say so
            log.debug("%s: while discarding input: %s", self.name, exc)
        finally:
            if previous is not None:
                connection.timeout = previous
