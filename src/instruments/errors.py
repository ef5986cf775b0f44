"""Device faults as exceptions that name the device, the command and the reply.

A scan that stops at 3 a.m. must say in one line which device refused which command, so every
fault carries those three facts. Transient faults (no reply in time, a garbled or stray reply) are
the ones a bounded retry may cure; everything else is persistent and stops the caller.
"""

from __future__ import annotations


class InstrumentError(RuntimeError):
    """A device did not do what a command asked."""

    def __init__(self, device: str, command: str, message: str, reply: str | None = None) -> None:
        self.device = device
        self.command = command
        self.reply = reply
        self.message = message
        shown = f", reply {reply!r}" if reply is not None else ""
        super().__init__(f"{device}: {message} (command {command!r}{shown})")


class DeviceReplyError(InstrumentError):
    """The device understood the framing but answered with an error code: not worth retrying."""


class TransientFault(InstrumentError):
    """A fault on the link rather than in the device; the same command may succeed if sent again."""


class DeviceTimeout(TransientFault):
    """No complete reply arrived within the command's timeout."""


class GarbledReply(TransientFault):
    """A reply arrived but does not have the shape this command's reply must have."""


class DeviceDisconnected(InstrumentError):
    """The connection itself is gone (cable pulled, socket closed, camera removed)."""


class DeviceBusyTimeout(InstrumentError):
    """A motion or retune did not finish within its allowed time."""
