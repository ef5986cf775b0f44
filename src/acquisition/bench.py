"""Bench config → a connected bench of devices, real or emulated.

This is the one place that decides how each device is reached: ``address = "sim"`` puts the real
driver on an in-process emulator through :class:`EmulatorAdapter`, any other address goes through
PyVISA (serial port or socket bridge), and cameras are opened by serial number through pypylon,
pylon's own emulation standing in when ``[simulation] pylon_cameras`` is above zero. Which driver
serves a device is the config's ``driver`` name; everything here and downstream sees only the
device protocols.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acquisition.scan_config import OpticsConfig, scan_config
from instruments.ascii_instrument import AsciiInstrument
from instruments.config import CameraConfig, InstrumentsConfig, instruments_config, read_toml
from instruments.protocols import Camera, PolarizationRotator, Stage, TunableFilter
from instruments.registry import connect_serial, open_camera
from layout.manifest import ChipManifest
from simulators.devices.adapter import EmulatorAdapter
from simulators.devices.ell14 import Ell14Emulator
from simulators.devices.emulator import Emulator
from simulators.devices.kurios import KuriosEmulator
from simulators.devices.ms2000 import Ms2000Emulator
from simulators.devices.pylon_emulation import enable_pylon_emulation
from simulators.devices.sim_config import SimulationConfig, build_emulators, simulation_config
from simulators.microscope.bench_setup import build_microscope
from simulators.microscope.cameras import PylonImageFeed, SimCamera
from simulators.microscope.microscope import Role, VirtualMicroscope
from simulators.microscope.states import EmulatorStates

log = logging.getLogger(__name__)


@dataclass
class Bench:
    """The five connected devices, and the emulators behind any of them that are simulated."""

    filter: TunableFilter
    rotator: PolarizationRotator
    stage: Stage
    camera: Camera
    reference_camera: Camera
    emulators: dict[str, Emulator] = field(default_factory=dict)
    # The simulated bench's microscope (None on a real bench): fault injection (lamp outages)
    # and ground truth reach it through here, never through the drivers.
    microscope: VirtualMicroscope | None = None
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        _close_all(self.closers)


def _close_all(closers: list[Callable[[], None]]) -> None:
    """Close in reverse order of opening; one failure must not keep the rest open."""
    while closers:
        close = closers.pop()
        try:
            close()
        except Exception as exc:
            log.warning("while closing the bench: %s", exc)


def _emulator_link(
    emulator: Emulator, timeout_s: float
) -> Callable[[type[AsciiInstrument]], EmulatorAdapter]:
    """An in-process link with the driver's own framing, as a serial port would have."""

    def make(cls: type[AsciiInstrument]) -> EmulatorAdapter:
        return EmulatorAdapter(
            emulator,
            write_termination=cls.WRITE_TERMINATION,
            read_termination=cls.READ_TERMINATION,
            timeout_ms=round(timeout_s * 1000),
        )

    return make


def connect(
    instruments: InstrumentsConfig,
    simulation: SimulationConfig | None = None,
    manifest: ChipManifest | None = None,
    optics: OpticsConfig | None = None,
    *,
    fault_run: int = 0,
) -> Bench:
    """Construct every driver and run its connect-time queries (``initialize``).

    On a simulated bench given the chip's ``manifest``, both cameras see the virtual microscope
    (through pylon's emulation and the real driver, or as in-process SimCameras, as
    ``[simulation.microscope] camera_feed`` says); without one they show pylon's test image.
    The scan's ``optics`` (``[optics]``) set the simulated camera's pixel size and sensor.
    ``fault_run`` keys the emulators' random faults (``simulators.devices.sim_config``).
    """
    # Without a [simulation] table nothing is emulated but devices explicitly at address "sim".
    simulation = simulation or SimulationConfig(pylon_cameras=0)
    emulators = build_emulators(instruments, simulation, run=fault_run)
    render = manifest is not None and simulation.pylon_cameras > 0
    missing = [role for role in ("filter", "rotator", "stage") if role not in emulators]
    if render and missing:
        # Checked before connecting anything: TCP-served emulators live in another process.
        raise ValueError(
            f"the simulated cameras need in-process emulators, but {', '.join(missing)} "
            "is not at address 'sim'; use configs/sim-bench.toml, or a real bench without "
            "[simulation] pylon_cameras"
        )
    if simulation.pylon_cameras > 0:
        enable_pylon_emulation(simulation.pylon_cameras)
    closers: list[Callable[[], None]] = []
    try:
        serial: dict[str, Any] = {}
        for role, device in instruments.serial_devices.items():
            emulator = emulators.get(role)
            make_adapter = None if emulator is None else _emulator_link(emulator, device.timeout_s)
            with _naming_the_device(role, device.driver, device.address):
                driver = connect_serial(device, make_adapter)
                closers.append(driver.adapter.close)
                driver.initialize()
            serial[role] = driver
        microscope = None
        if render and manifest is not None:
            microscope, camera, reference = _microscope_cameras(
                instruments, simulation, manifest, emulators, closers, optics or OpticsConfig()
            )
        else:
            with _naming_the_device("camera", "basler.pylon", instruments.camera.serial):
                camera = open_camera(instruments.camera)
                closers.append(camera.close)
            with _naming_the_device(
                "reference_camera", "basler.pylon", instruments.reference_camera.serial
            ):
                reference = open_camera(instruments.reference_camera)
                closers.append(reference.close)
    except BaseException:
        _close_all(closers)
        raise
    return Bench(
        serial["filter"],
        serial["rotator"],
        serial["stage"],
        camera,
        reference,
        emulators,
        microscope,
        closers,
    )


@contextlib.contextmanager
def _naming_the_device(role: str, driver: str, address: str) -> Iterator[None]:
    """A device that cannot be reached or does not answer at connect is one line naming its
    role, driver and address: PyVISA's and pylon's own errors are pages long and name neither."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if len(reason) > 200:
            reason = reason[:197] + "..."
        raise ConnectionError(
            f"{role} ({driver}) at {address} could not be connected: {reason}; check the cable, "
            "the power and the address in the bench config"
        ) from exc


def _microscope_cameras(
    instruments: InstrumentsConfig,
    simulation: SimulationConfig,
    manifest: ChipManifest,
    emulators: dict[str, Emulator],
    closers: list[Callable[[], None]],
    optics: OpticsConfig,
) -> tuple[VirtualMicroscope, Camera, Camera]:
    """Sample and reference cameras that render the virtual chip from the emulators' states."""
    table = simulation.microscope
    microscope = build_microscope(
        manifest,
        table,
        simulation.seed,
        um_per_px=optics.um_per_px,
        sensor_px=(optics.width_px, optics.height_px),
    )
    closers.append(microscope.close)
    kurios, ell14, ms2000 = emulators["filter"], emulators["rotator"], emulators["stage"]
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
                    time_scale=simulation.time_scale,
                )
            )
            continue
        driver = open_camera(device)
        closers.append(driver.close)
        folder = tempfile.TemporaryDirectory(prefix=f"metascan-{role}-feed-")
        closers.append(folder.cleanup)
        cameras.append(PylonImageFeed(driver, microscope, states, role, Path(folder.name)))
    return microscope, cameras[0], cameras[1]


@contextlib.contextmanager
def connected_bench(config_path: Path, manifest: ChipManifest | None = None) -> Iterator[Bench]:
    """Connect the bench a config file describes; close every device on exit."""
    raw = read_toml(config_path)
    bench = connect(
        instruments_config(raw, config_path),
        simulation_config(raw, config_path),
        manifest,
        scan_config(raw, config_path).optics,
    )
    try:
        yield bench
    finally:
        bench.close()
