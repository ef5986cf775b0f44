"""Constants of the virtual microscope, with where each number comes from.

Optical convention (the co-polarisation question of physics.md section 5): the tunable filter
sits in the ILLUMINATION path. Lamp -> LCTF (whose exit polariser fixes the polarisation) ->
beam splitter (the reference camera takes the split-off part: lamp x passband, no sample) ->
half-wave plate on the rotation mount -> sample -> objective -> sample camera, with no analyser.
The camera therefore records the total zero-order power for x or y input,
T_x = |S_xx|^2 + |S_yx|^2, which is what the spectral models return and what the truth file
holds. A half-wave plate at angle a turns the polarisation by 2 (a - hwp_zero_deg); the
polariser's finite extinction leaves ``extinction_ratio`` of the power in the orthogonal state.

Defaults (assumptions unless a source is named):

* Pixel 0.25 µm at the sample (a 5.86 µm IMX174 pixel behind a ~23x objective), camera rotated
  0.3 degrees from the stage axes, chip mounted 0.15 degrees off the stage axes.
* Objective NA 0.4: Gaussian PSF with FWHM 0.51 lambda / NA (physics.md, Airy primer), i.e.
  0.70 µm at 550 nm; defocus adds a geometric blur of radius |dz| tan(asin NA), taken as a
  Gaussian of sigma half that radius.
* Koehler illumination: 3 % smooth fall-off to the field corners plus a 1 % tilt (physics.md:
  "a few percent").
* Sensor (EMVA 1288 model, physics.md; IMX174 figures): full well 32,700 e-, read noise 6.83 e-,
  dark current 5 e-/s, offset 1 % of full scale, PRNU 1 %, DSNU 1 e-, hot pixels 1e-4 of the
  sensor at 2,000 e-/s. Gain 0 dB maps the full well to full scale at the camera's bit depth.
* Light: a fully transmitting sample in the brightest default band (NARROW) gives 1.25e6 e-/s
  per pixel, so bare glass (T = 0.965) reaches 75 % of full well in ~20 ms; the blue bands are
  ~12x dimmer (lamp spectrum and the filter's blue roll-off).
* Lamp: drift of 1 % rms over a tile's 58 bands (a smooth random walk) plus 0.2 % rms flicker
  per frame; both cameras see the same factor for the same frame (physics.md: 0.5-2 % drift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common.values import Bounds

PREVIEW_PADS = Bounds(1, 20, integer=True)  # pads whose spectra a preview plots


def _check(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name}={value} must be in [{low:g}, {high:g}]")


@dataclass(frozen=True)
class SensorConfig:
    """One camera's sensor, in electrons and pixels (EMVA 1288 quantities)."""

    width_px: int = 512
    height_px: int = 512
    full_well_e: float = 32_700.0
    read_noise_e: float = 6.83
    dark_current_e_per_s: float = 5.0
    offset_fraction: float = 0.01  # black level as a fraction of full scale
    prnu: float = 0.01
    dsnu_e: float = 1.0
    hot_pixel_fraction: float = 1e-4
    hot_pixel_dark_e_per_s: float = 2_000.0

    def __post_init__(self) -> None:
        for name in ("width_px", "height_px"):
            value = getattr(self, name)
            if not 1 <= value <= 8192:
                raise ValueError(f"{name}={value} must be in [1, 8192] pixels")
        _check("full_well_e", self.full_well_e, 100.0, 1e7)
        _check("read_noise_e", self.read_noise_e, 0.0, 1000.0)
        _check("dark_current_e_per_s", self.dark_current_e_per_s, 0.0, 1e6)
        _check("offset_fraction", self.offset_fraction, 0.0, 0.5)
        _check("prnu", self.prnu, 0.0, 0.2)
        _check("dsnu_e", self.dsnu_e, 0.0, 1000.0)
        _check("hot_pixel_fraction", self.hot_pixel_fraction, 0.0, 0.01)
        _check("hot_pixel_dark_e_per_s", self.hot_pixel_dark_e_per_s, 0.0, 1e8)


@dataclass(frozen=True)
class MicroscopeOptics:
    """Imaging geometry and resolution of the sample path."""

    um_per_px: float = 0.25
    camera_rotation_deg: float = 0.3  # camera axes vs stage axes
    na_objective: float = 0.4
    focus_z_um: float = 0.0  # stage z at best focus
    kohler_falloff: float = 0.03  # relative drop of illumination at the field corners
    kohler_tilt: float = 0.01  # relative linear gradient across the field
    hwp_zero_deg: float = 0.0  # rotator angle that sends x polarisation to the sample
    extinction_ratio: float = 1e-3  # power left in the orthogonal polarisation

    def __post_init__(self) -> None:
        _check("um_per_px", self.um_per_px, 0.01, 10.0)
        _check("camera_rotation_deg", self.camera_rotation_deg, -10.0, 10.0)
        _check("na_objective", self.na_objective, 0.01, 0.95)
        _check("focus_z_um", self.focus_z_um, -1e4, 1e4)
        _check("kohler_falloff", self.kohler_falloff, 0.0, 0.5)
        _check("kohler_tilt", self.kohler_tilt, 0.0, 0.5)
        _check("hwp_zero_deg", self.hwp_zero_deg, -360.0, 360.0)
        _check("extinction_ratio", self.extinction_ratio, 0.0, 0.5)

    def psf_sigma_um(self, wavelength_nm: float, defocus_um: float = 0.0) -> float:
        """Gaussian sigma of the PSF: diffraction (FWHM 0.51 lambda/NA) and defocus in quadrature."""
        diffraction = 0.51 * wavelength_nm * 1e-3 / self.na_objective / 2.3548
        blur_radius = abs(defocus_um) * math.tan(math.asin(self.na_objective))
        return math.hypot(diffraction, 0.5 * blur_radius)


@dataclass(frozen=True)
class MountConfig:
    """Where the chip really sits on the stage: the transform alignment has to find.

    Stage coordinates of chip point (u, v) are ``R(rotation) (u, v) + offset``.
    """

    rotation_deg: float = 0.15
    offset_x_um: float = 250.0
    offset_y_um: float = -120.0

    def __post_init__(self) -> None:
        _check("rotation_deg", self.rotation_deg, -10.0, 10.0)
        _check("offset_x_um", self.offset_x_um, -1e5, 1e5)
        _check("offset_y_um", self.offset_y_um, -1e5, 1e5)

    def chip_to_stage(self, u_um: float, v_um: float) -> tuple[float, float]:
        """Where to move the stage to bring chip point (u, v) under the optical axis."""
        t = math.radians(self.rotation_deg)
        return (
            math.cos(t) * u_um - math.sin(t) * v_um + self.offset_x_um,
            math.sin(t) * u_um + math.cos(t) * v_um + self.offset_y_um,
        )

    def stage_to_chip(self, x_um: float, y_um: float) -> tuple[float, float]:
        """The chip point under the optical axis when the stage reads (x, y)."""
        t = math.radians(self.rotation_deg)
        dx, dy = x_um - self.offset_x_um, y_um - self.offset_y_um
        return math.cos(t) * dx + math.sin(t) * dy, -math.sin(t) * dx + math.cos(t) * dy


@dataclass(frozen=True)
class LampConfig:
    """Light levels and the lamp's instability (module docstring)."""

    # Photo-electrons per pixel per second in the brightest default NARROW band (QE included;
    # its wavelength dependence lives in PassbandConfig.qe_table): through a sample of
    # transmission 1 on the sample camera, and at the reference spot's centre.
    unit_transmission_e_per_s: float = 1.25e6
    reference_e_per_s: float = 6.0e5
    drift_rms: float = 0.01
    flicker_rms: float = 0.002
    drift_correlation_bands: float = 10.0  # bands over which the drift wanders its rms

    def __post_init__(self) -> None:
        _check("unit_transmission_e_per_s", self.unit_transmission_e_per_s, 1.0, 1e10)
        _check("reference_e_per_s", self.reference_e_per_s, 1.0, 1e10)
        _check("drift_rms", self.drift_rms, 0.0, 0.2)
        _check("flicker_rms", self.flicker_rms, 0.0, 0.2)
        _check("drift_correlation_bands", self.drift_correlation_bands, 1.0, 1e4)


@dataclass(frozen=True)
class MicroscopeConfig:
    """Everything the virtual microscope needs besides the chip and the device states."""

    optics: MicroscopeOptics = field(default_factory=MicroscopeOptics)
    mount: MountConfig = field(default_factory=MountConfig)
    lamp: LampConfig = field(default_factory=LampConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    reference_sensor: SensorConfig = field(
        default_factory=lambda: SensorConfig(width_px=64, height_px=64)
    )
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed={self.seed} must be >= 0")
