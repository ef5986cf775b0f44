"""The ELL14 driver against its emulator (in-process and over TCP), plus the emulator's raw bytes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from held_clock import held_clock

from instruments.ascii_instrument import RetryPolicy
from instruments.errors import (
    DeviceBusyTimeout,
    DeviceDisconnected,
    DeviceTimeout,
    GarbledReply,
    InstrumentError,
)
from instruments.protocols import PolarizationRotator
from instruments.thorlabs import ELL14
from simulators.devices.ell14 import Ell14Emulator, Ell14EmulatorConfig
from simulators.devices.emulator import EmulatorSession
from simulators.devices.faults import Fault, FaultInjector, FaultRates

Connect = Callable[..., Any]
SCALE = 0.01  # 1 s of device time takes 10 ms
#: Every reply and wait that must succeed gets this long: no load uses it up, and it ends a hang.
GENEROUS_S = 10.0
#: The reply and motion timeouts of an exchange a fault test makes time out on purpose.
TIMEOUT_S, MOVE_TIMEOUT_S = 0.2, 0.25
DRAIN_S = 0.01
DRIVER: dict[str, Any] = {
    "timeout_s": GENEROUS_S,
    "move_timeout_s": GENEROUS_S,
    "move_pause_s": 0.0,
    "busy_poll_s": 0.005,
    "retry": RetryPolicy(attempts=3, backoff_s=0.0, drain_s=DRAIN_S),
}
#: A late reply lands this long after its command: half a second after the reply timeout and the
#: drain that follows it, so that even on a busy machine the timeout fires and the drain ends first.
LATE_S = TIMEOUT_S + DRAIN_S + 0.5
PULSE_DEG = 360 / 143360  # one encoder pulse
SLOW = Ell14EmulatorConfig(speed_deg_per_s=10.0)  # 90 deg take 9 s device, 90 ms wall


def emulator(config: Ell14EmulatorConfig | None = None, **kwargs: Any) -> Ell14Emulator:
    return Ell14Emulator(config, time_scale=SCALE, **kwargs)


def connected(connect: Connect, emu: Ell14Emulator, **overrides: Any) -> ELL14:
    rotator: ELL14 = connect(ELL14, emu, **{**DRIVER, **overrides})
    rotator.initialize()
    return rotator


@contextlib.contextmanager
def short_timeout(rotator: ELL14) -> Iterator[ELL14]:
    """Replies time out after TIMEOUT_S (motions MOVE_TIMEOUT_S) inside the block: the fault
    tests wait that out on purpose; outside it every exchange has GENEROUS_S again."""
    rotator.timeout_s, rotator.move_timeout_s = TIMEOUT_S, MOVE_TIMEOUT_S
    try:
        yield rotator
    finally:
        rotator.timeout_s = rotator.move_timeout_s = GENEROUS_S


def raw(session: EmulatorSession, data: bytes, timeout_s: float = GENEROUS_S) -> bytes:
    session.write(data)
    return session.read_until(b"\r\n", timeout_s)


def silent(session: EmulatorSession, quiet_s: float = 0.03) -> bool:
    return session.read_available(quiet_s) == b""


# --- the driver end to end -----------------------------------------------------------------


def test_initialize_reads_the_configured_identity(connect_driver: Connect) -> None:
    config = Ell14EmulatorConfig(serial="11409876", year=2021, pulses_per_revolution=0x10000)
    rotator = connected(connect_driver, emulator(config))
    info = rotator.info
    assert (info.model_code, info.serial, info.year) == (0x0E, "11409876", 2021)
    assert (info.firmware, info.hardware) == (config.firmware, config.hardware)
    assert (info.travel_deg, info.pulses_per_revolution) == (360, 0x10000)


def test_is_a_polarization_rotator(connect_driver: Connect) -> None:
    rotator = connected(connect_driver, emulator())
    assert isinstance(rotator, PolarizationRotator)  # reads angle_deg and is_busy


def test_moves_home_and_status_end_to_end(connect_driver: Connect) -> None:
    emu = emulator()
    rotator = connected(connect_driver, emu)
    rotator.move_to(45.0)
    assert rotator.angle_deg == pytest.approx(45.0)
    assert emu.angle_deg == pytest.approx(45.0)
    assert rotator.position_pulses == 17920
    rotator.move_by(-90.0)
    assert rotator.angle_deg == pytest.approx(315.0)
    assert rotator.position_pulses == -17920
    rotator.move_by(400.0)
    assert rotator.angle_deg == pytest.approx(355.0, abs=0.01)
    rotator.home("ccw")
    assert rotator.angle_deg == 0.0
    assert rotator.status.ok
    assert not rotator.is_busy
    rotator.velocity_percent = 40
    assert rotator.velocity_percent == 40
    assert emu.velocity_percent == 40


def test_move_returns_only_when_the_motion_has_ended(connect_driver: Connect) -> None:
    emu = emulator(SLOW)
    rotator = connected(connect_driver, emu)
    start = time.monotonic()
    rotator.move_to(90.0)  # 9 s of device time
    assert time.monotonic() - start >= 9.0 * SCALE * 0.95
    assert not emu.is_moving
    assert emu.angle_deg == pytest.approx(90.0)


def test_slower_velocity_makes_moves_slower(connect_driver: Connect) -> None:
    emu = emulator(Ell14EmulatorConfig(speed_deg_per_s=40.0))
    rotator = connected(connect_driver, emu)
    rotator.velocity_percent = 25  # 10 deg/s
    start = time.monotonic()
    rotator.move_to(90.0)
    assert time.monotonic() - start >= 9.0 * SCALE * 0.95


def test_pause_between_moves_is_enforced(connect_driver: Connect) -> None:
    rotator = connected(connect_driver, emulator(), move_pause_s=0.1)
    rotator.move_to(10.0)
    start = time.monotonic()
    rotator.move_to(20.0)
    assert time.monotonic() - start >= 0.1


def test_is_busy_seen_by_a_second_client_during_a_motion(connect_driver: Connect) -> None:
    emu = emulator(Ell14EmulatorConfig(speed_deg_per_s=3.0))
    clock = held_clock(emu)
    watcher = connected(connect_driver, emu)
    mover = emu.open_session()
    clock.hold()
    mover.write(b"0ma00008C00")  # 90 deg: 30 device s, 300 ms wall
    clock.advance(3.0)  # 9 deg along, and there it stays while the clock is held
    assert emu.is_moving
    assert watcher.is_busy
    assert emu.angle_deg == pytest.approx(9.0, abs=PULSE_DEG)
    assert watcher.angle_deg == pytest.approx(9.0, abs=PULSE_DEG)
    clock.release()
    assert mover.read_until(b"\r\n", GENEROUS_S) == b"0PO00008C00\r\n"
    assert not watcher.is_busy


def test_busy_mount_is_polled_then_the_absolute_move_sent_again(
    connect_driver: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator(SLOW)
    clock = held_clock(emu)
    rotator = connected(connect_driver, emu)
    clock.hold()  # the other motion cannot end before the rotator has found the mount busy
    emu.open_session().write(b"0ma00008C00")  # someone else turns it to 90 deg
    seen = emu.commands_seen
    clock.release_when(lambda: emu.commands_seen >= seen + 2)  # its refused move, one busy poll
    with caplog.at_level(logging.WARNING):
        rotator.move_to(45.0)
    assert emu.angle_deg == pytest.approx(45.0)
    assert emu.motions_started == 2
    assert "found the mount busy; sending it again" in caplog.text


def test_busy_longer_than_the_move_timeout_is_a_busy_timeout(connect_driver: Connect) -> None:
    emu = emulator(Ell14EmulatorConfig(speed_deg_per_s=1.0))  # 90 deg: 90 device s
    clock = held_clock(emu)
    rotator = connected(connect_driver, emu, move_timeout_s=0.15)
    clock.hold()  # the other motion lasts until the clock is released
    emu.open_session().write(b"0ma00008C00")
    with pytest.raises(DeviceBusyTimeout) as caught:
        rotator.move_to(45.0)
    # It gave up at its timeout while the mount was still busy: its own move was never started.
    assert emu.is_moving and emu.motions_started == 1
    clock.release()
    assert caught.value.device == rotator.name
    assert caught.value.command == "0ma00004600"


def test_a_second_address_on_the_bus_is_ignored(connect_driver: Connect) -> None:
    emu = emulator(Ell14EmulatorConfig(address="3"))
    rotator = connected(connect_driver, emu, address="3")
    rotator.move_to(30.0)
    assert emu.angle_deg == pytest.approx(30.0, abs=PULSE_DEG)
    # No reply comes from address 0: its one timeout is waited out on purpose.
    other = connect_driver(
        ELL14, emu, **{**DRIVER, "timeout_s": TIMEOUT_S, "retry": RetryPolicy(attempts=1)}
    )
    with pytest.raises(DeviceTimeout, match="'0in'"):
        other.initialize()


# --- faults: a retry or a clear error, never a hang -----------------------------------------


def test_dropped_query_reply_is_retried(connect_driver: Connect) -> None:
    emu = emulator()
    rotator = connected(connect_driver, emu)
    emu.faults.inject(Fault.DROP)
    seen = emu.commands_seen
    with short_timeout(rotator):
        assert rotator.position_pulses == 0
    assert emu.commands_seen - seen == 2  # asked again once, and no more
    assert emu.faults.injected[Fault.DROP] == 1


def test_dropped_absolute_move_reply_is_retried(connect_driver: Connect) -> None:
    emu = emulator()
    rotator = connected(connect_driver, emu)
    emu.faults.inject(Fault.DROP)
    with short_timeout(rotator):
        rotator.move_to(60.0)
    assert emu.motions_started == 2  # sent again once its reply was lost, and no more
    assert emu.angle_deg == pytest.approx(60.0, abs=PULSE_DEG)


def test_dropped_relative_move_reply_is_not_retried(connect_driver: Connect) -> None:
    emu = emulator()
    rotator = connected(connect_driver, emu)
    emu.faults.inject(Fault.DROP)
    with short_timeout(rotator), pytest.raises(DeviceTimeout) as caught:
        rotator.move_by(45.0)
    assert caught.value.device == rotator.name
    assert caught.value.command == "0mr00004600"
    assert emu.motions_started == 1
    assert emu.angle_deg == pytest.approx(45.0)  # moved once, not three times


def test_garbled_reply_is_retried(connect_driver: Connect) -> None:
    emu = emulator()
    rotator = connected(connect_driver, emu)
    rotator.move_to(45.0)
    emu.faults.inject(Fault.GARBLE)
    assert rotator.angle_deg == pytest.approx(45.0)
    assert emu.faults.injected[Fault.GARBLE] == 1


def test_garbled_relative_move_reply_is_not_retried(connect_driver: Connect) -> None:
    emu = emulator()
    rotator = connected(connect_driver, emu)
    emu.faults.inject(Fault.GARBLE)
    with pytest.raises(GarbledReply, match="0mr00004600"):
        rotator.move_by(45.0)
    assert emu.motions_started == 1
    assert emu.angle_deg == pytest.approx(45.0)


def test_delayed_reply_is_retried_and_its_late_copy_not_taken_for_a_move(
    connect_driver: Connect,
) -> None:
    emu = emulator(SLOW, faults=FaultInjector(FaultRates(delay_s=LATE_S)))
    rotator = connected(connect_driver, emu)
    emu.faults.inject(Fault.DELAY)
    seen = emu.commands_seen
    with short_timeout(rotator):
        assert rotator.position_pulses == 0
    assert emu.commands_seen - seen == 2  # timed out and asked again, not waiting for the late one
    # The late "0PO00000000" lands LATE_S after the first gp, which went out at least TIMEOUT_S +
    # DRAIN_S ago: by the end of this it has arrived and waits to be read, with 0.5 s to spare.
    time.sleep(LATE_S - TIMEOUT_S - DRAIN_S + 0.5)
    start = time.monotonic()
    rotator.move_to(90.0)  # 90 ms wall: it must not return on the stale PO
    assert time.monotonic() - start >= 9.0 * SCALE * 0.95
    assert not emu.is_moving
    assert rotator.angle_deg == pytest.approx(90.0)


def test_disconnect_is_a_clear_error(connect_driver: Connect) -> None:
    emu = emulator()
    rotator = connected(connect_driver, emu)
    emu.faults.inject(Fault.DISCONNECT)
    with short_timeout(rotator), pytest.raises(InstrumentError) as caught:
        rotator.move_to(10.0)
    assert emu.faults.injected[Fault.DISCONNECT] == 1
    assert isinstance(caught.value, DeviceDisconnected | DeviceTimeout)
    assert caught.value.device == rotator.name
    assert caught.value.command.startswith("0")


# --- the emulator's bytes ----------------------------------------------------------------------


@pytest.fixture
def session() -> EmulatorSession:
    return emulator().open_session()


def test_raw_info_status_and_position(session: EmulatorSession) -> None:
    assert raw(session, b"0in") == b"0IN0E11400001202317010168" + b"00023000\r\n"
    assert raw(session, b"0gs") == b"0GS00\r\n"
    assert raw(session, b"0gp") == b"0PO00000000\r\n"
    assert raw(session, b"0gv") == b"0GV64\r\n"


def test_raw_move_replies_only_at_its_end() -> None:
    emu = emulator(SLOW)
    session = emu.open_session()
    sent_s = emu.clock.now_s()
    session.write(b"0ma00004600")  # 45 deg: 4.5 s device, 45 ms wall
    assert raw(session, b"") == b"0PO00004600\r\n"
    # Measured in device time, which a busy machine can only lengthen: no earlier than the end.
    assert emu.clock.now_s() - sent_s >= 4.5 - 1e-6
    assert emu.angle_deg == pytest.approx(45.0)


def test_raw_busy_while_moving() -> None:
    emu = emulator(SLOW)
    clock = held_clock(emu)
    mover, other = emu.open_session(), emu.open_session()
    clock.hold()  # the motion lasts until the clock is released
    mover.write(b"0ma00008C00")
    assert raw(other, b"0gs") == b"0GS09\r\n"
    assert raw(other, b"0mr00001000") == b"0GS09\r\n"  # refused, not queued
    clock.release()
    assert mover.read_until(b"\r\n", GENEROUS_S) == b"0PO00008C00\r\n"
    assert raw(other, b"0gs") == b"0GS00\r\n"
    assert emu.motions_started == 1


def test_raw_relative_move_and_home(session: EmulatorSession) -> None:
    assert raw(session, b"0mrFFFFBA00") == b"0POFFFFBA00\r\n"
    assert raw(session, b"0mrFFFFBA00") == b"0POFFFF7400\r\n"
    assert raw(session, b"0ho1") == b"0PO00000000\r\n"


@pytest.mark.parametrize(
    "command", [b"0ma0000460G", b"0ma12\r", b"0mrZZZZZZZZ", b"0ho2", b"0sv65", b"0sjXYZXYZXY"]
)
def test_raw_bad_argument_is_value_out_of_range(session: EmulatorSession, command: bytes) -> None:
    assert raw(session, command) == b"0GS04\r\n"
    assert raw(session, b"0gs") == b"0GS04\r\n"  # latched until read
    assert raw(session, b"0gs") == b"0GS00\r\n"
    assert raw(session, b"0gp") == b"0PO00000000\r\n"  # nothing moved


def test_errors_need_not_latch() -> None:
    session = emulator(Ell14EmulatorConfig(latch_errors=False)).open_session()
    assert raw(session, b"0zz") == b"0GS03\r\n"
    assert raw(session, b"0gs") == b"0GS00\r\n"


@pytest.mark.parametrize("command", [b"0zz", b"0GS", b"0xy"])
def test_raw_unknown_command_is_not_supported(session: EmulatorSession, command: bytes) -> None:
    assert raw(session, command) == b"0GS03\r\n"


def test_raw_framing_tolerates_line_ends_and_split_writes(session: EmulatorSession) -> None:
    assert raw(session, b"0gs\r") == b"0GS00\r\n"  # Micro-Manager's \r
    assert raw(session, b"\r\n0gp\r\n") == b"0PO00000000\r\n"
    session.write(b"0m")
    session.write(b"a0000")
    assert silent(session)
    assert raw(session, b"4600") == b"0PO00004600\r\n"
    session.write(b"0gs0gp")  # two packets in one write
    assert session.read_until(b"\r\n", 0.2) == b"0GS00\r\n"
    assert session.read_until(b"\r\n", 0.2) == b"0PO00004600\r\n"


def test_raw_other_address_is_ignored(session: EmulatorSession) -> None:
    session.write(b"1gs1ma00004600")
    assert silent(session)
    assert raw(session, b"0gp") == b"0PO00000000\r\n"


def test_raw_settings(session: EmulatorSession) -> None:
    assert raw(session, b"0sv32") == b"0GS00\r\n"
    assert raw(session, b"0gv") == b"0GV32\r\n"
    assert raw(session, b"0sj00001000") == b"0GS00\r\n"
    assert raw(session, b"0gj") == b"0GJ00001000\r\n"
    assert raw(session, b"0fw") == b"0PO00001000\r\n"
    assert raw(session, b"0bw") == b"0PO00000000\r\n"
    assert raw(session, b"0so00000100") == b"0GS00\r\n"
    assert raw(session, b"0go") == b"0HO00000100\r\n"
    assert raw(session, b"0ho0") == b"0PO00000100\r\n"
    assert raw(session, b"0us") == b"0GS00\r\n"
    assert raw(session, b"0ca5") == b"5GS00\r\n"
    session.write(b"0gs")
    assert silent(session)
    assert raw(session, b"5gs") == b"5GS00\r\n"


def test_raw_motor_info(session: EmulatorSession) -> None:
    # roesel/elliptec's test bytes for I1; the layout pylablib's get_motor_info reads.
    assert raw(session, b"0i1") == b"0I111074A010001000E140E14\r\n"
    assert raw(session, b"0i2") == b"0I211074A010001000E140E14\r\n"
    assert raw(session, b"0i3") == b"0GS03\r\n"  # no third motor
    assert raw(session, b"0gs") == b"0GS03\r\n"
    config = Ell14EmulatorConfig(
        motor_loop_on=False,
        motor_current=0x0400,
        motor_forward_periods=[0x0093, 0x0094],  # type: ignore[arg-type]  # as TOML gives it
        motor_backward_periods=(0x0095, 0x0096),
    )
    other = emulator(config).open_session()
    assert raw(other, b"0i1") == b"0I10104000100010000930095\r\n"
    assert raw(other, b"0i2") == b"0I20104000100010000940096\r\n"


def test_a_pylablib_style_client_reads_motor_info(session: EmulatorSession) -> None:
    """pylablib reads the 3-character header, then the line, checks 22 data characters for I1/I2
    and decodes: loop, motor, current/1866 A, ramps, 14740000/period Hz."""
    for motor in (1, 2):
        session.write(f"0i{motor}".encode())
        header = session.read_exactly(3, 0.2)
        data = session.read_until(b"\r\n", 0.2)[:-2]
        assert header == f"0I{motor}".encode() and len(data) == 22
        assert (bool(int(data[0:1])), bool(int(data[1:2]))) == (True, True)
        assert int(data[2:6], 16) / 1866 == pytest.approx(1.0)
        assert (int(data[6:10], 16), int(data[10:14], 16)) == (256, 256)
        assert 14740000 / int(data[14:18], 16) == pytest.approx(4090, abs=1)
        assert 14740000 / int(data[18:22], 16) == pytest.approx(4090, abs=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"address": "g"},
        {"address": "01"},
        {"serial": "123"},
        {"pulses_per_revolution": 0},
        {"speed_deg_per_s": 0.0},
        {"velocity_percent": 101},
        {"initial_position_pulses": 2**31},
        {"motor_current": 0x10000},
        {"motor_forward_periods": (0, 0x0E14)},
        {"motor_backward_periods": (0x0E14,)},
    ],
)
def test_config_is_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"outside|not"):
        Ell14EmulatorConfig(**kwargs)


def test_lowercase_address_is_the_uppercase_one() -> None:
    emu = emulator(Ell14EmulatorConfig(address="b"))
    assert emu.address == "B"
    assert raw(emu.open_session(), b"Bgs") == b"BGS00\r\n"


def test_initial_position_and_angle_state() -> None:
    emu = emulator(Ell14EmulatorConfig(initial_position_pulses=-17920))
    assert emu.position_pulses == -17920
    assert emu.angle_deg == pytest.approx(315.0)
    assert not emu.is_moving
    assert emu.address == "0"
