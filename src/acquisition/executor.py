"""The runner's engine: executes a scan plan's messages on a bench and into hypercube files.

The one piece of code that touches hardware during a scan. Design points:

* **Lazy device state.** ``Move``, ``Rotate``, ``SetMode``, ``SetWavelength`` and
  ``SetExposure`` only change the *wanted* state; it is brought onto the devices (only what
  differs) right before something is measured. A resumed scan therefore walks the whole plan
  but moves nothing for bands already on disk, and every frame is taken with the devices in
  exactly the state the plan defines at that point — which is what makes a resumed scan's data
  identical to an uninterrupted one on the simulated bench.
* **Resume by key.** A band, a dark or a flat already completed in its file is skipped; an
  ``AutoExpose`` whose flat file exists is answered from the exposures recorded in it.
* **Faults.** A step (an absolute move, a retune, a grab) that still fails after the driver's
  own retries with a transient fault, or a motion that did not end in time, is retried
  ``[runner] step_attempts`` times in all (absolute targets make that safe, even for the
  rotator whose relative moves are never retried); then :class:`ScanFault` stops the scan,
  naming device, command and reply, with everything completed on disk.
* **Lamp watch (a suspender).** Each band's reference reading is compared with what the
  auto-exposure saw on glass; below ``lamp_collapse_fraction`` the band is not written, the
  runner polls the reference camera until the lamp is back, re-takes the band and flags it
  ``LAMP_INTERRUPTED``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from acquisition.autoexpose import ExposureResult, auto_expose
from acquisition.bench import Bench
from acquisition.plan import (
    Acquire,
    AcquireDark,
    AutoExpose,
    Checkpoint,
    CloseFlat,
    CloseTile,
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
    TileIndex,
)
from acquisition.run_record import RunRecord
from acquisition.scan_config import ScanConfig
from acquisition.scan_folder import flat_name, tile_name
from acquisition.time_model import DeviceTimeModel
from dataset.hypercube_file import HypercubeLayout, HypercubeWriter, read_hypercube
from dataset.quality import BandFlag
from instruments.errors import DeviceBusyTimeout, InstrumentError, TransientFault
from instruments.protocols import BandwidthMode, Camera, Frame
from layout.manifest import ChipManifest

log = logging.getLogger(__name__)
T = TypeVar("T")
_RETRYABLE = (TransientFault, DeviceBusyTimeout)
AUTOEXPOSURE_ATTR = "autoexposure"


class ScanFault(RuntimeError):
    """A persistent fault stopped the scan; what is on disk is complete and resumable."""


class LampOut(ScanFault):
    """The lamp did not come back within ``[runner] lamp_max_wait_s``."""


@dataclass
class DeviceState:
    position_um: tuple[float, float] | None = None
    angle_deg: float | None = None
    mode: BandwidthMode | None = None
    wavelength_nm: float | None = None
    settle_s: float = 0.0
    exposure_s: float | None = None
    reference_exposure_s: float | None = None


@dataclass
class ExecutorStats:
    """What a run did, for the summary, the run record and benchmarks/bench_acquisition.py."""

    bands_acquired: int = 0
    bands_skipped: int = 0
    darks_acquired: int = 0
    darks_skipped: int = 0
    autoexposures: int = 0
    retries: int = 0
    lamp_interruptions: int = 0
    flagged_bands: int = 0
    modeled_s: float = 0.0  # device time of the steps executed (acquisition.time_model)
    exposure_s: float = 0.0  # sum of frames x exposure of the sample camera's band grabs
    band_wall_s: float = 0.0  # wall time from syncing a band's devices to its write returning
    grab_wall_s: float = 0.0  # of which in the bands' grabs (both cameras, triggered together)
    write_wall_s: float = 0.0  # of which writing the band to its hypercube
    modeled_by_kind: dict[str, float] = field(default_factory=dict)
    wall_by_kind: dict[str, float] = field(default_factory=dict)  # the same steps, measured

    def add_model(self, kind: str, seconds: float) -> None:
        self.modeled_s += seconds
        self.modeled_by_kind[kind] = self.modeled_by_kind.get(kind, 0.0) + seconds

    @contextlib.contextmanager
    def wall(self, kind: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.wall_by_kind[kind] = self.wall_by_kind.get(kind, 0.0) + elapsed


@dataclass(frozen=True)
class FileContext:
    """Attributes every hypercube of the scan carries (contract 3)."""

    chip_id: str
    pixel_size_um: float
    instruments: dict[str, str]
    config: dict[str, Any]
    chip_to_stage: list[list[float]]  # 2x3 [A | offset]: stage µm = A @ chip µm + offset
    full_scale_dn: int  # the sample camera's, for saturation per pixel in extraction


class PlanExecutor:
    """Runs one plan; ``on_band`` is told of every band (acquired or skipped) for progress,
    ``on_array_done`` of every array whose tiles are all closed (quick-looks)."""

    def __init__(
        self,
        bench: Bench,
        config: ScanConfig,
        manifest: ChipManifest,
        folder: Path,
        record: RunRecord,
        context: FileContext,
        time_model: DeviceTimeModel,
        *,
        on_band: Callable[[Acquire, bool], None] | None = None,
        on_array_done: Callable[[str], None] | None = None,
    ) -> None:
        self.bench = bench
        self.config = config
        self.manifest = manifest
        self.manifest_sha256 = manifest.content_sha256()  # every file says which chip it is of
        self.folder = Path(folder)
        self.record = record
        self.context = context
        self.model = time_model
        self.on_band = on_band
        self.on_array_done = on_array_done
        self.stats = ExecutorStats()
        self.want = DeviceState()
        self.have = DeviceState()
        # Where the devices start, for the time model of the first move and rotation.
        x_um, y_um = self._step("stage", "where", lambda: bench.stage.position_um)[:2]
        self._stage_at = (float(x_um), float(y_um))
        self._angle_at = float(self._step("rotator", "angle", lambda: bench.rotator.angle_deg))
        self._flat: HypercubeWriter | None = None
        self._flat_path: Path | None = None
        self._tile: HypercubeWriter | None = None
        self._tile_key: tuple[str, TileIndex] | None = None
        self._exposures: dict[tuple[str, float], ExposureResult] = {}
        self._recorded: dict[str | None, dict[tuple[str, float], ExposureResult]] = {}
        self._current_array: str | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reference-camera")

    # -- the loop ---------------------------------------------------------------------------

    def run(self, plan: Plan) -> ExecutorStats:
        try:
            answer: Exposures | None = None
            while True:
                try:
                    message = plan.send(answer)
                except StopIteration:
                    break
                answer = self._execute(message)
            self._array_boundary(None)
        finally:
            self._close_writers()
            self._pool.shutdown(wait=True)
        return self.stats

    def _execute(self, message: Message) -> Exposures | None:
        w = self.want
        if isinstance(message, Move):
            w.position_um = (message.x_um, message.y_um)
        elif isinstance(message, Rotate):
            w.angle_deg = message.angle_deg % 360.0
        elif isinstance(message, SetMode):
            w.mode = message.mode
        elif isinstance(message, SetWavelength):
            w.wavelength_nm, w.settle_s = message.wavelength_nm, message.settle_s
        elif isinstance(message, SetExposure):
            w.exposure_s = message.exposure_s
            w.reference_exposure_s = message.reference_exposure_s
        elif isinstance(message, AutoExpose):
            return self._auto_expose(message)
        elif isinstance(message, OpenFlat):
            self._open_flat(message)
        elif isinstance(message, CloseFlat):
            if self._flat is not None:
                self._flat.close()
                self._flat = None
        elif isinstance(message, OpenTile):
            self._array_boundary(message.array)
            self._open_tile(message)
        elif isinstance(message, CloseTile):
            if self._tile is not None:
                self._tile.close()
                self._tile, self._tile_key = None, None
        elif isinstance(message, Acquire):
            self._acquire(message)
        elif isinstance(message, AcquireDark):
            self._acquire_dark(message)
        elif not isinstance(message, Checkpoint):  # checkpoints: every write is durable already
            raise TypeError(f"the runner does not know message {message!r}")
        return None

    def _array_boundary(self, next_array: str | None) -> None:
        done = self._current_array
        if done is not None and next_array != done and self.on_array_done is not None:
            self.on_array_done(done)
        self._current_array = next_array

    def _close_writers(self) -> None:
        for writer in (self._flat, self._tile):
            if writer is not None:
                writer.close()
        self._flat = self._tile = None

    # -- devices ------------------------------------------------------------------------------

    def _step(self, device: str, command: str, action: Callable[[], T]) -> T:
        """Run one device step with the bounded step retry (module docstring)."""
        attempts = self.config.runner.step_attempts
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
                self.record.emit(
                    "retry", device=device, command=command, attempt=attempt, error=str(exc)
                )
                time.sleep(self.config.runner.step_backoff_s)
            except InstrumentError as exc:
                raise ScanFault(f"{device}: {exc} (not retried: not a transient fault)") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _sync(self) -> None:
        """Bring every wanted device setting that differs onto the devices."""
        w, h, b = self.want, self.have, self.bench
        timeout = self.config.runner.device_timeout_s
        if w.position_um is not None and w.position_um != h.position_um:
            x, y = w.position_um

            def move() -> None:
                b.stage.move_to(x, y)
                b.stage.wait_until_idle(timeout)

            with self.stats.wall("move"):
                self._step("stage", f"move to ({x:.3f}, {y:.3f}) µm", move)
            start = h.position_um or self._stage_at
            self.stats.add_model("move", self.model.move_s(start, w.position_um))
            h.position_um = w.position_um
        if w.angle_deg is not None and w.angle_deg != h.angle_deg:
            angle = w.angle_deg
            with self.stats.wall("rotate"):
                self._step("rotator", f"move to {angle:g} deg", lambda: b.rotator.move_to(angle))
            start_deg = self._angle_at if h.angle_deg is None else h.angle_deg
            self.stats.add_model("rotate", self.model.rotate_s(start_deg, angle))
            h.angle_deg = angle
        if w.mode is not None and w.mode != h.mode:
            mode = w.mode

            def set_mode() -> None:
                b.filter.bandwidth_mode = mode
                b.filter.wait_until_ready(timeout)

            with self.stats.wall("mode"):
                self._step("filter", f"bandwidth {mode.value}", set_mode)
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
                self._step("filter", f"wavelength {wl:g} nm", retune)
            self.stats.add_model("retune", settle)
            h.wavelength_nm = wl
        self._set_exposure("sample", w.exposure_s)
        self._set_exposure("reference", w.reference_exposure_s)

    def _set_exposure(self, role: str, exposure_s: float | None) -> None:
        if exposure_s is None:
            return
        h = self.have
        camera = self.bench.camera if role == "sample" else self.bench.reference_camera
        current = h.exposure_s if role == "sample" else h.reference_exposure_s
        if current == exposure_s:
            return

        def write() -> None:
            camera.exposure_s = exposure_s

        self._step(f"{role} camera", f"exposure {exposure_s:g} s", write)
        if role == "sample":
            h.exposure_s = exposure_s
        else:
            h.reference_exposure_s = exposure_s

    def _grab(self, role: str, camera: Camera, frames: int) -> Frame:
        return self._step(f"{role} camera", f"grab {frames} frames", lambda: camera.grab(frames))

    def _grab_pair(self, frames: int, reference_frames: int) -> tuple[Frame, Frame]:
        """Both cameras triggered together: the reference in a second thread."""
        pending = self._pool.submit(
            self._grab, "reference", self.bench.reference_camera, reference_frames
        )
        try:
            sample = self._grab("sample", self.bench.camera, frames)
        finally:
            reference = pending.result()
        return sample, reference

    # -- auto-exposure and the flat -----------------------------------------------------------

    def _recorded_exposures(self, array: str | None) -> dict[tuple[str, float], ExposureResult]:
        """Exposures stored in an existing flat file of ``array`` (empty when none exists)."""
        if array not in self._recorded:
            found: dict[tuple[str, float], ExposureResult] = {}
            path = self.folder / flat_name(array)
            if path.exists():
                with read_hypercube(path, mask_incomplete=False) as ds:
                    sweep = ds.attrs.get(AUTOEXPOSURE_ATTR)
                if not isinstance(sweep, list):
                    raise ValueError(f"{path} records no auto-exposure; is it this scan's flat?")
                for item in sweep:
                    key = (str(item["polarization"]), float(item["wavelength_nm"]))
                    found[key] = ExposureResult.from_json(item["result"])
            self._recorded[array] = found
        return self._recorded[array]

    def _auto_expose(self, message: AutoExpose) -> Exposures:
        key = (message.polarization, message.wavelength_nm)
        recorded = self._recorded_exposures(message.array)
        if key in recorded:
            result = recorded[key]
        else:
            self._sync()
            c, r = self.bench.camera, self.bench.reference_camera

            def grab_pair(sample_s: float, reference_s: float) -> tuple[Frame, Frame]:
                self._set_exposure("sample", sample_s)
                self._set_exposure("reference", reference_s)
                self.stats.add_model(
                    "autoexpose", self.model.frames_s(1, max(sample_s, reference_s))
                )
                return self._grab_pair(1, 1)

            with self.stats.wall("autoexpose"):
                result = auto_expose(
                    grab_pair,
                    self.config.exposure,
                    c.exposure_range_s,
                    r.exposure_range_s,
                    start_s=self.config.exposure.estimated_s,
                )
            self.stats.autoexposures += 1
            self.record.emit(
                "autoexpose",
                array=message.array,
                polarization=message.polarization,
                wavelength_nm=message.wavelength_nm,
                **result.to_json(),
            )
            if result.low_signal:
                log.warning(
                    "glass at %s %g nm reaches only %.0f %% of full scale at the longest "
                    "exposure: the band is flagged LOW_SIGNAL",
                    message.polarization,
                    message.wavelength_nm,
                    100 * result.sample_level,
                )
        self._exposures[key] = result
        return Exposures(result.sample_s, result.reference_s)

    def _layout(self, exposures: list[Exposures]) -> HypercubeLayout:
        s = self.config.scan
        return HypercubeLayout.build(
            tuple(s.polarizations),
            sorted(s.wavelengths_nm),
            self.config.optics.height_px,
            self.config.optics.width_px,
            sorted({e.sample_s for e in exposures}),
            sorted({e.reference_s for e in exposures}),
        )

    def _open_writer(
        self, path: Path, layout: HypercubeLayout, attrs: dict[str, Any]
    ) -> HypercubeWriter:
        durable = self.config.runner.durable
        if path.exists():
            return HypercubeWriter.open_existing(path, layout, attrs, durable=durable)
        return HypercubeWriter.create(path, layout, attrs, durable=durable)

    def _base_attrs(
        self, stage_um: tuple[float, float], chip_um: tuple[float, float]
    ) -> dict[str, Any]:
        c = self.context
        return {
            "chip_id": c.chip_id,
            "manifest_sha256": self.manifest_sha256,
            "layout_sha256": str(self.manifest.attrs.get("layout_sha256", "")),
            "x_um": float(stage_um[0]),
            "y_um": float(stage_um[1]),
            "pixel_size_um": c.pixel_size_um,
            "instruments": c.instruments,
            "config": c.config,
            "centre_chip_um": [float(chip_um[0]), float(chip_um[1])],
            "chip_to_stage": c.chip_to_stage,
            "full_scale_dn": c.full_scale_dn,
        }

    def _open_flat(self, message: OpenFlat) -> None:
        self._flat_exposures = [e for _, _, e in message.exposures]
        sweep = [
            {"polarization": pol, "wavelength_nm": wl, "result": self._exposures[pol, wl].to_json()}
            for pol, wl, _ in message.exposures
        ]
        attrs = {
            **self._base_attrs(message.centre_stage_um, message.centre_chip_um),
            "role": "flat",
            "array": message.array or "*",
            AUTOEXPOSURE_ATTR: sweep,
        }
        path = self.folder / flat_name(message.array)
        self._flat = self._open_writer(path, self._layout(self._flat_exposures), attrs)
        self._flat_path = path

    def _open_tile(self, message: OpenTile) -> None:
        if self._flat_path is None:
            raise ValueError("the plan opened a tile before any flat")
        k = self.manifest.array_index(message.array)
        a = self.manifest.arrays
        attrs = {
            **self._base_attrs(message.centre_stage_um, message.centre_chip_um),
            "role": "tile",
            "array": message.array,
            "array_id": int(a.array_id[k]),
            "replica": int(a.replica[k]),
            "tile_row": int(message.tile[0]),
            "tile_col": int(message.tile[1]),
            "pads": [int(p) for p in message.pads],
            "flat_file": self._flat_path.name,
        }
        path = self.folder / tile_name(message.array, message.tile)
        self._tile = self._open_writer(path, self._layout(self._flat_exposures), attrs)
        self._tile_key = (message.array, message.tile)

    def _writer(self, array: str | None, tile: TileIndex | None) -> HypercubeWriter:
        if tile is None:
            if self._flat is None:
                raise ValueError("the plan acquired a flat band outside OpenFlat/CloseFlat")
            return self._flat
        if self._tile is None or array is None or self._tile_key != (array, tile):
            raise ValueError(f"the plan acquired tile {array} {tile} outside its OpenTile")
        return self._tile

    # -- acquisition ----------------------------------------------------------------------------

    def _acquire(self, m: Acquire) -> None:
        writer = self._writer(m.array, m.tile)
        p, b = writer.layout.band_index(m.polarization, m.wavelength_nm)
        if writer.completed("signal")[p, b]:
            self.stats.bands_skipped += 1
            if self.on_band is not None:
                self.on_band(m, True)
            return
        expected = self._exposures[m.polarization, m.wavelength_nm]
        flags = BandFlag.LOW_SIGNAL if expected.low_signal else BandFlag.NONE
        runner = self.config.runner
        start = time.perf_counter()
        for attempt in range(runner.lamp_retakes + 1):
            self._sync()
            grab_start = time.perf_counter()
            with self.stats.wall("acquire"):
                sample, reference = self._grab_pair(m.frames, m.reference_frames)
            self.stats.grab_wall_s += time.perf_counter() - grab_start
            self.stats.add_model(
                "acquire",
                max(
                    self.model.frames_s(m.frames, sample.exposure_s),
                    self.model.frames_s(m.reference_frames, reference.exposure_s),
                ),
            )
            reading = float(reference.data.mean())
            wanted = expected.reference_dn_per_s * reference.exposure_s
            if reading >= runner.lamp_collapse_fraction * wanted:
                break
            flags |= BandFlag.LAMP_INTERRUPTED
            self._lamp_interrupted(m, reading, wanted, attempt)
        else:
            raise LampOut(
                f"lamp: the reference reading collapsed {runner.lamp_retakes + 1} times at "
                f"{m.polarization} {m.wavelength_nm:g} nm; the scan stopped, resumable"
            )
        flags |= self._saturation(sample) | self._saturation(reference)
        # The requested (ladder) exposures, not the camera's readback: a camera rounds an
        # exposure to its own step (1 µs on a Basler), identically for a band and its dark, so
        # the requested value is the one that names the matching dark exactly.
        exposure_s, reference_s = self.want.exposure_s, self.want.reference_exposure_s
        if exposure_s is None or reference_s is None:
            raise ValueError(f"the plan acquired {m} before any SetExposure")
        written = time.perf_counter()
        writer.write_band(
            "signal",
            m.polarization,
            m.wavelength_nm,
            sample.data,
            reference=reading,
            reference_exposure_s=reference_s,
            exposure_s=exposure_s,
            frames=sample.frames_averaged,
            timestamp_s=sample.timestamp_s,
            flags=int(flags),
        )
        wall = time.perf_counter() - start
        s = self.stats
        s.write_wall_s += time.perf_counter() - written
        s.bands_acquired += 1
        s.flagged_bands += int(flags != BandFlag.NONE)
        s.exposure_s += sample.exposure_s * sample.frames_averaged
        s.band_wall_s += wall
        self.record.emit(
            "band",
            section=m.section,
            array=m.array,
            tile=m.tile,
            polarization=m.polarization,
            wavelength_nm=m.wavelength_nm,
            exposure_s=exposure_s,
            reference_exposure_s=reference_s,
            reference_dn=reading,
            flags=int(flags),
            wall_s=wall,
        )
        if self.on_band is not None:
            self.on_band(m, False)

    def _saturation(self, frame: Frame) -> BandFlag:
        full = frame.full_scale_counts
        fraction = float(np.count_nonzero(frame.data >= full - 0.5)) / frame.data.size
        return (
            BandFlag.SATURATED
            if fraction > self.config.exposure.saturation_fraction
            else BandFlag.NONE
        )

    def _lamp_interrupted(self, m: Acquire, reading: float, wanted: float, attempt: int) -> None:
        """Suspend until the lamp is back: poll the reference camera (one frame every
        ``lamp_poll_s``) until two readings in a row reach ``lamp_recover_fraction``."""
        runner = self.config.runner
        self.stats.lamp_interruptions += 1
        log.warning(
            "lamp: reference %.0f DN, expected ~%.0f DN at %s %g nm; pausing until it is back",
            reading,
            wanted,
            m.polarization,
            m.wavelength_nm,
        )
        self.record.emit(
            "lamp_interrupted",
            array=m.array,
            tile=m.tile,
            polarization=m.polarization,
            wavelength_nm=m.wavelength_nm,
            reference_dn=reading,
            expected_dn=wanted,
            retake=attempt + 1,
        )
        start = time.monotonic()
        good = 0
        while good < 2:
            if time.monotonic() - start > runner.lamp_max_wait_s:
                raise LampOut(
                    f"lamp: no light on the reference camera for {runner.lamp_max_wait_s:g} s "
                    f"(last {reading:.0f} DN, expected ~{wanted:.0f} DN); the scan stopped, "
                    "resumable"
                )
            time.sleep(runner.lamp_poll_s)
            frame = self._grab("reference", self.bench.reference_camera, 1)
            reading = float(frame.data.mean())
            good = good + 1 if reading >= runner.lamp_recover_fraction * wanted else 0
        waited = time.monotonic() - start
        log.warning("lamp: back after %.1f s; re-taking the band", waited)
        self.record.emit("lamp_restored", waited_s=waited, reference_dn=reading)

    def _acquire_dark(self, m: AcquireDark) -> None:
        writer = self._writer(m.array, m.tile)
        layout = writer.layout
        if m.camera == "sample":
            exposures, done = layout.dark_exposures_s, writer.completed("dark")
        else:
            exposures, done = layout.reference_dark_exposures_s, writer.completed("reference_dark")
        index = int(np.argmin(np.abs(np.log(np.asarray(exposures) / m.exposure_s))))
        if done[index]:
            self.stats.darks_skipped += 1
            return
        self._sync()
        camera = self.bench.camera if m.camera == "sample" else self.bench.reference_camera
        self._set_exposure(m.camera, m.exposure_s)
        with self.stats.wall("dark"):
            frame = self._grab(m.camera, camera, m.frames)
        self.stats.add_model("dark", self.model.frames_s(m.frames, m.exposure_s))
        if m.camera == "sample":
            writer.write_dark(
                m.exposure_s,
                frame.data,
                frames=frame.frames_averaged,
                timestamp_s=frame.timestamp_s,
            )
        else:
            writer.write_reference_dark(
                m.exposure_s,
                float(frame.data.mean()),
                frames=frame.frames_averaged,
                timestamp_s=frame.timestamp_s,
            )
        self.stats.darks_acquired += 1
        self.record.emit(
            "dark",
            array=m.array,
            tile=m.tile,
            camera=m.camera,
            exposure_s=m.exposure_s,
            mean_dn=float(frame.data.mean()),
        )
