"""Encoders, loss and augmentations: shapes, norms, a hand-computed loss, the physics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.augment import random_circular_shift, random_transpose
from models.config import GeometryEncoderConfig, get_config, list_models
from models.encoders import GeometryEncoder
from models.loss import ClipLoss
from models.model import ContrastiveModel, Normalization


def test_named_configs_are_listed_and_unknown_names_list_them() -> None:
    assert {"moclip", "metascan-small"} <= set(list_models())
    moclip = get_config("moclip")
    assert moclip.geometry.depths == (2, 2, 2, 2) and moclip.spectra.hidden == (100, 200)
    with pytest.raises(ValueError, match="known: metascan-small, moclip"):
        get_config("resnet-9000")


@pytest.mark.parametrize("name", ["metascan-small", "moclip"])
def test_features_are_unit_vectors_of_the_shared_size(name: str) -> None:
    torch.manual_seed(0)
    model = ContrastiveModel(get_config(name)).eval()
    image = (torch.rand(3, 128, 128) > 0.5).to(torch.uint8)
    params = torch.tensor([[0.4, 0.178]] * 3)
    spectra = torch.rand(3, 2, 29)
    g, s, scale = model(image, params, spectra)
    assert g.shape == s.shape == (3, 64)
    torch.testing.assert_close(g.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(s.norm(dim=1), torch.ones(3))
    assert float(scale.detach()) == pytest.approx(1 / 0.07, rel=1e-5)


def test_the_temperature_is_clamped_like_clip() -> None:
    model = ContrastiveModel(get_config("metascan-small")).eval()
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    _, _, scale = model(torch.zeros(2, 128, 128), torch.ones(2, 2), torch.rand(2, 2, 29))
    assert float(scale.detach()) == 100.0


@pytest.mark.parametrize(("name", "conditioning"), [("metascan-small", "film"), ("moclip", "add")])
def test_parameters_change_the_geometry_features(name: str, conditioning: str) -> None:
    torch.manual_seed(0)
    model = ContrastiveModel(get_config(name)).eval()
    assert model.cfg.geometry.conditioning == conditioning
    for p in model.geometry_encoder.conds.parameters():  # both start as identity: wake them up
        torch.nn.init.normal_(p, std=0.5)
    image = (torch.rand(1, 128, 128) > 0.5).repeat(2, 1, 1)
    g = model.encode_geometry(image, torch.tensor([[0.3, 0.15], [0.6, 0.195]]))
    assert not torch.allclose(g[0], g[1])


def test_loss_matches_a_hand_computed_value_and_is_symmetric() -> None:
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    loss = ClipLoss()(g, s, torch.tensor(1.0))
    # logits = s @ g.T = s; rows (spectrum → geometry) and columns (geometry → spectrum).
    rows = math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-0.2))
    cols = math.log1p(math.exp(-0.4)) + math.log1p(math.exp(-0.8))
    assert float(loss) == pytest.approx((rows / 2 + cols / 2) / 2, rel=1e-6)
    assert float(ClipLoss()(s, g, torch.tensor(1.0))) == pytest.approx(float(loss), rel=1e-6)


def test_circular_shift_is_a_per_sample_roll() -> None:
    gen = torch.Generator().manual_seed(3)
    image = torch.arange(4 * 8 * 8).reshape(4, 8, 8)
    shifted = random_circular_shift(image, gen)
    gen = torch.Generator().manual_seed(3)
    dy = torch.randint(0, 8, (4,), generator=gen)
    dx = torch.randint(0, 8, (4,), generator=gen)
    for i in range(4):
        expected = torch.roll(image[i], (int(dy[i]), int(dx[i])), dims=(0, 1))
        torch.testing.assert_close(shifted[i], expected)
    assert not torch.equal(shifted, image)


def test_transpose_swaps_x_and_y_spectra_and_shift_leaves_them() -> None:
    gen = torch.Generator().manual_seed(0)
    image = (torch.rand(64, 16, 16) > 0.5).to(torch.uint8)
    spectra = torch.rand(64, 2, 29)
    out_img, out_spec = random_transpose(image, spectra, gen, probability=0.5)
    flipped = ~torch.all(out_spec == spectra, dim=(1, 2))
    assert 10 < int(flipped.sum()) < 54  # about half
    torch.testing.assert_close(out_img[flipped], image[flipped].transpose(1, 2))
    torch.testing.assert_close(out_spec[flipped], spectra[flipped][:, [1, 0]])
    torch.testing.assert_close(out_img[~flipped], image[~flipped])
    # A shift moves pixels, not the spectra: augment() passes spectra through untouched.
    from models.augment import AugmentConfig, augment

    _, spec = augment(image, spectra, AugmentConfig(transpose=False), gen)
    assert spec is spectra


def test_normalization_standardizes_and_survives_json() -> None:
    rng = np.random.default_rng(0)
    params = rng.uniform(0.1, 0.6, (50, 2))
    spectra = rng.uniform(0, 1, (50, 2, 29))
    spectra[:, 0, 0] = 0.5  # a constant input standardizes to zero, not to nan
    norm = Normalization.fit(params, spectra)
    assert Normalization.from_dict(norm.to_dict()) == norm
    assert norm.spectra_std[0] == 1.0


def test_a_dead_band_standardizes_to_zero_and_nan_data_are_refused() -> None:
    rng = np.random.default_rng(0)
    params = rng.uniform(0.1, 0.6, (50, 2))
    spectra = rng.uniform(0, 1, (50, 2, 29))
    spectra[:, 1, 4] = 0.25 + rng.normal(0, 1e-9, 50)  # a dead band: float32 rounding only
    params[:, 1] = 0.178  # one thickness for every design
    norm = Normalization.fit(params, spectra)
    assert norm.spectra_std[29 + 4] == 1.0 and norm.params_std[1] == 1.0
    norm.check(29)  # what fit returns, load_model accepts
    model = ContrastiveModel(get_config("metascan-small"), norm).eval()
    s = model.encode_spectra(torch.from_numpy(spectra[:4]).float())
    assert bool(torch.isfinite(s).all())
    spectra[7, 0, 2] = np.nan
    with pytest.raises(ValueError, match="cannot fit a normalization: spectra hold 1 NaN/inf"):
        Normalization.fit(params, spectra)


def test_a_normalization_of_the_wrong_shape_or_type_is_refused() -> None:
    data: dict[str, Any] = dict(Normalization.identity(29).to_dict())
    with pytest.raises(ValueError, match="spectra_mean has 58 values, expected 10"):
        Normalization.from_dict(data).check(5)
    with pytest.raises(ValueError, match="params_std is not a list of numbers"):
        Normalization.from_dict({**data, "params_std": [1.0, None]})
    with pytest.raises(ValueError, match="normalization has no spectra_mean"):
        Normalization.from_dict({k: v for k, v in data.items() if k != "spectra_mean"})


def test_a_model_with_nan_weights_is_never_written(tmp_path: Path) -> None:
    from models.model_dir import write_model_dir

    model = ContrastiveModel(get_config("metascan-small"))
    with torch.no_grad():
        model.logit_scale.fill_(float("nan"))
    with pytest.raises(ValueError, match="weights 'logit_scale' hold NaN/inf values"):
        write_model_dir(tmp_path / "run", model, material="a-Si")
    assert not (tmp_path / "run").exists()


def test_a_patchify_stem_keeps_each_pixel_in_its_own_cell() -> None:
    """Patch p maps 128² to (128/p)² and a pixel flips exactly the one cell that holds it, so
    no detail of a binary cell is lost before the first stage (unlike a max-pool)."""
    cfg = GeometryEncoderConfig(stem="patchify", stem_patch=8, stem_width=4, widths=(4,),
                                depths=(1,))  # fmt: skip
    conv = GeometryEncoder(cfg).stem[0]
    torch.manual_seed(0)
    image = (torch.rand(1, 1, 128, 128) > 0.5).float()
    flipped = image.clone()
    flipped[0, 0, 37, 101] = 1 - flipped[0, 0, 37, 101]
    with torch.no_grad():
        a, b = conv(image), conv(flipped)
    assert a.shape == (1, 4, 16, 16)
    changed = (a - b).abs().amax(dim=1)[0] > 0
    assert changed.sum() == 1 and bool(changed[37 // 8, 101 // 8])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"stem": "vit"}, "stem 'vit' not in"), ({"stem_patch": 0}, "stem_patch=0 must be >= 1")],
)
def test_bad_stems_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeometryEncoderConfig(**kwargs)  # type: ignore[arg-type]
