"""PNG previews of what the virtual microscope shows of one array, and a check of its honesty.

A person looks at three plots before trusting a simulated scan: one raw sample-camera frame (do
the pads, fiducials, blur and illumination look like a microscope image?), a false-colour image
of the array built from all bands (do replicas and neighbours differ the way spectra should?),
and a few pads' spectra measured from rendered frames the way processing will measure them,
against the ground truth (does rendering recover the truth through noise, lamp drift, blur and
non-uniform illumination?).

Choices the plots rest on:

* Sensor: the default :class:`MicroscopeConfig` except the sample sensor, sized to hold the
  array plus :data:`FRAME_MARGIN_UM` on every side (enough for the fiducial crosses of the
  default layout, 15 µm off the corners with 10 µm arms), rounded up to 16 pixels and capped at
  :data:`MAX_SENSOR_PX` a side; a larger array shows its centre only.
* Exposure per band: bare glass at :data:`GLASS_FILL` (70 %) of the full well, from the light in
  the band (``Lamp.relative_light`` x ``unit_transmission_e_per_s``) and the glass transmission.
* Every band renders five sample frames (array and bare glass for x and y, one dark with the
  filter at BLACK) and the matching reference-camera frames. The flat is a view of bare glass
  off the chip (past its bounding box), so nothing but glass is in that frame.
* Measured transmission of a pad, as processing does it: per pixel (array - dark) / (glass -
  dark) over the pad's central region (:data:`PAD_CORE_FRACTION` of its side, far from the
  blurred edges), averaged, times the reference camera's glass / array ratio (the lamp drifts
  between the two views; both cameras see the same lamp) and the bare glass's own transmission.
* False colour from the rendered frames (not the noise-free ``sample_rate``): the flat-fielded,
  lamp-corrected x-polarisation image relative to bare glass per band, weighted into R, G, B by
  Gaussians of :data:`RGB_SIGMA_NM` centred at :data:`RGB_CENTERS_NM` (610, 550, 465 nm), each
  normalised to unit sum, so bare glass is white and a flat spectrum is grey; clipped to 0..1.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from numpy.typing import NDArray
from tqdm import tqdm

from common.atomic import save_png
from common.values import SEED
from dataset.false_colour import RGB_CENTERS_NM, RGB_SIGMA_NM, rgb_weights
from dataset.truth_file import Truth
from instruments.protocols import BandwidthMode
from layout.manifest import ChipManifest
from simulators.microscope.config import (
    PREVIEW_PADS,
    MicroscopeConfig,
    MicroscopeOptics,
    SensorConfig,
)
from simulators.microscope.microscope import OpticalState, Role, VirtualMicroscope
from simulators.passband import DEFAULT_BAND_CENTERS_NM, DEFAULT_MODE, FILTER_WAVELENGTH_NM
from simulators.spectral import AnalyticModel
from simulators.spectral.base import SpectralModel
from simulators.virtual_chip import FabricationConfig, VirtualChip, make_truth

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]

GLASS_FILL = 0.7
FRAME_MARGIN_UM = 30.0
MAX_SENSOR_PX = 2048
PAD_CORE_FRACTION = 0.5
BIT_DEPTH = 12
_FLAT_CLEARANCE_UM = 50.0


def check_wavelength(wavelength_nm: float) -> None:
    """The filter tunes over its range only; anything else has no light to render."""
    FILTER_WAVELENGTH_NM.check("wavelength_nm", wavelength_nm)


def preview_paths(output_dir: Path, array: str, wavelength_nm: float) -> dict[str, Path]:
    """The PNGs :func:`write_previews` writes, by kind (checked as outputs before rendering)."""
    return {
        "frame": Path(output_dir) / f"frame_{array}_{wavelength_nm:g}nm.png",
        "rgb": Path(output_dir) / f"rgb_{array}.png",
        "spectra": Path(output_dir) / f"spectra_{array}.png",
    }


def preview_sensor(
    manifest: ChipManifest, index: int, optics: MicroscopeOptics | None = None
) -> SensorConfig:
    """The default sensor resized to hold the array with margin (16-pixel steps, capped)."""
    o = optics or MicroscopeOptics()
    a = manifest.arrays
    p = manifest.pad_pitch_um

    def pixels(pads: int) -> int:
        need = (pads * p + 2.0 * FRAME_MARGIN_UM) / o.um_per_px
        return int(min(MAX_SENSOR_PX, 16 * math.ceil(need / 16.0)))

    return SensorConfig(width_px=pixels(int(a.cols[index])), height_px=pixels(int(a.rows[index])))


def glass_exposure_s(
    microscope: VirtualMicroscope,
    wavelength_nm: float,
    mode: BandwidthMode = DEFAULT_MODE,
    fill: float = GLASS_FILL,
) -> float:
    """Exposure that fills ``fill`` of the full well through bare glass in this band."""
    if not 0.0 < fill <= 1.0:
        raise ValueError(f"fill={fill} must be in (0, 1]")
    light = microscope.lamp.relative_light(wavelength_nm, mode)
    if light <= 0:
        raise ValueError(f"no light at {wavelength_nm:g} nm in {mode.value} mode")
    glass = float(microscope.chip.glass_transmission([wavelength_nm])[0])
    rate = light * microscope.config.lamp.unit_transmission_e_per_s * glass
    return fill * microscope.config.sensor.full_well_e / rate


def bare_glass_center_um(microscope: VirtualMicroscope) -> tuple[float, float]:
    """A chip point whose whole field of view is bare glass: left of everything on the chip."""
    pads = microscope.chip.manifest.pads
    s, o = microscope.config.sensor, microscope.config.optics
    half_fov = 0.5 * math.hypot(s.width_px, s.height_px) * o.um_per_px
    reach = microscope.chip.manifest.pad_pitch_um + FRAME_MARGIN_UM + _FLAT_CLEARANCE_UM
    return (
        float(pads.x_um.min()) - reach - half_fov,
        float(0.5 * (pads.y_um.min() + pads.y_um.max())),
    )


@dataclass(frozen=True)
class PadRegion:
    """Pixels of one pad's central region in the frame (row and column indices)."""

    pad_row: int  # row of the manifest's pad table
    rows: NDArray[np.intp]
    cols: NDArray[np.intp]


def pad_regions(
    microscope: VirtualMicroscope, stage_um: tuple[float, ...], index: int
) -> list[PadRegion]:
    """The central regions of the array's pads that lie wholly inside the frame, in pad order."""
    manifest = microscope.chip.manifest
    pads = manifest.pads
    pixels = microscope.pixel_map(stage_um)
    half = 0.5 * PAD_CORE_FRACTION * manifest.pad_size_um
    sel = manifest.pads_of(index)
    sel = sel[np.lexsort((pads.col[sel], pads.row[sel]))]
    out = []
    for row in sel:
        x, y = float(pads.x_um[row]), float(pads.y_um[row])
        r, c = pixels.to_pixel(
            np.array([x - half, x + half, x - half, x + half]),
            np.array([y - half, y - half, y + half, y + half]),
        )
        r0, r1 = math.floor(r.min()), math.ceil(r.max()) + 1
        c0, c1 = math.floor(c.min()), math.ceil(c.max()) + 1
        if r0 < 0 or c0 < 0 or r1 > pixels.height_px or c1 > pixels.width_px:
            continue
        u, v = pixels.chip_coords(slice(r0, r1), slice(c0, c1))
        inside = (np.abs(u - x) <= half) & (np.abs(v - y) <= half)
        rr, cc = np.nonzero(inside)
        if rr.size:
            out.append(PadRegion(int(row), rr + r0, cc + c0))
    return out


@dataclass(frozen=True)
class ArrayPreview:
    """What the three plots show, kept so tests can check the numbers behind them."""

    array: str
    centers_nm: FloatArray  # (B,)
    exposure_s: FloatArray  # (B,) per band
    rgb: F32  # (H, W, 3), 0..1, white = bare glass
    pad_rows: NDArray[np.int64]  # (K,) rows of the pad table
    pad_labels: list[str]  # (K,) "r{row} c{col}"
    measured: FloatArray  # (K, 2, B) transmission measured from rendered frames
    truth: FloatArray  # (K, 2, B) passband-averaged truth
    um_per_px: float


class _Bench:
    """Renders one band's frames for both cameras (frame 0 of each state, the scan's first)."""

    def __init__(self, microscope: VirtualMicroscope, mode: BandwidthMode) -> None:
        self.microscope = microscope
        self.mode = mode
        self.hwp_zero_deg = microscope.config.optics.hwp_zero_deg

    def state(self, wavelength_nm: float, pol: int, center_um: tuple[float, float]) -> OpticalState:
        sx, sy = self.microscope.chip_to_stage(*center_um)
        return OpticalState(wavelength_nm, self.mode, self.hwp_zero_deg + 45.0 * pol, (sx, sy, 0.0))

    def frame(self, role: Role, state: OpticalState, exposure_s: float) -> F32:
        image = self.microscope.render(
            role, state, exposure_s=exposure_s, gain_db=0.0, bit_depth=BIT_DEPTH, frame=0
        )
        out: F32 = image.astype(np.float32)
        return out

    def dark(self, state: OpticalState, exposure_s: float) -> tuple[F32, float]:
        """Sample dark frame and mean reference dark: the filter at BLACK, same exposure."""
        black = OpticalState(
            state.wavelength_nm, BandwidthMode.BLACK, state.rotator_deg, state.stage_um
        )
        return self.frame("sample", black, exposure_s), float(
            self.frame("reference", black, exposure_s).mean()
        )


def render_array_preview(
    microscope: VirtualMicroscope,
    truth: Truth,
    array: str,
    *,
    pads: int = 6,
    centers_nm: FloatArray = DEFAULT_BAND_CENTERS_NM,
    mode: BandwidthMode = DEFAULT_MODE,
    progress: bool = False,
) -> ArrayPreview:
    """Render every band of an array and its flat; measure ``pads`` pads spread over the array."""
    if not 1 <= pads <= 20:
        raise ValueError(f"pads={pads} must be in [1, 20]")
    manifest = microscope.chip.manifest
    index = manifest.array_index(array)
    if len(truth) != len(manifest.pads):
        raise ValueError(
            f"truth has {len(truth)} pads, the chip manifest {len(manifest.pads)}: not this chip"
        )
    centers = np.asarray(centers_nm, dtype=np.float64)
    if not np.allclose(truth.band_center_nm, centers):
        raise ValueError("truth bands differ from the bands to render")
    bench = _Bench(microscope, mode)
    center = manifest.array_center_um(index)
    flat_center = bare_glass_center_um(microscope)
    regions = pad_regions(microscope, bench.state(550.0, 0, center).stage_um, index)
    if not regions:
        raise ValueError(f"no pad of array {array} lies wholly inside the preview frame")
    chosen = [regions[int(k)] for k in np.unique(np.linspace(0, len(regions) - 1, pads).round())]
    s = microscope.config.sensor
    weights = rgb_weights(centers)
    rgb = np.zeros((s.height_px, s.width_px, 3), dtype=np.float32)
    measured = np.empty((len(chosen), 2, centers.size), dtype=np.float64)
    exposures = np.empty(centers.size, dtype=np.float64)
    glass_truth = truth.glass_transmission
    for b, wl in enumerate(tqdm(centers, desc="bands", unit="band", disable=not progress)):
        t = glass_exposure_s(microscope, float(wl), mode)
        exposures[b] = t
        dark, ref_dark = bench.dark(bench.state(float(wl), 0, center), t)
        for pol in (0, 1):
            on = bench.state(float(wl), pol, center)
            off = bench.state(float(wl), pol, flat_center)
            sample = bench.frame("sample", on, t) - dark
            flat = bench.frame("sample", off, t) - dark
            lamp = (bench.frame("reference", off, t).mean() - ref_dark) / (
                bench.frame("reference", on, t).mean() - ref_dark
            )
            relative = sample / np.maximum(flat, np.float32(1.0))
            relative *= np.float32(lamp)
            for k, region in enumerate(chosen):
                core = float(relative[region.rows, region.cols].mean())
                measured[k, pol, b] = core * float(glass_truth[b])
            if pol == 0:
                for channel in range(3):
                    rgb[..., channel] += np.float32(weights[channel, b]) * relative
    np.clip(rgb, 0.0, 1.0, out=rgb)
    pad_table = manifest.pads
    rows = np.array([r.pad_row for r in chosen], dtype=np.int64)
    return ArrayPreview(
        array=array,
        centers_nm=centers,
        exposure_s=exposures,
        rgb=rgb,
        pad_rows=rows,
        pad_labels=[f"r{pad_table.row[r]} c{pad_table.col[r]}" for r in rows],
        measured=measured,
        truth=np.asarray(truth.transmission[rows], dtype=np.float64),
        um_per_px=microscope.config.optics.um_per_px,
    )


def render_band_frame(
    microscope: VirtualMicroscope,
    array: str,
    wavelength_nm: float,
    mode: BandwidthMode = DEFAULT_MODE,
) -> tuple[NDArray[np.uint16], float]:
    """The raw x-polarisation sample frame (DN) of an array's centre, and its exposure."""
    check_wavelength(wavelength_nm)
    index = microscope.chip.manifest.array_index(array)
    bench = _Bench(microscope, mode)
    state = bench.state(wavelength_nm, 0, microscope.chip.manifest.array_center_um(index))
    exposure = glass_exposure_s(microscope, wavelength_nm, mode)
    frame = microscope.render(
        "sample", state, exposure_s=exposure, gain_db=0.0, bit_depth=BIT_DEPTH, frame=0
    )
    return frame, exposure


# -- plots ------------------------------------------------------------------------------------


def _scale_bar_um(width_um: float) -> float:
    """A round length near a fifth of the field."""
    target = width_um / 5.0
    steps = [m * 10.0**e for e in range(-1, 4) for m in (1.0, 2.0, 5.0)]
    return max(x for x in steps if x <= target) if target >= steps[0] else steps[0]


def _add_scale_bar(ax: Axes, width_px: int, height_px: int, um_per_px: float) -> None:
    length_um = _scale_bar_um(width_px * um_per_px)
    length_px = length_um / um_per_px
    # Bottom centre: the corners hold the fiducial crosses.
    x0, y0 = 0.5 * (width_px - length_px), 0.95 * height_px
    thickness = max(2.0, 0.012 * height_px)
    ax.add_patch(
        Rectangle((x0, y0 - thickness), length_px, thickness, fc="black", ec="white", lw=0.8)
    )
    ax.text(
        x0 + length_px / 2,
        y0 - 2.0 * thickness,
        f"{length_um:g} µm",
        ha="center",
        va="bottom",
        fontsize=8,
        bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 1.0},
    )


def plot_frame(
    path: Path,
    frame: NDArray[np.uint16],
    *,
    array: str,
    wavelength_nm: float,
    exposure_s: float,
    mode: BandwidthMode,
    um_per_px: float,
) -> None:
    """The raw frame in DN with a colour bar and a scale bar."""
    h, w = frame.shape
    fig = Figure(figsize=(7.5, 6.5 * h / w + 0.5))
    ax = fig.subplots()
    image = ax.imshow(
        frame, cmap="gray", interpolation="nearest", vmin=0, vmax=(1 << BIT_DEPTH) - 1
    )
    fig.colorbar(image, ax=ax, label=f"DN ({BIT_DEPTH}-bit)", shrink=0.85)
    _add_scale_bar(ax, w, h, um_per_px)
    ax.set_title(
        f"{array}: sample camera at {wavelength_nm:g} nm ({mode.value}, x pol.), "
        f"exposure {exposure_s * 1e3:.3g} ms",
        fontsize=9,
    )
    ax.set_xlabel("column (px)")
    ax.set_ylabel("row (px)")
    fig.tight_layout()
    save_png(fig, path)


def plot_rgb(path: Path, preview: ArrayPreview) -> None:
    """False-colour image of the array from all bands (white = bare glass)."""
    h, w, _ = preview.rgb.shape
    fig = Figure(figsize=(7.0, 7.0 * h / w + 0.5))
    ax = fig.subplots()
    ax.imshow(preview.rgb, interpolation="nearest")
    _add_scale_bar(ax, w, h, preview.um_per_px)
    c = preview.centers_nm
    ax.set_title(
        f"{preview.array}: false colour from {c.size} bands {c[0]:g}-{c[-1]:g} nm (x pol.), "
        f"flat-fielded, white = bare glass\nR, G, B = Gaussians (sigma {RGB_SIGMA_NM:g} nm) at "
        + ", ".join(f"{x:g}" for x in RGB_CENTERS_NM)
        + " nm",
        fontsize=9,
    )
    ax.set_xlabel("column (px)")
    ax.set_ylabel("row (px)")
    fig.tight_layout()
    save_png(fig, path)


def max_error(preview: ArrayPreview) -> float:
    """Largest |measured - truth| over the plotted pads, polarisations and bands."""
    return float(np.max(np.abs(preview.measured - preview.truth)))


def plot_spectra(path: Path, preview: ArrayPreview) -> None:
    """Truth as lines, measured as markers, x and y side by side."""
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    c = preview.centers_nm
    for pol, ax in enumerate(axes):
        for k, label in enumerate(preview.pad_labels):
            colour = f"C{k % 10}"
            ax.plot(c, preview.truth[k, pol], "-", color=colour, lw=1.2, label=label)
            ax.plot(c, preview.measured[k, pol], "o", color=colour, ms=3.5, mfc="none")
        ax.set_title(f"{'xy'[pol]} polarisation", fontsize=9)
        ax.set_xlabel("wavelength (nm)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("transmission")
    axes[1].legend(fontsize=7, loc="best", title="lines: truth, o: measured", title_fontsize=7)
    fig.suptitle(
        f"{preview.array}: {len(preview.pad_labels)} pads, measured from rendered frames "
        f"(dark- and flat-corrected, reference-normalised) vs passband-averaged truth; "
        f"max |diff| {max_error(preview):.4f}",
        fontsize=9,
    )
    fig.tight_layout()
    save_png(fig, path)


def preview_config(manifest: ChipManifest, array: str, seed: int) -> MicroscopeConfig:
    """The default microscope with a sensor sized for the array (module docstring)."""
    optics = MicroscopeOptics()
    sensor = preview_sensor(manifest, manifest.array_index(array), optics)
    return MicroscopeConfig(optics=optics, sensor=sensor, seed=seed)


@dataclass(frozen=True)
class PreviewFiles:
    """The PNGs written, and how far the measured spectra were from the truth."""

    frame: Path
    rgb: Path
    spectra: Path
    max_error: float
    sensor_px: tuple[int, int]  # (width, height)


def write_previews(
    manifest: ChipManifest,
    output_dir: Path,
    *,
    array: str | None = None,
    wavelength_nm: float = 550.0,
    model: SpectralModel | None = None,
    seed: int = 0,
    pads: int = 6,
    progress: bool = False,
) -> PreviewFiles:
    """frame_<array>_<wl>nm.png, rgb_<array>.png and spectra_<array>.png in ``output_dir``."""
    name = array or manifest.arrays.name[0]
    manifest.array_index(name)
    check_wavelength(wavelength_nm)
    PREVIEW_PADS.check("pads", pads)
    SEED.check("seed", seed)
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"output directory {output_dir} does not exist")
    chip = VirtualChip(manifest, model or AnalyticModel(), FabricationConfig(seed=seed))
    truth = make_truth(chip)
    config = preview_config(manifest, name, seed)
    with VirtualMicroscope(chip, config) as microscope:
        preview = render_array_preview(microscope, truth, name, pads=pads, progress=progress)
        frame, exposure = render_band_frame(microscope, name, wavelength_nm)
    files = PreviewFiles(
        **preview_paths(output_dir, name, wavelength_nm),
        max_error=max_error(preview),
        sensor_px=(config.sensor.width_px, config.sensor.height_px),
    )
    plot_frame(
        files.frame,
        frame,
        array=name,
        wavelength_nm=wavelength_nm,
        exposure_s=exposure,
        mode=DEFAULT_MODE,
        um_per_px=config.optics.um_per_px,
    )
    plot_rgb(files.rgb, preview)
    plot_spectra(files.spectra, preview)
    return files
