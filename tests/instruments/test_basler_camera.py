"""The Basler driver against pylon's own camera emulation (PYLON_CAMEMU, set in conftest.py).

Every test drives the real pypylon code path. Two tests wrap the emulated camera to hide one
node ("Gain", or Mono12 in PixelFormat's list), because the emulation has every node and those
refusals can be reached no other way. Removal is fired with the emulation's own
``FirePnPCallback`` command, so it needs no fake.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from instruments.basler import BaslerCamera, CameraInfo, list_cameras, pylon_camera
from instruments.errors import DeviceDisconnected, DeviceTimeout, InstrumentError
from instruments.protocols import Camera
from simulators.devices import pylon_emulation
from simulators.devices.pylon_emulation import (
    EMULATED_DEVICE_CLASS,
    enable_pylon_emulation,
    write_emulator_image,
)

SERIAL = "0815-0000"
OTHER_SERIAL = "0815-0001"  # the removal tests use this one
FAST: dict[str, Any] = {"timeout_s": 0, "device_class": EMULATED_DEVICE_CLASS}
#: Per-frame grab timeout beyond the exposure for every grab that must succeed: a busy machine
#: cannot use it up. Only the tests whose point is a grab timeout set a short one (SHORT_MARGIN_S).
READOUT_MARGIN_S = 5.0
SHORT_MARGIN_S = 0.2


def open_camera(serial: str = SERIAL, **options: Any) -> BaslerCamera:
    options.setdefault("readout_margin_s", READOUT_MARGIN_S)
    return BaslerCamera.open(serial, **FAST, **options)


@pytest.fixture
def camera() -> Iterator[BaslerCamera]:
    with open_camera() as cam:
        yield cam


@pytest.fixture
def image() -> npt.NDArray[np.uint16]:
    rng = np.random.default_rng(7)
    return rng.integers(0, 65536, size=(48, 64), dtype=np.uint16)


def show_image(cam: BaslerCamera, path: Path, image: npt.NDArray[np.uint16]) -> None:
    """Point the emulated camera at ``image`` with a ROI of the image's size, at 16 bits."""
    write_emulator_image(path, image)
    cam.set_feature("TestImageSelector", "Off")
    cam.set_feature("ImageFileMode", "On")
    cam.set_feature("ImageFilename", str(path))
    cam.bit_depth = 16
    cam.roi = (0, 0, image.shape[1], image.shape[0])


@pytest.fixture
def imaging(camera: BaslerCamera, tmp_path: Path, image: npt.NDArray[np.uint16]) -> BaslerCamera:
    show_image(camera, tmp_path / "frame.png", image)
    return camera


class _NodeMap:
    def __init__(self, real: Any, overrides: dict[str, Any]) -> None:
        self._real = real
        self._overrides = overrides

    def GetNode(self, name: str) -> Any:  # noqa: N802 (pylon's name)
        return self._overrides[name] if name in self._overrides else self._real.GetNode(name)


class _HidingCamera:
    """The real emulated camera with some nodes replaced, for refusals the emulation cannot show."""

    def __init__(self, real: Any, overrides: dict[str, Any]) -> None:
        self._real = real
        self._overrides = overrides

    def GetNodeMap(self) -> _NodeMap:  # noqa: N802 (pylon's name)
        return _NodeMap(self._real.GetNodeMap(), self._overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _RetrieveSpy:
    """The real emulated camera, with the timeout of every ``RetrieveResult`` recorded and an
    optional hook run before each (the frame waits can be counted instead of timed)."""

    def __init__(self, real: Any, before_retrieve: Callable[[], None] | None = None) -> None:
        self._real = real
        self._before = before_retrieve
        self.retrieve_timeouts_ms: list[int] = []

    def RetrieveResult(self, timeout_ms: int, handling: Any) -> Any:  # noqa: N802 (pylon's name)
        self.retrieve_timeouts_ms.append(timeout_ms)
        if self._before is not None:
            self._before()
        return self._real.RetrieveResult(timeout_ms, handling)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _FakeTime:
    """A clock that advances only when slept on, so a search's sleeps are exact."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class _Symbolics:
    def __init__(self, real: Any, hidden: str) -> None:
        self.Value = real.Value
        self.Symbolics = tuple(s for s in real.Symbolics if s != hidden)


def raw_camera(serial: str) -> Any:
    # Imported here, after the driver: a first import of pypylon under pytest's error filter for
    # warnings crashes the interpreter, and the driver's import is the guarded one.
    from pypylon import pylon

    info = pylon.DeviceInfo()
    info.SetSerialNumber(serial)
    raw = pylon.InstantCamera(pylon.TlFactory.GetInstance().CreateDevice(info))
    raw.Open()
    return raw


# ---- finding and opening ------------------------------------------------------------------------


def test_list_cameras_shows_the_emulated_cameras() -> None:
    emulated = list_cameras(EMULATED_DEVICE_CLASS)
    assert emulated[:2] == [
        CameraInfo(SERIAL, "Emulation", EMULATED_DEVICE_CLASS),
        CameraInfo(OTHER_SERIAL, "Emulation", EMULATED_DEVICE_CLASS),
    ]
    assert {c.serial for c in emulated} <= {c.serial for c in list_cameras()}


def test_open_by_serial_gives_identity_and_satisfies_the_protocol() -> None:
    with BaslerCamera.open(OTHER_SERIAL, timeout_s=0) as cam:  # every transport searched
        assert cam.identity == f"Basler Emulation {OTHER_SERIAL}"
        assert (cam.serial, cam.model, cam.device_class) == (
            OTHER_SERIAL,
            "Emulation",
            EMULATED_DEVICE_CLASS,
        )
        assert isinstance(cam, Camera)


def test_missing_serial_is_one_clear_error_listing_what_was_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _FakeTime()
    monkeypatch.setattr(pylon_camera, "time", clock)
    with pytest.raises(DeviceDisconnected) as info:
        BaslerCamera.open(
            "9999", timeout_s=0.3, poll_interval_s=0.1, device_class=EMULATED_DEVICE_CLASS
        )
    # Searched again every poll interval until the timeout, and no longer.
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1])
    message = str(info.value)
    assert "'9999'" in message and SERIAL in message and OTHER_SERIAL in message
    assert "\n" not in message
    assert info.value.device == "Basler camera 9999" and info.value.command == "open"


def test_context_manager_closes_and_a_closed_camera_refuses_work() -> None:
    with open_camera() as cam:
        pass
    with pytest.raises(InstrumentError, match="closed"):
        _ = cam.exposure_s
    cam.close()  # idempotent


# ---- exposure and gain ----------------------------------------------------------------------


def test_exposure_in_seconds_through_exposure_time(camera: BaslerCamera) -> None:
    assert camera.exposure_node == "ExposureTime"
    assert camera.exposure_range_s == pytest.approx((1e-6, 10.0))
    camera.exposure_s = 0.0025
    assert camera.exposure_s == pytest.approx(0.0025)
    assert camera.get_feature("ExposureTime") == pytest.approx(2500.0)


def test_exposure_in_seconds_through_exposure_time_abs() -> None:
    # The emulation has both families as independent nodes, so the forced Abs path must leave
    # ExposureTime alone and use the Abs node's own (narrower) range.
    with open_camera(exposure_node="ExposureTimeAbs") as cam:
        before = cam.get_feature("ExposureTime")
        assert cam.exposure_node == "ExposureTimeAbs"
        assert cam.exposure_range_s == pytest.approx((1e-4, 3.0))
        cam.exposure_s = 0.0042
        assert cam.exposure_s == pytest.approx(0.0042)
        assert cam.get_feature("ExposureTimeAbs") == pytest.approx(4200.0)
        assert cam.get_feature("ExposureTime") == before
        with pytest.raises(ValueError, match=r"exposure 5 s is outside 0\.0001\.\.3 s"):
            cam.exposure_s = 5.0  # fine for ExposureTime, not for ExposureTimeAbs


@pytest.mark.parametrize("value", [20.0, 0.0, -1.0, math.nan])
def test_out_of_range_exposure_is_refused_before_writing(
    camera: BaslerCamera, value: float
) -> None:
    before = camera.get_feature("ExposureTime")
    with pytest.raises(ValueError, match=r"outside 1e-06\.\.10 s"):
        camera.exposure_s = value
    assert camera.get_feature("ExposureTime") == before


def test_unknown_exposure_node_is_refused() -> None:
    with pytest.raises(ValueError, match="ExposureTimeRaw"):
        BaslerCamera(object(), exposure_node="ExposureTimeRaw")  # type: ignore[arg-type]


def test_gain_in_db(camera: BaslerCamera) -> None:
    camera.gain_db = 6.0
    assert camera.gain_db == pytest.approx(6.0, abs=1e-3)
    with pytest.raises(ValueError, match=r"gain 60 dB is outside 0\.\.48 dB"):
        camera.gain_db = 60.0
    assert camera.gain_db == pytest.approx(6.0, abs=1e-3)


def test_a_camera_with_only_gain_raw_reports_gain_as_unsupported(
    tmp_path: Path, image: npt.NDArray[np.uint16]
) -> None:
    raw = raw_camera(SERIAL)
    hidden = raw.GetNodeMap().GetNode("GainAbs")  # a real node that is not available
    hiding = _HidingCamera(raw, {"Gain": hidden})
    with BaslerCamera(hiding, readout_margin_s=READOUT_MARGIN_S) as cam:
        with pytest.raises(NotImplementedError, match="GainRaw"):
            _ = cam.gain_db
        with pytest.raises(NotImplementedError, match="GainRaw"):
            cam.gain_db = 0.0
        cam.set_feature("GainRaw", 300)  # still reachable as a raw feature
        assert cam.get_feature("GainRaw") == 300
        show_image(cam, tmp_path / "frame.png", image)
        frame = cam.grab(1)
        assert math.isnan(frame.gain_db)
        np.testing.assert_array_equal(frame.data, image)


# ---- pixel format ---------------------------------------------------------------------------


@pytest.mark.parametrize(("bits", "pixel_format"), [(8, "Mono8"), (16, "Mono16"), (12, "Mono12")])
def test_bit_depth_selects_the_mono_pixel_format(
    camera: BaslerCamera, bits: int, pixel_format: str
) -> None:
    camera.bit_depth = bits
    assert camera.bit_depth == bits
    assert camera.get_feature("PixelFormat") == pixel_format


def test_mono12_grabs_the_emulated_image_shifted_to_12_bits(
    imaging: BaslerCamera, image: npt.NDArray[np.uint16]
) -> None:
    # The emulation does grab at Mono12: it scales the 16-bit PNG by >> 4.
    imaging.bit_depth = 12
    frame = imaging.grab(2)
    assert (frame.bit_depth, frame.full_scale_counts) == (12, 4095)
    np.testing.assert_array_equal(frame.data, image >> 4)


def test_bit_depth_12_is_refused_where_the_camera_lacks_it() -> None:
    raw = raw_camera(SERIAL)
    no_mono12 = _Symbolics(raw.GetNodeMap().GetNode("PixelFormat"), "Mono12")
    with (
        BaslerCamera(_HidingCamera(raw, {"PixelFormat": no_mono12})) as cam,
        pytest.raises(ValueError, match=r"bit depth 12: .* offers none of Mono12, Mono12p"),
    ):
        cam.bit_depth = 12
    assert raw.IsOpen() is False


@pytest.mark.parametrize("bits", [10, 0, 32])
def test_unsupported_bit_depth_is_refused(camera: BaslerCamera, bits: int) -> None:
    with pytest.raises(ValueError, match=f"bit depth {bits} is not one of 8, 12, 16"):
        camera.bit_depth = bits
    assert camera.get_feature("PixelFormat") == "Mono8"


# ---- region of interest ---------------------------------------------------------------------


def test_roi_set_and_get_in_both_orders(camera: BaslerCamera) -> None:
    assert camera.roi == (0, 0, 1024, 1040)
    camera.roi = (4000, 4000, 96, 96)  # must shrink before moving the offsets
    assert camera.roi == (4000, 4000, 96, 96)
    camera.roi = (0, 0, 4096, 4096)  # must move the offsets before growing
    assert camera.roi == (0, 0, 4096, 4096)
    camera.roi = (8, 4, 32, 24)
    assert camera.roi == (8, 4, 32, 24)


@pytest.mark.parametrize(
    ("roi", "match"),
    [
        ((0, 0, 0, 10), "width 0 px is not in 1..4096"),
        ((0, 0, 5000, 10), "width 5000 px is not in 1..4096"),
        ((4000, 0, 200, 10), "offset_x 4000 px with width 200 px does not fit"),
        ((0, -1, 10, 10), "offset_y -1 px"),
        ((0, 0, 10.0, 10), "must be four integers"),
        ((0, 0, 10), "must be four integers"),
    ],
)
def test_invalid_roi_is_refused_before_writing(camera: BaslerCamera, roi: Any, match: str) -> None:
    before = camera.roi
    with pytest.raises(ValueError, match=match):
        camera.roi = roi
    assert camera.roi == before


def test_roi_crops_the_emulated_image(imaging: BaslerCamera, image: npt.NDArray[np.uint16]) -> None:
    imaging.roi = (8, 4, 32, 24)
    frame = imaging.grab(1)
    assert frame.roi == (8, 4, 32, 24)
    np.testing.assert_array_equal(frame.data, image[4:28, 8:40])


# ---- grabbing -------------------------------------------------------------------------------


def test_grabbed_frame_is_the_injected_image_with_its_metadata(
    imaging: BaslerCamera, image: npt.NDArray[np.uint16]
) -> None:
    imaging.exposure_s = 0.002
    imaging.gain_db = 3.0
    before = time.time()
    frame = imaging.grab(1)
    assert frame.data.dtype == np.float64
    np.testing.assert_array_equal(frame.data, image)
    assert frame.frames_averaged == 1
    assert frame.exposure_s == pytest.approx(0.002)
    assert frame.gain_db == pytest.approx(3.0, abs=1e-3)
    assert frame.bit_depth == 16
    assert frame.roi == (0, 0, 64, 48)
    assert frame.camera == imaging.identity
    assert before <= frame.timestamp_s <= time.time()
    assert frame.extra["pixel_format"] == "Mono16"


def test_averaging_sums_in_float64(camera: BaslerCamera, tmp_path: Path) -> None:
    # Near full scale, a uint16 sum of 5 frames would wrap; the float64 mean must not.
    bright = np.full((16, 24), 65535, dtype=np.uint16)
    bright[::2, ::3] = 65000
    show_image(camera, tmp_path / "bright.png", bright)
    frame = camera.grab(5)
    assert frame.frames_averaged == 5
    assert frame.data.dtype == np.float64
    np.testing.assert_array_equal(frame.data, bright)


def test_software_trigger_grab_sets_and_keeps_software_trigger_mode(
    imaging: BaslerCamera, image: npt.NDArray[np.uint16]
) -> None:
    imaging.software_trigger_mode = False
    assert imaging.get_feature("TriggerMode") == "Off"
    frame = imaging.grab(3, software_trigger=True)
    np.testing.assert_array_equal(frame.data, image)
    assert imaging.software_trigger_mode is True
    assert (imaging.get_feature("TriggerMode"), imaging.get_feature("TriggerSource")) == (
        "On",
        "Software",
    )


def test_free_running_grab_without_software_trigger(
    imaging: BaslerCamera, image: npt.NDArray[np.uint16]
) -> None:
    imaging.software_trigger_mode = False
    frame = imaging.grab(3, software_trigger=False)
    np.testing.assert_array_equal(frame.data, image)
    assert imaging.software_trigger_mode is False


def test_a_missing_trigger_times_out_naming_the_camera() -> None:
    spy = _RetrieveSpy(raw_camera(SERIAL))
    with BaslerCamera(spy, readout_margin_s=SHORT_MARGIN_S) as camera:  # the timeout must fire
        camera.exposure_s = 0.001
        camera.software_trigger_mode = True
        assert camera.frame_timeout_ms() == 201
        started = time.monotonic()
        with pytest.raises(DeviceTimeout) as info:
            camera.grab(3, software_trigger=False)  # trigger mode on, but nobody triggers
        assert time.monotonic() - started >= 0.2  # pylon did wait the frame timeout
        # One wait of the frame timeout, for frame 0, then the error: no retry, no longer wait.
        assert spy.retrieve_timeouts_ms == [201]
        assert info.value.device == camera.identity
        assert info.value.command == "grab 3 frames"
        assert "no frame 0 within 201 ms" in str(info.value)
        camera.readout_margin_s = READOUT_MARGIN_S
        assert camera.grab(1).frames_averaged == 1  # grabbing was stopped; the camera still works


@pytest.mark.parametrize("frames", [0, -2, 1.5, True])
def test_invalid_frame_count_is_refused(camera: BaslerCamera, frames: Any) -> None:
    with pytest.raises(ValueError, match=r"frames .* must be an integer >= 1"):
        camera.grab(frames)


def test_failed_buffers_are_retried_and_logged(
    imaging: BaslerCamera, image: npt.NDArray[np.uint16], caplog: pytest.LogCaptureFixture
) -> None:
    imaging.set_feature("ForceFailedBufferCount", 2)
    imaging.execute_feature("ForceFailedBuffer")
    with caplog.at_level(logging.WARNING, logger=pylon_camera.__name__):
        frame = imaging.grab(2)
    np.testing.assert_array_equal(frame.data, image)
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2
    assert "frame 0 failed" in retries[0].getMessage()


def test_failures_beyond_the_retries_name_camera_and_frame(
    camera: BaslerCamera, tmp_path: Path
) -> None:
    camera.grab_retries = 1
    camera.set_feature("TestImageSelector", "Off")
    camera.set_feature("ImageFileMode", "On")
    camera.set_feature("ImageFilename", str(tmp_path / "absent.png"))
    with pytest.raises(InstrumentError) as info:
        camera.grab(2)
    assert not isinstance(info.value, DeviceTimeout | DeviceDisconnected)
    assert info.value.device == camera.identity
    assert "frame 0 failed 2 times" in str(info.value)
    assert "Failed to load image file" in str(info.value)


def test_grab_and_property_reads_from_two_threads_do_not_interleave(
    imaging: BaslerCamera, image: npt.NDArray[np.uint16]
) -> None:
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            for _ in range(40):
                assert imaging.roi == (0, 0, 64, 48)
                assert imaging.bit_depth == 16
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    frames = [imaging.grab(2) for _ in range(3)]
    thread.join(timeout=30)
    assert not thread.is_alive() and not errors
    for frame in frames:
        np.testing.assert_array_equal(frame.data, image)


# ---- removal --------------------------------------------------------------------------------


def test_a_removed_camera_is_reported_before_grabbing() -> None:
    with open_camera(OTHER_SERIAL) as cam:
        cam.execute_feature("FirePnPCallback")  # the emulation's own device-removal event
        with pytest.raises(DeviceDisconnected) as info:
            cam.grab(1)
        assert info.value.device == cam.identity and info.value.command == "grab 1 frame"
        with pytest.raises(DeviceDisconnected, match="removed"):
            _ = cam.exposure_s
    with open_camera(OTHER_SERIAL) as again:  # closing released it: it can be opened anew
        assert again.grab(1).frames_averaged == 1


def test_a_removal_during_a_grab_is_reported_as_disconnected() -> None:
    raw = raw_camera(OTHER_SERIAL)
    grabbing_at_removal: list[bool] = []

    def remove() -> None:
        # Once the grab is waiting for its first frame. The driver holds its lock for the whole
        # grab, so the removal is fired on the pylon camera directly, as the hardware would,
        # from another thread; it is over before the wait starts, so no timing decides the order.
        if not grabbing_at_removal:
            grabbing_at_removal.append(bool(raw.IsGrabbing()))
            remover = threading.Thread(target=raw.FirePnPCallback.Execute)
            remover.start()
            remover.join()

    spy = _RetrieveSpy(raw, before_retrieve=remove)
    # pylon's emulation notices a removal only when the frame wait ends: a short one, on purpose.
    with BaslerCamera(spy, readout_margin_s=SHORT_MARGIN_S) as cam:
        cam.software_trigger_mode = True
        timeout_ms = cam.frame_timeout_ms()
        with pytest.raises(DeviceDisconnected) as info:
            cam.grab(2, software_trigger=False)
        assert grabbing_at_removal == [True]
        assert spy.retrieve_timeouts_ms == [timeout_ms]  # one wait, then disconnected, no retry
        assert info.value.device == cam.identity and info.value.command == "grab 2 frames"


# ---- generic features -----------------------------------------------------------------------


def test_set_and_get_feature(camera: BaslerCamera, tmp_path: Path) -> None:
    camera.set_feature("ImageFilename", str(tmp_path / "x.png"))
    assert camera.get_feature("ImageFilename") == str(tmp_path / "x.png")
    camera.set_feature("ReverseX", True)
    assert camera.get_feature("ReverseX") is True
    camera.set_feature("BlackLevel", 4)
    assert camera.get_feature("BlackLevel") == 4


@pytest.mark.parametrize(
    ("name", "value", "error", "match"),
    [
        ("NoSuchFeature", 1, ValueError, "no available feature 'NoSuchFeature'"),
        ("Width", "12", ValueError, "Width takes an integer"),
        ("Width", 5000, ValueError, r"Width 5000 is not in 1\.\.4096"),
        ("Gain", 99.0, ValueError, r"Gain 99 is outside 0\.\.48"),
        ("PixelFormat", "Mono99", ValueError, "PixelFormat 'Mono99' is not one of Mono8"),
        ("ReverseX", 1, ValueError, "True or False"),
        ("ImageFilename", 3, ValueError, "takes a string"),
        ("TriggerSoftware", 1, ValueError, "CommandParameter"),
        ("SensorWidth", 1024, InstrumentError, "SensorWidth is not writable"),
    ],
)
def test_invalid_feature_writes_are_refused(
    camera: BaslerCamera, name: str, value: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        camera.set_feature(name, value)
    assert camera.roi == (0, 0, 1024, 1040)


def test_execute_feature_refuses_a_non_command(camera: BaslerCamera) -> None:
    with pytest.raises(ValueError, match="not a command"):
        camera.execute_feature("Width")


# ---- the emulation helpers ------------------------------------------------------------------


def test_pylon_reads_pylon_camemu_at_enumeration(monkeypatch: pytest.MonkeyPatch) -> None:
    # pypylon is imported and its factory built long before this test: the variable still
    # takes effect, because pylon reads it at every enumeration.
    from pypylon import pylon

    assert pylon.TlFactory.GetInstance() is not None
    monkeypatch.delenv("PYLON_CAMEMU")
    assert list_cameras(EMULATED_DEVICE_CLASS) == []
    enable_pylon_emulation(3)
    assert [c.serial for c in list_cameras(EMULATED_DEVICE_CLASS)] == [
        "0815-0000",
        "0815-0001",
        "0815-0002",
    ]


def test_enable_pylon_emulation_raises_when_it_did_not_take_effect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No pylon release at hand reads the variable too early, so the enumeration a too-late call
    # would see (no emulated cameras) is substituted.
    monkeypatch.setenv("PYLON_CAMEMU", "2")
    monkeypatch.setattr(pylon_emulation, "_emulated_serials", list)
    with pytest.raises(RuntimeError, match="too late"):
        enable_pylon_emulation(2)


@pytest.mark.parametrize("count", [0, 257])
def test_enable_pylon_emulation_refuses_impossible_counts(count: int) -> None:
    with pytest.raises(ValueError, match=r"outside 1\.\.256"):
        enable_pylon_emulation(count)


def test_write_emulator_image_writes_an_exact_16_bit_png(
    tmp_path: Path, image: npt.NDArray[np.uint16]
) -> None:
    target = tmp_path / "frame.png"
    assert write_emulator_image(target, image) == target
    write_emulator_image(target, image[::-1])  # replaced atomically, nothing left beside it
    with Image.open(target) as png:
        assert png.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(png), image[::-1])
    assert [p.name for p in tmp_path.iterdir()] == ["frame.png"]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.float64), np.zeros((4, 4, 3), np.uint16), np.zeros((0, 4), np.uint16)],
)
def test_write_emulator_image_refuses_other_arrays(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="2-D uint16"):
        write_emulator_image(tmp_path / "x.png", bad)
    assert not list(tmp_path.iterdir())
