"""The Kurios driver end to end against its emulator, in-process and over 127.0.0.1 TCP."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from held_clock import held_clock
from pymeasure.test import expected_protocol

from instruments.ascii_instrument import RetryPolicy
from instruments.errors import (
    DeviceBusyTimeout,
    DeviceDisconnected,
    DeviceReplyError,
    DeviceTimeout,
)
from instruments.protocols import BandwidthMode, TunableFilter
from instruments.thorlabs import Kurios
from instruments.thorlabs.kurios import KuriosStatus, OutputMode
from simulators.devices.faults import Fault, FaultInjector, FaultRates
from simulators.devices.kurios import KuriosEmulator, KuriosEmulatorConfig

Connect = Callable[..., Any]
SCALE = 0.01  # 1 device second = 10 ms wall
#: Every reply and wait that must succeed gets this long: no load uses it up, and it ends a hang.
GENEROUS_S = 10.0
#: The reply timeout of an exchange a fault test makes time out on purpose (short_timeout).
TIMEOUT_S = 0.2
DRAIN_S = 0.02
FAST: dict[str, Any] = {"timeout_s": GENEROUS_S, "poll_interval_s": 0.002, "settle_s": 0.0}
QUICK_RETRY = RetryPolicy(attempts=3, backoff_s=0.0, drain_s=DRAIN_S)
#: A late reply lands this long after its command: half a second after the reply timeout and the
#: drain that follows it, so that even on a busy machine the timeout fires and the drain ends first.
LATE_S = TIMEOUT_S + DRAIN_S + 0.5
#: What an accepted set sends before the prompt: unverified, so the driver is tested with both.
SET_REPLIES = pytest.mark.parametrize("set_reply", ["\r", ""], ids=["cr-prompt", "bare-prompt"])


def emulator(**changes: Any) -> KuriosEmulator:
    faults = changes.pop("faults", None)
    config = dataclasses.replace(KuriosEmulatorConfig(), **changes)
    return KuriosEmulator(config, time_scale=SCALE, faults=faults)


def connected(connect: Connect, emu: KuriosEmulator, **kwargs: Any) -> Kurios:
    kurios: Kurios = connect(Kurios, emu, **{**FAST, **kwargs})
    kurios.initialize()
    return kurios


@contextlib.contextmanager
def short_timeout(kurios: Kurios, timeout_s: float = TIMEOUT_S) -> Iterator[Kurios]:
    """Replies time out after ``timeout_s`` inside the block (the fault tests wait that out),
    and after GENEROUS_S again outside it."""
    kurios.timeout_s = timeout_s
    try:
        yield kurios
    finally:
        kurios.timeout_s = GENEROUS_S


def raw(emu: KuriosEmulator, data: bytes) -> bytes:
    """What the emulator sends back for ``data`` (one command), read up to the prompt."""
    session = emu.open_session()
    session.write(data)
    return session.read_until(b">", 1.0)


# --- operations -------------------------------------------------------------------------------


@SET_REPLIES
def test_initialize_and_identity(connect_driver: Connect, set_reply: str) -> None:
    emu = emulator(set_reply=set_reply)
    kurios = connected(connect_driver, emu)
    assert isinstance(kurios, TunableFilter)
    assert kurios.identity == "THORLABS KURIOS-VB1 SN-M00000001 HW1.0 FW3.1 CN-00000001"
    assert kurios.wavelength_range_nm == (420.0, 730.0)
    assert kurios.narrowest_mode is BandwidthMode.NARROW
    assert kurios.output_mode is OutputMode.MANUAL
    assert kurios.temperature_c == 37.0
    assert kurios.status is KuriosStatus.READY


@SET_REPLIES
def test_tune_wavelength_and_bandwidth(connect_driver: Connect, set_reply: str) -> None:
    emu = emulator(set_reply=set_reply)
    kurios = connected(connect_driver, emu)
    kurios.wavelength_nm = 632.8
    kurios.bandwidth_mode = BandwidthMode.WIDE
    kurios.wait_until_ready(GENEROUS_S)
    assert kurios.wavelength_nm == pytest.approx(632.8)
    assert kurios.bandwidth_mode is BandwidthMode.WIDE
    assert emu.wavelength_nm == pytest.approx(632.8)
    assert emu.bandwidth_mode is BandwidthMode.WIDE and emu.bandwidth_code == 2
    assert emu.is_settled
    kurios.bandwidth_mode = BandwidthMode.BLACK
    assert emu.black


def test_integer_wavelength_format(connect_driver: Connect) -> None:
    emu = emulator()
    kurios = connected(connect_driver, emu, wavelength_format="%d")
    kurios.wavelength_nm = 600.6
    assert emu.wavelength_nm == 601.0


def test_out_of_range_wavelength_never_reaches_the_device(connect_driver: Connect) -> None:
    emu = emulator(
        wavelength_min_nm=650.0,
        wavelength_max_nm=1100.0,
        options_code=0x20F,
        initial_wavelength_nm=850.0,
    )
    kurios = connected(connect_driver, emu)
    seen = emu.commands_seen
    with pytest.raises(ValueError, match=r"600 nm is outside 650\.\.1100 nm"):
        kurios.wavelength_nm = 600
    assert emu.commands_seen == seen
    assert emu.wavelength_nm == 850.0


def test_a_unit_without_narrow(connect_driver: Connect) -> None:
    emu = emulator(options_code=0x107, initial_bandwidth_code=4)
    kurios = connected(connect_driver, emu)
    assert kurios.narrowest_mode is BandwidthMode.MEDIUM
    seen = emu.commands_seen
    with pytest.raises(ValueError, match="NARROW is not offered"):
        kurios.bandwidth_mode = BandwidthMode.NARROW
    assert emu.commands_seen == seen
    with pytest.raises(DeviceReplyError, match="CMD_ARG_INVALID"):
        kurios.transact("BW=8")  # had the driver not known, the unit would refuse it


@SET_REPLIES
def test_echoing_unit(connect_driver: Connect, set_reply: str) -> None:
    emu = emulator(echo=True, set_reply=set_reply)
    kurios = connected(connect_driver, emu)
    kurios.wavelength_nm = 500
    assert kurios.wavelength_nm == 500.0
    assert kurios.wavelength_range_nm == (420.0, 730.0)


# --- timing -----------------------------------------------------------------------------------


def test_settling_after_a_retune(connect_driver: Connect) -> None:
    emu = emulator(settle_s=10.0)  # 100 ms wall
    clock = held_clock(emu)
    kurios = connected(connect_driver, emu)
    start = time.monotonic()
    clock.hold()  # the settle pause cannot be over before the driver has asked
    kurios.wavelength_nm = 700
    assert not kurios.is_ready
    assert not emu.is_settled
    clock.release()
    kurios.wait_until_ready(GENEROUS_S)  # a wait that never saw ready would raise at its deadline
    assert time.monotonic() - start > 0.05  # the pause ends 100 ms after the retune, at the soonest
    assert emu.is_settled and kurios.is_ready


def test_settle_pause_is_kept_even_when_the_unit_reports_ready(connect_driver: Connect) -> None:
    emu = emulator(settle_s=0.0)
    kurios = connected(connect_driver, emu, settle_s=0.15)
    start = time.monotonic()
    kurios.wavelength_nm = 700
    kurios.wait_until_ready(GENEROUS_S)
    assert time.monotonic() - start >= 0.15


def test_warm_up_times_out_then_finishes(connect_driver: Connect) -> None:
    emu = emulator(initialization_s=5.0, warm_up_s=20.0)  # 50 ms then 200 ms wall
    clock = held_clock(emu).hold(at_s=0.0)  # just switched on, until the clock is let go
    kurios = connected(connect_driver, emu)
    assert kurios.status is KuriosStatus.INITIALIZING
    clock.advance(10.0)
    assert kurios.status is KuriosStatus.WARMING_UP
    with pytest.raises(DeviceBusyTimeout, match=r"'ST\?'") as caught:
        kurios.wait_until_ready(0.05)  # gives up at its timeout: warm-up cannot end while held
    assert caught.value.device == "Thorlabs Kurios"
    clock.release()
    kurios.wait_until_ready(GENEROUS_S)
    assert kurios.status is KuriosStatus.READY


# --- error replies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("FOO?", "CMD_NOT_DEFINED"),
        ("XX=1", "CMD_NOT_DEFINED"),
        ("WL=900", "CMD_ARG_INVALID"),
        ("WL=abc", "CMD_ARG_INVALID"),
        ("BW=3", "CMD_ARG_INVALID"),
        ("OM=9", "CMD_ARG_INVALID"),
    ],
)
def test_bad_commands_sent_raw_are_refused(
    connect_driver: Connect, command: str, reply: str
) -> None:
    emu = emulator()
    kurios = connected(connect_driver, emu)
    with pytest.raises(DeviceReplyError, match=reply) as caught:
        kurios.transact(command)
    assert caught.value.command == command
    assert emu.wavelength_nm == 550.0 and emu.bandwidth_code == 8 and emu.output_mode_code == 1


def test_raw_bytes() -> None:
    emu = emulator()
    clock = held_clock(emu).hold()  # the settle after WL= lasts until ST? has been asked
    first = emu.open_session()
    first.write(b"WL?\r")
    assert first.read_until(b">", 1.0) == b">"  # the power-up prompt
    assert first.read_until(b">", 1.0) == b"WL=550.000\r>"
    assert raw(emu, b"*idn?\r") == b"THORLABS KURIOS-VB1 SN-M00000001 HW1.0 FW3.1 CN-00000001\r>"
    assert raw(emu, b"SP?\r") == b"WLmax=730.000\rWLmin=420.000\r>"
    assert raw(emu, b"OH?\r") == b"OH=271\r>"
    assert raw(emu, b"BW?\r") == b"BW=8\r>"
    assert raw(emu, b"OM?\r") == b"OM=1\r>"
    assert raw(emu, b"ST?\r") == b"ST=2\r>"
    assert raw(emu, b"TP?\r") == b"TP=37.0\r>"
    assert raw(emu, b"WL=500.5\r") == b"\r>"  # an accepted set: an empty line, the prompt
    assert raw(emu, b"WL?\r") == b"WL=500.500\r>"
    assert raw(emu, b"ST?\r") == b"ST=1\r>"  # settling after the change
    clock.release()
    assert raw(emu, b"\r") == b"CMD_NOT_DEFINED\r>"
    assert raw(emu, b"WL=419\r") == b"CMD_ARG_INVALID\r>"
    echoing = emulator(echo=True, invalid_argument_reply="ARG ERROR")
    echoing.open_session()  # takes the power-up prompt
    assert raw(echoing, b"WL?\r") == b"WL?\rWL=550.000\r>"
    assert raw(echoing, b"WL=1\r") == b"WL=1\rARG ERROR\r>"
    assert raw(echoing, b"BW=4\r") == b"BW=4\r\r>"
    bare = emulator(set_reply="")
    bare.open_session()
    assert raw(bare, b"WL=500.5\r") == b">"
    assert raw(bare, b"OM=1\r") == b">"
    assert raw(bare, b"WL?\r") == b"WL=500.500\r>"


def test_a_common_client_reads_every_reply_up_to_cr_prompt() -> None:
    """The public pyserial Kurios client sends each command and reads until ``b"\\r>"`` (1 s
    timeout), sets included: with the default set reply every read ends at once; with a bare
    ``>`` a set's reply never completes and that client waits out its timeout."""
    session = emulator().open_session()
    assert session.read_until(b">", 1.0) == b">"  # the power-up prompt
    for command, reply in [
        (b"SP?", b"WLmax=730.000\rWLmin=420.000\r>"),
        (b"BW=8", b"\r>"),
        (b"WL=600.000", b"\r>"),
        (b"ST?", b"ST=1\r>"),
        (b"WL?", b"WL=600.000\r>"),
    ]:
        session.write(command + b"\r")
        assert session.read_until(b"\r>", 1.0) == reply, command
    bare = emulator(set_reply="").open_session()
    bare.read_until(b">", 1.0)
    bare.write(b"WL=600.000\r")
    with pytest.raises(TimeoutError):
        bare.read_until(b"\r>", 0.05)


@pytest.mark.parametrize(
    "changes",
    [
        {"wavelength_min_nm": 800.0},
        {"initial_wavelength_nm": 300.0},
        {"options_code": 0x101},
        {"options_code": 0x11F},
        {"options_code": 0x107},  # initial NARROW not offered
        {"settle_s": -1.0},
        {"line_separator": ">"},
        {"set_reply": "OK"},
        {"set_reply": ">"},
    ],
)
def test_config_checks_itself(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(KuriosEmulatorConfig(), **changes)


# --- faults -----------------------------------------------------------------------------------


@SET_REPLIES
@pytest.mark.parametrize("fault", [Fault.DROP, Fault.GARBLE, Fault.DELAY])
def test_a_transient_fault_is_retried(
    connect_driver: Connect, fault: Fault, set_reply: str
) -> None:
    emu = emulator(faults=FaultInjector(FaultRates(delay_s=LATE_S)), set_reply=set_reply)
    kurios = connected(connect_driver, emu, retry=QUICK_RETRY)
    emu.faults.inject(fault)
    seen = emu.commands_seen
    with short_timeout(kurios):
        kurios.wavelength_nm = 600  # a repeatable absolute set
    assert emu.commands_seen - seen == 2  # sent again once, and no more
    assert emu.wavelength_nm == 600.0
    assert kurios.wavelength_nm == 600.0  # the late reply, if any, did not confuse the next query
    assert emu.faults.injected[fault] == 1


def test_a_late_reply_is_not_taken_for_the_next_one(
    connect_driver: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator(faults=FaultInjector(FaultRates(delay_s=LATE_S)))
    kurios = connected(connect_driver, emu, retry=QUICK_RETRY)
    emu.faults.inject(Fault.DELAY)
    with short_timeout(kurios):
        assert kurios.bandwidth_mode is BandwidthMode.NARROW  # times out, retried
        # The late "BW=8" lands LATE_S after the first BW?, which went out at least TIMEOUT_S +
        # DRAIN_S ago: by the end of this it waits ahead of the next reply, with 0.5 s to spare.
        time.sleep(LATE_S - TIMEOUT_S - DRAIN_S + 0.5)
        assert kurios.temperature_c == 37.0  # "BW=8" does not fit TP?: garbled, retried
        assert kurios.wavelength_nm == 550.0
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert any("no reply" in m for m in retries) and any("TP=<number>" in m for m in retries)


def test_persistent_silence_ends_in_a_timeout(connect_driver: Connect) -> None:
    emu = emulator()
    kurios = connected(connect_driver, emu, retry=QUICK_RETRY)
    emu.faults.inject(Fault.DROP, 3)
    seen = emu.commands_seen
    with short_timeout(kurios, 0.1), pytest.raises(DeviceTimeout) as caught:
        _ = kurios.wavelength_nm
    assert caught.value.device == "Thorlabs Kurios" and caught.value.command == "WL?"
    assert emu.commands_seen - seen == 3  # every attempt, and then no more


def test_a_disconnect_is_a_clear_error(connect_driver: Connect) -> None:
    emu = emulator()
    kurios = connected(connect_driver, emu, retry=QUICK_RETRY)
    emu.faults.inject(Fault.DISCONNECT)
    with short_timeout(kurios), pytest.raises(DeviceDisconnected) as caught:
        kurios.wavelength_nm = 600
    assert caught.value.device == "Thorlabs Kurios"
    assert caught.value.command == "WL=600.000"
    assert "Thorlabs Kurios" in str(caught.value) and "WL=600.000" in str(caught.value)
    assert emu.faults.injected[Fault.DISCONNECT] == 1


def test_no_command_is_unsafe_to_repeat() -> None:
    # The Kurios has only absolute settings, so every command may be retried; the never-retried
    # path of the base class is exercised by the relative moves of the stage and the rotator.
    with expected_protocol(Kurios, []) as kurios:
        commands = ("WL=600.000", "BW=8", "OM=1", "ST?", "*IDN?")
        assert all(kurios.is_repeatable(command) for command in commands)
