"""The run engine: executes a scan plan's messages on a bench, one handler per message type.

Read it in one sitting: :meth:`RunEngine.run` sends each answer into the plan and looks the next
message's handler up in a registry (type -> method); handlers that set something only change the
wanted device state (:mod:`acquisition.device_sync` brings it onto the devices right before a
measurement, with the step retries); handlers that measure publish a document
(:mod:`acquisition.documents`) to the subscribers, of which the hypercube store
(:mod:`acquisition.hypercube_store`) writes the files; after every band's grab the suspenders
(:mod:`acquisition.suspenders`) may hold the scan and have the band re-taken. Resume is by key:
what the store already holds is skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from acquisition.autoexpose import ExposureResult, auto_expose
from acquisition.bench import Bench
from acquisition.device_sync import DeviceSync
from acquisition.documents import (
    ArrayDone,
    BandMeasured,
    BandSkipped,
    DarkChecked,
    DarkMeasured,
    Document,
    ExposureFound,
    Subscriber,
)
from acquisition.hypercube_store import HypercubeStore
from acquisition.messages import (
    Acquire,
    AcquireDark,
    Answer,
    AutoExpose,
    CameraRole,
    CheckDark,
    Checkpoint,
    CloseFlat,
    CloseTile,
    DarkDrift,
    Exposures,
    Message,
    Move,
    OpenFlat,
    OpenTile,
    Plan,
    Rotate,
    SetExposure,
    SetMode,
    SetWavelength,
)
from acquisition.scan_config import ScanConfig
from acquisition.scan_stats import ScanStats
from acquisition.suspenders import Suspender
from acquisition.time_model import DeviceTimeModel
from dataset.quality import BandFlag
from instruments.protocols import Frame

log = logging.getLogger(__name__)
Handler = Callable[[Any], Answer]


class RunEngine:
    """Runs one plan on ``bench``; ``subscribers`` see every document, the store first."""

    def __init__(
        self,
        bench: Bench,
        config: ScanConfig,
        store: HypercubeStore,
        time_model: DeviceTimeModel,
        *,
        subscribers: Sequence[Subscriber] = (),
        suspenders: Sequence[Suspender] = (),
        stats: ScanStats | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.subscribers: list[Subscriber] = [store, *subscribers]
        self.suspenders = list(suspenders)
        self.stats = ScanStats() if stats is None else stats
        self.devices = DeviceSync(bench, config.runner, time_model, self.stats, self.publish)
        self.model = time_model
        self._exposures: dict[tuple[str, float], ExposureResult] = {}
        self._current_array: str | None = None
        self.handlers: dict[type, Handler] = {
            Move: self._move,
            Rotate: self._rotate,
            SetMode: self._set_mode,
            SetWavelength: self._set_wavelength,
            SetExposure: self._set_exposure,
            AutoExpose: self._auto_expose,
            OpenFlat: self._open,
            OpenTile: self._open,
            CloseFlat: lambda m: self.store.close((m.array, None)),
            CloseTile: lambda m: self.store.close((m.array, m.tile)),
            Acquire: self._acquire,
            AcquireDark: self._acquire_dark,
            CheckDark: self._check_dark,
            Checkpoint: lambda m: None,  # every write is durable already
        }

    def publish(self, doc: Document) -> None:
        for subscriber in self.subscribers:
            subscriber(doc)

    def run(self, plan: Plan) -> ScanStats:
        try:
            answer: Answer = None
            while True:
                try:
                    message: Message = plan.send(answer)
                except StopIteration:
                    break
                handler = self.handlers.get(type(message))
                if handler is None:
                    raise TypeError(f"the engine does not know message {message!r}")
                answer = handler(message)
            self._array_boundary(None)
        finally:
            self.store.close_all()
            self.devices.close()
        return self.stats

    # -- wanted state ------------------------------------------------------------------------

    def _move(self, m: Move) -> None:
        self.devices.want.position_um = (m.x_um, m.y_um)

    def _rotate(self, m: Rotate) -> None:
        self.devices.want.angle_deg = m.angle_deg % 360.0

    def _set_mode(self, m: SetMode) -> None:
        self.devices.want.mode = m.mode

    def _set_wavelength(self, m: SetWavelength) -> None:
        self.devices.want.wavelength_nm, self.devices.want.settle_s = m.wavelength_nm, m.settle_s

    def _set_exposure(self, m: SetExposure) -> None:
        self.devices.want.exposure_s = m.exposure_s
        self.devices.want.reference_exposure_s = m.reference_exposure_s

    # -- files -------------------------------------------------------------------------------

    def _open(self, m: OpenFlat | OpenTile) -> None:
        if isinstance(m, OpenTile):
            self._array_boundary(m.array)
        self.stats.darks_copied += self.store.open(m)

    def _array_boundary(self, next_array: str | None) -> None:
        done = self._current_array
        if done is not None and next_array != done:
            self.publish(ArrayDone(done))
        self._current_array = next_array

    # -- measurements ------------------------------------------------------------------------

    def _auto_expose(self, m: AutoExpose) -> Exposures:
        key = (m.polarization, m.wavelength_nm)
        result = self.store.recorded_exposure(m.array, key)
        if result is None:
            d = self.devices
            d.sync()

            def grab_pair(sample_s: float, reference_s: float) -> tuple[Frame, Frame]:
                d.set_exposure("sample", sample_s)
                d.set_exposure("reference", reference_s)
                self.stats.add_model(
                    "autoexpose", self.model.frames_s(1, max(sample_s, reference_s))
                )
                return d.grab_pair(1, 1)

            with self.stats.wall("autoexpose"):
                result = auto_expose(
                    grab_pair,
                    self.config.exposure,
                    d.bench.camera.exposure_range_s,
                    d.bench.reference_camera.exposure_range_s,
                    start_s=self.config.exposure.estimated_s,
                )
            self.stats.autoexposures += 1
            self.publish(ExposureFound(m, result))
            if result.low_signal:
                log.warning(
                    "glass at %s %g nm reaches only %.0f %% of full scale at the longest "
                    "exposure: the band is flagged LOW_SIGNAL",
                    m.polarization,
                    m.wavelength_nm,
                    100 * result.sample_level,
                )
        self._exposures[key] = result
        return Exposures(result.sample_s, result.reference_s)

    def _acquire(self, m: Acquire) -> None:
        if self.store.band_done(m):
            self.stats.bands_skipped += 1
            self.publish(BandSkipped(m))
            return
        expected = self._exposures[m.polarization, m.wavelength_nm]
        flags = BandFlag.LOW_SIGNAL if expected.low_signal else BandFlag.NONE
        s, d = self.stats, self.devices
        start = time.perf_counter()
        attempt = 0
        while True:
            d.sync()
            grab_start = time.perf_counter()
            with s.wall("acquire"):
                sample, reference = d.grab_pair(m.frames, m.reference_frames)
            s.grab_wall_s += time.perf_counter() - grab_start
            s.add_model(
                "acquire",
                max(
                    self.model.frames_s(m.frames, sample.exposure_s),
                    self.model.frames_s(m.reference_frames, reference.exposure_s),
                ),
            )
            tripped = [x for x in self.suspenders if x.tripped(m, sample, reference, expected)]
            if not tripped:
                break
            for suspender in tripped:
                flags |= suspender.flag
                s.suspensions[suspender.name] = s.suspensions.get(suspender.name, 0) + 1
                suspender.wait(d, m, attempt)
            attempt += 1
            worn = [x for x in tripped if attempt > x.max_retakes]
            if worn:
                raise worn[0].gave_up(m)
        flags |= self._saturation(sample) | self._saturation(reference)
        # The requested (ladder) exposures, not the camera's readback: a camera rounds an
        # exposure to its own step (1 µs on a Basler), identically for a band and its dark, so
        # the requested value is the one that names the matching dark exactly.
        exposure_s, reference_s = d.want.exposure_s, d.want.reference_exposure_s
        if exposure_s is None or reference_s is None:
            raise ValueError(f"the plan acquired {m} before any SetExposure")
        written = time.perf_counter()
        doc = BandMeasured(
            m,
            sample.data,
            float(reference.data.mean()),
            exposure_s,
            reference_s,
            sample.frames_averaged,
            sample.timestamp_s,
            int(flags),
            wall_s=0.0,
        )
        self.store(doc)  # the band is on disk before anyone else hears of it
        wall = time.perf_counter() - start
        s.write_wall_s += time.perf_counter() - written
        s.bands_acquired += 1
        s.flagged_bands += int(flags != BandFlag.NONE)
        s.exposure_s += sample.exposure_s * sample.frames_averaged
        s.band_wall_s += wall
        self._tell_others(dataclasses.replace(doc, wall_s=wall))

    def _tell_others(self, doc: Document) -> None:
        for subscriber in self.subscribers[1:]:
            subscriber(doc)

    def _saturation(self, frame: Frame) -> BandFlag:
        full = frame.full_scale_counts
        fraction = float(np.count_nonzero(frame.data >= full - 0.5)) / frame.data.size
        return (
            BandFlag.SATURATED
            if fraction > self.config.exposure.saturation_fraction
            else BandFlag.NONE
        )

    def _dark_frame(self, camera: CameraRole, exposure_s: float, frames: int) -> Frame:
        d = self.devices
        d.sync()
        d.set_exposure(camera, exposure_s)
        with self.stats.wall("dark"):
            frame = d.grab(camera, frames)
        self.stats.add_model("dark", self.model.frames_s(frames, exposure_s))
        return frame

    def _acquire_dark(self, m: AcquireDark) -> None:
        if self.store.dark_done(m):
            self.stats.darks_skipped += 1
            return
        frame = self._dark_frame(m.camera, m.exposure_s, m.frames)
        self.stats.darks_acquired += 1
        self.publish(DarkMeasured(m, frame.data, frame.frames_averaged, frame.timestamp_s))

    def _check_dark(self, m: CheckDark) -> DarkDrift:
        recorded = self.store.recorded_check(m)
        if recorded is not None:
            return recorded
        frame = self._dark_frame(m.camera, m.exposure_s, m.frames)
        now = float(frame.data.mean())
        then = self.store.dark_mean_dn(m.source, m.camera, m.exposure_s)
        fraction = abs(now - then) / max(abs(then), 1e-9)
        drifted = fraction > m.max_fraction
        self.stats.dark_checks += 1
        if drifted:
            log.warning(
                "dark at %g s moved %.2f %% (%.2f -> %.2f DN) since %s: fresh darks for %s",
                m.exposure_s,
                100 * fraction,
                then,
                now,
                m.source,
                (m.array, m.tile),
            )
        self.publish(DarkChecked(m, now, then, fraction, drifted))
        return DarkDrift(fraction, drifted)
