"""A scan folder rendered by the virtual microscope in the runner's layout, for extraction tests.

The acquisition runner writes the same files through the real drivers; this renders them
directly (no devices, no timing), so registration and extraction can be tested on small fields
quickly, with the geometry under the test's control (stage landing errors, tiling, defects):

The files are those the runner writes, built the way it builds them, so they cannot drift from
it: named by :func:`acquisition.scan_folder.flat_name` and :func:`~acquisition.scan_folder.tile_name`,
written by :class:`dataset.hypercube_file.HypercubeWriter` with attributes declared by
:class:`dataset.hypercube_file.HypercubeAttrs`:

* ``flat.h5``: role "flat", array "*"; its ``signal`` section is bare glass per (polarization,
  band) at the band's exposure (glass at 70 % of full well, on the ladder), with its own darks
  at every sample exposure and reference darks at every reference exposure.
* ``<array>_r<row>c<col>.h5`` per tile of :func:`acquisition.tiling.tiles_for_array`: role
  "tile", its own darks, ``flat_file`` = "flat.h5", and the runner's attributes ``array``,
  ``array_id``, ``replica``, ``centre_chip_um``, ``pads`` and ``chip_to_stage``. Not
  ``full_scale_dn``: the full scale comes from the config's camera ``bit_depth`` (a test
  strips it to see extraction without one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from acquisition.scan_config import ExposureConfig, default_flat_point
from acquisition.scan_folder import flat_name, tile_name
from acquisition.tiling import tiles_for_array
from dataset.hypercube_attrs import HypercubeAttrs
from dataset.hypercube_file import HypercubeLayout, HypercubeWriter
from dataset.truth_file import Truth
from instruments.protocols import BandwidthMode
from layout.manifest import ChipManifest, write_manifest
from simulators.microscope.config import LampConfig, MicroscopeConfig, SensorConfig
from simulators.microscope.microscope import OpticalState, VirtualMicroscope
from simulators.microscope.preview import glass_exposure_s
from simulators.passband import DEFAULT_BAND_CENTERS_NM
from simulators.spectral import AnalyticModel
from simulators.virtual_chip import FabricationConfig, VirtualChip, make_truth

MODE = BandwidthMode.NARROW
POLARIZATIONS = {"x": 0.0, "y": 45.0}
REFERENCE_FILL = 0.5


@dataclass(frozen=True)
class ScanSettings:
    sensor_px: int = 160
    frames: int = 2
    dark_frames: int = 2
    bit_depth: int = 12
    seed: int = 0
    overlap_um: float = 5.0
    bands_nm: tuple[float, ...] = tuple(float(w) for w in DEFAULT_BAND_CENTERS_NM)
    lamp: LampConfig = field(default_factory=LampConfig)
    fabrication: FabricationConfig = field(default_factory=FabricationConfig)
    camera_rotation_deg: float = 0.3
    landing_sd_um: float = 0.4  # stage landing error per tile (deterministic from the seed)


@dataclass(frozen=True)
class RenderedScan:
    folder: Path
    manifest: ChipManifest
    manifest_path: Path
    truth: Truth
    tiles: dict[str, list[Path]]


def _mean(frames: list[NDArray[np.uint16]]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = np.mean(np.array(frames, dtype=np.float32), axis=0)
    return out


def render_scan(
    folder: Path,
    manifest: ChipManifest,
    settings: ScanSettings | None = None,
    arrays: list[str] | None = None,
) -> RenderedScan:
    """Render a whole scan of ``arrays`` (default all) into ``folder`` (see the module)."""
    s = settings or ScanSettings()
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder.parent / f"{folder.name}_chip.h5"
    write_manifest(manifest_path, manifest)
    chip = VirtualChip(manifest, AnalyticModel(), s.fabrication)
    bands = np.array(s.bands_nm)
    truth = make_truth(chip, bands, MODE)
    config = MicroscopeConfig(
        sensor=SensorConfig(width_px=s.sensor_px, height_px=s.sensor_px),
        lamp=s.lamp,
        seed=s.seed,
    )
    config = replace(
        config, optics=replace(config.optics, camera_rotation_deg=s.camera_rotation_deg)
    )
    um_per_px = config.optics.um_per_px
    fov = s.sensor_px * um_per_px
    ladder = ExposureConfig()
    rng = np.random.default_rng(s.seed + 101)
    tiles: dict[str, list[Path]] = {}
    with VirtualMicroscope(chip, config, threads=1) as mic:
        exposures = {}
        for pol in POLARIZATIONS:
            for wl in bands:
                t = ladder.quantise(glass_exposure_s(mic, float(wl), MODE))
                light = mic.lamp.relative_light(float(wl), MODE)
                ref_full = mic.config.reference_sensor.full_well_e
                tr = ladder.quantise(
                    REFERENCE_FILL * ref_full / (light * config.lamp.reference_e_per_s)
                )
                exposures[pol, float(wl)] = (t, tr)
        sample_exp = sorted({e[0] for e in exposures.values()})
        ref_exp = sorted({e[1] for e in exposures.values()})
        layout = HypercubeLayout.build(
            tuple(POLARIZATIONS), bands, s.sensor_px, s.sensor_px, sample_exp, ref_exp
        )
        mount = config.mount
        rot = math.radians(mount.rotation_deg)
        chip_to_stage = [
            [math.cos(rot), -math.sin(rot), mount.offset_x_um],
            [math.sin(rot), math.cos(rot), mount.offset_y_um],
        ]
        base: dict[str, Any] = {
            "chip_id": manifest.chip_id,
            "manifest_sha256": manifest.content_sha256(),
            "layout_sha256": str(manifest.attrs.get("layout_sha256", "")),
            "pixel_size_um": um_per_px,
            "instruments": {"camera": "virtual microscope sample camera"},
            "config": {"camera": {"bit_depth": s.bit_depth}},
            "chip_to_stage": chip_to_stage,
        }

        def acquire(writer: HypercubeWriter, stage: tuple[float, float, float]) -> None:
            for pol, angle in POLARIZATIONS.items():
                for wl in bands:
                    t, tr = exposures[pol, float(wl)]
                    state = OpticalState(float(wl), MODE, angle, stage)
                    kw = {"gain_db": 0.0, "bit_depth": s.bit_depth}
                    image = _mean(
                        [
                            mic.render("sample", state, exposure_s=t, frame=k, **kw)
                            for k in range(s.frames)
                        ]  # type: ignore[arg-type]
                    )
                    reference = float(
                        np.mean(
                            [
                                mic.render("reference", state, exposure_s=tr, frame=k, **kw).mean()
                                for k in range(s.frames)
                            ]  # type: ignore[arg-type]
                        )
                    )
                    writer.write_band(
                        "signal", pol, float(wl), image, reference=reference,
                        reference_exposure_s=tr, exposure_s=t, frames=s.frames, timestamp_s=0.0,
                    )  # fmt: skip
            black = OpticalState(500.0, BandwidthMode.BLACK, 0.0, stage)
            kw = {"gain_db": 0.0, "bit_depth": s.bit_depth}
            for t in sample_exp:
                dark = _mean(
                    [
                        mic.render("sample", black, exposure_s=t, frame=k, **kw)
                        for k in range(s.dark_frames)
                    ]
                )  # type: ignore[arg-type]
                writer.write_dark(t, dark, frames=s.dark_frames, timestamp_s=0.0)
            for t in ref_exp:
                ref = float(
                    np.mean(
                        [
                            mic.render("reference", black, exposure_s=t, frame=k, **kw).mean()
                            for k in range(s.dark_frames)
                        ]
                    )
                )  # type: ignore[arg-type]
                writer.write_reference_dark(t, ref, frames=s.dark_frames, timestamp_s=0.0)

        flat_chip = default_flat_point(manifest, 50.0, (fov, fov))
        fx, fy = mic.chip_to_stage(*flat_chip)
        flat = HypercubeAttrs(
            **base, role="flat", x_um=fx, y_um=fy, centre_chip_um=flat_chip, array="*"
        )
        flat_path = folder / flat_name(None)
        with HypercubeWriter.create(
            flat_path, layout, flat.to_attrs(), keep_open=True, durable=False
        ) as writer:
            acquire(writer, (fx, fy, 0.0))
        for name in arrays or list(manifest.arrays.name):
            for tile in tiles_for_array(manifest, name, (fov, fov), s.overlap_um):
                sx, sy = mic.chip_to_stage(*tile.centre_um)
                lx, ly = rng.normal(0.0, s.landing_sd_um, 2) if s.landing_sd_um > 0 else (0, 0)
                stage = (sx + float(lx), sy + float(ly), 0.0)
                k = manifest.array_index(name)
                attrs = HypercubeAttrs(
                    **base,
                    role="tile",
                    x_um=stage[0],
                    y_um=stage[1],
                    centre_chip_um=tile.centre_um,
                    array=name,
                    array_id=int(manifest.arrays.array_id[k]),
                    replica=int(manifest.arrays.replica[k]),
                    tile_row=tile.row,
                    tile_col=tile.col,
                    pads=tuple(tile.pads),
                    flat_file=flat_path.name,
                )
                path = folder / tile_name(name, (tile.row, tile.col))
                with HypercubeWriter.create(
                    path, layout, attrs.to_attrs(), keep_open=True, durable=False
                ) as writer:
                    acquire(writer, stage)
                tiles.setdefault(name, []).append(path)
    return RenderedScan(folder, manifest, manifest_path, truth, tiles)
