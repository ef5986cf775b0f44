"""Target maps: an image's pixels become pads of its distinct colours (bottom row first,
transparent pixels empty), a targets file is placed by a table or row-major, and identical
targets are designed once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset.target_map import read_map
from dataset.targets_file import Targets, write_targets

BANDS = np.arange(450.0, 731.0, 10.0)


def test_an_image_becomes_a_grid_of_its_distinct_colours(tmp_path: Path) -> None:
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[...] = (10, 20, 30, 255)
    rgba[0, :] = (200, 0, 0, 255)  # the top row
    rgba[2, 3, 3] = 0  # transparent: no pad
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    m = read_map(tmp_path / "m.png")
    assert m.kind == "colour" and m.grid.shape == (3, 4)
    assert m.target_ids == ("#0a141e", "#c80000")
    assert (m.grid[2] == 1).all()  # the image's top row is the chip's last
    assert m.grid[0, 3] == -1 and m.pads == 11
    assert m.srgb is not None and m.srgb.tolist() == [[10, 20, 30], [200, 0, 0]]
    assert m.designs_needed.tolist() == [0, 1]


def test_a_targets_file_is_placed_by_table_or_row_major(tmp_path: Path) -> None:
    spectra = np.linspace(0.2, 0.8, 3)[:, None, None] * np.ones((3, 2, BANDS.size))
    spectra[2] = spectra[0]  # t2 asks exactly what t0 asks
    write_targets(tmp_path / "t.h5", Targets.build(spectra, BANDS, target_id=["t0", "t1", "t2"]))
    m = read_map(tmp_path / "t.h5", cols=2)
    assert m.kind == "spectrum" and m.grid.tolist() == [[0, 1], [2, -1]]
    assert m.unique.tolist() == [0, 1, 0]
    assert m.designs_needed.tolist() == [0, 1]  # t2 shares t0's design
    (tmp_path / "p.csv").write_text("target_id,row,col\nt1,0,0\nt1,0,1\nt0,3,2\n")
    placed = read_map(tmp_path / "t.h5", tmp_path / "p.csv")
    assert placed.grid.shape == (4, 3)
    assert placed.grid[0, 0] == placed.grid[0, 1] == 1 and placed.grid[3, 2] == 0
    assert placed.pads == 3


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("target_id,row\nt0,0\n", "needs the columns target_id,row,col"),
        ("target_id,row,col\nzz,0,0\n", "'zz' is not in the targets file"),
        ("target_id,row,col\nt0,0,0\nt0,0,0\n", "row 0, col 0 is given twice"),
        ("target_id,row,col\nt0,-1,0\n", "must be >= 0"),
        ("target_id,row,col\nt0,a,0\n", "must be integers"),
        ("target_id,row,col\n", "places no target"),
    ],
)
def test_bad_placement_tables_are_refused(tmp_path: Path, table: str, message: str) -> None:
    write_targets(
        tmp_path / "t.h5", Targets.build(np.full((1, 2, BANDS.size), 0.5), BANDS, target_id=["t0"])
    )
    (tmp_path / "p.csv").write_text(table)
    with pytest.raises(ValueError, match=message):
        read_map(tmp_path / "t.h5", tmp_path / "p.csv")


def test_unreadable_or_empty_images_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        read_map(tmp_path / "x.png")
    Image.fromarray(np.zeros((2, 2, 4), np.uint8), "RGBA").save(tmp_path / "clear.png")
    with pytest.raises(ValueError, match="fully transparent"):
        read_map(tmp_path / "clear.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_map(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="--placement places spectral targets"):
        read_map(tmp_path / "clear.png", tmp_path / "p.csv")
