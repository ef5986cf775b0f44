"""The model directory (contract 6 of DESIGN.md) and atomic checkpoint files.

``model.pt`` holds only a ``state_dict`` (loadable with ``weights_only=True``, so opening a model
from someone else never runs their code), ``config.json`` the architecture and the training
settings, ``normalization.json`` the input statistics; with these three the model is rebuilt
with no other file. Every file is written to a temporary name and renamed into place, so a
crash mid-write leaves the previous version, never half a file.

``config.json`` also says what the model's spectra mean: their convention and ``material``, the
film of the pairs it learned from (:mod:`layout.material`). Scoring a model on pairs of another
film, or designing with it in another film's world, compares two different physics, so every
command that combines a model with spectra asks :func:`model_material` and refuses a mix. A
model directory written before the material was recorded (format 2) is refused: train it again.

``config.json``'s ``kind`` says which network the weights are: ``contrastive`` (the default,
and what every directory written before the key was) or ``surrogate`` (:mod:`models.surrogate`);
each loader refuses the other kind by name, so a surrogate never encodes latents by mistake.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from common.atomic import atomic_output, save_json
from dataset import conventions
from layout import material as film
from models.config import ModelConfig
from models.model import ContrastiveModel, Normalization
from models.surrogate import ForwardSurrogate

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
NORMALIZATION_FILE = "normalization.json"
LATEST_FILE = "latest.pt"
FORMAT = "metascan.model"
FORMAT_VERSION = 3  # 2: spectra_convention recorded; 3: material recorded
CONTRASTIVE, SURROGATE = "contrastive", "surrogate"
KINDS: dict[str, type[ContrastiveModel] | type[ForwardSurrogate]] = {
    CONTRASTIVE: ContrastiveModel,
    SURROGATE: ForwardSurrogate,
}


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and ``os.replace``."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors of ``state`` holding a NaN or an inf."""
    return [
        name
        for name, t in state.items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


def write_model_dir(
    folder: Path,
    model: ContrastiveModel | ForwardSurrogate,
    train_config: dict[str, Any] | None = None,
    weights: dict[str, torch.Tensor] | None = None,
    *,
    material: str,
) -> None:
    """Write config, normalization and weights (``weights`` or the model's own); weights or
    statistics that ``load_model`` would refuse are refused here, before anything is written.
    ``material`` is the film of the pairs the model learned from."""
    film.check_name(material, "model material")
    state = weights if weights is not None else model.state_dict()
    bad = nonfinite_tensors(state)
    if bad:
        raise ValueError(f"refusing to write a model whose weights {bad[0]!r} hold NaN/inf values")
    model.normalization().check(model.cfg.num_wavelengths)
    folder.mkdir(parents=True, exist_ok=True)
    save_json(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            # What the spectra it learned from mean; contract 5 holds only this convention.
            conventions.ATTRIBUTE: conventions.RELATIVE,
            film.ATTRIBUTE: material,
            "kind": SURROGATE if isinstance(model, ForwardSurrogate) else CONTRASTIVE,
            "model": model.cfg.to_dict(),
            "train": train_config or {},
        },
        folder / CONFIG_FILE,
    )
    save_json(model.normalization().to_dict(), folder / NORMALIZATION_FILE)
    save_torch({k: v.detach().cpu().clone() for k, v in state.items()}, folder / MODEL_FILE)


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a model directory (no {CONFIG_FILE})")
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a metascan model config (format={data.get('format')!r})")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: model format_version is newer than supported {FORMAT_VERSION}")
    return data


def _material(data: dict[str, Any], folder: Path) -> str:
    return film.stored(
        data, f"model {folder} ({CONFIG_FILE})", "metascan train (train the model again)"
    )


def model_material(folder: Path) -> str:
    """The film of the pairs the model in ``folder`` learned from; a model directory that does
    not record it is refused."""
    return _material(read_config(folder), Path(folder))


def check_material(folder: Path, material: str, source: str) -> None:
    """Refuse to combine the model in ``folder`` with ``source``, spectra of ``material``."""
    film.require(material, source, model_material(folder), f"model {folder}")


def model_kind(folder: Path) -> str:
    """``contrastive`` or ``surrogate`` (module docstring)."""
    kind = str(read_config(folder).get("kind", CONTRASTIVE))
    if kind not in KINDS:
        raise ValueError(f"model {folder}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    return kind


def load_model(folder: Path, map_location: str | torch.device = "cpu") -> ContrastiveModel:
    """Rebuild the contrastive model from its directory alone, in eval mode."""
    model = _load(folder, CONTRASTIVE, map_location)
    assert isinstance(model, ContrastiveModel)
    return model


def load_surrogate(folder: Path, map_location: str | torch.device = "cpu") -> ForwardSurrogate:
    """Rebuild a forward surrogate (``metascan train --task surrogate``), in eval mode."""
    model = _load(folder, SURROGATE, map_location)
    assert isinstance(model, ForwardSurrogate)
    return model


def _load(
    folder: Path, kind: str, map_location: str | torch.device
) -> ContrastiveModel | ForwardSurrogate:
    folder = Path(folder)
    data = read_config(folder)
    found = model_kind(folder)
    if found != kind:
        raise ValueError(
            f"model {folder} is a {found} model; this needs a {kind} one "
            f"(metascan train --task {kind})"
        )
    source = f"model {folder}"
    conventions.require(
        conventions.stored(data, f"{source} ({CONFIG_FILE}, trained by an older version)"),
        conventions.RELATIVE,
        source,
    )
    _material(data, folder)
    for name in (MODEL_FILE, NORMALIZATION_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"model directory {folder} has no {name}")
    cfg = ModelConfig.from_dict(data["model"])
    norm_path = folder / NORMALIZATION_FILE
    try:
        norm = Normalization.from_dict(json.loads(norm_path.read_text()))
        norm.check(cfg.num_wavelengths)
    except ValueError as exc:
        raise ValueError(f"{norm_path}: {exc}") from None
    model: ContrastiveModel | ForwardSurrogate = KINDS[kind](cfg, norm)
    state = torch.load(folder / MODEL_FILE, map_location=map_location, weights_only=True)
    bad = nonfinite_tensors(state)
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise ValueError(
            f"{folder / MODEL_FILE}: weights {bad[0]!r}{more} hold NaN/inf values (a diverged "
            "run?); refusing to load it"
        )
    model.load_state_dict(state)
    model.eval()
    return model


def model_identity(folder: Path) -> str:
    """A hash of what decides a model's embeddings: its weights, architecture and input
    statistics (not its training log), so two directories holding the same model agree and a
    retrained one never does. Probe databases carry it; searching one with another model's
    spectra latents would compare points of two unrelated spaces."""
    folder = Path(folder)
    data = read_config(folder)
    digest = hashlib.sha256()
    digest.update(json.dumps(data["model"], sort_keys=True).encode())
    for name in (NORMALIZATION_FILE, MODEL_FILE):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"model directory {folder} has no {name}")
        if name == NORMALIZATION_FILE:
            digest.update(json.dumps(json.loads(path.read_text()), sort_keys=True).encode())
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            for key in sorted(state):
                tensor = state[key].detach().cpu().contiguous()
                digest.update(key.encode())
                digest.update(str(tensor.dtype).encode())
                digest.update(str(tuple(tensor.shape)).encode())
                digest.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]
