"""The forward surrogate (the newcomer's guide's alternative to a latent search): geometry +
period + thickness → the two polarizations' transmission spectra, predicted directly.

It is the contrastive model's geometry tower (the same :class:`GeometryEncoder`, built from
the same architecture file) with a regression head in place of the projection: the spectra
MLP's widths in reverse, ending in the 2W standardized bands. Inputs are standardized by the
same :class:`Normalization` buffers, so a surrogate directory holds the same three files as a
contrastive one and ``config.json`` says which it is (``kind``). Trained by the same harness
(``metascan train --task surrogate``) on the same pairs, on the mean squared error in
transmission units: the quantity inverse design ranks by (:func:`dataset.targets_file.
weighted_mse` with unit weights), so no band matters more for having a small spread.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.config import ModelConfig
from models.encoders import GeometryEncoder
from models.model import Normalization, normalization_of, register_normalization


class ForwardSurrogate(nn.Module):
    """(image, period and thickness in µm) → (B, 2, W) relative transmission."""

    spectra_mean: Tensor
    spectra_std: Tensor
    params_mean: Tensor
    params_std: Tensor

    def __init__(self, cfg: ModelConfig, normalization: Normalization | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.geometry_encoder = GeometryEncoder(cfg.geometry)
        layers: list[nn.Module] = [nn.LayerNorm(self.geometry_encoder.out_features)]
        width = self.geometry_encoder.out_features
        for hidden in reversed(cfg.spectra.hidden):
            layers += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        layers.append(nn.Linear(width, 2 * cfg.num_wavelengths))
        self.head = nn.Sequential(*layers)
        register_normalization(self, normalization or Normalization.identity(cfg.num_wavelengths))

    def normalization(self) -> Normalization:
        return normalization_of(self)

    def forward(self, image: Tensor, params_um: Tensor) -> Tensor:
        """``image`` (B, S, S) or (B, 1, S, S) in [0, 1] (a soft raster too), ``params_um``
        (B, 2) → predicted spectra (B, 2, W), in float32 whatever the autocast."""
        x = image if image.is_floating_point() else image.float()
        if x.ndim == 3:
            x = x[:, None]
        p = (params_um.float() - self.params_mean) / self.params_std
        standardized = self.head(self.geometry_encoder(x, p)).float()
        spectra: Tensor = standardized * self.spectra_std + self.spectra_mean
        return spectra.view(x.shape[0], 2, self.cfg.num_wavelengths)
