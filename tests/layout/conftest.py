"""Shared fixtures: one small generated library and a written chip, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from layout.chip import ChipConfig, plan_chip
from layout.design import DesignLibrary
from layout.gds_writer import write_chip
from layout.generator import generate
from layout.manifest import ChipManifest


@pytest.fixture(scope="session")
def library() -> DesignLibrary:
    return generate(400, seed=11)


@pytest.fixture(scope="session")
def chip_config() -> ChipConfig:
    return ChipConfig(
        thickness_nm=450, arrays=2, rows=6, cols=7, replicas=2, companion_size=4, seed=3
    )


@pytest.fixture(scope="session")
def written_chip(
    tmp_path_factory: pytest.TempPathFactory, library: DesignLibrary, chip_config: ChipConfig
) -> tuple[ChipManifest, Path, Path]:
    out = tmp_path_factory.mktemp("chip")
    manifest = plan_chip(library, chip_config)
    gds, h5 = out / "chip.gds", out / "chip.h5"
    write_chip(manifest, chip_config, gds, h5)
    return manifest, gds, h5
