"""The Kurios driver byte for byte against the reference protocol (instruments.md section 1).

Pairs follow PyMeasure's convention and leave out the terminators: a command is sent with ``\\r``
and the device's ``>`` prompt ends each reply, so a query's pair reads ``"WL=550.000\\r"`` (the
line's own ``\\r`` stands before the prompt) and an accepted set command's reply is ``""``.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import pytest
from pymeasure.test import expected_protocol

import instruments.thorlabs.kurios as kurios_module
from instruments.ascii_instrument import RetryPolicy
from instruments.errors import DeviceBusyTimeout, DeviceReplyError, GarbledReply
from instruments.protocols import BandwidthMode, TunableFilter
from instruments.thorlabs import Kurios
from instruments.thorlabs.kurios import KuriosStatus, OutputMode

VB1_INIT = [
    (None, ">"),  # the power-up prompt, discarded before the first query
    ("SP?", "WLmax=730.000\rWLmin=420.000\r"),
    ("OH?", "OH=271\r"),
    ("OM=1", ""),
]
ONE_TRY = RetryPolicy(attempts=1)
#: A wait that must succeed: no load uses it up, and it ends a hang.
GENEROUS_S = 10.0


def test_framing_matches_the_reference() -> None:
    assert Kurios.WRITE_TERMINATION == "\r"
    assert Kurios.READ_TERMINATION == ">"
    assert Kurios.BAUD_RATE == 115200


def test_has_every_tunable_filter_member_without_io() -> None:
    # On Python 3.11 isinstance() against a runtime-checkable protocol reads each property (a
    # device query), so the isinstance check itself runs against the emulator in
    # tests/simulators/test_kurios_emulator.py; here the members are looked up statically.
    members = [name for name in vars(TunableFilter) if not name.startswith("_")]
    assert {"wavelength_range_nm", "wavelength_nm", "bandwidth_mode", "narrowest_mode"} <= set(
        members
    )
    with expected_protocol(Kurios, []) as kurios:
        for name in members:
            assert inspect.getattr_static(kurios, name) is not None, name
        assert callable(kurios.wait_until_ready)


@pytest.mark.parametrize("set_reply", ["", "\r"], ids=["bare-prompt", "cr-prompt"])
def test_initialize_reads_range_and_modes_and_sets_manual_mode(set_reply: str) -> None:
    pairs = [*VB1_INIT[:-1], ("OM=1", set_reply)]
    with expected_protocol(Kurios, pairs) as kurios:
        kurios.initialize()
        assert kurios.wavelength_range_nm == (420.0, 730.0)
        assert kurios.available_modes == (
            BandwidthMode.BLACK,
            BandwidthMode.WIDE,
            BandwidthMode.MEDIUM,
            BandwidthMode.NARROW,
        )
        assert kurios.narrowest_mode is BandwidthMode.NARROW
        assert kurios.options_code == 271


def test_initialize_without_a_pending_prompt_and_with_crlf_lines() -> None:
    pairs = [
        ("SP?", "\r\nWLmin=420.000\r\nWLmax=730.000\r\n"),
        ("OH?", "OH=271\r"),
        ("OM=1", ""),
    ]
    with expected_protocol(Kurios, pairs) as kurios:
        kurios.initialize()
        assert kurios.wavelength_range_nm == (420.0, 730.0)


def test_a_unit_without_narrow_offers_medium_as_narrowest_and_refuses_narrow() -> None:
    pairs = [
        ("SP?", "WLmax=730.000\rWLmin=420.000\r"),
        ("OH?", "OH=263\r"),  # 0x107: BLACK, WIDE, MEDIUM
        ("OM=1", ""),
    ]
    with expected_protocol(Kurios, pairs) as kurios:
        kurios.initialize()
        assert kurios.narrowest_mode is BandwidthMode.MEDIUM
        with pytest.raises(ValueError, match="NARROW is not offered"):
            kurios.bandwidth_mode = BandwidthMode.NARROW


def test_the_range_read_at_connect_is_enforced_before_any_byte() -> None:
    pairs = [
        ("SP?", "WLmax=1100.000\rWLmin=650.000\r"),
        ("OH?", "OH=527\r"),  # 0x20F: NIR, all modes
        ("OM=1", ""),
        ("WL=1000.000", ""),
    ]
    with expected_protocol(Kurios, pairs) as kurios:
        kurios.initialize()
        assert kurios.wavelength_range_nm == (650.0, 1100.0)
        with pytest.raises(ValueError, match=r"600 nm is outside 650\.\.1100 nm"):
            kurios.wavelength_nm = 600
        kurios.wavelength_nm = 1000


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("SP?", "WLmax=420.000\rWLmin=730.000\r")], "empty wavelength range"),
        ([("SP?", "WLmax=730.000\rWLmin=420.000\r"), ("OH?", "OH=257\r")], "no passband"),
    ],
)
def test_initialize_refuses_nonsense_capabilities(
    pairs: list[tuple[str, str]], message: str
) -> None:
    with expected_protocol(Kurios, pairs) as kurios, pytest.raises(Exception, match=message):
        kurios.initialize()


def test_identity() -> None:
    idn = "THORLABS KURIOS-VB1 SN-M00000001 HW1.0 FW3.1 CN-00000001"
    with expected_protocol(Kurios, [("*IDN?", idn + "\r")]) as kurios:
        assert kurios.identity == idn


def test_wavelength_get_and_set() -> None:
    pairs = [("WL?", "WL=550.000\r"), ("WL=632.800", "")]
    with expected_protocol(Kurios, pairs) as kurios:
        assert kurios.wavelength_nm == 550.0
        kurios.wavelength_nm = 632.8


def test_wavelength_in_whole_nanometres_rounds() -> None:
    with expected_protocol(Kurios, [("WL=550", "")], wavelength_format="%d") as kurios:
        kurios.wavelength_nm = 549.7


@pytest.mark.parametrize("value", [419.9, 730.1, float("nan"), "green"])
def test_bad_wavelength_raises_before_any_byte(value: object) -> None:
    with expected_protocol(Kurios, []) as kurios, pytest.raises(ValueError, match="wavelength"):
        kurios.wavelength_nm = value


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        (BandwidthMode.BLACK, 1),
        (BandwidthMode.WIDE, 2),
        (BandwidthMode.MEDIUM, 4),
        (BandwidthMode.NARROW, 8),
    ],
)
def test_bandwidth_mode_get_and_set(mode: BandwidthMode, code: int) -> None:
    pairs = [(f"BW={code}", ""), ("BW?", f"BW={code}\r")]
    with expected_protocol(Kurios, pairs) as kurios:
        kurios.bandwidth_mode = mode
        assert kurios.bandwidth_mode is mode


def test_bandwidth_mode_accepts_its_name_and_refuses_others_before_any_byte() -> None:
    with expected_protocol(Kurios, [("BW=4", "")]) as kurios:
        kurios.bandwidth_mode = "medium"
        with pytest.raises(ValueError, match="superwide"):
            kurios.bandwidth_mode = "superwide"


def test_unknown_bandwidth_code_is_an_error() -> None:
    with expected_protocol(Kurios, [("BW?", "BW=16\r")]) as kurios, pytest.raises(ValueError):
        _ = kurios.bandwidth_mode


def test_output_mode_get_and_set() -> None:
    pairs = [("OM=3", ""), ("OM?", "OM=3\r")]
    with expected_protocol(Kurios, pairs) as kurios:
        kurios.output_mode = OutputMode.SEQUENCE_EXTERNAL_TRIGGER
        assert kurios.output_mode is OutputMode.SEQUENCE_EXTERNAL_TRIGGER
        with pytest.raises(ValueError, match="output mode 6"):
            kurios.output_mode = 6


def test_status_ready_and_temperature() -> None:
    pairs = [("ST?", "ST=1\r"), ("ST?", "ST=1\r"), ("ST?", "ST=2\r"), ("TP?", "TP=37.0\r")]
    with expected_protocol(Kurios, pairs) as kurios:
        assert kurios.status is KuriosStatus.WARMING_UP
        assert kurios.is_ready is False
        assert kurios.is_ready is True
        assert kurios.temperature_c == 37.0


def test_wait_until_ready_polls_until_ready() -> None:
    pairs = [("ST?", "ST=0\r"), ("ST?", "ST=1\r"), ("ST?", "ST=2\r")]
    with expected_protocol(Kurios, pairs, poll_interval_s=0.001) as kurios:
        kurios.wait_until_ready(GENEROUS_S)


def test_wait_until_ready_keeps_the_settle_pause_after_a_retune() -> None:
    pairs = [("WL=600.000", ""), ("ST?", "ST=2\r")]
    with expected_protocol(Kurios, pairs, settle_s=0.1) as kurios:
        start = time.monotonic()
        kurios.wavelength_nm = 600
        kurios.wait_until_ready(GENEROUS_S)
        assert time.monotonic() - start >= 0.1


class _FakeTime:
    """A clock that advances only when slept on, so the poll count is exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_until_ready_times_out_naming_device_and_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kurios_module, "time", _FakeTime())
    pairs = [("ST?", "ST=1\r"), ("ST?", "ST=1\r")]  # at 0, and at the 0.01 s deadline
    with (
        expected_protocol(Kurios, pairs, poll_interval_s=1.0) as kurios,
        pytest.raises(DeviceBusyTimeout, match=r"Thorlabs Kurios: .*'ST\?'"),
    ):
        kurios.wait_until_ready(0.01)


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, 601.0, float("inf")])
def test_wait_until_ready_checks_its_timeout(timeout_s: float) -> None:
    with expected_protocol(Kurios, []) as kurios, pytest.raises(ValueError, match="timeout_s"):
        kurios.wait_until_ready(timeout_s)


@pytest.mark.parametrize("set_reply", ["", "\r", "\r\n"])
def test_a_set_is_acknowledged_by_a_bare_prompt_or_an_empty_line(set_reply: str) -> None:
    # Which of the two the unit sends is unverified (instruments.md: echo and set replies open).
    pairs = [("WL=600.000", set_reply), ("BW=4", set_reply), ("WL?", "WL=600.000\r")]
    with expected_protocol(Kurios, pairs) as kurios:
        kurios.wavelength_nm = 600
        kurios.bandwidth_mode = BandwidthMode.MEDIUM
        assert kurios.wavelength_nm == 600.0


def test_an_echo_of_the_command_is_tolerated() -> None:
    pairs = [("WL?", "WL?\rWL=550.000\r"), ("WL=600.000", "WL=600.000\r")]
    with expected_protocol(Kurios, pairs) as kurios:
        assert kurios.wavelength_nm == 550.0
        kurios.wavelength_nm = 600


@pytest.mark.parametrize(
    ("command", "reply"),
    [("WL?", "CMD_NOT_DEFINED\r"), ("WL=600.000", "CMD_ARG_INVALID\r"), ("WL?", "Error 5\r")],
)
def test_error_replies_raise_device_reply_error(command: str, reply: str) -> None:
    with (
        expected_protocol(Kurios, [(command, reply)]) as kurios,
        pytest.raises(DeviceReplyError) as caught,
    ):
        if command == "WL?":
            _ = kurios.wavelength_nm
        else:
            kurios.wavelength_nm = 600
    assert caught.value.device == "Thorlabs Kurios"
    assert caught.value.command == command
    assert reply.strip() in str(caught.value)


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("WL?", "#?~@!%\r"),
        ("WL?", "BW=8\r"),  # a stale reply to another query
        ("WL?", ""),  # a stale prompt
        ("WL?", "WL=550.000\rWL=551.000\r"),
        ("SP?", "WLmax=730.000\r"),
        ("*IDN?", "WL=550.000\r"),
        ("*IDN?", "#?~@!\r"),
        ("WL=600.000", "ST=2\r"),
    ],
)
def test_replies_that_do_not_fit_the_command_are_garbled(command: str, reply: str) -> None:
    with (
        expected_protocol(Kurios, [(command, reply)], retry=ONE_TRY) as kurios,
        pytest.raises(GarbledReply) as caught,
    ):
        kurios.transact(command)
    assert caught.value.device == "Thorlabs Kurios"
    assert caught.value.command == command


def test_a_garbled_reply_is_retried() -> None:
    pairs = [("WL?", "#?~@!%^*&$\r"), ("WL?", "WL=550.000\r")]
    with expected_protocol(Kurios, pairs) as kurios:
        assert kurios.wavelength_nm == 550.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"wavelength_format": "%s %s"},
        {"wavelength_format": "nm"},
        {"poll_interval_s": 0.0},
        {"settle_s": -0.1},
    ],
)
def test_constructor_checks_its_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Kurios(None, **kwargs)
