"""The simulated bench's optics from its ``[simulation]`` table: chip, microscope and cameras.

The cameras of a simulated bench see a virtual chip, which the scan's manifest defines; the
microscope reads the device states straight from the in-process emulators. Emulators served over
TCP live in another process, so a bench whose serial devices are not all ``sim`` cannot render
frames: this is refused with a message saying so rather than showing a blank field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from layout.manifest import ChipManifest
from simulators.config_tables import dataclass_from_table
from simulators.microscope.config import (
    LampConfig,
    MicroscopeConfig,
    MicroscopeOptics,
    MountConfig,
    SensorConfig,
)
from simulators.microscope.microscope import VirtualMicroscope
from simulators.spectral import get_model
from simulators.virtual_chip import FabricationConfig, VirtualChip


class MicroscopeTable(BaseModel):
    """``[simulation.microscope]``: fields of the config dataclasses that differ from defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    camera_feed: Literal["pylon", "direct"] = Field(
        "pylon",
        description="pylon: the real Basler driver grabs rendered frames through pylon's "
        "emulation; direct: an in-process SimCamera (faster, no PNG round trip).",
    )
    spectral_model: str = "analytic"
    threads: int = Field(2, ge=1, le=64)
    optics: dict[str, Any] = Field(default_factory=dict)
    mount: dict[str, Any] = Field(default_factory=dict)
    lamp: dict[str, Any] = Field(default_factory=dict)
    sensor: dict[str, Any] = Field(default_factory=dict)
    reference_sensor: dict[str, Any] = Field(default_factory=dict)
    fabrication: dict[str, Any] = Field(default_factory=dict)


def microscope_config(
    table: MicroscopeTable,
    seed: int,
    *,
    um_per_px: float | None = None,
    sensor_px: tuple[int, int] | None = None,
) -> MicroscopeConfig:
    """The microscope of ``[simulation.microscope]``; ``um_per_px`` and ``sensor_px`` (width,
    height) come from the scan's ``[optics]`` on a bench that scans, so the pixel the scan plans
    with and the pixel the simulator renders are one setting, never two that can disagree."""
    fixed_optics: dict[str, Any] = {} if um_per_px is None else {"um_per_px": um_per_px}
    fixed_sensor: dict[str, Any] = (
        {} if sensor_px is None else {"width_px": sensor_px[0], "height_px": sensor_px[1]}
    )
    for name, fields, fixed in (
        ("optics", table.optics, fixed_optics),
        ("sensor", table.sensor, fixed_sensor),
    ):
        clash = sorted(set(fields) & set(fixed))
        if clash:
            raise ValueError(
                f"[simulation.microscope.{name}] sets {', '.join(clash)}, which the scan's "
                "[optics] table sets for the simulated bench too; set it once, in [optics]"
            )
    return MicroscopeConfig(
        optics=dataclass_from_table(
            MicroscopeOptics, table.optics, "simulation.microscope.optics", **fixed_optics
        ),
        mount=dataclass_from_table(MountConfig, table.mount, "simulation.microscope.mount"),
        lamp=dataclass_from_table(LampConfig, table.lamp, "simulation.microscope.lamp"),
        sensor=dataclass_from_table(
            SensorConfig, table.sensor, "simulation.microscope.sensor", **fixed_sensor
        ),
        reference_sensor=dataclass_from_table(
            SensorConfig,
            {"width_px": 64, "height_px": 64, **table.reference_sensor},
            "simulation.microscope.reference_sensor",
        ),
        seed=seed,
    )


def bench_chip(manifest: ChipManifest, table: MicroscopeTable, seed: int) -> VirtualChip:
    """The chip the simulated bench renders: ``manifest`` through the table's spectral model,
    fabricated with its ``fabrication`` settings and the simulation seed. The one way to build
    it, so ``metascan sim truth --config`` scores a scan against the very chip it imaged."""
    fabrication = dataclass_from_table(
        FabricationConfig, {"seed": seed, **table.fabrication}, "simulation.microscope.fabrication"
    )
    return VirtualChip(manifest, get_model(table.spectral_model), fabrication)


def build_microscope(
    manifest: ChipManifest,
    table: MicroscopeTable,
    seed: int,
    *,
    um_per_px: float | None = None,
    sensor_px: tuple[int, int] | None = None,
) -> VirtualMicroscope:
    """The virtual chip of ``manifest`` as fabricated, under the configured microscope (pixel
    size and sensor from the scan's ``[optics]`` when given, see :func:`microscope_config`)."""
    chip = bench_chip(manifest, table, seed)
    config = microscope_config(table, seed, um_per_px=um_per_px, sensor_px=sensor_px)
    return VirtualMicroscope(chip, config, threads=table.threads)
