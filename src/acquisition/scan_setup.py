"""Everything a scan needs before the first message: config, manifest, alignment, flat point.

Shared by ``scan --dry-run`` and the runner, so a dry run validates exactly the plan the runner
will execute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acquisition.alignment import align_from_config
from acquisition.bench import fiducial_locator
from acquisition.messages import Plan
from acquisition.plan import scan_plan
from acquisition.scan_config import ScanConfig, default_flat_point, scan_config
from instruments.config import InstrumentsConfig, instruments_config, read_toml
from instruments.protocols import BandwidthMode, TunableFilter
from layout.affine import AffineFit
from layout.manifest import ChipManifest, read_manifest


@dataclass(frozen=True)
class ScanSetup:
    raw: dict[str, Any]
    instruments: InstrumentsConfig
    config: ScanConfig
    manifest: ChipManifest
    alignment: AffineFit
    flat_chip_um: tuple[float, float]
    arrays: tuple[str, ...]

    @property
    def settle_s(self) -> float:
        """The wait after a retune: ``[scan] settle_s``, else the filter's."""
        s = self.config.scan.settle_s
        return self.instruments.filter.settle_s if s is None else s

    def plan(self, filter_: TunableFilter | None = None) -> Plan:
        """The scan's messages. Given the connected filter, from what it reports: its
        narrowest bandwidth mode (for ``bandwidth = "narrowest"``) and its wavelength range,
        which every band must lie in; without one (a dry run touches no device) a Kurios
        VB1's, NARROW."""
        narrowest = BandwidthMode.NARROW
        if filter_ is not None:
            narrowest = filter_.narrowest_mode
            lo, hi = filter_.wavelength_range_nm
            outside = [w for w in self.config.scan.wavelengths_nm if not lo <= w <= hi]
            if outside:
                raise ValueError(
                    f"[scan] bands {outside[:4]}{'...' if len(outside) > 4 else ''} nm lie "
                    f"outside the connected filter's range {lo:g}-{hi:g} nm ({filter_.identity})"
                )
        return scan_plan(
            self.manifest,
            self.config,
            self.alignment.transform,
            self.arrays,
            flat_chip_um=self.flat_chip_um,
            settle_s=self.settle_s,
            mode=self.config.scan.mode(narrowest),
        )


def scan_setup(
    config_path: Path, manifest_path: Path, arrays: Sequence[str] | None = None
) -> ScanSetup:
    """Read and check the bench config and manifest, align the chip, choose the flat point."""
    raw = read_toml(config_path)
    instruments = instruments_config(raw, config_path)
    config = scan_config(raw, config_path)
    manifest = read_manifest(manifest_path)
    names = tuple(manifest.arrays.name) if arrays is None else tuple(arrays)
    for name in names:
        manifest.array_index(name)
    bad = sorted(set(config.scan.polarizations) - {"x", "y"})
    if bad:
        raise ValueError(
            f"{config_path}: [scan] polarizations {bad}: hypercubes name polarisations 'x' and "
            "'y' (the rotator angle that gives each is the value)"
        )
    fit = align_from_config(manifest, config.alignment, fiducial_locator(raw, config_path))
    flat = config.flat
    if flat.x_um is not None and flat.y_um is not None:
        flat_chip_um = (flat.x_um, flat.y_um)
    else:
        flat_chip_um = default_flat_point(manifest, flat.clearance_um, config.optics.fov_um)
    return ScanSetup(raw, instruments, config, manifest, fit, flat_chip_um, names)
