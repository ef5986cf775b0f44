"""Small file surgeries that turn a good world file into the bad input a case needs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py

Prepare = Callable[[Path], None]


def copy(src: str, dst: str) -> Prepare:
    return lambda w: shutil.copy(w / src, w / dst)


def write(name: str, text: str | bytes) -> Prepare:
    def run(w: Path) -> None:
        path = w / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text.replace("{w}", str(w)))

    return run


def truncate(name: str, fraction: float = 0.5, into: str | None = None) -> Prepare:
    """Keep the first ``fraction`` of a file's bytes (a crash mid-copy), in place or as ``into``."""

    def run(w: Path) -> None:
        data = (w / name).read_bytes()
        (w / (into or name)).write_bytes(data[: int(len(data) * fraction)])

    return run


def bench(name: str, old: str, new: str) -> Prepare:
    """A copy of the world's bench config with one piece of text replaced."""

    def run(w: Path) -> None:
        text = (w / "bench.toml").read_text()
        assert old in text, old
        (w / name).write_text(text.replace(old, new, 1))

    return run


def append(name: str, extra: str) -> Prepare:
    def run(w: Path) -> None:
        (w / name).write_text((w / "bench.toml").read_text() + extra)

    return run


def legacy_absolute_pairs(name: str) -> Prepare:
    """A pairs file as `sim pairs` wrote it before conventions were recorded: absolute spectra."""

    def run(w: Path) -> None:
        shutil.copy(w / "pairs.h5", w / name)
        with h5py.File(w / name, "r+") as f:
            if "spectra_convention" in f.attrs:  # absent where the writer predates it
                del f.attrs["spectra_convention"]
            f.attrs["schema_version"] = 1
            f.attrs["spectra_kind"] = (
                "zero-order transmission into fused silica, not referenced to bare glass"
            )

    return run


def nan_weights(model: str) -> Prepare:
    def run(w: Path) -> None:
        import torch

        path = w / model / "model.pt"
        state = torch.load(path, weights_only=True)
        for value in state.values():
            if value.is_floating_point():
                value.fill_(float("nan"))
        torch.save(state, path)

    return run


def edit_json(path: str, change: Callable[[dict], None]) -> Prepare:  # type: ignore[type-arg]
    def run(w: Path) -> None:
        data = json.loads((w / path).read_text())
        change(data)
        (w / path).write_text(json.dumps(data))

    return run


def before_materials(src: str, dst: str, version: int, group: str | None = None) -> Prepare:
    """A copy of a world file as its writer left it before materials were recorded: no
    ``material`` attribute (on the root or on ``group``) and the older schema version."""

    def run(w: Path) -> None:
        shutil.copy(w / src, w / dst)
        with h5py.File(w / dst, "r+") as f:
            node = f if group is None else f[group]
            del node.attrs["material"]
            node.attrs["schema_version"] = version

    return run
