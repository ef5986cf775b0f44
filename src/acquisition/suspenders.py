"""Suspenders: watchers that judge each measured band and hold the scan until it may go on.

After every band's grab the engine asks each suspender whether the band must be discarded; one
that trips is asked to ``wait`` (block until conditions are back, or raise to stop the scan
resumable), and the band is re-taken with the suspender's ``flag`` set, at most ``max_retakes``
times. The lamp watch is the first; a humidity or focus watch would be written beside it.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from acquisition.autoexpose import ExposureResult
from acquisition.device_sync import DeviceSync
from acquisition.documents import Publish, Resumed, Suspended
from acquisition.messages import Acquire
from acquisition.scan_config import RunnerConfig
from acquisition.scan_stats import LampOut
from dataset.quality import BandFlag
from instruments.protocols import Frame

log = logging.getLogger(__name__)


class Suspender(Protocol):
    name: str  # what the run's statistics count its suspensions under
    flag: BandFlag
    max_retakes: int

    def tripped(
        self, band: Acquire, sample: Frame, reference: Frame, expected: ExposureResult
    ) -> bool:
        """Must this grab of ``band`` be discarded?"""
        ...

    def wait(self, devices: DeviceSync, band: Acquire, attempt: int) -> None:
        """Block until the band may be re-taken; raise a ScanFault to stop the scan."""
        ...

    def gave_up(self, band: Acquire) -> Exception:
        """The error when the band tripped ``max_retakes + 1`` times."""
        ...


class LampWatch:
    """The reference camera's reading against what the auto-exposure saw on glass at the band:
    below ``lamp_collapse_fraction`` the lamp is out; poll the reference camera (one frame every
    ``lamp_poll_s``) until two readings in a row reach ``lamp_recover_fraction``, then re-take
    the band flagged ``LAMP_INTERRUPTED``."""

    name = "lamp"
    flag = BandFlag.LAMP_INTERRUPTED

    def __init__(self, runner: RunnerConfig, publish: Publish) -> None:
        self.runner = runner
        self.publish = publish
        self.max_retakes = runner.lamp_retakes
        self._last = (0.0, 0.0)  # (reading, wanted) of the last tripped band

    def tripped(
        self, band: Acquire, sample: Frame, reference: Frame, expected: ExposureResult
    ) -> bool:
        reading = float(reference.data.mean())
        wanted = expected.reference_dn_per_s * reference.exposure_s
        self._last = (reading, wanted)
        return reading < self.runner.lamp_collapse_fraction * wanted

    def wait(self, devices: DeviceSync, band: Acquire, attempt: int) -> None:
        runner = self.runner
        reading, wanted = self._last
        log.warning(
            "lamp: reference %.0f DN, expected ~%.0f DN at %s %g nm; pausing until it is back",
            reading,
            wanted,
            band.polarization,
            band.wavelength_nm,
        )
        self.publish(Suspended(band, reading, wanted, attempt + 1))
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
            reading = float(devices.grab("reference", 1).data.mean())
            good = good + 1 if reading >= runner.lamp_recover_fraction * wanted else 0
        waited = time.monotonic() - start
        log.warning("lamp: back after %.1f s; re-taking the band", waited)
        self.publish(Resumed(waited, reading))

    def gave_up(self, band: Acquire) -> Exception:
        return LampOut(
            f"lamp: the reference reading collapsed {self.max_retakes + 1} times at "
            f"{band.polarization} {band.wavelength_nm:g} nm; the scan stopped, resumable"
        )
