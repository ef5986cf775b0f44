"""Bench config → a connected bench of devices, real or emulated.

This is the one place that decides how each device is reached: ``address = "sim"`` puts the real
driver on an in-process emulator through :class:`EmulatorAdapter`, any other address goes through
PyVISA (serial port or socket bridge), and cameras are opened by serial number through pypylon,
pylon's own emulation standing in when ``[simulation] pylon_cameras`` is above zero. Which driver
serves a device is the config's ``driver`` name; everything here and downstream sees only the
device protocols. The emulators, the virtual microscope and its cameras come from
:mod:`simulators.simulated_bench`, the one door to the simulators, opened only for a config that
asks for simulation: a real bench loads no simulator module.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from acquisition.scan_config import OpticsConfig, scan_config
from instruments.ascii_instrument import AsciiInstrument
from instruments.config import InstrumentsConfig, instruments_config, read_toml
from instruments.protocols import Camera, PolarizationRotator, Stage, TunableFilter
from instruments.registry import connect_serial, open_camera
from layout.manifest import ChipManifest, FiducialReadings

if TYPE_CHECKING:  # the one door to the simulators, opened lazily (needs_simulator)
    from simulators.simulated_bench import SimulatedBench

log = logging.getLogger(__name__)


@dataclass
class Bench:
    """The five connected devices, and the simulated bench behind any of them that are."""

    filter: TunableFilter
    rotator: PolarizationRotator
    stage: Stage
    camera: Camera
    reference_camera: Camera
    simulated: SimulatedBench | None = None
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def emulators(self) -> dict[str, Any]:
        """The in-process emulators by role ({} on a real bench or over TCP)."""
        return {} if self.simulated is None else dict(self.simulated.emulators)

    @property
    def microscope(self) -> Any:
        """The simulated bench's virtual microscope (None on a real bench): fault injection
        (lamp outages) and ground truth reach it through here, never through the drivers."""
        return None if self.simulated is None else self.simulated.microscope

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


def needs_simulator(raw: dict[str, Any], instruments: InstrumentsConfig) -> bool:
    """Whether a config asks for simulation: a ``[simulation]`` table or a device at ``sim``."""
    return "simulation" in raw or any(d.is_emulated for d in instruments.serial_devices.values())


def _simulators() -> ModuleType:
    """The simulated-bench module, imported only for a config that needs it."""
    import simulators.simulated_bench as door

    return door


def simulated_bench(
    raw: dict[str, Any],
    path: Path,
    instruments: InstrumentsConfig,
    manifest: ChipManifest | None = None,
    *,
    scan_folder: Path | None = None,
) -> SimulatedBench | None:
    """The simulated side of the bench a config describes, or None for a real bench.

    A scan passes its folder: each run of a simulated scan there draws its own emulator faults
    (so a ``--resume`` gets past them), counted on disk."""
    if not needs_simulator(raw, instruments):
        return None
    door = _simulators()
    simulation = door.simulation_of(raw, path)
    fault_run = 0 if simulation is None or scan_folder is None else door.next_run(scan_folder)
    bench: SimulatedBench = door.open_simulated_bench(
        instruments, simulation, manifest=manifest, fault_run=fault_run
    )
    return bench


def fiducial_locator(
    raw: dict[str, Any], path: Path
) -> Callable[[ChipManifest, float, int], FiducialReadings] | None:
    """Where automatic alignment reads its fiducials: the simulated bench's centring (its
    mount is known only to it), or None for a bench without ``[simulation]``."""
    if "simulation" not in raw:
        return None
    door = _simulators()
    reader: Callable[[ChipManifest, float, int], FiducialReadings] = door.fiducial_reader(
        door.simulation_of(raw, path)
    )
    return reader


def _emulator_link(
    simulated: SimulatedBench, role: str, timeout_s: float
) -> Callable[[type[AsciiInstrument]], Any] | None:
    """An in-process link to ``role``'s emulator with the driver's framing, or None."""
    if role not in simulated.emulators:
        return None

    def make(cls: type[AsciiInstrument]) -> Any:
        return simulated.link(role, cls.WRITE_TERMINATION, cls.READ_TERMINATION, timeout_s)

    return make


def connect(
    instruments: InstrumentsConfig,
    simulated: SimulatedBench | None = None,
    manifest: ChipManifest | None = None,
    optics: OpticsConfig | None = None,
) -> Bench:
    """Construct every driver and run its connect-time queries (``initialize``).

    On a simulated bench given the chip's ``manifest``, both cameras see the virtual microscope
    (through pylon's emulation and the real driver, or as in-process SimCameras, as
    ``[simulation.microscope] camera_feed`` says); without one they show pylon's test image.
    The scan's ``optics`` (``[optics]``) set the simulated camera's pixel size and sensor.
    """
    closers: list[Callable[[], None]] = []
    try:
        serial: dict[str, Any] = {}
        for role, device in instruments.serial_devices.items():
            link = None if simulated is None else _emulator_link(simulated, role, device.timeout_s)
            with _naming_the_device(role, device.driver, device.address):
                driver = connect_serial(device, link)
                closers.append(driver.adapter.close)
                driver.initialize()
            serial[role] = driver
        if simulated is not None and manifest is not None and simulated.renders(manifest):
            optics = optics or OpticsConfig()
            closers.append(lambda: _close_all(simulated.closers))
            camera, reference = simulated.open_cameras(
                instruments,
                manifest,
                optics.um_per_px,
                (optics.width_px, optics.height_px),
                open_camera,
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
        simulated,
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


@contextlib.contextmanager
def connected_bench(config_path: Path, manifest: ChipManifest | None = None) -> Iterator[Bench]:
    """Connect the bench a config file describes; close every device on exit."""
    raw = read_toml(config_path)
    instruments = instruments_config(raw, config_path)
    optics = scan_config(raw, config_path).optics
    bench = connect(
        instruments, simulated_bench(raw, config_path, instruments, manifest), manifest, optics
    )
    try:
        yield bench
    finally:
        bench.close()
