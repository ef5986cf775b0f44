"""Serve emulators as raw TCP sockets on 127.0.0.1, like a serial-to-Ethernet bridge.

A driver then connects through PyVISA with ``TCPIP::127.0.0.1::PORT::SOCKET`` exactly as it would
to a real device behind a bridge. Only the loopback interface is ever bound: an emulator is not a
network service.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading

from simulators.devices.emulator import Emulator

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_POLL_S = 0.05


class EmulatorServer:
    """One emulator on one TCP port; each client connection gets its own session."""

    def __init__(self, emulator: Emulator, port: int = 0) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is outside the allowed range 0..65535")
        self.emulator = emulator
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((LOOPBACK, port))
        except OSError as exc:
            self._socket.close()
            raise ValueError(f"cannot serve {emulator.name} on {LOOPBACK}:{port}: {exc}") from exc
        self._socket.listen(4)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def resource_name(self) -> str:
        return f"TCPIP::{LOOPBACK}::{self.port}::SOCKET"

    def start(self) -> EmulatorServer:
        thread = threading.Thread(
            target=self._accept_loop, name=f"serve-{self.emulator.name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._socket.close()
        for thread in self._threads:
            thread.join(timeout=2.0)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([self._socket], [], [], _POLL_S)
                if not readable:
                    continue
                client, _ = self._socket.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve_client,
                args=(client,),
                name=f"client-{self.emulator.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _serve_client(self, client: socket.socket) -> None:
        session = self.emulator.open_session()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with client:
            while not self._stop.is_set() and not session.closed:
                due, wait_s = session.take_due()
                if due:
                    try:
                        client.sendall(due)
                    except OSError:
                        return
                timeout = _POLL_S if wait_s is None else max(0.0, min(_POLL_S, wait_s))
                try:
                    readable, _, _ = select.select([client], [], [], timeout)
                    if not readable:
                        continue
                    data = client.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                with contextlib.suppress(ConnectionError):
                    session.write(data)
            log.info("%s: closing client connection", self.emulator.name)
