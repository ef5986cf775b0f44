"""ASI MS-2000 driver, pinned byte for byte against the project's instrument reference (§3)."""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytest
from pymeasure.test import expected_protocol

import instruments.asi.ms2000 as ms2000_module
from instruments.ascii_instrument import RetryPolicy
from instruments.asi import MS2000
from instruments.errors import DeviceBusyTimeout, DeviceReplyError, GarbledReply
from instruments.protocols import Stage

ONE_TRY = RetryPolicy(attempts=1)
LIMITS = {"x": (-1000.0, 1000.0), "y": (-500.0, 500.0)}


def test_framing_matches_the_reference() -> None:
    assert MS2000.WRITE_TERMINATION == "\r"
    assert MS2000.READ_TERMINATION == "\r\n"
    assert MS2000.BAUD_RATE == 115200


def test_constructing_does_no_io() -> None:
    with expected_protocol(MS2000, [], has_z=True, soft_limits_um=LIMITS) as stage:
        assert stage.name == "ASI MS-2000"


def test_has_every_member_of_the_stage_protocol() -> None:
    # isinstance() on Python 3.11 reads every property (I/O); the emulator tests do that check.
    members = [name for name in dir(Stage) if not name.startswith("_")]
    assert {"position_um", "move_to", "halt", "speed_mm_per_s", "soft_limits_um"} <= set(members)
    for name in members:
        assert inspect.getattr_static(MS2000, name, None) is not None, name


def test_baud_rate_argument_reaches_the_serial_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class FakeVisaAdapter:
        def __init__(self, resource: str, **kwargs: Any) -> None:
            seen.update(kwargs)

    monkeypatch.setattr("pymeasure.instruments.instrument.VISAAdapter", FakeVisaAdapter)
    MS2000("ASRL1::INSTR", baud_rate=9600)
    assert seen["asrl"] == {
        "baud_rate": 9600,
        "write_termination": "\r",
        "read_termination": "\r\n",
    }
    seen.clear()
    MS2000("ASRL1::INSTR")
    assert seen["asrl"]["baud_rate"] == 115200
    with pytest.raises(ValueError, match="baud_rate 4800"):
        MS2000("ASRL1::INSTR", baud_rate=4800)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"soft_limits_um": {"z": (0.0, 1.0)}}, "axis 'z'"),
        ({"soft_limits_um": {"x": (5.0, 1.0)}}, "low < high"),
        ({"soft_limits_um": {"q": (0.0, 1.0)}}, "axis 'q'"),
        ({"poll_interval_s": 0.0}, "poll_interval_s"),
        ({"max_speed_mm_per_s": math.nan}, "max_speed_mm_per_s"),
    ],
)
def test_constructor_rejects_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match), expected_protocol(MS2000, [], **kwargs):
        pass


def test_soft_limits_are_normalized_to_lower_case_and_copied() -> None:
    with expected_protocol(MS2000, [], soft_limits_um={"X": (-1, 2)}) as stage:
        limits = stage.soft_limits_um
        assert limits == {"x": (-1.0, 2.0)}
        limits["x"] = (-9.0, 9.0)
        assert stage.soft_limits_um == {"x": (-1.0, 2.0)}


# --- reading state -------------------------------------------------------------------------------


def test_version_and_initialize() -> None:
    pairs = [("V", ":A Version: USB-9.2p"), ("V", ":A Version: USB-9.2p")]
    with expected_protocol(MS2000, pairs) as stage:
        assert stage.version == "USB-9.2p"
        assert stage.initialize() == "USB-9.2p"


def test_position_is_tenths_of_um() -> None:
    with expected_protocol(MS2000, [("W X Y", ":A 123 -456")]) as stage:
        assert stage.position_um == pytest.approx((12.3, -45.6))


def test_position_with_z() -> None:
    with expected_protocol(MS2000, [("W X Y Z", ":A 10 20 -35")], has_z=True) as stage:
        assert stage.position_um == pytest.approx((1.0, 2.0, -3.5))


@pytest.mark.parametrize(("reply", "busy"), [("N", False), ("B", True)])
def test_is_busy(reply: str, busy: bool) -> None:
    with expected_protocol(MS2000, [("/", reply)]) as stage:
        assert stage.is_busy is busy


def test_speed_query() -> None:
    with expected_protocol(MS2000, [("S X?", ":A X=5.745920")]) as stage:
        assert stage.speed_mm_per_s == pytest.approx(5.74592)


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (5, "S X=5 Y=5"),
        (2.5, "S X=2.5 Y=2.5"),
        (7.5, "S X=7.5 Y=7.5"),
        (0.1234, "S X=0.1234 Y=0.1234"),
    ],
)
def test_speed_set(value: float, sent: str) -> None:
    with expected_protocol(MS2000, [(sent, ":A")]) as stage:
        stage.speed_mm_per_s = value


@pytest.mark.parametrize("value", [0.0, -1.0, 7.51, math.nan, math.inf])
def test_speed_out_of_range_sends_nothing(value: float) -> None:
    with (
        expected_protocol(MS2000, []) as stage,
        pytest.raises(ValueError, match=r"0\.0001\.\.7\.5 mm/s"),
    ):
        stage.speed_mm_per_s = value


def test_speed_ceiling_is_configurable() -> None:
    with expected_protocol(MS2000, [("S X=3 Y=3", ":A")], max_speed_mm_per_s=3.0) as stage:
        with pytest.raises(ValueError, match=r"speed 3\.5 mm/s is outside 0\.0001\.\.3 mm/s"):
            stage.speed_mm_per_s = 3.5
        stage.speed_mm_per_s = 3.0


# --- motion --------------------------------------------------------------------------------------


def test_move_to_sends_rounded_tenths() -> None:
    pairs = [("M X=123 Y=-56", ":A"), ("M X=124 Y=0", ":A")]
    with expected_protocol(MS2000, pairs) as stage:
        stage.move_to(12.34, -5.6)
        stage.move_to(12.36, 0.04)


def test_move_to_with_z() -> None:
    with expected_protocol(MS2000, [("M X=0 Y=10 Z=-25", ":A")], has_z=True) as stage:
        stage.move_to(0.0, 1.0, -2.5)


def test_z_without_a_z_axis_sends_nothing() -> None:
    with expected_protocol(MS2000, []) as stage, pytest.raises(ValueError, match="no Z axis"):
        stage.move_to(0.0, 0.0, 5.0)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (1000.1, 0.0, r"x target 1000.1 µm is outside the soft limits -1000\.\.1000 µm"),
        (0.0, -500.5, r"y target -500.5 µm is outside"),
        (math.nan, 0.0, "not a finite number"),
    ],
)
def test_move_to_outside_soft_limits_sends_nothing(x: float, y: float, match: str) -> None:
    with (
        expected_protocol(MS2000, [], soft_limits_um=LIMITS) as stage,
        pytest.raises(ValueError, match=match),
    ):
        stage.move_to(x, y)


def test_move_to_on_a_soft_limit_is_allowed() -> None:
    with expected_protocol(MS2000, [("M X=10000 Y=-5000", ":A")], soft_limits_um=LIMITS) as stage:
        stage.move_to(1000.0, -500.0)


def test_move_by_without_limits_sends_only_the_relative_move() -> None:
    with expected_protocol(MS2000, [("R X=100 Y=-55", ":A")]) as stage:
        stage.move_by(10.0, -5.5)


def test_move_by_reads_the_position_first_when_limited() -> None:
    pairs = [("W X Y", ":A 9000 0"), ("R X=1000 Y=-20", ":A")]
    with expected_protocol(MS2000, pairs, soft_limits_um=LIMITS) as stage:
        stage.move_by(100.0, -2.0)


def test_move_by_past_a_soft_limit_stops_after_the_position_query() -> None:
    with (
        expected_protocol(MS2000, [("W X Y", ":A 9000 0")], soft_limits_um=LIMITS) as stage,
        pytest.raises(ValueError, match=r"x relative move target 1000.1 µm"),
    ):
        stage.move_by(100.1, 0.0)


def test_move_to_and_wait() -> None:
    pairs = [("M X=10 Y=20", ":A"), ("/", "B"), ("/", "N")]
    with expected_protocol(MS2000, pairs, poll_interval_s=0.001) as stage:
        stage.move_to_and_wait(1.0, 2.0, timeout_s=5.0)


def test_wait_until_idle_polls_until_idle() -> None:
    pairs = [("/", "B"), ("/", "B"), ("/", "N")]
    with expected_protocol(MS2000, pairs, poll_interval_s=0.001) as stage:
        stage.wait_until_idle(5.0)


class _FakeTime:
    """A clock that advances only when slept on, so the poll count is exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_until_idle_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ms2000_module, "time", _FakeTime())
    pairs = [("/", "B")] * 3  # at 0, 0.25 and 0.5 s
    with (
        expected_protocol(MS2000, pairs, poll_interval_s=0.25) as stage,
        pytest.raises(DeviceBusyTimeout) as caught,
    ):
        stage.wait_until_idle(0.5)
    assert caught.value.device == "ASI MS-2000"
    assert caught.value.command == "/"
    assert "still moving after 0.5 s" in str(caught.value)


def test_wait_until_idle_rejects_a_bad_timeout() -> None:
    with expected_protocol(MS2000, []) as stage, pytest.raises(ValueError, match="timeout_s"):
        stage.wait_until_idle(-1.0)


@pytest.mark.parametrize("reply", [":A", ":N-21"])
def test_halt_accepts_ack_and_halted(reply: str) -> None:
    with expected_protocol(MS2000, [("HALT", reply)]) as stage:
        stage.halt()


# --- error and garbled replies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (-1, "unknown command"),
        (-2, "unrecognized axis"),
        (-3, "missing parameters"),
        (-4, "parameter out of range"),
        (-5, "operation failed"),
        (-21, "halted"),
        (-99, "undocumented error code"),
    ],
)
def test_error_replies_name_device_command_and_meaning(code: int, meaning: str) -> None:
    with (
        expected_protocol(MS2000, [("M X=10 Y=0", f":N{code}")]) as stage,
        pytest.raises(DeviceReplyError) as caught,
    ):
        stage.move_to(1.0, 0.0)
    error = caught.value
    assert (error.device, error.command, error.reply) == ("ASI MS-2000", "M X=10 Y=0", f":N{code}")
    assert f"error {code}: {meaning}" in str(error)


def test_halt_with_another_error_still_raises() -> None:
    with expected_protocol(MS2000, [("HALT", ":N-1")]) as stage, pytest.raises(DeviceReplyError):
        stage.halt()


def test_error_on_status_poll_is_a_reply_error() -> None:
    with expected_protocol(MS2000, [("/", ":N-1")]) as stage, pytest.raises(DeviceReplyError):
        _ = stage.is_busy


def test_error_messages_are_configurable() -> None:
    with expected_protocol(
        MS2000, [("M X=0 Y=0", ":N-4")], error_messages={-4: "beyond travel"}
    ) as stage:
        with pytest.raises(DeviceReplyError, match="error -4: beyond travel"):
            stage.move_to(0.0, 0.0)
        assert stage.error_messages[-1] == "unknown command"


@pytest.mark.parametrize(
    ("command", "reply", "call"),
    [
        ("W X Y", ":A 123", lambda s: s.position_um),
        ("W X Y", ":A 1 2 3", lambda s: s.position_um),
        ("W X Y", ":A 1 abc", lambda s: s.position_um),
        ("W X Y", "#?~@!%", lambda s: s.position_um),
        ("W X Y", "N", lambda s: s.position_um),
        ("/", ":A", lambda s: s.is_busy),
        ("/", "X", lambda s: s.is_busy),
        ("S X?", ":A Y=5.0", lambda s: s.speed_mm_per_s),
        ("S X?", ":A", lambda s: s.speed_mm_per_s),
        ("M X=0 Y=0", ":A 1 2", lambda s: s.move_to(0, 0)),
        ("M X=0 Y=0", ":Ax", lambda s: s.move_to(0, 0)),
        ("V", ":A", lambda s: s.version),
        ("HALT", "B", lambda s: s.halt()),
    ],
)
def test_replies_of_the_wrong_shape_are_garbled(command: str, reply: str, call: Any) -> None:
    with (
        expected_protocol(MS2000, [(command, reply)], retry=ONE_TRY) as stage,
        pytest.raises(GarbledReply) as caught,
    ):
        call(stage)
    assert (caught.value.device, caught.value.command) == ("ASI MS-2000", command)


def test_garbled_position_is_retried() -> None:
    pairs = [("W X Y", "#?~@!"), ("W X Y", ":A 5 6")]
    with expected_protocol(MS2000, pairs, retry=RetryPolicy(attempts=2, backoff_s=0.0)) as stage:
        assert stage.position_um == pytest.approx((0.5, 0.6))


def test_relative_move_is_never_retried() -> None:
    pairs = [("R X=10 Y=0", "#?~@!")]
    with expected_protocol(MS2000, pairs, retry=RetryPolicy(attempts=3, backoff_s=0.0)) as stage:
        assert not stage.is_repeatable("R X=10 Y=0")
        assert stage.is_repeatable("M X=10 Y=0")
        with pytest.raises(GarbledReply):
            stage.move_by(1.0, 0.0)
