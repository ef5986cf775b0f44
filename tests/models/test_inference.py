"""The inference copy of a model gives the model's own embeddings: batch norms folded into the
convolutions are the same affine map, channels-last is only a memory order."""

from __future__ import annotations

import numpy as np
import torch

from layout.generator import generate
from layout.raster import rasterize
from models.config import get_config
from models.inference import InferenceConfig, encode_geometry, encode_spectra, prepare
from models.model import ContrastiveModel


def _trained_looking_model() -> ContrastiveModel:
    """Batch-norm statistics and FiLM layers away from their initial values, so folding them
    is not folding an identity."""
    torch.manual_seed(0)
    model = ContrastiveModel(get_config("metascan-small"))
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0.0, 0.3)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.5)
    return model.eval()


def test_folded_channels_last_fp32_equals_the_model() -> None:
    model = _trained_looking_model()
    lib = generate(300, 8)
    images = rasterize(lib)
    params = np.stack([lib.period_nm, np.full(len(lib), 178.0)], axis=1) / 1000.0
    with torch.no_grad():
        ref = model.encode_geometry(
            torch.from_numpy(images.view(np.uint8)), torch.from_numpy(params.astype(np.float32))
        ).numpy()
    for channels_last in (False, True):
        cfg = InferenceConfig("fp32", batch_size=128, channels_last=channels_last)
        fast = prepare(model, cfg)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.geometry_encoder.modules())
        z = encode_geometry(fast, images, params, cfg)
        assert z.dtype == np.float32
        assert np.abs(z - ref).max() < 1e-5
    # The model itself is untouched: its batch norms are still there.
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.geometry_encoder.modules())
    bf16 = encode_geometry(prepare(model, InferenceConfig()), images, params, InferenceConfig())
    cosine = (bf16 * ref).sum(1)
    assert cosine.min() > 0.99 and not np.array_equal(bf16, ref)
    spectra = np.random.default_rng(0).uniform(0, 1, (50, 2, 29))
    with torch.no_grad():
        ref_s = model.encode_spectra(torch.from_numpy(spectra)).numpy()
    assert np.abs(encode_spectra(model, spectra, InferenceConfig()) - ref_s).max() < 1e-6
