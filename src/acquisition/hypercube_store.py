"""The engine's file subscriber: keeps what the engine measures in the scan folder's hypercubes
(contract 3), and tells a resumed engine what is already there.

One writer per open file (the flat, the current tile). Resume is by key: a band or dark whose
``completed`` flag is set is not measured again, an ``AutoExpose`` of a flat on disk is answered
from the sweep the flat records, a ``CheckDark`` of a file on disk from whether that file took
its own darks. Darks reused under the dark policy are copied from their source file, data and
timestamps, so every hypercube holds its darks and a resumed scan's files stay bit-identical.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.autoexpose import ExposureResult
from acquisition.documents import (
    BandMeasured,
    DarkMeasured,
    DarksCopied,
    Document,
    ExposureFound,
    Publish,
)
from acquisition.messages import (
    Acquire,
    AcquireDark,
    CameraRole,
    CheckDark,
    DarkDrift,
    FileGrid,
    FileKey,
    OpenFlat,
    OpenTile,
)
from acquisition.scan_folder import flat_name, tile_name
from dataset.hypercube_attrs import HypercubeAttrs
from dataset.hypercube_file import (
    HypercubeLayout,
    HypercubeWriter,
    read_darks,
    read_hypercube_attrs,
)
from layout.manifest import ChipManifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileContext:
    """Attributes every hypercube of the scan carries (contract 3)."""

    chip_id: str
    pixel_size_um: float
    instruments: dict[str, str]
    config: dict[str, Any]
    chip_to_stage: list[list[float]]  # 2x3 [A | offset]: stage µm = A @ chip µm + offset
    full_scale_dn: int  # the sample camera's, for saturation per pixel in extraction
    frame_px: tuple[int, int]  # (height, width) of the sample camera's images


def file_name(key: FileKey) -> str:
    array, tile = key
    if tile is None:
        return flat_name(array)
    if array is None:
        raise ValueError(f"tile {tile} names no array")
    return tile_name(array, tile)


def layout_of(grid: FileGrid, frame_px: tuple[int, int]) -> HypercubeLayout:
    return HypercubeLayout.build(
        grid.polarizations,
        list(grid.wavelengths_nm),
        frame_px[0],
        frame_px[1],
        list(grid.dark_exposures_s),
        list(grid.reference_dark_exposures_s),
    )


class HypercubeStore:
    """Subscriber that writes hypercubes, and the engine's oracle of what is already on disk."""

    def __init__(
        self,
        folder: Path,
        manifest: ChipManifest,
        context: FileContext,
        publish: Publish,
        *,
        durable: bool,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self.manifest_sha256 = manifest.content_sha256()  # every file says which chip it is of
        self.context = context
        self.publish = publish
        self.durable = durable
        self._writers: dict[FileKey, HypercubeWriter] = {}
        self._recorded: dict[str | None, dict[tuple[str, float], ExposureResult]] = {}
        self._found: dict[tuple[str | None, str, float], ExposureResult] = {}
        self._flat_file: str | None = None  # the flat the next tile belongs to

    # -- the subscriber ----------------------------------------------------------------------

    def __call__(self, doc: Document) -> None:
        if isinstance(doc, BandMeasured):
            m = doc.message
            self._writer((m.array, m.tile)).write_band(
                "signal",
                m.polarization,
                m.wavelength_nm,
                doc.image,
                reference=doc.reference_dn,
                reference_exposure_s=doc.reference_exposure_s,
                exposure_s=doc.exposure_s,
                frames=doc.frames,
                timestamp_s=doc.timestamp_s,
                flags=doc.flags,
            )
        elif isinstance(doc, DarkMeasured):
            d, writer = doc.message, self._writer((doc.message.array, doc.message.tile))
            if d.camera == "sample":
                writer.write_dark(
                    d.exposure_s, doc.image, frames=doc.frames, timestamp_s=doc.timestamp_s
                )
            else:
                writer.write_reference_dark(
                    d.exposure_s,
                    float(doc.image.mean()),
                    frames=doc.frames,
                    timestamp_s=doc.timestamp_s,
                )
        elif isinstance(doc, ExposureFound):
            e = doc.message
            self._found[e.array, e.polarization, e.wavelength_nm] = doc.result

    # -- files -------------------------------------------------------------------------------

    def open(self, message: OpenFlat | OpenTile) -> int:
        """Create or reopen the message's file; returns how many darks were copied into it."""
        if isinstance(message, OpenFlat):
            key: FileKey = (message.array, None)
            sweep = [
                {
                    "polarization": pol,
                    "wavelength_nm": wl,
                    "result": self._found[message.array, pol, wl].to_json(),
                }
                for pol, wl, _ in message.exposures
            ]
            attrs = self._attrs(message, role="flat", autoexposure=sweep)
        else:
            key = (message.array, message.tile)
            if self._flat_file is None:
                raise ValueError("the plan opened a tile before any flat")
            attrs = self._attrs(message, role="tile", flat_file=self._flat_file)
        path = self.folder / file_name(key)
        layout = layout_of(message.grid, self.context.frame_px)
        d = attrs.to_attrs()
        if path.exists():
            writer = HypercubeWriter.open_existing(path, layout, d, durable=self.durable)
        else:
            writer = HypercubeWriter.create(path, layout, d, durable=self.durable)
        self._writers[key] = writer
        if isinstance(message, OpenFlat):
            self._flat_file = path.name
        if message.darks_from is None:
            return 0
        copied = writer.copy_darks(self.folder / file_name(message.darks_from))
        if copied:
            self.publish(DarksCopied(key, message.darks_from, copied))
        return copied

    def close(self, key: FileKey) -> None:
        writer = self._writers.pop(key, None)
        if writer is not None:
            writer.close()

    def close_all(self) -> None:
        for key in list(self._writers):
            self.close(key)

    def _writer(self, key: FileKey) -> HypercubeWriter:
        writer = self._writers.get(key)
        if writer is None:
            raise ValueError(f"the plan measured into {file_name(key)} outside its Open/Close")
        return writer

    def _attrs(self, message: OpenFlat | OpenTile, **extra: Any) -> HypercubeAttrs:
        c = self.context
        common: dict[str, Any] = {
            "chip_id": c.chip_id,
            "manifest_sha256": self.manifest_sha256,
            "layout_sha256": str(self.manifest.attrs.get("layout_sha256", "")),
            "x_um": float(message.centre_stage_um[0]),
            "y_um": float(message.centre_stage_um[1]),
            "pixel_size_um": c.pixel_size_um,
            "instruments": c.instruments,
            "config": c.config,
            "centre_chip_um": [float(v) for v in message.centre_chip_um],
            "chip_to_stage": c.chip_to_stage,
            "full_scale_dn": c.full_scale_dn,
            "array": message.array or "*",
        }
        if isinstance(message, OpenTile):
            k = self.manifest.array_index(message.array)
            a = self.manifest.arrays
            common.update(
                array_id=int(a.array_id[k]),
                replica=int(a.replica[k]),
                tile_row=int(message.tile[0]),
                tile_col=int(message.tile[1]),
                pads=[int(p) for p in message.pads],
            )
        darks_from = None if message.darks_from is None else file_name(message.darks_from)
        return HypercubeAttrs(**common, **extra, darks_from=darks_from)

    # -- resume ------------------------------------------------------------------------------

    def band_done(self, m: Acquire) -> bool:
        writer = self._writer((m.array, m.tile))
        p, b = writer.layout.band_index(m.polarization, m.wavelength_nm)
        return bool(writer.completed("signal")[p, b])

    def dark_done(self, m: AcquireDark) -> bool:
        writer = self._writer((m.array, m.tile))
        layout = writer.layout
        if m.camera == "sample":
            exposures, done = layout.dark_exposures_s, writer.completed("dark")
        else:
            exposures, done = layout.reference_dark_exposures_s, writer.completed("reference_dark")
        index = int(np.argmin(np.abs(np.log(np.asarray(exposures) / m.exposure_s))))
        return bool(done[index])

    def recorded_exposure(self, array: str | None, key: tuple[str, float]) -> ExposureResult | None:
        """The auto-exposure of band ``key`` an existing flat file of ``array`` records."""
        if array not in self._recorded:
            found: dict[tuple[str, float], ExposureResult] = {}
            path = self.folder / flat_name(array)
            if path.exists():
                sweep = read_hypercube_attrs(path).autoexposure
                if sweep is None:
                    raise ValueError(f"{path} records no auto-exposure; is it this scan's flat?")
                for item in sweep:
                    band = (str(item["polarization"]), float(item["wavelength_nm"]))
                    found[band] = ExposureResult.from_json(item["result"])
            self._recorded[array] = found
        result = self._recorded[array].get(key)
        if result is not None:
            self._found[(array, *key)] = result
        return result

    def recorded_check(self, m: CheckDark) -> DarkDrift | None:
        """A dark check already decided: the file it was made for exists (it took its own darks
        exactly when the check found drift)."""
        path = self.folder / file_name((m.array, m.tile))
        if not path.exists():
            return None
        drifted = read_hypercube_attrs(path).darks_from is None
        return DarkDrift(float("nan"), drifted)

    def dark_mean_dn(self, key: FileKey, camera: CameraRole, exposure_s: float) -> float:
        """The mean of the dark file ``key`` holds for one camera at one exposure."""
        return read_darks(self.folder / file_name(key)).mean_dn(camera, exposure_s)
