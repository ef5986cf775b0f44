"""Device state brought onto the bench lazily, each step retried a bounded number of times.

Messages that set something (``Move``, ``Rotate``, ``SetMode``, ``SetWavelength``,
``SetExposure``) only change the *wanted* state; :meth:`DeviceSync.sync` brings what differs
onto the devices right before something is measured. A resumed scan therefore walks the whole
plan but moves nothing for bands already on disk, and every frame is taken with the devices in
exactly the state the plan defines at that point: that is what makes a resumed scan's data
identical to an uninterrupted one on the simulated bench.

Faults: a step (an absolute move, a retune, a grab) that still fails after the driver's own
retries with a transient fault, or a motion that did not end in time, is retried
``[runner] step_attempts`` times in all (absolute targets make that safe, even for the rotator
whose relative moves are never retried); then :class:`ScanFault` stops the scan, naming device,
command and reply, with everything completed on disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from acquisition.bench import Bench
from acquisition.documents import Publish, Retried
from acquisition.messages import CameraRole
from acquisition.scan_config import RunnerConfig
from acquisition.scan_stats import ScanFault, ScanStats
from acquisition.time_model import DeviceTimeModel
from instruments.errors import DeviceBusyTimeout, InstrumentError, TransientFault
from instruments.protocols import BandwidthMode, Camera, Frame

log = logging.getLogger(__name__)
T = TypeVar("T")
_RETRYABLE = (TransientFault, DeviceBusyTimeout)


@dataclass
class DeviceState:
    position_um: tuple[float, float] | None = None
    angle_deg: float | None = None
    mode: BandwidthMode | None = None
    wavelength_nm: float | None = None
    settle_s: float = 0.0
    exposure_s: float | None = None
    reference_exposure_s: float | None = None


class DeviceSync:
    """The wanted and the applied device state of one bench, and every device step of a scan."""

    def __init__(
        self,
        bench: Bench,
        runner: RunnerConfig,
        time_model: DeviceTimeModel,
        stats: ScanStats,
        publish: Publish,
    ) -> None:
        self.bench = bench
        self.runner = runner
        self.model = time_model
        self.stats = stats
        self.publish = publish
        self.want = DeviceState()
        self.have = DeviceState()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reference-camera")
        # Where the devices start, for the time model of the first move and rotation.
        x_um, y_um = self.step("stage", "where", lambda: bench.stage.position_um)[:2]
        self._stage_at = (float(x_um), float(y_um))
        self._angle_at = float(self.step("rotator", "angle", lambda: bench.rotator.angle_deg))

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def camera(self, role: CameraRole) -> Camera:
        return self.bench.camera if role == "sample" else self.bench.reference_camera

    def step(self, device: str, command: str, action: Callable[[], T]) -> T:
        """Run one device step with the bounded step retry (module docstring)."""
        attempts = self.runner.step_attempts
        for attempt in range(1, attempts + 1):
            try:
                return action()
            except _RETRYABLE as exc:
                if attempt == attempts:
                    raise ScanFault(
                        f"{device}: {exc}; gave up after {attempts} attempts of {command!r}"
                    ) from exc
                self.stats.retries += 1
                log.warning(
                    "%s: %s; retrying %s (%d of %d)", device, exc, command, attempt, attempts
                )
                self.publish(Retried(device, command, attempt, str(exc)))
                time.sleep(self.runner.step_backoff_s)
            except InstrumentError as exc:
                raise ScanFault(f"{device}: {exc} (not retried: not a transient fault)") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def sync(self) -> None:
        """Bring every wanted device setting that differs onto the devices."""
        w, h, b = self.want, self.have, self.bench
        timeout = self.runner.device_timeout_s
        if w.position_um is not None and w.position_um != h.position_um:
            x, y = w.position_um

            def move() -> None:
                b.stage.move_to(x, y)
                b.stage.wait_until_idle(timeout)

            with self.stats.wall("move"):
                self.step("stage", f"move to ({x:.3f}, {y:.3f}) µm", move)
            start = h.position_um or self._stage_at
            self.stats.add_model("move", self.model.move_s(start, w.position_um))
            h.position_um = w.position_um
        if w.angle_deg is not None and w.angle_deg != h.angle_deg:
            angle = w.angle_deg
            with self.stats.wall("rotate"):
                self.step("rotator", f"move to {angle:g} deg", lambda: b.rotator.move_to(angle))
            start_deg = self._angle_at if h.angle_deg is None else h.angle_deg
            self.stats.add_model("rotate", self.model.rotate_s(start_deg, angle))
            h.angle_deg = angle
        if w.mode is not None and w.mode != h.mode:
            mode = w.mode

            def set_mode() -> None:
                b.filter.bandwidth_mode = mode
                b.filter.wait_until_ready(timeout)

            with self.stats.wall("mode"):
                self.step("filter", f"bandwidth {mode.value}", set_mode)
            self.stats.add_model("mode", self.model.filter_settle_s)
            h.mode = mode
        if w.wavelength_nm is not None and w.wavelength_nm != h.wavelength_nm:
            wl, settle = w.wavelength_nm, w.settle_s

            def retune() -> None:
                start = time.monotonic()
                b.filter.wavelength_nm = wl
                b.filter.wait_until_ready(timeout)
                rest = settle - (time.monotonic() - start)
                if rest > 0:
                    time.sleep(rest)

            with self.stats.wall("retune"):
                self.step("filter", f"wavelength {wl:g} nm", retune)
            self.stats.add_model("retune", settle)
            h.wavelength_nm = wl
        self.set_exposure("sample", w.exposure_s)
        self.set_exposure("reference", w.reference_exposure_s)

    def set_exposure(self, role: CameraRole, exposure_s: float | None) -> None:
        if exposure_s is None:
            return
        h = self.have
        current = h.exposure_s if role == "sample" else h.reference_exposure_s
        if current == exposure_s:
            return
        camera = self.camera(role)

        def write() -> None:
            camera.exposure_s = exposure_s

        self.step(f"{role} camera", f"exposure {exposure_s:g} s", write)
        if role == "sample":
            h.exposure_s = exposure_s
        else:
            h.reference_exposure_s = exposure_s

    def grab(self, role: CameraRole, frames: int) -> Frame:
        camera = self.camera(role)
        return self.step(f"{role} camera", f"grab {frames} frames", lambda: camera.grab(frames))

    def grab_pair(self, frames: int, reference_frames: int) -> tuple[Frame, Frame]:
        """Both cameras triggered together: the reference in a second thread."""
        pending = self._pool.submit(self.grab, "reference", reference_frames)
        try:
            sample = self.grab("sample", frames)
        finally:
            reference = pending.result()
        return sample, reference
