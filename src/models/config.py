"""Architectures as data: one small JSON file per named model in ``models/configs``.

As in open_clip, a config file names the shapes and switches of an architecture and nothing
about training, so a model directory can rebuild its network from ``config.json`` alone, and a
new architecture is a new file, not new code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

CONDITIONINGS = ("film", "add", "none")
STEMS = ("resnet", "patchify")
GEOMETRY_NORMS = ("batch", "group")
SPECTRA_NORMS = ("batch", "layer", "none")


@dataclass(frozen=True)
class GeometryEncoderConfig:
    """A ResNet of BasicBlock stages; the first stage keeps the stem's resolution, later ones
    halve it (ResNet-18 is ``depths=(2, 2, 2, 2)``, ``widths=(64, 128, 256, 512)``)."""

    # "resnet": ResNet's 7x7 stride-2 convolution and max-pool (MOCLIP's); "patchify": one
    # stem_patch x stem_patch convolution of the same stride, which keeps every pixel of a
    # binary cell (as channels) at a fraction of the cost: on CPU the 7x7 convolution of a
    # one-channel 128x128 image is over half of a small model's forward time.
    stem: str = "resnet"
    stem_patch: int = 4
    stem_width: int = 64
    widths: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    # How period and thickness reach every stage: "film" scales and shifts each channel,
    # "add" adds an embedding to the feature map (MOCLIP), "none" ignores them.
    conditioning: str = "film"
    param_hidden: int = 64
    # "group" norm makes a sample's features independent of its batch-mates, which is what
    # an exact sharded-vs-global equality test needs; "batch" is ResNet's own choice.
    norm: str = "batch"
    # "circular" matches the physics: a unit cell tiles the plane, so its edges wrap.
    padding_mode: str = "zeros"

    def __post_init__(self) -> None:
        if not self.widths or len(self.widths) != len(self.depths):
            raise ValueError(f"widths {self.widths} and depths {self.depths} must pair up")
        if min(self.widths) < 1 or min(self.depths) < 1 or self.stem_width < 1:
            raise ValueError("widths, depths and stem_width must be >= 1")
        if self.stem not in STEMS:
            raise ValueError(f"stem {self.stem!r} not in {STEMS}")
        if self.stem_patch < 1:
            raise ValueError(f"stem_patch={self.stem_patch} must be >= 1")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning {self.conditioning!r} not in {CONDITIONINGS}")
        if self.norm not in GEOMETRY_NORMS:
            raise ValueError(f"geometry norm {self.norm!r} not in {GEOMETRY_NORMS}")
        if self.padding_mode not in ("zeros", "circular"):
            raise ValueError(f"padding_mode {self.padding_mode!r} not in ('zeros', 'circular')")


@dataclass(frozen=True)
class SpectraEncoderConfig:
    """Hidden widths of the spectra MLP; the projection to the shared space comes after."""

    hidden: tuple[int, ...] = (100, 200)
    norm: str = "batch"

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"spectra hidden widths {self.hidden} must be >= 1")
        if self.norm not in SPECTRA_NORMS:
            raise ValueError(f"spectra norm {self.norm!r} not in {SPECTRA_NORMS}")


@dataclass(frozen=True)
class ModelConfig:
    """A whole contrastive model: two encoders and the space they meet in."""

    name: str = "custom"
    embed_dim: int = 64
    image_size: int = 128
    num_wavelengths: int = 29
    init_temperature: float = 0.07
    geometry: GeometryEncoderConfig = field(default_factory=GeometryEncoderConfig)
    spectra: SpectraEncoderConfig = field(default_factory=SpectraEncoderConfig)

    def __post_init__(self) -> None:
        if self.embed_dim < 1 or self.image_size < 8 or self.num_wavelengths < 1:
            raise ValueError("embed_dim, image_size (>= 8) and num_wavelengths must be positive")
        if not 0 < self.init_temperature < 1:
            raise ValueError(f"init_temperature={self.init_temperature} must be in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any], name: str | None = None) -> ModelConfig:
        """Build from JSON-shaped data; unknown keys fail loudly rather than being ignored."""
        data = dict(data)
        geometry = dict(data.pop("geometry", {}))
        spectra = dict(data.pop("spectra", {}))
        for key in ("widths", "depths"):
            if key in geometry:
                geometry[key] = tuple(geometry[key])
        if "hidden" in spectra:
            spectra["hidden"] = tuple(spectra["hidden"])
        if name is not None:
            data["name"] = name
        try:
            return ModelConfig(
                geometry=GeometryEncoderConfig(**geometry),
                spectra=SpectraEncoderConfig(**spectra),
                **data,
            )
        except TypeError as exc:
            raise ValueError(f"bad model config: {exc}") from None


def list_models() -> list[str]:
    """The names of the shipped architectures, sorted."""
    folder = resources.files("models") / "configs"
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


def get_config(name: str) -> ModelConfig:
    """The named architecture; an unknown name lists the known ones."""
    known = list_models()
    if name not in known:
        raise ValueError(f"unknown model config {name!r}; known: {', '.join(known)}")
    text = (resources.files("models") / "configs" / f"{name}.json").read_text()
    return ModelConfig.from_dict(json.loads(text), name=name)
