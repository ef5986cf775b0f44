"""Outputs that belong together are renamed together or not at all, and a full disk is one
``OSError`` naming the file, with every previous file left as it was."""

from __future__ import annotations

import collections
import errno
import os
from pathlib import Path

import pytest

import common.atomic as atomic
from common.atomic import atomic_outputs, check_targets, require_free_space, write_stream


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def previous(tmp_path: Path) -> dict[str, bytes]:
    (tmp_path / "chip.gds").write_bytes(b"old layout")
    (tmp_path / "chip.h5").write_bytes(b"old manifest")
    return _listing(tmp_path)


def test_all_are_renamed_when_all_are_complete(tmp_path: Path, previous: dict[str, bytes]) -> None:
    a, b = tmp_path / "chip.gds", tmp_path / "chip.h5"
    with atomic_outputs([a, b]) as (ta, tb):
        assert ta.parent == tmp_path and ta.name.startswith(".chip.gds.")
        ta.write_bytes(b"new layout")
        tb.write_bytes(b"new manifest")
        assert _listing(tmp_path)["chip.gds"] == b"old layout"  # nothing renamed yet
    assert _listing(tmp_path) == {"chip.gds": b"new layout", "chip.h5": b"new manifest"}


def test_a_failing_second_write_keeps_both_previous_files(
    tmp_path: Path, previous: dict[str, bytes]
) -> None:
    a, b = tmp_path / "chip.gds", tmp_path / "chip.h5"
    with pytest.raises(OSError, match="disk full"), atomic_outputs([a, b]) as (ta, _tb):
        ta.write_bytes(b"new layout")
        raise OSError(errno.ENOSPC, "disk full")
    assert _listing(tmp_path) == previous  # byte-identical, and no temporary left


def test_a_failing_rename_is_rolled_back(
    tmp_path: Path, previous: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first file is already renamed when the second rename fails: the first gets its
    previous version back (from the hard link taken before the renames), a new one is removed."""
    a, b, c = tmp_path / "chip.gds", tmp_path / "new.txt", tmp_path / "chip.h5"
    real_replace = Path.replace

    def replace(self: Path, target: Path) -> Path:
        if Path(target) == c and self.name.endswith(".part"):
            raise OSError(errno.EIO, "rename failed")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    with pytest.raises(OSError, match="rename failed"), atomic_outputs([a, b, c]) as temps:
        for t in temps:
            t.write_bytes(b"new")
    assert _listing(tmp_path) == previous


def test_refusals_come_before_anything_is_created(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        check_targets([tmp_path / "a", tmp_path / "folder"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_targets([tmp_path / "a", tmp_path / "missing" / "b"])
    with pytest.raises(ValueError, match="name one file twice"):
        check_targets([tmp_path / "a", tmp_path / "." / "a"])
    with (
        pytest.raises(ValueError, match="name one file twice"),
        atomic_outputs([tmp_path / "a", tmp_path / "a"]),
    ):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]


def test_free_space_is_checked_against_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 3_000_000))
    sizes = {tmp_path / "chip.gds": 2_000_000, tmp_path / "chip.h5": 900_000}
    require_free_space(sizes)  # 2.9 MB (+ a little per file) fit in 3 MB
    sizes[tmp_path / "chip.h5"] = 1_000_000
    with pytest.raises(OSError, match="no space left on device") as info:
        require_free_space(sizes)
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert "chip.gds" in message and "chip.h5" in message and "3.00 MB free" in message
    assert "\n" not in message


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_is_one_error_naming_the_output(tmp_path: Path) -> None:
    # Writing to /dev/full fails with ENOSPC, as a full disk does, without needing one.
    with pytest.raises(OSError, match=r"no space left on device for .*chip\.h5") as info:
        write_stream(Path("/dev/full"), b"x" * 100_000, tmp_path / "chip.h5")
    assert info.value.errno == errno.ENOSPC and "\n" not in str(info.value)


def test_write_stream_copies_a_file_from_its_start(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(os.urandom(3 << 20))
    with source.open("rb") as f:
        f.seek(100)  # wherever the caller left it
        write_stream(tmp_path / "out", f, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == source.read_bytes()
