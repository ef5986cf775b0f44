"""The world every bad-input test copies (built once per test process)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from world import Case, build_world, case_world, check_refusal, digest_tree


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = build_world(tmp_path_factory.mktemp("world"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def refused(world: Path, tmp_path: Path, cli):  # type: ignore[no-untyped-def]
    """``refused(case)``: run the case on a private copy of the world and check the refusal."""

    def run(case: Case) -> None:
        w = case_world(world, tmp_path)
        if case.prepare is not None:
            case.prepare(w)
        before = digest_tree(w)
        code, out, err = cli(*case.command(w))
        check_refusal(case, code, out, err, before, w)

    return run
