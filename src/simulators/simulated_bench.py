"""The simulated bench, built in one place: emulators, virtual microscope, cameras, mount.

``acquisition`` reaches the simulators through this module alone, and only for a config that
asks for simulation (a ``[simulation]`` table, or a device at address ``sim``), importing it
lazily so that a real bench loads no simulator code. What the simulated bench plays besides the
devices lives here too: where the simulator mounted the chip is known only to it, so the
"user centring each fiducial" of automatic alignment is a service of this bench
(:func:`fiducial_reader`), never something acquisition computes from
the simulator's truth.

The drivers stay acquisition's: this module hands out emulator links with the driver's framing
(:meth:`SimulatedBench.link`) and camera objects that satisfy ``instruments.protocols.Camera``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instruments.config import CameraConfig, InstrumentsConfig
from instruments.protocols import Camera
from layout.manifest import ChipManifest, FiducialReadings
from simulators.devices.adapter import EmulatorAdapter
from simulators.devices.ell14 import Ell14Emulator
from simulators.devices.emulator import Emulator
from simulators.devices.kurios import KuriosEmulator
from simulators.devices.ms2000 import Ms2000Emulator
from simulators.devices.pylon_emulation import enable_pylon_emulation
from simulators.devices.sim_config import (
    SimulationConfig,
    build_emulators,
    next_simulation_run,
    simulation_config,
)
from simulators.microscope.bench_setup import build_microscope, microscope_config
from simulators.microscope.cameras import PylonImageFeed, SimCamera
from simulators.microscope.microscope import Role, VirtualMicroscope
from simulators.microscope.states import EmulatorStates

log = logging.getLogger(__name__)


def simulation_of(raw: dict[str, Any], path: Path) -> SimulationConfig | None:
    """The config's ``[simulation]`` table, or None for a bench that has none."""
    return simulation_config(dict(raw), path)


def next_run(folder: Path) -> int:
    """Which run of a simulated scan in ``folder`` starts now (it keys the emulators' faults, so
    a ``--resume`` draws new ones); the count is advanced on disk."""
    return next_simulation_run(folder)


def fiducial_stage_positions(
    manifest: ChipManifest,
    chip_to_stage: Callable[[float, float], tuple[float, float]],
    error_sd_um: float = 0.3,
    seed: int = 0,
) -> FiducialReadings:
    """What a user would read off the stage centring each fiducial under a mounting: the true
    ``chip_to_stage`` plus a Gaussian centring error of ``error_sd_um`` (keyed by ``seed``)."""
    if error_sd_um < 0:
        raise ValueError(f"error_sd_um={error_sd_um} must be >= 0")
    points = manifest.fiducials()
    if len(points) < 3:
        raise ValueError(f"the manifest has {len(points)} fiducials; alignment needs >= 3")
    rng = np.random.default_rng(seed)
    chip = np.array([(p.x_um, p.y_um) for p in points], dtype=np.float64)
    stage = np.array([chip_to_stage(p.x_um, p.y_um) for p in points], dtype=np.float64)
    stage += rng.normal(0.0, error_sd_um, stage.shape) if error_sd_um > 0 else 0.0
    return chip, stage, [p.label for p in points]


def fiducial_reader(
    simulation: SimulationConfig,
) -> Callable[[ChipManifest, float, int], FiducialReadings]:
    """The user centring fiducials on the chip as ``[simulation.microscope]`` mounts it:
    (manifest, error_sd_um, seed) -> readings."""
    mount = microscope_config(simulation.microscope, simulation.seed).mount

    def read(manifest: ChipManifest, error_sd_um: float, seed: int) -> FiducialReadings:
        return fiducial_stage_positions(manifest, mount.chip_to_stage, error_sd_um, seed)

    return read


@dataclass
class SimulatedBench:
    """The simulated side of a bench: its emulators, and once cameras are opened, the virtual
    microscope they render (fault injection and ground truth reach it through here)."""

    simulation: SimulationConfig
    emulators: dict[str, Emulator]
    microscope: VirtualMicroscope | None = None
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def link(
        self, role: str, write_termination: str, read_termination: str, timeout_s: float
    ) -> EmulatorAdapter:
        """An in-process link to ``role``'s emulator (one of :attr:`emulators`) with the
        driver's own framing, as a serial port would have."""
        return EmulatorAdapter(
            self.emulators[role],
            write_termination=write_termination,
            read_termination=read_termination,
            timeout_ms=round(timeout_s * 1000),
        )

    def renders(self, manifest: ChipManifest | None) -> bool:
        """Whether the cameras show the virtual chip (else pylon's test image, or real ones)."""
        return manifest is not None and self.simulation.pylon_cameras > 0

    def open_cameras(
        self,
        instruments: InstrumentsConfig,
        manifest: ChipManifest,
        um_per_px: float,
        sensor_px: tuple[int, int],
        open_camera: Callable[[CameraConfig], Any],
    ) -> tuple[Camera, Camera]:
        """Sample and reference cameras that render the virtual chip from the emulators'
        states: in-process SimCameras, or the real driver (``open_camera``) on pylon's
        emulation fed rendered frames, as ``[simulation.microscope] camera_feed`` says."""
        table = self.simulation.microscope
        microscope = build_microscope(
            manifest, table, self.simulation.seed, um_per_px=um_per_px, sensor_px=sensor_px
        )
        self.microscope = microscope
        self.closers.append(microscope.close)
        kurios, ell14, ms2000 = (self.emulators[r] for r in ("filter", "rotator", "stage"))
        if not (
            isinstance(kurios, KuriosEmulator)
            and isinstance(ell14, Ell14Emulator)
            and isinstance(ms2000, Ms2000Emulator)
        ):
            raise TypeError("the virtual microscope reads Kurios, ELL14 and MS-2000 emulators")
        states = EmulatorStates(kurios, ell14, ms2000)
        cameras: list[Camera] = []
        roles: tuple[tuple[Role, CameraConfig], ...] = (
            ("sample", instruments.camera),
            ("reference", instruments.reference_camera),
        )
        for role, device in roles:
            if table.camera_feed == "direct":
                cameras.append(
                    SimCamera(
                        microscope,
                        states,
                        role,
                        serial=device.serial,
                        bit_depth=device.bit_depth,
                        time_scale=self.simulation.time_scale,
                    )
                )
                continue
            driver = open_camera(device)
            self.closers.append(driver.close)
            folder = tempfile.TemporaryDirectory(prefix=f"metascan-{role}-feed-")
            self.closers.append(folder.cleanup)
            cameras.append(PylonImageFeed(driver, microscope, states, role, Path(folder.name)))
        return cameras[0], cameras[1]


def open_simulated_bench(
    instruments: InstrumentsConfig,
    simulation: SimulationConfig | None,
    *,
    manifest: ChipManifest | None = None,
    fault_run: int = 0,
) -> SimulatedBench:
    """The emulators a config asks for, with pylon's camera emulation switched on when it
    emulates cameras. Without a ``[simulation]`` table only devices at address ``sim`` are
    emulated, and no camera. ``fault_run`` keys the emulators' random faults (:func:`next_run`)."""
    simulation = simulation or SimulationConfig(pylon_cameras=0)
    bench = SimulatedBench(simulation, build_emulators(instruments, simulation, run=fault_run))
    missing = [role for role in ("filter", "rotator", "stage") if role not in bench.emulators]
    if bench.renders(manifest) and missing:
        # Checked before connecting anything: TCP-served emulators live in another process.
        raise ValueError(
            f"the simulated cameras need in-process emulators, but {', '.join(missing)} "
            "is not at address 'sim'; use configs/sim-bench.toml, or a real bench without "
            "[simulation] pylon_cameras"
        )
    if simulation.pylon_cameras > 0:
        enable_pylon_emulation(simulation.pylon_cameras)
    return bench
