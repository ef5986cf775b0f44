"""The two encoders: a parameter-conditioned ResNet for geometry and an MLP for spectra.

Period and thickness change a unit cell's spectrum as much as its shape does, so the geometry
encoder sees them at every stage, not only at the end. MOCLIP adds a small MLP embedding of the
two parameters to each stage's feature map; here the default is FiLM (a per-channel scale and
shift from the same MLP), which can also gate channels rather than only bias them. The MLP's
last layer starts at zero, so FiLM starts as the identity and training decides how much the
parameters matter.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from models.config import GeometryEncoderConfig, SpectraEncoderConfig


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(min(8, channels), channels)


def _padding(mode: str) -> Literal["zeros", "circular"]:
    return "circular" if mode == "circular" else "zeros"


class ParamConditioning(nn.Module):
    """Period and thickness (standardized) → a per-channel modulation of one stage's output."""

    def __init__(self, channels: int, hidden: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        out = 2 * channels if mode == "film" else channels
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.GELU(), nn.Linear(hidden, out))
        last = self.mlp[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        h = self.mlp(params)[:, :, None, None].to(x.dtype)
        if self.mode == "film":
            scale, shift = h.chunk(2, dim=1)
            out: Tensor = x * (1 + scale) + shift
            return out
        added: Tensor = x + h
        return added


class BasicBlock(nn.Module):
    """ResNet's two-conv residual block, with a 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, padding_mode: str) -> None:
        super().__init__()
        pad = _padding(padding_mode)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False, padding_mode=pad)
        self.bn1 = _norm2d(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False, padding_mode=pad)
        self.bn2 = _norm2d(norm, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm2d(norm, c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        out: Tensor = torch.relu(y + self.shortcut(x))
        return out


def _stem(cfg: GeometryEncoderConfig) -> nn.Module:
    """The first downsampling, before the stages: 128 → 32 for ResNet's stem, 128 → 128 / p for
    a patchify stem of patch p (non-overlapping, so its padding mode does not matter)."""
    if cfg.stem == "patchify":
        return nn.Sequential(
            nn.Conv2d(1, cfg.stem_width, cfg.stem_patch, stride=cfg.stem_patch, bias=False),
            _norm2d(cfg.norm, cfg.stem_width),
            nn.ReLU(),
        )
    return nn.Sequential(
        nn.Conv2d(
            1,
            cfg.stem_width,
            7,
            stride=2,
            padding=3,
            bias=False,
            padding_mode=_padding(cfg.padding_mode),
        ),
        _norm2d(cfg.norm, cfg.stem_width),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


class GeometryEncoder(nn.Module):
    """1xSxS binary unit cell + (period, thickness) → a feature vector of the last width."""

    def __init__(self, cfg: GeometryEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = _stem(cfg)
        stages: list[nn.Module] = []
        conds: list[nn.Module] = []
        c_in = cfg.stem_width
        for i, (width, depth) in enumerate(zip(cfg.widths, cfg.depths, strict=True)):
            blocks = [
                BasicBlock(
                    c_in if j == 0 else width,
                    width,
                    2 if (i > 0 and j == 0) else 1,
                    cfg.norm,
                    cfg.padding_mode,
                )
                for j in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            conds.append(
                ParamConditioning(width, cfg.param_hidden, cfg.conditioning)
                if cfg.conditioning != "none"
                else nn.Identity()
            )
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.conds = nn.ModuleList(conds)
        self.out_features = c_in

    def forward(self, image: Tensor, params: Tensor) -> Tensor:
        x = self.stem(image)
        for stage, cond in zip(self.stages, self.conds, strict=True):
            x = stage(x)
            x = cond(x, params) if isinstance(cond, ParamConditioning) else x
        pooled: Tensor = x.mean(dim=(2, 3))
        return pooled


class SpectraEncoder(nn.Module):
    """The standardized 2W spectrum (x then y) → a feature vector of the last hidden width."""

    def __init__(self, cfg: SpectraEncoderConfig, num_inputs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = num_inputs
        for width in cfg.hidden:
            layers.append(nn.Linear(c_in, width))
            if cfg.norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            elif cfg.norm == "layer":
                layers.append(nn.LayerNorm(width))
            layers.append(nn.ReLU())
            c_in = width
        self.mlp = nn.Sequential(*layers)
        self.out_features = c_in

    def forward(self, spectra_flat: Tensor) -> Tensor:
        out: Tensor = self.mlp(spectra_flat)
        return out
