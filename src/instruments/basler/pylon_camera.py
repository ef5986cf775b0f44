"""Basler cameras through pypylon, opened by serial number.

The same code runs against a real camera and against pylon's own camera emulation
(``PYLON_CAMEMU``), so the simulated bench exercises this driver unchanged.

Facts this driver relies on (pypylon 26.9, checked against its emulation):

* Exposure lives in ``ExposureTime`` (µs, USB3 / ace 2) or ``ExposureTimeAbs`` (µs, older GigE);
  the emulated camera has both, as independent nodes, so the family is a constructor choice that
  defaults to "whichever exists, ``ExposureTime`` first".
* Gain in dB is ``Gain``. Older GigE models only have ``GainRaw``, whose dB scale is model
  specific and not defined anywhere this project trusts, so such a camera reports its gain as
  unsupported (NotImplementedError) instead of a guessed dB value; ``set_feature("GainRaw", n)``
  still reaches it.
* ``RetrieveResult`` takes integer milliseconds (a float picks no SWIG overload), and with
  ``TimeoutHandling_Return`` a result must be checked with ``IsValid()`` before ``GrabSucceeded()``.
* ``Mono12`` grabs work in the emulation; an emulated image file is shifted to the pixel format's
  depth (a 16-bit PNG read at Mono12 gives ``value >> 4``).
* ``IsCameraDeviceRemoved()`` is meaningful only while the camera is open; the emulation fires a
  removal with its ``FirePnPCallback`` command, after which every node access raises.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from instruments.errors import DeviceDisconnected, DeviceTimeout, InstrumentError
from instruments.protocols import Frame

with warnings.catch_warnings():
    # pypylon's SWIG modules warn "builtin type SwigPyPacked has no __module__ attribute" while
    # they initialise; under an error filter (pytest's filterwarnings=error) that warning becomes
    # an exception inside the extension's init and the interpreter segfaults.
    warnings.filterwarnings(
        "ignore",
        message=r"builtin type \w+ has no __module__ attribute",
        category=DeprecationWarning,
    )
    from pypylon import genicam, pylon

log = logging.getLogger(__name__)

ExposureNode = Literal["ExposureTime", "ExposureTimeAbs"]
FeatureValue = str | int | float | bool

_US_PER_S = 1e6
_EXPOSURE_NODES: tuple[ExposureNode, ...] = ("ExposureTime", "ExposureTimeAbs")
# Pixel formats per bit depth, first preferred; GetArray unpacks the packed 12-bit ones to uint16.
_PIXEL_FORMATS: dict[int, tuple[str, ...]] = {
    8: ("Mono8",),
    12: ("Mono12", "Mono12p", "Mono12Packed"),
    16: ("Mono16",),
}
_MONO_FORMAT = re.compile(r"Mono(\d+)(?:p|Packed)?")


@dataclass(frozen=True)
class CameraInfo:
    """One camera pylon can see, as `metascan instruments list` shows it."""

    serial: str
    model: str
    device_class: str


def list_cameras(device_class: str | None = None) -> list[CameraInfo]:
    """Every camera pylon enumerates now, optionally only one transport (e.g. "BaslerUsb").

    Naming the device class skips the other transports' discovery (GigE discovery alone takes
    a quarter of a second).
    """
    factory = pylon.TlFactory.GetInstance()
    if device_class is None:
        devices = factory.EnumerateDevices()
    else:
        wanted = pylon.DeviceInfo()
        wanted.SetDeviceClass(device_class)
        devices = factory.EnumerateDevices([wanted])
    return [
        CameraInfo(
            serial=str(d.GetSerialNumber()),
            model=str(d.GetModelName()),
            device_class=str(d.GetDeviceClass()),
        )
        for d in devices
    ]


def _fmt(value: float) -> str:
    return f"{value:g}"


class BaslerCamera:
    """A Basler camera: exposure in s, gain in dB, Mono bit depth, ROI, averaged N-frame grabs.

    Build it with :meth:`open` (find by serial, create, open); the constructor only wraps an
    already open ``pylon.InstantCamera`` and does no device I/O, so it is cheap and lets tests
    wrap a camera. Every pylon call sequence holds one RLock, so a bench thread polling a
    property cannot interleave with a grab.

    Retry policy: a grab result that arrives but failed (``GrabSucceeded()`` False, e.g. an
    incomplete buffer) is logged and that frame is grabbed again, up to ``grab_retries`` times.
    A grab timeout is never retried: a missing trigger or a stalled camera does not fix itself.
    """

    def __init__(
        self,
        camera: Any,
        *,
        exposure_node: ExposureNode | None = None,
        gain_db_nodes: tuple[str, ...] = ("Gain",),
        readout_margin_s: float = 1.0,
        grab_retries: int = 2,
    ) -> None:
        """Wrap an open ``pylon.InstantCamera``.

        ``exposure_node`` forces an exposure family (both are µs); None takes ``ExposureTime``
        where it exists, else ``ExposureTimeAbs``. ``gain_db_nodes`` are the nodes taken to be in
        dB, first available wins (add "GainAbs" for a GigE model whose manual says it is dB).
        ``readout_margin_s`` is added to the exposure for every frame's timeout; the sensor
        readout and transfer time is model and link specific, so the default is generous.
        """
        if exposure_node is not None and exposure_node not in _EXPOSURE_NODES:
            raise ValueError(f"exposure node {exposure_node!r} is not one of {_EXPOSURE_NODES}")
        if not (math.isfinite(readout_margin_s) and readout_margin_s >= 0):
            raise ValueError(f"readout margin {readout_margin_s} s must be a finite value >= 0 s")
        if grab_retries < 0:
            raise ValueError(f"grab retries {grab_retries} must be >= 0")
        self._camera = camera
        self._lock = threading.RLock()
        self._forced_exposure_node = exposure_node
        self._exposure_node: str | None = None
        self._gain_db_nodes = gain_db_nodes
        self.readout_margin_s = readout_margin_s
        self.grab_retries = grab_retries
        info = camera.GetDeviceInfo()
        self.serial = str(info.GetSerialNumber())
        self.model = str(info.GetModelName())
        self.device_class = str(info.GetDeviceClass())
        vendor = str(info.GetVendorName())
        self._identity = " ".join(part for part in (vendor, self.model, self.serial) if part)
        self._closed = False

    # ---- opening and closing -----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        serial: str,
        *,
        timeout_s: float = 5.0,
        device_class: str | None = None,
        poll_interval_s: float = 0.25,
        **options: Any,
    ) -> BaslerCamera:
        """Find the camera with this serial number, open it and wrap it.

        A camera that was just powered or plugged in takes a few seconds to enumerate, so the
        search repeats until ``timeout_s``. ``device_class`` (e.g. "BaslerUsb", "BaslerGigE",
        "BaslerCamEmu") restricts the search to one transport. ``options`` go to the constructor.
        """
        device = f"Basler camera {serial}"
        command = "open"
        factory = pylon.TlFactory.GetInstance()
        wanted = pylon.DeviceInfo()
        wanted.SetSerialNumber(serial)
        if device_class is not None:
            wanted.SetDeviceClass(device_class)
        deadline = time.monotonic() + timeout_s
        while True:
            found = factory.EnumerateDevices([wanted])
            if len(found) > 0 or time.monotonic() >= deadline:
                break
            time.sleep(poll_interval_s)
        if len(found) == 0:
            seen = ", ".join(f"{c.serial} ({c.model}, {c.device_class})" for c in list_cameras())
            where = f" of class {device_class}" if device_class is not None else ""
            raise DeviceDisconnected(
                device,
                command,
                f"no camera{where} with serial {serial!r} found within {_fmt(timeout_s)} s; "
                f"cameras found: {seen or 'none'}",
            )
        try:
            camera = pylon.InstantCamera(factory.CreateDevice(found[0]))
            camera.Open()
        except genicam.GenericException as exc:
            raise InstrumentError(device, command, f"could not open the camera: {exc}") from exc
        try:
            driver = cls(camera, **options)
        except BaseException:
            camera.Close()
            camera.DestroyDevice()
            raise
        log.info("opened %s", driver.identity)
        return driver

    def close(self) -> None:
        """Release the camera so that it can be opened again (also after a removal)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._camera.IsGrabbing():
                    self._camera.StopGrabbing()
                self._camera.Close()
                self._camera.DestroyDevice()
            except genicam.GenericException as exc:
                # Closing must not mask the exception that made the caller close.
                log.warning("%s: error while closing: %s", self._identity, exc)
            log.info("closed %s", self._identity)

    def __enter__(self) -> BaslerCamera:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _call(self, command: str) -> Iterator[None]:
        """Hold the lock and turn pylon's exceptions into InstrumentErrors naming the camera."""
        with self._lock:
            if self._closed:
                raise InstrumentError(self._identity, command, "the camera is closed")
            try:
                yield
            except genicam.GenericException as exc:
                if self._removed():
                    raise DeviceDisconnected(
                        self._identity, command, "the camera has been removed"
                    ) from exc
                if isinstance(exc, genicam.TimeoutException):
                    raise DeviceTimeout(self._identity, command, str(exc)) from exc
                raise InstrumentError(self._identity, command, str(exc)) from exc

    def _removed(self) -> bool:
        try:
            return bool(self._camera.IsCameraDeviceRemoved())
        except genicam.GenericException:
            return False

    def _check_present(self, command: str) -> None:
        if self._removed():
            raise DeviceDisconnected(self._identity, command, "the camera has been removed")

    def _node(self, name: str) -> Any:
        return self._camera.GetNodeMap().GetNode(name)

    def _available(self, name: str) -> bool:
        return bool(genicam.IsAvailable(self._node(name)))

    def _writable_node(self, name: str, command: str) -> Any:
        node = self._node(name)
        if not genicam.IsWritable(node):
            raise InstrumentError(
                self._identity,
                command,
                f"{name} is not writable now (an auto mode on, or grabbing?)",
            )
        return node

    # ---- identity ----------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """Get vendor, model and serial number, e.g. "Basler Emulation 0815-0000"."""
        return self._identity

    # ---- exposure ----------------------------------------------------------------------------

    def _exposure_name(self) -> str:
        if self._exposure_node is None:
            candidates = (
                (self._forced_exposure_node,)
                if self._forced_exposure_node is not None
                else _EXPOSURE_NODES
            )
            for name in candidates:
                if self._available(name):
                    self._exposure_node = name
                    break
            else:
                raise InstrumentError(
                    self._identity, "exposure", f"none of {', '.join(candidates)} is available"
                )
        return self._exposure_node

    @property
    def exposure_node(self) -> str:
        """Get the GenICam node that holds the exposure (``ExposureTime`` or ``ExposureTimeAbs``)."""
        with self._call("get exposure node"):
            return self._exposure_name()

    @property
    def exposure_s(self) -> float:
        """Control the exposure time in s (validated against the node's range before writing)."""
        with self._call("get exposure"):
            return float(self._node(self._exposure_name()).Value) / _US_PER_S

    @exposure_s.setter
    def exposure_s(self, value: float) -> None:
        command = f"set exposure {_fmt(value)} s"
        with self._call(command):
            node = self._node(self._exposure_name())
            low, high = float(node.Min) / _US_PER_S, float(node.Max) / _US_PER_S
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"exposure {_fmt(value)} s is outside {_fmt(low)}..{_fmt(high)} s")
            self._writable_node(self._exposure_name(), command).Value = value * _US_PER_S

    @property
    def exposure_range_s(self) -> tuple[float, float]:
        """Get the shortest and longest exposure the camera accepts now, in s."""
        with self._call("get exposure range"):
            node = self._node(self._exposure_name())
            return float(node.Min) / _US_PER_S, float(node.Max) / _US_PER_S

    # ---- gain ----------------------------------------------------------------------------------

    def _gain_name(self, command: str) -> str:
        for name in self._gain_db_nodes:
            if self._available(name):
                return name
        raw = " (it has GainRaw, whose dB scale is model specific: use set_feature)"
        raise NotImplementedError(
            f"{self._identity}: {command}: no gain node in dB among {', '.join(self._gain_db_nodes)}"
            + (raw if self._available("GainRaw") else "")
        )

    @property
    def gain_db(self) -> float:
        """Control the analog gain in dB (only cameras with a gain node in dB)."""
        with self._call("get gain"):
            return float(self._node(self._gain_name("get gain")).Value)

    @gain_db.setter
    def gain_db(self, value: float) -> None:
        command = f"set gain {_fmt(value)} dB"
        with self._call(command):
            name = self._gain_name(command)
            node = self._node(name)
            low, high = float(node.Min), float(node.Max)
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"gain {_fmt(value)} dB is outside {_fmt(low)}..{_fmt(high)} dB")
            self._writable_node(name, command).Value = float(value)

    # ---- pixel format ------------------------------------------------------------------------

    @property
    def bit_depth(self) -> int:
        """Control the bits per pixel of the Mono pixel format: 8, 12 or 16."""
        with self._call("get bit depth"):
            pixel_format = str(self._node("PixelFormat").Value)
            match = _MONO_FORMAT.fullmatch(pixel_format)
            if match is None:
                raise InstrumentError(
                    self._identity, "get bit depth", f"pixel format {pixel_format} is not Mono"
                )
            return int(match.group(1))

    @bit_depth.setter
    def bit_depth(self, value: int) -> None:
        if value not in _PIXEL_FORMATS:
            raise ValueError(
                f"bit depth {value} is not one of {', '.join(map(str, _PIXEL_FORMATS))}"
            )
        command = f"set bit depth {value}"
        with self._call(command):
            offered = tuple(self._node("PixelFormat").Symbolics)
            for pixel_format in _PIXEL_FORMATS[value]:
                if pixel_format in offered:
                    break
            else:
                mono = ", ".join(f for f in offered if f.startswith("Mono")) or "none"
                raise ValueError(
                    f"bit depth {value}: {self._identity} offers none of "
                    f"{', '.join(_PIXEL_FORMATS[value])} (its Mono formats: {mono})"
                )
            self._writable_node("PixelFormat", command).Value = pixel_format

    # ---- region of interest ------------------------------------------------------------------

    def _sensor_size(self, size: str, offset: str) -> int:
        """Largest width/height at offset 0 (Width.Max shrinks as OffsetX grows)."""
        name = f"{size}Max"
        if self._available(name):
            return int(self._node(name).Value)
        return int(self._node(size).Max) + int(self._node(offset).Value)

    def _check_axis(self, axis: str, offset: int, size: int) -> None:
        size_name, offset_name = ("Width", "OffsetX") if axis == "x" else ("Height", "OffsetY")
        size_node, offset_node = self._node(size_name), self._node(offset_name)
        full = self._sensor_size(size_name, offset_name)
        size_min, size_inc = int(size_node.Min), int(size_node.Inc)
        offset_min, offset_inc = int(offset_node.Min), int(offset_node.Inc)
        if not (size_min <= size <= full) or (size - size_min) % size_inc:
            raise ValueError(
                f"ROI {size_name.lower()} {size} px is not in {size_min}..{full} px "
                f"in steps of {size_inc}"
            )
        if offset < offset_min or (offset - offset_min) % offset_inc or offset + size > full:
            raise ValueError(
                f"ROI offset_{axis} {offset} px with {size_name.lower()} {size} px does not fit "
                f"{offset_min}..{full} px (offset steps of {offset_inc})"
            )

    def _apply_axis(self, axis: str, offset: int, size: int, command: str) -> None:
        size_name, offset_name = ("Width", "OffsetX") if axis == "x" else ("Height", "OffsetY")
        # Shrinking first, or moving the offset first when growing, keeps offset + size inside
        # the sensor at every step, so neither write is refused halfway.
        if size < int(self._node(size_name).Value):
            self._writable_node(size_name, command).Value = size
            self._writable_node(offset_name, command).Value = offset
        else:
            self._writable_node(offset_name, command).Value = offset
            self._writable_node(size_name, command).Value = size

    @property
    def roi(self) -> tuple[int, int, int, int]:
        """Control the region of interest (offset_x, offset_y, width, height) in pixels."""
        with self._call("get roi"):
            return (
                int(self._node("OffsetX").Value),
                int(self._node("OffsetY").Value),
                int(self._node("Width").Value),
                int(self._node("Height").Value),
            )

    @roi.setter
    def roi(self, value: tuple[int, int, int, int]) -> None:
        if len(value) != 4 or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value
        ):
            raise ValueError(f"ROI {value!r} must be four integers (offset_x, offset_y, w, h)")
        offset_x, offset_y, width, height = (int(v) for v in value)
        command = f"set roi {offset_x},{offset_y},{width},{height}"
        with self._call(command):
            self._check_axis("x", offset_x, width)
            self._check_axis("y", offset_y, height)
            if self._camera.IsGrabbing():
                raise InstrumentError(
                    self._identity, command, "cannot change the ROI while grabbing"
                )
            self._apply_axis("x", offset_x, width, command)
            self._apply_axis("y", offset_y, height, command)

    # ---- trigger -----------------------------------------------------------------------------

    @property
    def software_trigger_mode(self) -> bool:
        """Control whether frames start only on a software trigger (else the camera free-runs
        or follows whatever trigger source was configured)."""
        with self._call("get trigger mode"):
            self._node("TriggerSelector").Value = "FrameStart"
            return (
                str(self._node("TriggerMode").Value) == "On"
                and str(self._node("TriggerSource").Value) == "Software"
            )

    @software_trigger_mode.setter
    def software_trigger_mode(self, enabled: bool) -> None:
        command = f"set software trigger {'on' if enabled else 'off'}"
        with self._call(command):
            self._writable_node("TriggerSelector", command).Value = "FrameStart"
            if enabled:
                self._writable_node("TriggerMode", command).Value = "On"
                self._writable_node("TriggerSource", command).Value = "Software"
            else:
                self._writable_node("TriggerMode", command).Value = "Off"

    # ---- grabbing ----------------------------------------------------------------------------

    def frame_timeout_ms(self) -> int:
        """Get how long one frame may take, in integer ms: the exposure plus the readout margin."""
        with self._call("get frame timeout"):
            return math.ceil((self.exposure_s + self.readout_margin_s) * 1000)

    def grab(self, frames: int, *, software_trigger: bool = True) -> Frame:
        """Acquire ``frames`` exposures and return their float64 mean.

        With ``software_trigger`` the camera is put in software-trigger mode and each frame is
        triggered here; without it the camera's own trigger configuration decides when frames
        come (free run, or a hardware line), and this only waits for them.
        """
        if isinstance(frames, bool) or not isinstance(frames, int | np.integer) or frames < 1:
            raise ValueError(f"frames {frames!r} must be an integer >= 1")
        frames = int(frames)
        command = f"grab {frames} frame{'s' if frames != 1 else ''}"
        with self._call(command):
            self._check_present(command)
            if self._camera.IsGrabbing():
                raise InstrumentError(self._identity, command, "the camera is already grabbing")
            exposure_s = self.exposure_s
            try:
                gain_db = self.gain_db
            except NotImplementedError:
                gain_db = math.nan
            bit_depth = self.bit_depth
            roi = self.roi
            pixel_format = str(self._node("PixelFormat").Value)
            if software_trigger and not self.software_trigger_mode:
                self.software_trigger_mode = True
            timeout_ms = math.ceil((exposure_s + self.readout_margin_s) * 1000)
            total, timestamp_s = self._grab_sum(frames, software_trigger, timeout_ms, command)
        extra = {"pixel_format": pixel_format, "serial": self.serial}
        return Frame(
            data=total / frames,
            frames_averaged=frames,
            exposure_s=exposure_s,
            gain_db=gain_db,
            bit_depth=bit_depth,
            timestamp_s=timestamp_s,
            camera=self._identity,
            roi=roi,
            extra=extra,
        )

    def _grab_sum(
        self, frames: int, software_trigger: bool, timeout_ms: int, command: str
    ) -> tuple[npt.NDArray[np.float64], float]:
        camera = self._camera
        total: npt.NDArray[np.float64] | None = None
        timestamp_s = math.nan
        # Cameras that cannot report trigger readiness are triggered blind; RetrieveResult's
        # timeout still bounds the wait.
        can_wait = software_trigger and bool(camera.CanWaitForFrameTriggerReady())
        camera.StartGrabbing(pylon.GrabStrategy_OneByOne)
        try:
            index = 0
            failures = 0
            while index < frames:
                started_s = time.time()
                if software_trigger:
                    if can_wait and not camera.WaitForFrameTriggerReady(
                        timeout_ms, pylon.TimeoutHandling_Return
                    ):
                        self._check_present(command)
                        raise DeviceTimeout(
                            self._identity,
                            command,
                            f"camera not ready for the trigger of frame {index} within {timeout_ms} ms",
                        )
                    camera.ExecuteSoftwareTrigger()
                result = camera.RetrieveResult(timeout_ms, pylon.TimeoutHandling_Return)
                try:
                    if not result.IsValid():
                        self._check_present(command)
                        raise DeviceTimeout(
                            self._identity,
                            command,
                            f"no frame {index} within {timeout_ms} ms (exposure + readout margin "
                            f"{_fmt(self.readout_margin_s)} s)",
                        )
                    if not result.GrabSucceeded():
                        failures += 1
                        reason = f"{result.GetErrorDescription()} (code {result.GetErrorCode():#x})"
                        self._check_present(command)
                        if failures > self.grab_retries:
                            raise InstrumentError(
                                self._identity,
                                command,
                                f"frame {index} failed {failures} times: {reason}",
                            )
                        log.warning(
                            "%s: frame %d failed (%s), retry %d of %d",
                            self._identity,
                            index,
                            reason,
                            failures,
                            self.grab_retries,
                        )
                        continue
                    image = result.GetArray()
                finally:
                    result.Release()
                if total is None:
                    total = image.astype(np.float64)
                    timestamp_s = started_s
                elif image.shape != total.shape:
                    raise InstrumentError(
                        self._identity,
                        command,
                        f"frame {index} is {image.shape}, frame 0 was {total.shape}",
                    )
                else:
                    total += image
                index += 1
                failures = 0
        finally:
            camera.StopGrabbing()
        assert total is not None  # frames >= 1 and every path that leaves the loop early raises
        return total, timestamp_s

    # ---- generic GenICam access ----------------------------------------------------------------

    def _feature_node(self, name: str) -> Any:
        node = self._node(name)
        if not genicam.IsAvailable(node):
            raise ValueError(f"{self._identity} has no available feature {name!r}")
        return node

    def get_feature(self, name: str) -> FeatureValue:
        """Get any GenICam feature's value (enumerations as their symbolic name)."""
        command = f"get {name}"
        with self._call(command):
            node = self._feature_node(name)
            if not genicam.IsReadable(node):
                raise InstrumentError(self._identity, command, f"{name} is not readable")
            value: FeatureValue = node.Value
            return value

    def set_feature(self, name: str, value: FeatureValue) -> None:
        """Set any GenICam feature, validated against its type, range and symbolics first.

        The escape hatch for what the typed properties do not cover, e.g. pointing the pylon
        emulation at a rendered frame (``TestImageSelector``, ``ImageFileMode``, ``ImageFilename``).
        """
        command = f"set {name} {value!r}"
        with self._call(command):
            node = self._feature_node(name)
            self._validate_feature(node, name, value)
            self._writable_node(name, command).Value = value

    def execute_feature(self, name: str) -> None:
        """Execute a GenICam command feature (e.g. ``UserSetLoad``)."""
        command = f"execute {name}"
        with self._call(command):
            node = self._feature_node(name)
            if not isinstance(node, pylon.CommandParameter):
                raise ValueError(f"{name} is not a command feature")
            self._writable_node(name, command).Execute()

    @staticmethod
    def _validate_feature(node: Any, name: str, value: FeatureValue) -> None:
        if isinstance(node, pylon.IntegerParameter):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} takes an integer, not {value!r}")
            low, high, inc = int(node.Min), int(node.Max), int(node.Inc)
            if not low <= value <= high or (value - low) % inc:
                raise ValueError(f"{name} {value} is not in {low}..{high} in steps of {inc}")
        elif isinstance(node, pylon.FloatParameter):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} takes a number, not {value!r}")
            low_f, high_f = float(node.Min), float(node.Max)
            if not (math.isfinite(value) and low_f <= value <= high_f):
                raise ValueError(f"{name} {_fmt(value)} is outside {_fmt(low_f)}..{_fmt(high_f)}")
        elif isinstance(node, pylon.EnumParameter):
            symbolics = tuple(node.Symbolics)
            if value not in symbolics:
                raise ValueError(f"{name} {value!r} is not one of {', '.join(symbolics)}")
        elif isinstance(node, pylon.BooleanParameter):
            if not isinstance(value, bool):
                raise ValueError(f"{name} takes True or False, not {value!r}")
        elif isinstance(node, pylon.StringParameter):
            if not isinstance(value, str):
                raise ValueError(f"{name} takes a string, not {value!r}")
        else:
            raise ValueError(f"{name} is a {type(node).__name__}, which set_feature cannot write")
