"""The MS-2000 driver against its emulator, in-process and over TCP, with link faults."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from held_clock import held_clock

from instruments.ascii_instrument import RetryPolicy
from instruments.asi import MS2000
from instruments.errors import (
    DeviceBusyTimeout,
    DeviceDisconnected,
    DeviceReplyError,
    DeviceTimeout,
    GarbledReply,
    InstrumentError,
)
from instruments.protocols import Stage
from simulators.devices.faults import Fault, FaultInjector, FaultRates
from simulators.devices.ms2000 import Ms2000Emulator, Ms2000EmulatorConfig

SCALE = 0.01  # device time runs 100x faster than wall time
#: Every reply and wait that must succeed gets this long: no load uses it up, and it ends a hang.
GENEROUS_S = 10.0
#: The reply timeout of an exchange a fault test makes time out on purpose (short_timeout).
TIMEOUT_S = 0.25
DRAIN_S = 0.03
FAST: dict[str, Any] = {
    "timeout_s": GENEROUS_S,
    "poll_interval_s": 0.002,
    "retry": RetryPolicy(attempts=3, backoff_s=0.0, drain_s=DRAIN_S),
}
#: A late reply lands this long after its command: half a second after the reply timeout and the
#: drain that follows it, so that even on a busy machine the timeout fires and the drain ends first.
LATE_S = TIMEOUT_S + DRAIN_S + 0.5


def emulator(**config: Any) -> Ms2000Emulator:
    faults = config.pop("faults", None)
    return Ms2000Emulator(Ms2000EmulatorConfig(**config), time_scale=SCALE, faults=faults)


@contextlib.contextmanager
def short_timeout(stage: MS2000) -> Iterator[MS2000]:
    """Replies time out after TIMEOUT_S inside the block (the fault tests wait that out), and
    after GENEROUS_S again outside it."""
    stage.timeout_s = TIMEOUT_S
    try:
        yield stage
    finally:
        stage.timeout_s = GENEROUS_S


def raw(emu: Ms2000Emulator, *commands: bytes) -> list[bytes]:
    """Send commands as bytes and return each reply as bytes, terminator included."""
    session = emu.open_session()
    replies = []
    for command in commands:
        session.write(command + b"\r")
        replies.append(session.read_until(b"\r\n", 1.0))
    session.close()
    return replies


# --- raw protocol --------------------------------------------------------------------------------


def test_raw_replies_follow_the_reference() -> None:
    emu = emulator()
    assert raw(emu, b"V", b"/", b"W X Y", b"S X?", b"HALT") == [
        b":A Version: USB-9.2p\r\n",
        b"N\r\n",
        b":A 0 0\r\n",
        b":A X=5.000000\r\n",
        b":A\r\n",
    ]


def test_raw_errors_for_bad_commands_and_values() -> None:
    emu = emulator()
    assert raw(
        emu,
        b"FOO",
        b"M",
        b"M X=",
        b"M X=abc",
        b"M Q=5",
        b"W Z",
        b"M X=550001",
        b"R Y=-550001",
        b"S X=9",
        b"S Y=0",
        b"S X",
    ) == [
        b":N-1\r\n",
        b":N-3\r\n",
        b":N-3\r\n",
        b":N-3\r\n",
        b":N-2\r\n",
        b":N-2\r\n",
        b":N-4\r\n",
        b":N-4\r\n",
        b":N-4\r\n",
        b":N-4\r\n",
        b":N-3\r\n",
    ]
    assert emu.move_count == 0
    assert emu.position_um == (0.0, 0.0, 0.0)


def test_raw_a_refused_move_moves_no_axis() -> None:
    emu = emulator()
    assert raw(emu, b"M X=100 Y=999999", b"W X Y") == [b":N-4\r\n", b":A 0 0\r\n"]


def test_raw_axes_in_any_order_subsets_and_lower_case() -> None:
    emu = emulator(x_speed_mm_per_s=7.5, y_speed_mm_per_s=7.5)
    raw(emu, b"M Y=-56 X=1234")
    time.sleep(0.01)
    assert raw(emu, b"W Y X", b"m y=10", b"/")[0] == b":A -56 1234\r\n"
    time.sleep(0.01)
    assert raw(emu, b"W X Y") == [b":A 1234 10\r\n"]
    assert emu.position_um == pytest.approx((123.4, 1.0, 0.0))


def test_raw_z_axis_and_its_travel() -> None:
    emu = emulator(has_z=True)
    assert raw(emu, b"M Z=60000", b"M Z=-250", b"S Z?") == [
        b":N-4\r\n",
        b":A\r\n",
        b":A Z=5.000000\r\n",
    ]
    time.sleep(0.01)
    assert raw(emu, b"W X Y Z") == [b":A 0 0 -250\r\n"]


def test_raw_here_sets_the_reported_origin_only() -> None:
    emu = emulator()
    raw(emu, b"M X=100 Y=200")
    time.sleep(0.01)
    assert raw(emu, b"H X=0 Y=5", b"W X Y") == [b":A\r\n", b":A 0 5\r\n"]
    assert emu.position_um == pytest.approx((10.0, 20.0, 0.0))  # physical frame unchanged


def test_raw_halt_mid_move_answers_halted_and_stops_there() -> None:
    emu = emulator(x_speed_mm_per_s=1.0)
    clock = held_clock(emu).hold()  # device time moves only when the test moves it
    raw(emu, b"M X=500000")  # 50 mm at 1 mm/s: 50 device s
    clock.advance(3.0)  # 3 mm along
    assert raw(emu, b"/", b"HALT", b"/", b"HALT") == [b"B\r\n", b":N-21\r\n", b"N\r\n", b":A\r\n"]
    assert emu.position_um[0] == pytest.approx(3_000.0)
    clock.release()
    time.sleep(0.02)  # at least 2 device s more: another 2 mm, had the halt not stopped it
    assert emu.position_um[0] == pytest.approx(3_000.0)


def test_raw_backslash_is_the_halt_shortcut() -> None:
    # ASI, commands/halt: "Shortcut \\ (the backslash character)"; :A, or :N-21 mid-move.
    emu = emulator(x_speed_mm_per_s=1.0)
    clock = held_clock(emu)
    assert raw(emu, b"\\") == [b":A\r\n"]
    clock.hold()
    raw(emu, b"M X=500000")
    clock.advance(3.0)
    assert raw(emu, b"\\", b"/") == [b":N-21\r\n", b"N\r\n"]
    assert emu.position_um[0] == pytest.approx(3_000.0)


def test_raw_rdstat_answers_the_status_byte_in_decimal() -> None:
    # ASI, commands/rdstat and commands/rdsbyte: RS X -> :A 138 (0x8A: lower limit closed,
    # joystick enabled, axis enabled); ? -> N/B, - -> the LCD's left status character.
    emu = emulator(x_speed_mm_per_s=1.0)
    clock = held_clock(emu)
    assert raw(emu, b"RS X", b"RDSTAT X Y", b"RS Y?", b"RS X-") == [
        b":A 10\r\n",  # 0x0A, idle mid-travel: enabled, joystick enabled
        b":A 10 10\r\n",
        b":A N\r\n",
        b":A f\r\n",
    ]
    clock.hold()
    raw(emu, b"M X=500000")  # 50 mm at 1 mm/s: 50 device s, and the clock is held
    assert raw(emu, b"RS X Y", b"RS X? Y?") == [b":A 15 10\r\n", b":A B N\r\n"]
    assert raw(emu, b"\\", b"RS X") == [b":N-21\r\n", b":A 10\r\n"]
    clock.release()
    homed = emulator(x_speed_mm_per_s=7.5)
    homed_clock = held_clock(homed).hold()
    assert raw(homed, b"! X") == [b":A\r\n"]  # HOME: 55 mm to the lower limit switch, 7.3 device s
    homed_clock.advance(8.0)
    assert raw(homed, b"RS X", b"RS X-", b"RS Y") == [
        b":A 138\r\n",
        b":A L\r\n",
        b":A 10\r\n",
    ]
    assert raw(emu, b"RS", b"RS Q", b"RS X+") == [b":N-3\r\n", b":N-2\r\n", b":N-2\r\n"]
    upper = emulator(x_travel_um=(-55_000.0, 0.0), joystick_enabled=False, lcd_status=" ")
    assert raw(upper, b"RS X", b"RS X-", b"RS Y-") == [b":A 66\r\n", b":A U\r\n", b":A  \r\n"]


def info(emu: Ms2000Emulator, command: bytes) -> bytes:
    """Everything INFO answers (its lines end in CR alone, so read until quiet)."""
    session = emu.open_session()
    session.write(command + b"\r")
    reply = session.read_available(0.05)
    session.close()
    return reply


INFO_X = (
    b"Axis Name    :  X                Limits Status: f\r"
    b"Max Lim      :  55.000 mm        Min Lim      : -55.000 mm\r"
    b"Speed        :  5.0000 [S] mm/s  Max Speed    : 7.5000 mm/s\r"
)


def test_raw_info_dumps_the_axis_in_two_columns() -> None:
    emu = emulator(has_z=True, z_travel_um=(-5_000.0, 5_000.0), z_speed_mm_per_s=2.5)
    assert info(emu, b"INFO X") == INFO_X  # first line as on a unit (python-microscope#298)
    assert info(emu, b"I Z") == (
        b"Axis Name    :  Z                Limits Status: f\r"
        b"Max Lim      :  5.000 mm         Min Lim      : -5.000 mm\r"
        b"Speed        :  2.5000 [S] mm/s  Max Speed    : 7.5000 mm/s\r"
    )
    xy = emulator()
    assert info(xy, b"INFO Z") == b""  # no such axis: nothing, "axis not present"
    assert info(xy, b"INFO") == b":N-3\r\n"
    assert info(emulator(info_silent_for_missing_axis=False), b"INFO Z") == b":N-2\r\n"


_INFO_ITEM = re.compile(
    r"(?P<name>.*):\s*((?P<value>\S+)(\s+)?(?P<command>[\[].*[\]])?(\s+)?(?P<units>.*)?)$"
)


def test_a_python_microscope_style_client_starts_and_polls() -> None:
    """What python-microscope's ASI controller does at start-up and in ``motor_moving``: INFO
    per axis read line by line up to CR until a read times out, each line split at column 33
    and parsed with its pattern; then RDSTAT's ``int(reply.strip()[3:]) & 1``. Against
    ``:N-1`` the poll would read 1 ("moving") forever."""
    emu = emulator(x_speed_mm_per_s=1.0)
    clock = held_clock(emu)
    session = emu.open_session()
    present: dict[str, dict[str, str]] = {}
    for axis in "XYZ":
        session.write(f"INFO {axis}\r".encode())
        lines = []
        while True:
            try:
                lines.append(session.read_until(b"\r", 0.05).strip(b"\r"))
            except TimeoutError:
                break
        if not lines:
            continue  # "axis not present"
        items = [part.strip().decode() for line in lines for part in (line[:33], line[33:])]
        settings = {}
        for item in items:
            match = _INFO_ITEM.search(item)
            assert match is not None, item
            settings[match["name"].strip()] = match["value"]
        present[axis] = settings
    assert sorted(present) == ["X", "Y"]
    assert present["X"]["Axis Name"] == "X" and present["X"]["Speed"] == "1.0000"

    def moving() -> int:
        session.write(b"RDSTAT X\r")
        return int(session.read_until(b"\r\n", 0.2).strip()[3:]) & 1

    assert moving() == 0
    session.write(b"MOVE X=20000\r")  # 2 mm at 1 mm/s: 20 ms wall
    assert session.read_until(b"\r\n", 0.2) == b":A\r\n"
    time.sleep(0.05)  # at least 5 device s
    assert moving() == 0
    clock.hold()
    session.write(b"MOVE X=500000\r")  # 50 device s, and the clock is held
    assert session.read_until(b"\r\n", 0.2) == b":A\r\n"
    assert moving() == 1


def test_emulator_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="X speed 9"):
        Ms2000EmulatorConfig(x_speed_mm_per_s=9.0)
    with pytest.raises(ValueError, match="Y travel"):
        Ms2000EmulatorConfig(y_travel_um=(5.0, -5.0))
    with pytest.raises(ValueError, match="position_error_sigma_um"):
        Ms2000EmulatorConfig(position_error_sigma_um=-1.0)
    with pytest.raises(ValueError, match="lcd_status"):
        Ms2000EmulatorConfig(lcd_status="fs")


def test_positioning_error_is_seeded_and_reported_by_the_encoder() -> None:
    landings = []
    for _ in range(2):
        emu = emulator(position_error_sigma_um=2.0, seed=7)
        raw(emu, b"M X=1000 Y=1000")
        time.sleep(0.01)
        landings.append(emu.position_um)
        x, y, _ = emu.position_um
        assert raw(emu, b"W X Y") == [f":A {round(x * 10)} {round(y * 10)}\r\n".encode()]
    assert landings[0] == landings[1]
    assert landings[0][:2] != (100.0, 100.0)
    assert all(abs(v - 100.0) < 10.0 for v in landings[0][:2])
    other = emulator(position_error_sigma_um=2.0, seed=8)
    raw(other, b"M X=1000 Y=1000")
    time.sleep(0.01)
    assert other.position_um != landings[0]


# --- the driver end to end -----------------------------------------------------------------------


def test_driver_satisfies_the_stage_protocol(connect_driver: Any) -> None:
    stage = connect_driver(MS2000, emulator(), **FAST)
    assert isinstance(stage, Stage)  # reads every property on Python 3.11: needs a device
    assert stage.initialize() == "USB-9.2p"


def test_move_wait_and_read_back(connect_driver: Any) -> None:
    emu = emulator(has_z=True)
    clock = held_clock(emu)
    stage = connect_driver(MS2000, emu, has_z=True, **FAST)
    start = time.monotonic()
    clock.hold()  # the motion cannot end before the driver has looked
    stage.move_to(-20_000.0, 12.34, 100.0)  # 20 mm at 5 mm/s: 4 device s, 40 ms wall
    assert stage.is_busy
    assert emu.is_moving
    clock.release()
    stage.wait_until_idle(GENEROUS_S)  # a wait that never saw idle would raise at its deadline
    assert time.monotonic() - start > 0.035  # it waited for the motion
    assert not emu.is_moving
    assert not stage.is_busy
    assert stage.position_um == pytest.approx((-20_000.0, 12.3, 100.0))
    assert emu.position_um == pytest.approx((-20_000.0, 12.3, 100.0))
    stage.move_by(1.0, -2.3, 0.5)
    stage.wait_until_idle(GENEROUS_S)
    assert stage.position_um == pytest.approx((-19_999.0, 10.0, 100.5))


def test_move_to_and_wait(connect_driver: Any) -> None:
    emu = emulator()
    stage = connect_driver(MS2000, emu, **FAST)
    stage.move_to_and_wait(300.0, -400.0, timeout_s=GENEROUS_S)
    assert not emu.is_moving
    assert emu.position_um == pytest.approx((300.0, -400.0, 0.0))


def test_speed_round_trip_sets_move_time(connect_driver: Any) -> None:
    emu = emulator()
    stage = connect_driver(MS2000, emu, **FAST)
    assert stage.speed_mm_per_s == pytest.approx(5.0)
    stage.speed_mm_per_s = 1.25
    assert stage.speed_mm_per_s == pytest.approx(1.25)
    assert emu.speeds_mm_per_s == {"X": 1.25, "Y": 1.25}
    start = time.monotonic()
    stage.move_to_and_wait(0.0, 5_000.0, timeout_s=GENEROUS_S)  # 5 mm at 1.25 mm/s: 40 ms wall
    assert time.monotonic() - start > 0.035


def test_halt_mid_move(connect_driver: Any) -> None:
    emu = emulator(x_speed_mm_per_s=1.0)
    clock = held_clock(emu)
    stage = connect_driver(MS2000, emu, **FAST)
    clock.hold()
    stage.move_to(50_000.0, 0.0)  # 50 device s
    clock.advance(2.0)  # 2 mm along, and there it stays until the halt
    assert stage.is_busy
    stage.halt()  # the device answers :N-21, which for HALT is success
    assert not stage.is_busy
    x, _ = stage.position_um
    assert x == pytest.approx(2_000.0, abs=0.1)
    clock.release()
    stage.halt()  # idle: plain :A
    assert stage.position_um[0] == pytest.approx(2_000.0, abs=0.1)


def test_wait_until_idle_times_out_naming_device_and_command(connect_driver: Any) -> None:
    emu = emulator(x_speed_mm_per_s=1.0)
    clock = held_clock(emu)
    stage = connect_driver(MS2000, emu, **FAST)
    clock.hold()  # X stays busy until the clock is released
    stage.move_to(50_000.0, 50_000.0)
    with pytest.raises(DeviceBusyTimeout) as caught:
        stage.wait_until_idle(0.02)
    assert (caught.value.device, caught.value.command) == ("ASI MS-2000", "/")
    stage.halt()
    clock.release()
    assert not emu.is_moving


def test_soft_limits_block_before_the_device_moves(connect_driver: Any) -> None:
    emu = emulator()
    stage = connect_driver(MS2000, emu, soft_limits_um={"x": (-100.0, 100.0)}, **FAST)
    with pytest.raises(ValueError, match="soft limits"):
        stage.move_to(100.5, 0.0)
    stage.move_to_and_wait(90.0, 0.0, timeout_s=GENEROUS_S)
    with pytest.raises(ValueError, match=r"relative move target 100\.1 µm"):
        stage.move_by(10.1, 0.0)
    assert emu.move_count == 1
    stage.move_by(10.0, 0.0)
    stage.wait_until_idle(GENEROUS_S)
    assert emu.position_um[0] == pytest.approx(100.0)


def test_out_of_travel_is_a_reply_error(connect_driver: Any) -> None:
    stage = connect_driver(MS2000, emulator(), **FAST)
    with pytest.raises(DeviceReplyError) as caught:
        stage.move_to(60_000.0, 0.0)
    assert caught.value.command == "M X=600000 Y=0"
    assert caught.value.device == "ASI MS-2000"
    assert "parameter out of range" in str(caught.value)


# --- link faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.GARBLE])
def test_lost_or_garbled_reply_to_a_query_is_retried(connect_driver: Any, fault: Fault) -> None:
    emu = emulator()
    stage = connect_driver(MS2000, emu, **FAST)
    stage.move_to_and_wait(10.0, 20.0, timeout_s=GENEROUS_S)
    emu.faults.inject(fault)
    seen = emu.commands_seen
    with short_timeout(stage):
        assert stage.position_um == pytest.approx((10.0, 20.0))
    assert emu.commands_seen - seen == 2  # asked again once, and no more
    assert emu.faults.injected[fault] == 1


def test_lost_ack_of_an_absolute_move_is_retried_safely(connect_driver: Any) -> None:
    emu = emulator()
    stage = connect_driver(MS2000, emu, **FAST)
    emu.faults.inject(Fault.DROP)
    with short_timeout(stage):
        stage.move_to(-30.0, 40.0)
    stage.wait_until_idle(GENEROUS_S)
    assert emu.move_count == 2  # sent twice, harmless: same target
    assert stage.position_um == pytest.approx((-30.0, 40.0))


def test_delayed_reply_is_retried_and_its_straggler_is_shed(
    connect_driver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    faults = FaultInjector(FaultRates(delay_s=LATE_S))
    emu = emulator(faults=faults)
    stage = connect_driver(MS2000, emu, **FAST)
    faults.inject(Fault.DELAY)
    with short_timeout(stage):
        assert stage.version == "USB-9.2p"
        # The late reply lands LATE_S after the first V, which went out at least TIMEOUT_S +
        # DRAIN_S ago: by the end of this it is in the input buffer, with half a second to spare.
        time.sleep(LATE_S - TIMEOUT_S - DRAIN_S + 0.5)
        assert stage.position_um == pytest.approx((0.0, 0.0))  # stale ":A Version" is garbled here
    assert not stage.is_busy
    retried = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("no reply" in m and "'V'" in m for m in retried), retried
    assert any("W X Y" in m for m in retried), retried


def test_disconnect_is_a_clear_error(connect_driver: Any) -> None:
    emu = emulator()
    stage = connect_driver(MS2000, emu, **FAST)
    emu.faults.inject(Fault.DISCONNECT)
    with short_timeout(stage), pytest.raises(InstrumentError) as caught:
        _ = stage.position_um
    assert emu.faults.injected[Fault.DISCONNECT] == 1
    assert isinstance(caught.value, (DeviceDisconnected, DeviceTimeout))
    assert (caught.value.device, caught.value.command) == ("ASI MS-2000", "W X Y")


@pytest.mark.parametrize(
    ("fault", "error"), [(Fault.DROP, DeviceTimeout), (Fault.GARBLE, GarbledReply)]
)
def test_relative_move_is_not_retried(
    connect_driver: Any, fault: Fault, error: type[InstrumentError]
) -> None:
    emu = emulator()
    stage = connect_driver(MS2000, emu, **FAST)
    emu.faults.inject(fault)
    seen = emu.commands_seen
    with short_timeout(stage), pytest.raises(error) as caught:
        stage.move_by(100.0, 0.0)
    assert emu.commands_seen - seen == 1  # sent once, never again
    assert caught.value.command == "R X=1000 Y=0"
    stage.wait_until_idle(GENEROUS_S)
    assert emu.move_count == 1
    assert stage.position_um == pytest.approx((100.0, 0.0))
