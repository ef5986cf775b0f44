"""Fixtures for the model tests: one small noisy pairs file and its noise-free twin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from models_data import write_synthetic


@pytest.fixture(scope="session")
def pairs_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("pairs"), noise=0.01)


@pytest.fixture(scope="session")
def truth_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("truth"), noise=0.0)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Two xdist workers on two cores: more threads each only contend.
    torch.set_num_threads(1)
