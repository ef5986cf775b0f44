"""The contrastive geometry-spectrum model (CLIP with a ResNet and an MLP as its two towers).

The model takes raw inputs (binary image, period and thickness in µm, transmission spectra) and
standardizes them itself with statistics held as non-persistent buffers: the statistics belong
to the training data, are written beside the weights as ``normalization.json``, and a caller
can never forget to apply them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn
from torch.nn import functional

from models.config import ModelConfig
from models.encoders import GeometryEncoder, SpectraEncoder

LOGIT_SCALE_MAX = 100.0  # CLIP's clamp: a temperature below 0.01 only sharpens noise


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
        """Statistics of ``params`` (N, 2) and ``spectra`` (N, 2, W); a constant input gets
        std 1 so it standardizes to zero instead of dividing by zero."""
        flat = np.asarray(spectra, dtype=np.float64).reshape(len(spectra), -1)
        p = np.asarray(params, dtype=np.float64)

        def safe(std: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.where(std > 1e-8, std, 1.0)

        ps = safe(p.std(axis=0))
        pm = p.mean(axis=0)
        return Normalization(
            tuple(float(v) for v in flat.mean(axis=0)),
            tuple(float(v) for v in safe(flat.std(axis=0))),
            (float(pm[0]), float(pm[1])),
            (float(ps[0]), float(ps[1])),
        )

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(data: dict[str, list[float]]) -> Normalization:
        pm, ps = data["params_mean"], data["params_std"]
        return Normalization(
            tuple(data["spectra_mean"]),
            tuple(data["spectra_std"]),
            (pm[0], pm[1]),
            (ps[0], ps[1]),
        )


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
        norm = normalization or Normalization.identity(cfg.num_wavelengths)
        for name in ("spectra_mean", "spectra_std", "params_mean", "params_std"):
            self.register_buffer(
                name, torch.tensor(getattr(norm, name), dtype=torch.float32), persistent=False
            )

    def set_normalization(self, norm: Normalization) -> None:
        for name in ("spectra_mean", "spectra_std", "params_mean", "params_std"):
            getattr(self, name).copy_(torch.tensor(getattr(norm, name)))

    def normalization(self) -> Normalization:
        def tup(t: Tensor) -> tuple[float, ...]:
            return tuple(float(v) for v in t.tolist())

        pm, ps = tup(self.params_mean), tup(self.params_std)
        return Normalization(
            tup(self.spectra_mean), tup(self.spectra_std), (pm[0], pm[1]), (ps[0], ps[1])
        )

    def encode_geometry(self, image: Tensor, params_um: Tensor, normalize: bool = True) -> Tensor:
        """``image`` (B, S, S) or (B, 1, S, S) 0/1, ``params_um`` (B, 2) → (B, embed_dim)."""
        x = image.float()
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
