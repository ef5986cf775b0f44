"""The contrastive geometry-spectrum model (CLIP with a ResNet and an MLP as its two towers).

The model takes raw inputs (binary image, period and thickness in µm, transmission spectra) and
standardizes them itself with statistics held as non-persistent buffers: the statistics belong
to the training data, are written beside the weights as ``normalization.json``, and a caller
can never forget to apply them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn
from torch.nn import functional

from models.config import ModelConfig
from models.encoders import GeometryEncoder, SpectraEncoder

LOGIT_SCALE_MAX = 100.0  # CLIP's clamp: a temperature below 0.01 only sharpens noise
MIN_STD = 1e-6  # relative spread below which an input is constant (Normalization.fit)


@dataclass(frozen=True)
class Normalization:
    """Per-input mean and standard deviation of the training split (saved as JSON)."""

    spectra_mean: tuple[float, ...]  # (2W,) x then y
    spectra_std: tuple[float, ...]
    params_mean: tuple[float, float]  # period_um, thickness_um
    params_std: tuple[float, float]

    @staticmethod
    def identity(num_wavelengths: int) -> Normalization:
        n = 2 * num_wavelengths
        return Normalization((0.0,) * n, (1.0,) * n, (0.0, 0.0), (1.0, 1.0))

    @staticmethod
    def fit(params: NDArray[np.floating], spectra: NDArray[np.floating]) -> Normalization:
        """Statistics of ``params`` (N, 2) and ``spectra`` (N, 2, W).

        A constant input (std at most ``MIN_STD`` times ``max(1, |mean|)``: a spread of a few
        float32 roundings, not a signal) gets std 1, so it standardizes to about zero instead of
        dividing by zero or blowing rounding up to unit noise. A band that carries nothing is
        plausible in real data (a dead detector band, a filter edge, every design of one
        thickness), and refusing it would make such a dataset untrainable for no gain, since
        the network can learn nothing from a constant anyway. A non-finite value is refused:
        its mean and std would be NaN, and NaN statistics turn every input into NaN."""
        flat = np.asarray(spectra, dtype=np.float64).reshape(len(spectra), -1)
        p = np.asarray(params, dtype=np.float64)
        for name, values in (("params", p), ("spectra", flat)):
            bad = ~np.isfinite(values)
            if bad.any():
                raise ValueError(
                    f"cannot fit a normalization: {name} hold {int(bad.sum())} NaN/inf values"
                )

        def safe(std: NDArray[np.float64], mean: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.where(std > MIN_STD * np.maximum(1.0, np.abs(mean)), std, 1.0)

        pm, sm = p.mean(axis=0), flat.mean(axis=0)
        ps = safe(p.std(axis=0), pm)
        return Normalization(
            tuple(float(v) for v in sm),
            tuple(float(v) for v in safe(flat.std(axis=0), sm)),
            (float(pm[0]), float(pm[1])),
            (float(ps[0]), float(ps[1])),
        )

    def check(self, num_wavelengths: int | None = None) -> None:
        """Refuse statistics a model cannot divide by: a non-finite mean, a non-finite or
        non-positive std (in float32, as the model holds them), or (given ``num_wavelengths``)
        the wrong number of values; the ValueError names the field and the first bad index."""
        sizes = {"spectra": None if num_wavelengths is None else 2 * num_wavelengths, "params": 2}
        for name, values in asdict(self).items():
            size = sizes[name.split("_")[0]]
            if size is not None and len(values) != size:
                raise ValueError(f"normalization {name} has {len(values)} values, expected {size}")
            v = np.asarray(values, dtype=np.float64)
            with np.errstate(over="ignore"):
                held = v.astype(np.float32)  # as the model's buffers hold it: 1e-50 is 0 there
            bad = (
                ~np.isfinite(held) if name.endswith("_mean") else ~(np.isfinite(held) & (held > 0))
            )
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                need = "finite" if name.endswith("_mean") else "finite and > 0"
                raise ValueError(
                    f"normalization {name}[{i}] = {v[i]} must be {need} "
                    f"({int(bad.sum())} of {v.size} values are not)"
                )

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Normalization:
        """From ``to_dict``'s shape; values are not checked here (see ``check``)."""
        fields: dict[str, tuple[float, ...]] = {}
        for name in ("spectra_mean", "spectra_std", "params_mean", "params_std"):
            if name not in data:
                raise ValueError(f"normalization has no {name}")
            try:
                fields[name] = tuple(float(v) for v in data[name])
            except (TypeError, ValueError):
                raise ValueError(f"normalization {name} is not a list of numbers") from None
        for name in ("params_mean", "params_std"):
            if len(fields[name]) != 2:
                raise ValueError(f"normalization {name} has {len(fields[name])} values, expected 2")
        pm, ps = fields["params_mean"], fields["params_std"]
        return Normalization(
            fields["spectra_mean"], fields["spectra_std"], (pm[0], pm[1]), (ps[0], ps[1])
        )


NORMALIZATION_BUFFERS = ("spectra_mean", "spectra_std", "params_mean", "params_std")


def register_normalization(module: nn.Module, norm: Normalization) -> None:
    """The statistics as non-persistent float32 buffers of ``module`` (both model kinds hold
    them so: they follow the module to its device and stay out of ``model.pt``)."""
    for name in NORMALIZATION_BUFFERS:
        module.register_buffer(
            name, torch.tensor(getattr(norm, name), dtype=torch.float32), persistent=False
        )


def normalization_of(module: nn.Module) -> Normalization:
    """The statistics ``register_normalization`` gave ``module``, back as a Normalization."""

    def tup(name: str) -> tuple[float, ...]:
        buffer = getattr(module, name)
        assert isinstance(buffer, Tensor)
        return tuple(float(v) for v in buffer.tolist())

    pm, ps = tup("params_mean"), tup("params_std")
    return Normalization(tup("spectra_mean"), tup("spectra_std"), (pm[0], pm[1]), (ps[0], ps[1]))


class ContrastiveModel(nn.Module):
    """Both encoders, their projections into one unit sphere, and the learnable temperature."""

    spectra_mean: Tensor
    spectra_std: Tensor
    params_mean: Tensor
    params_std: Tensor

    def __init__(self, cfg: ModelConfig, normalization: Normalization | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.geometry_encoder = GeometryEncoder(cfg.geometry)
        self.spectra_encoder = SpectraEncoder(cfg.spectra, 2 * cfg.num_wavelengths)
        self.geometry_proj = nn.Sequential(
            nn.LayerNorm(self.geometry_encoder.out_features),
            nn.Linear(self.geometry_encoder.out_features, cfg.embed_dim),
        )
        self.spectra_proj = nn.Sequential(
            nn.LayerNorm(self.spectra_encoder.out_features),
            nn.Linear(self.spectra_encoder.out_features, cfg.embed_dim),
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))
        register_normalization(self, normalization or Normalization.identity(cfg.num_wavelengths))

    def set_normalization(self, norm: Normalization) -> None:
        for name in NORMALIZATION_BUFFERS:
            getattr(self, name).copy_(torch.tensor(getattr(norm, name)))

    def normalization(self) -> Normalization:
        return normalization_of(self)

    def encode_geometry(self, image: Tensor, params_um: Tensor, normalize: bool = True) -> Tensor:
        """``image`` (B, S, S) or (B, 1, S, S) 0/1, ``params_um`` (B, 2) → (B, embed_dim)."""
        # A floating image is taken as it is (inference hands bf16 straight from the uint8
        # raster: one pass instead of two); a 0/1 integer or boolean image becomes float32.
        x = image if image.is_floating_point() else image.float()
        if x.ndim == 3:
            x = x[:, None]
        p = (params_um.float() - self.params_mean) / self.params_std
        z = self.geometry_proj(self.geometry_encoder(x, p))
        return functional.normalize(z.float(), dim=-1) if normalize else z

    def encode_spectra(self, spectra: Tensor, normalize: bool = True) -> Tensor:
        """``spectra`` (B, 2, W) transmission → (B, embed_dim)."""
        flat = (spectra.float().flatten(1) - self.spectra_mean) / self.spectra_std
        z = self.spectra_proj(self.spectra_encoder(flat))
        return functional.normalize(z.float(), dim=-1) if normalize else z

    def forward(
        self, image: Tensor, params_um: Tensor, spectra: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Unit geometry and spectra features and ``exp(logit_scale)``, clamped like CLIP."""
        return (
            self.encode_geometry(image, params_um),
            self.encode_spectra(spectra),
            self.logit_scale.exp().clamp(max=LOGIT_SCALE_MAX),
        )
