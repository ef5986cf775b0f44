"""Helpers several test packages share (``tests/`` is on the path through its conftest)."""

from __future__ import annotations

import sys

import pytest

from models.config import GeometryEncoderConfig, ModelConfig, SpectraEncoderConfig

# A few thousand weights: trains its 5 steps an epoch on a 200-design file in well under a
# second, for tests about what a run records rather than what it learns.
TINY = ModelConfig(
    name="tiny-test",
    geometry=GeometryEncoderConfig(
        stem="patchify", stem_patch=8, stem_width=4, widths=(8,), depths=(1,), param_hidden=8
    ),
    spectra=SpectraEncoderConfig(hidden=(16,)),
    embed_dim=16,
)


def metascan(*args: str) -> None:
    """Run the ``metascan`` entry point in-process; it must succeed."""
    from metascan.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["metascan", *args])
        with pytest.raises(SystemExit) as done:
            main()
    assert done.value.code in (0, None), f"metascan {' '.join(args)} exited {done.value.code}"
