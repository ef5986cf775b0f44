"""Where the virtual microscope learns what the devices are doing: the emulators' own state."""

from __future__ import annotations

from simulators.devices.ell14 import Ell14Emulator
from simulators.devices.kurios import KuriosEmulator
from simulators.devices.ms2000 import Ms2000Emulator
from simulators.microscope.microscope import OpticalState


class EmulatorStates:
    """The optical state read from the filter, rotator and stage emulators at this instant."""

    def __init__(
        self, filter: KuriosEmulator, rotator: Ell14Emulator, stage: Ms2000Emulator
    ) -> None:
        self.filter = filter
        self.rotator = rotator
        self.stage = stage

    def optical_state(self) -> OpticalState:
        return OpticalState(
            wavelength_nm=self.filter.wavelength_nm,
            mode=self.filter.bandwidth_mode,  # BLACK when the filter blocks the beam
            rotator_deg=self.rotator.angle_deg,
            stage_um=self.stage.position_um,
        )
