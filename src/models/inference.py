"""Fast inference with a trained model: how probe builds and inverse design encode many inputs.

Training and evaluation encode in fp32 (``retrieval.embed``); a probe build encodes millions of
geometries, where the encoder is the cost. On a CPU with AVX-512-bf16 and AMX, bf16 autocast
runs the convolutions about 2-3x faster, and the unit latents it gives differ from fp32 ones by
a cosine of ~1 - 1e-4: ``benchmarks/bench_design.py`` measures both, and the retrieval quality
(R@1 on a test split) of each, and bf16 is the default only because it keeps R@1 within 0.005
of fp32 there. Latents always leave as float32 unit vectors, normalized in float32.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from models.model import ContrastiveModel
from models.surrogate import ForwardSurrogate

PRECISIONS = ("fp32", "bf16")
Net = TypeVar("Net", ContrastiveModel, ForwardSurrogate)


@dataclass(frozen=True)
class InferenceConfig:
    """How to run the encoders; none of it changes which model is run."""

    precision: str = "bf16"
    batch_size: int = 256
    channels_last: bool = False
    # torch.compile (inductor) of the geometry encoder: fuses the pads, activations and FiLM
    # around each convolution; costs ~1 min of compilation per process, so it pays only for
    # large builds. Batches are padded to ``batch_size`` so one shape is ever compiled.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size {self.batch_size} must be >= 1")


def _autocast(model: nn.Module, cfg: InferenceConfig) -> torch.autocast:
    device = next(model.parameters()).device.type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def prepare(model: Net, cfg: InferenceConfig) -> Net:
    """An inference copy of the model: eval mode, every batch norm of the geometry encoder
    folded into the convolution before it (the same affine map, one pass fewer over the
    activations), convolutions in channels-last memory order when asked. The model given is
    left as it was."""
    out = copy.deepcopy(model).eval()
    _fold_batch_norms(out.geometry_encoder)
    if cfg.channels_last:
        out.geometry_encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if cfg.compile:
        out.geometry_encoder = torch.compile(out.geometry_encoder, dynamic=False)  # type: ignore[assignment]
    return out


def _fold_batch_norms(module: nn.Module) -> None:
    """Replace each (Conv2d, BatchNorm2d) pair, as attributes ``convN``/``bnN`` of a block or
    neighbours in a Sequential, by the folded convolution and an identity."""
    for child in module.children():
        _fold_batch_norms(child)
    if isinstance(module, nn.Sequential):
        items = list(module)
        for i in range(len(items) - 1):
            conv, bn = items[i], items[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
        return
    for n in (1, 2):
        conv_n, bn_n = getattr(module, f"conv{n}", None), getattr(module, f"bn{n}", None)
        if isinstance(conv_n, nn.Conv2d) and isinstance(bn_n, nn.BatchNorm2d):
            setattr(module, f"conv{n}", fuse_conv_bn_eval(conv_n, bn_n))
            setattr(module, f"bn{n}", nn.Identity())


def _geometry_batches(
    model: nn.Module,
    images: NDArray[np.bool_] | NDArray[np.uint8],
    params_um: NDArray[np.floating],
    cfg: InferenceConfig,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor, int]]:
    """The images as the geometry encoder takes them, ``cfg.batch_size`` at a time: (rows,
    images, params, real rows), padded to one shape for a compiled encoder."""
    device = next(model.parameters()).device
    raw = np.ascontiguousarray(images).view(np.uint8)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    for start in range(0, images.shape[0], cfg.batch_size):
        sl = slice(start, start + cfg.batch_size)
        x = torch.from_numpy(raw[sl]).to(device=device, dtype=dtype)[:, None]
        p = torch.from_numpy(np.asarray(params_um[sl], dtype=np.float32)).to(device)
        n = x.shape[0]
        if cfg.compile and n < cfg.batch_size:  # the compiled graph has one batch shape
            x = torch.cat([x, x.new_zeros((cfg.batch_size - n, *x.shape[1:]))])
            p = torch.cat([p, p[:1].expand(cfg.batch_size - n, -1)])
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield sl, x, p, n


@torch.inference_mode()
def encode_geometry(
    model: ContrastiveModel,
    images: NDArray[np.bool_] | NDArray[np.uint8],
    params_um: NDArray[np.floating],
    cfg: InferenceConfig,
) -> NDArray[np.float32]:
    """(N, S, S) binary images and (N, 2) period, thickness in µm -> (N, D) unit float32."""
    out = np.empty((images.shape[0], model.cfg.embed_dim), dtype=np.float32)
    for sl, x, p, n in _geometry_batches(model, images, params_um, cfg):
        with _autocast(model, cfg):
            z = model.encode_geometry(x, p, normalize=False)[:n]
        out[sl] = torch.nn.functional.normalize(z.float(), dim=-1).cpu().numpy()
    return out


@torch.inference_mode()
def predict_geometry(
    model: ForwardSurrogate,
    images: NDArray[np.bool_] | NDArray[np.uint8],
    params_um: NDArray[np.floating],
    cfg: InferenceConfig,
) -> NDArray[np.float32]:
    """A forward surrogate's (N, 2, W) predicted spectra, batched as :func:`encode_geometry`."""
    out = np.empty((images.shape[0], 2, model.cfg.num_wavelengths), dtype=np.float32)
    for sl, x, p, n in _geometry_batches(model, images, params_um, cfg):
        with _autocast(model, cfg):
            out[sl] = model(x, p)[:n].float().cpu().numpy()
    return out


@torch.inference_mode()
def encode_spectra(
    model: ContrastiveModel, spectra: NDArray[np.floating], cfg: InferenceConfig
) -> NDArray[np.float32]:
    """(N, 2, W) relative transmission -> (N, D) unit float32 (the spectra MLP is cheap: fp32)."""
    device = next(model.parameters()).device
    out = np.empty((spectra.shape[0], model.cfg.embed_dim), dtype=np.float32)
    batch = max(cfg.batch_size, 4096)  # an MLP: large batches cost nothing in cache
    for start in range(0, spectra.shape[0], batch):
        sl = slice(start, start + batch)
        s = torch.from_numpy(np.asarray(spectra[sl], dtype=np.float32)).to(device)
        out[sl] = model.encode_spectra(s).float().cpu().numpy()
    return out
