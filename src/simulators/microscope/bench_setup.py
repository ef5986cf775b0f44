"""The simulated bench's optics from its ``[simulation]`` table: chip, microscope and cameras.

The cameras of a simulated bench see a virtual chip, which the scan's manifest defines; the
microscope reads the device states straight from the in-process emulators. Emulators served over
TCP live in another process, so a bench whose serial devices are not all ``sim`` cannot render
frames: this is refused with a message saying so rather than showing a blank field.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from layout.manifest import ChipManifest
from simulators.microscope.config import (
    LampConfig,
    MicroscopeConfig,
    MountConfig,
    OpticsConfig,
    SensorConfig,
)
from simulators.microscope.microscope import VirtualMicroscope
from simulators.spectral import get_model
from simulators.virtual_chip import FabricationConfig, VirtualChip


class MicroscopeTable(BaseModel):
    """``[simulation.microscope]``: fields of the config dataclasses that differ from defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


def _dataclass(cls: type[Any], fields: dict[str, Any], table: str, **fixed: Any) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"[simulation.microscope.{table}] has unknown field(s) {unknown}; known: {sorted(known)}"
        )
    return cls(**{**fields, **fixed})


def microscope_config(table: MicroscopeTable, seed: int) -> MicroscopeConfig:
    return MicroscopeConfig(
        optics=_dataclass(OpticsConfig, table.optics, "optics"),
        mount=_dataclass(MountConfig, table.mount, "mount"),
        lamp=_dataclass(LampConfig, table.lamp, "lamp"),
        sensor=_dataclass(SensorConfig, table.sensor, "sensor"),
        reference_sensor=_dataclass(
            SensorConfig,
            {"width_px": 64, "height_px": 64, **table.reference_sensor},
            "reference_sensor",
        ),
        seed=seed,
    )


def build_microscope(
    manifest: ChipManifest, table: MicroscopeTable, seed: int
) -> VirtualMicroscope:
    """The virtual chip of ``manifest`` as fabricated, under the configured microscope."""
    fabrication = _dataclass(FabricationConfig, {"seed": seed, **table.fabrication}, "fabrication")
    chip = VirtualChip(manifest, get_model(table.spectral_model), fabrication)
    return VirtualMicroscope(chip, microscope_config(table, seed), threads=table.threads)
