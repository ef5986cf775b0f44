"""A PyMeasure adapter that hands a driver's bytes to an in-process emulator.

It mirrors what PyMeasure's ``VISAAdapter`` does over a serial port or socket (terminations added
on write and stripped on read, a ``connection.timeout`` in ms, ``read_bytes(-1)`` reading until a
quiet timeout), so a driver cannot tell it from the wire and tests need no sockets.
"""

from __future__ import annotations

from typing import Any

from pymeasure.adapters import Adapter

from simulators.devices.emulator import Emulator, EmulatorSession


class EmulatorAdapter(Adapter):
    """Connects one driver to one emulator session."""

    connection: EmulatorSession

    def __init__(
        self,
        emulator: Emulator,
        *,
        write_termination: str = "",
        read_termination: str = "\n",
        timeout_ms: int = 1000,
        encoding: str = "ascii",
    ) -> None:
        super().__init__()
        self.connection = emulator.open_session()
        self.connection.timeout = timeout_ms
        self.write_termination = write_termination
        self.read_termination = read_termination
        self.encoding = encoding

    def _timeout_s(self) -> float:
        return float(self.connection.timeout) / 1000.0

    def _write(self, command: str, **kwargs: Any) -> None:
        self.connection.write((command + self.write_termination).encode(self.encoding))

    def _write_bytes(self, content: bytes, **kwargs: Any) -> None:
        self.connection.write(content)

    def _read(self, **kwargs: Any) -> str:
        terminator = self.read_termination.encode(self.encoding)
        data = self.connection.read_until(terminator, self._timeout_s())
        return data[: len(data) - len(terminator)].decode(self.encoding)

    def _read_bytes(self, count: int, break_on_termchar: bool = False, **kwargs: Any) -> bytes:
        if count < 0:
            if break_on_termchar:
                return self.connection.read_until(
                    self.read_termination.encode(self.encoding), self._timeout_s()
                )
            return self.connection.read_available(self._timeout_s())
        return self.connection.read_exactly(count, self._timeout_s())

    def flush_read_buffer(self) -> None:
        self.connection.read_available(0.0)

    def close(self) -> None:
        self.connection.close()
