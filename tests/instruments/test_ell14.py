"""ELL14 driver pinned byte for byte; every byte comes from the instruments reference, section 2."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import pytest
from pymeasure.test import expected_protocol

import instruments.thorlabs.ell14 as ell14_module
from instruments.ascii_instrument import RetryPolicy
from instruments.errors import DeviceReplyError, GarbledReply
from instruments.protocols import PolarizationRotator
from instruments.thorlabs import ELL14
from instruments.thorlabs.ell14 import STATUS_MESSAGES, Ell14Info, Ell14Status

# model 0E, serial 11400001, year 2023, fw 17, hw 01, travel 0168 (360), pulses 00023000 (143360)
INFO = "0E11400001202317010168" + "00023000"
INIT = ("0in", "0IN" + INFO)
FAST: dict[str, Any] = {"move_pause_s": 0.0, "busy_poll_s": 0.001}
ONE_TRY = RetryPolicy(attempts=1)


def test_framing_is_the_references() -> None:
    assert ELL14.WRITE_TERMINATION == ""  # Tx has no terminator
    assert ELL14.READ_TERMINATION == "\r\n"
    assert ELL14.BAUD_RATE == 9600


def test_constructor_does_no_io_and_defaults_follow_the_reference() -> None:
    with expected_protocol(ELL14, []) as rotator:
        assert rotator.address == "0"
        assert rotator.timeout_s == 1.2  # Micro-Manager
        assert rotator.move_timeout_s == 30.0  # pylablib
        assert rotator.move_pause_s == 0.1  # pylablib
        assert rotator.reply_timeout_s("0ma00004600") == 30.0
        assert rotator.reply_timeout_s("0ho0") == 30.0
        assert rotator.reply_timeout_s("0gp") == 1.2


def test_satisfies_the_rotator_protocol_structurally() -> None:
    # On Python 3.11 isinstance() reads each property (device I/O); the emulator tests run it.
    for name in ("angle_deg", "move_to", "home", "is_busy"):
        member = inspect.getattr_static(ELL14, name, None)
        protocol_member = inspect.getattr_static(PolarizationRotator, name)
        assert member is not None, name
        assert isinstance(member, property) == isinstance(protocol_member, property), name


def test_property_docstrings_follow_pymeasure_rule() -> None:
    for name, member in vars(ELL14).items():
        if isinstance(member, property):
            assert (member.__doc__ or "").startswith(("Control", "Measure", "Set", "Get")), name


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"address": "G"}, "address 'G'"),
        ({"address": "10"}, "address '10'"),
        ({"move_pause_s": -1}, "move_pause_s -1"),
        ({"move_timeout_s": 0}, "move_timeout_s 0"),
        ({"busy_poll_s": 0}, "busy_poll_s 0"),
        ({"home_direction": "up"}, "'up'"),
    ],
)
def test_constructor_rejects_bad_settings(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ELL14("TCPIP::127.0.0.1::1::SOCKET", **kwargs)


def test_initialize_reads_info_and_calibration() -> None:
    with expected_protocol(ELL14, [INIT]) as rotator:
        info = rotator.initialize()
    assert info == Ell14Info(
        model_code=0x0E,
        serial="11400001",
        year=2023,
        firmware=0x17,
        hardware=0x01,
        travel_deg=360,
        pulses_per_revolution=143360,
    )
    assert rotator.info is info
    assert rotator.pulses_per_revolution == 143360


def test_pulses_per_revolution_come_from_the_device() -> None:
    other = "0E11400001202317010168" + "00010000"  # 65536 pulses per revolution
    with expected_protocol(
        ELL14, [("0in", "0IN" + other), ("0gp", "0PO00004000")], **FAST
    ) as rotator:
        rotator.initialize()
        assert rotator.angle_deg == pytest.approx(90.0)


def test_address_prefixes_every_command_and_is_checked_in_replies() -> None:
    with expected_protocol(
        ELL14, [("Ain", "AIN" + INFO), ("Agp", "APO00004600")], address="a"
    ) as rotator:
        assert rotator.address == "A"
        rotator.initialize()
        assert rotator.angle_deg == pytest.approx(45.0)


def test_device_reporting_no_pulses_is_an_error() -> None:
    with (
        expected_protocol(ELL14, [("0in", "0IN" + INFO[:22] + "00000000")]) as rotator,
        pytest.raises(DeviceReplyError, match="no pulses per revolution"),
    ):
        rotator.initialize()


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.angle_deg,
        lambda r: r.move_to(45.0),
        lambda r: r.move_by(10.0),
        lambda r: r.info,
    ],
)
def test_angle_operations_need_initialize_first(call: Any) -> None:
    with expected_protocol(ELL14, []) as rotator, pytest.raises(RuntimeError, match="initialize"):
        call(rotator)


@pytest.mark.parametrize(
    ("reply", "angle"),
    [
        ("0PO00004600", 45.0),  # 17920 pulses
        ("0POFFFFBA00", 315.0),  # -17920: two's complement, then modulo one turn
        ("0PO00027600", 45.0),  # one turn plus 45 deg
        ("0PO00000000", 0.0),
    ],
)
def test_angle_is_position_modulo_one_revolution(reply: str, angle: float) -> None:
    with expected_protocol(ELL14, [INIT, ("0gp", reply)]) as rotator:
        rotator.initialize()
        assert rotator.angle_deg == pytest.approx(angle)
        assert 0 <= angle < 360


def test_position_pulses_is_signed_32_bit() -> None:
    with expected_protocol(ELL14, [("0gp", "0POFFFFBA00"), ("0gp", "0PO7FFFFFFF")]) as rotator:
        assert rotator.position_pulses == -17920
        assert rotator.position_pulses == 2**31 - 1


@pytest.mark.parametrize(
    ("angle", "sent"),
    [
        (45.0, "0ma00004600"),  # the reference's example
        (0.0, "0ma00000000"),
        (90.0, "0ma00008C00"),
        (359.9999, "0ma00000000"),  # rounds to a full turn, which is 0
    ],
)
def test_move_to_sends_absolute_pulses(angle: float, sent: str) -> None:
    with expected_protocol(ELL14, [INIT, (sent, "0PO" + sent[3:])], **FAST) as rotator:
        rotator.initialize()
        rotator.move_to(angle)


@pytest.mark.parametrize("angle", [360.0, -0.5, 720.0, math.nan, math.inf])
def test_move_to_validates_before_any_byte(angle: float) -> None:
    with expected_protocol(ELL14, [INIT], **FAST) as rotator:
        rotator.initialize()
        with pytest.raises(ValueError, match=r"angle .* deg is outside 0\.\.360 deg"):
            rotator.move_to(angle)


@pytest.mark.parametrize(
    ("delta", "sent"),
    [(45.0, "0mr00004600"), (-45.0, "0mrFFFFBA00"), (720.0, "0mr00046000")],
)
def test_move_by_sends_signed_relative_pulses(delta: float, sent: str) -> None:
    with expected_protocol(ELL14, [INIT, (sent, "0PO00004600")], **FAST) as rotator:
        rotator.initialize()
        rotator.move_by(delta)


@pytest.mark.parametrize("delta", [1e7, -1e7, math.nan])
def test_move_by_validates_before_any_byte(delta: float) -> None:
    with expected_protocol(ELL14, [INIT], **FAST) as rotator:
        rotator.initialize()
        with pytest.raises(ValueError, match=r"relative move .* deg is outside"):
            rotator.move_by(delta)


def test_home_direction_is_configurable() -> None:
    pairs = [("0ho0", "0PO00000000"), ("0ho1", "0PO00000000"), ("0ho0", "0PO00000000")]
    with expected_protocol(ELL14, pairs, **FAST) as rotator:
        rotator.home()
        rotator.home("ccw")
        rotator.home("cw")
        with pytest.raises(ValueError, match="'left'"):
            rotator.home("left")
    with expected_protocol(ELL14, [("0ho1", "0PO00000000")], home_direction="ccw") as rotator:
        rotator.home()


@pytest.mark.parametrize(
    ("reply", "code", "busy"), [("0GS00", 0, False), ("0GS09", 9, True), ("0GS0D", 13, False)]
)
def test_status_and_is_busy(reply: str, code: int, busy: bool) -> None:
    with expected_protocol(ELL14, [("0gs", reply), ("0gs", reply)]) as rotator:
        status = rotator.status
        assert status == Ell14Status(code)
        assert status.message == STATUS_MESSAGES[code]
        assert rotator.is_busy is busy


def test_status_table_is_the_references() -> None:
    assert STATUS_MESSAGES[1] == "communication timeout"
    assert STATUS_MESSAGES[2] == "mechanical timeout"
    assert STATUS_MESSAGES[4] == "value out of range"
    assert STATUS_MESSAGES[9] == "busy"
    assert STATUS_MESSAGES[13] == "over current"
    assert sorted(STATUS_MESSAGES) == list(range(14))
    assert Ell14Status(14).message == "reserved status code 14"


def test_move_error_status_raises_decoded_and_clears_the_fault() -> None:
    pairs = [INIT, ("0ma00004600", "0GS02"), ("0gs", "0GS02")]
    with expected_protocol(ELL14, pairs, **FAST) as rotator:
        rotator.initialize()
        with pytest.raises(DeviceReplyError, match="mechanical timeout") as caught:
            rotator.move_to(45.0)
    assert caught.value.device == "Thorlabs ELL14 (address 0)"
    assert caught.value.command == "0ma00004600"
    assert caught.value.reply == "0GS02"


def test_busy_move_reply_is_polled_then_the_absolute_move_sent_again() -> None:
    pairs = [
        INIT,
        ("0ma00004600", "0GS09"),
        ("0gs", "0GS09"),
        ("0gs", "0GS00"),
        ("0ma00004600", "0PO00004600"),
    ]
    with expected_protocol(ELL14, pairs, **FAST) as rotator:
        rotator.initialize()
        rotator.move_to(45.0)


def test_busy_relative_move_is_not_sent_again() -> None:
    pairs = [INIT, ("0mr00004600", "0GS09"), ("0gs", "0GS00")]
    with expected_protocol(ELL14, pairs, **FAST) as rotator:
        rotator.initialize()
        with pytest.raises(DeviceReplyError, match="not sent again"):
            rotator.move_by(45.0)


def test_move_answered_with_ok_status_reads_the_position() -> None:
    pairs = [INIT, ("0ma00004600", "0GS00"), ("0gs", "0GS00"), ("0gp", "0PO00004600")]
    with expected_protocol(ELL14, pairs, **FAST) as rotator:
        rotator.initialize()
        rotator.move_to(45.0)


class _FakeTime:
    """A clock that advances only when slept on (or moved on by the test): pauses are exact."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pause_between_moves_counts_from_the_end_of_the_last_motion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _FakeTime()
    monkeypatch.setattr(ell14_module, "time", clock)
    pairs = [INIT, ("0ma00004600", "0PO00004600"), ("0ma00000000", "0PO00000000")]
    with expected_protocol(ELL14, pairs, move_pause_s=0.15) as rotator:
        rotator.initialize()
        rotator.move_to(45.0)
        assert clock.sleeps == []  # nothing moved before: no pause
        clock.now += 0.05  # 50 ms pass after that motion ended
        rotator.move_to(0.0)
    assert clock.sleeps == pytest.approx([0.1])  # the rest of the 150 ms since the end


def test_velocity_percent() -> None:
    pairs = [("0gv", "0GV32"), ("0sv64", "0GS00"), ("0sv00", "0GS00")]
    with expected_protocol(ELL14, pairs) as rotator:
        assert rotator.velocity_percent == 50
        rotator.velocity_percent = 100
        rotator.velocity_percent = 0
        with pytest.raises(ValueError, match=r"velocity 101 % is outside 0\.\.100 %"):
            rotator.velocity_percent = 101


def test_set_error_reply_raises_and_clears_the_fault() -> None:
    pairs = [("0sv32", "0GS04"), ("0gs", "0GS04")]
    with (
        expected_protocol(ELL14, pairs) as rotator,
        pytest.raises(DeviceReplyError, match="value out of range") as caught,
    ):
        rotator.velocity_percent = 50
    assert caught.value.command == "0sv32"


@pytest.mark.parametrize("unsolicited", ["0BS00", "0BO00001000", "1BS05"])
def test_unsolicited_button_lines_are_skipped(unsolicited: str) -> None:
    pairs = [INIT, ("0gp", unsolicited), (None, "0PO00004600")]
    with expected_protocol(ELL14, pairs) as rotator:
        rotator.initialize()
        assert rotator.angle_deg == pytest.approx(45.0)


def test_unsolicited_line_during_a_move_is_skipped() -> None:
    pairs = [INIT, ("0ma00004600", "0BS00"), (None, "0PO00004600")]
    with expected_protocol(ELL14, pairs, **FAST) as rotator:
        rotator.initialize()
        rotator.move_to(45.0)


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("0gp", "1PO00004600"),  # another address
        ("0gp", "0GS00"),  # wrong reply code (e.g. a stale reply)
        ("0gp", "0PO4600"),  # short data
        ("0gp", "0PO0000460a"),  # lowercase hex
        ("0gp", "#?~@!%^*&$#"),  # junk
        ("0gs", "0GS"),
        ("0in", "0IN" + INFO[:-1]),
        ("0in", "0IN0E1140!001202317010168" + "00023000"),  # bad serial
    ],
)
def test_misshapen_replies_are_garbled(command: str, reply: str) -> None:
    calls: dict[str, Callable[[ELL14], object]] = {
        "0gp": lambda r: r.position_pulses,
        "0gs": lambda r: r.status,
        "0in": lambda r: r.initialize(),
    }
    call = calls[command]
    with (
        expected_protocol(ELL14, [(command, reply)], retry=ONE_TRY) as rotator,
        pytest.raises(GarbledReply) as caught,
    ):
        call(rotator)
    assert caught.value.device == "Thorlabs ELL14 (address 0)"
    assert caught.value.command == command


def test_garbled_query_is_retried() -> None:
    pairs = [("0gp", "1PO00000000"), ("0gp", "0PO00004600")]
    with expected_protocol(ELL14, pairs) as rotator:
        assert rotator.position_pulses == 17920


def test_garbled_relative_move_is_never_retried() -> None:
    pairs = [INIT, ("0mr00004600", "#?~@!%^*&$#")]
    with expected_protocol(ELL14, pairs, **FAST) as rotator:
        rotator.initialize()
        with pytest.raises(GarbledReply, match="0mr00004600"):
            rotator.move_by(45.0)


def test_garbled_absolute_move_is_retried() -> None:
    pairs = [INIT, ("0ma00004600", "#?~@!%^*&$#"), ("0ma00004600", "0PO00004600")]
    with expected_protocol(ELL14, pairs, **FAST) as rotator:
        rotator.initialize()
        rotator.move_to(45.0)


def test_repeatability() -> None:
    with expected_protocol(ELL14, []) as rotator:
        assert rotator.is_repeatable("0ma00004600")
        assert rotator.is_repeatable("0ho0")
        assert rotator.is_repeatable("0gp")
        assert not rotator.is_repeatable("0mr00004600")
        assert not rotator.is_repeatable("0fw")
        assert not rotator.is_repeatable("0bw")
