"""A layout and its manifest are one unit: a failed write (a full disk above all) leaves the
previous pair byte-identical and no temporary file, and says so in one line instead of crashing
the process."""

from __future__ import annotations

import collections
import errno
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import gdstk
import pytest

import common.atomic as atomic
import layout.gds_writer as gds_writer
from layout.chip import ChipConfig, plan_chip
from layout.design import DesignLibrary
from layout.gds_writer import layout_image, write_chip
from layout.manifest import ChipManifest, read_manifest

CONFIG = ChipConfig(thickness_nm=500, rows=4, cols=5, replicas=1, companion_size=0)


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def manifest(library: DesignLibrary) -> ChipManifest:
    return plan_chip(library, CONFIG)


@pytest.fixture
def previous(tmp_path: Path, library: DesignLibrary) -> dict[str, bytes]:
    """A chip written before, from other designs: what a failed rewrite must leave alone."""
    old = plan_chip(library.take(slice(100, 120)), CONFIG)
    write_chip(old, CONFIG, tmp_path / "chip.gds", tmp_path / "chip.h5")
    return _listing(tmp_path)


def test_a_rewrite_replaces_both_files(
    tmp_path: Path, manifest: ChipManifest, previous: dict[str, bytes]
) -> None:
    write_chip(manifest, CONFIG, tmp_path / "chip.gds", tmp_path / "chip.h5")
    now = _listing(tmp_path)
    assert sorted(now) == ["chip.gds", "chip.h5"]
    assert now["chip.gds"] != previous["chip.gds"] and now["chip.h5"] != previous["chip.h5"]
    back = read_manifest(tmp_path / "chip.h5")
    assert back.attrs["layout_sha256"] == gds_writer.file_sha256(tmp_path / "chip.gds")


def test_a_failing_manifest_write_keeps_the_previous_pair(
    tmp_path: Path,
    manifest: ChipManifest,
    previous: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The layout's temporary is complete when the manifest's write hits a full disk."""
    real = gds_writer.write_stream
    written: list[str] = []

    def write_stream(tmp: Path, source: io.BufferedIOBase | bytes, output: Path) -> None:
        if output.suffix == ".h5":
            raise atomic.disk_full(output)
        real(tmp, source, output)  # type: ignore[arg-type]
        written.append(output.name)

    monkeypatch.setattr(gds_writer, "write_stream", write_stream)
    with pytest.raises(OSError, match=r"no space left on device for .*chip\.h5") as info:
        write_chip(manifest, CONFIG, tmp_path / "chip.gds", tmp_path / "chip.h5")
    assert info.value.errno == errno.ENOSPC and "\n" not in str(info.value)
    assert written == ["chip.gds"]  # the second write failed, not the first
    assert _listing(tmp_path) == previous  # byte-identical, no temporaries


def test_a_failing_manifest_render_keeps_the_previous_pair(
    tmp_path: Path,
    manifest: ChipManifest,
    previous: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gds_writer, "write_manifest_file", broken)
    with pytest.raises(OSError, match="No space left"):
        write_chip(manifest, CONFIG, tmp_path / "chip.gds", tmp_path / "chip.h5")
    assert _listing(tmp_path) == previous


def test_too_little_free_space_is_refused_before_writing(
    tmp_path: Path,
    manifest: ChipManifest,
    previous: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 50_000))

    def no_write(*_: object) -> None:
        raise AssertionError("nothing may be written once the space is known to be short")

    monkeypatch.setattr(gds_writer, "write_stream", no_write)
    with pytest.raises(OSError, match="no space left on device") as info:
        write_chip(manifest, CONFIG, tmp_path / "chip.gds", tmp_path / "chip.h5", fmt="oas")
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC and "\n" not in message
    assert "chip.gds" in message and "chip.h5" in message and "0.05 MB free" in message
    assert _listing(tmp_path) == previous


@pytest.mark.parametrize("fmt", ["gds", "oas"])
def test_a_layout_cut_short_is_refused(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """gdstk reports no failed write, so a truncated image must be caught by its missing end."""
    lib = gdstk.Library(unit=1e-6, precision=1e-9)
    lib.new_cell("TOP").add(*(gdstk.rectangle((i, 0), (i + 0.5, 1)) for i in range(300)))
    with layout_image(lib, fmt) as image:  # type: ignore[arg-type]
        whole = image.read()
    for cut in (len(whole) // 2, len(whole) - 1):
        with pytest.raises(OSError, match="could not write the whole"):
            gds_writer._check_complete(io.BytesIO(whole[:cut]), fmt, "chip")  # type: ignore[arg-type]
    gds_writer._check_complete(io.BytesIO(whole), fmt, "chip")  # type: ignore[arg-type]


_OVER_LIMIT = """
import resource, signal, sys
from pathlib import Path
from layout.chip import ChipConfig, plan_chip
from layout.gds_writer import write_chip
from layout.generator import generate

out, fmt, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cfg = ChipConfig(thickness_nm=500, rows=20, cols=20, replicas=1, companion_size=0)
manifest = plan_chip(generate(400, seed=int(sys.argv[4])), cfg)
if limit:
    # Every write past `limit` bytes of one file fails (EFBIG), as on a full disk, with no
    # full disk needed: the HDF5 file close that crashed on ENOSPC crashes on this too.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    write_chip(manifest, cfg, out / f"chip.{fmt}", out / "chip.h5", fmt)
except OSError as exc:
    print(f"error: {exc}")
    sys.exit(2)
"""


@pytest.mark.parametrize(
    ("fmt", "fails"),
    [("oas", "manifest"), ("gds", "layout")],
)
def test_a_write_past_a_file_size_limit_is_an_error_not_a_crash(
    tmp_path: Path, fmt: str, fails: str
) -> None:
    """In a child process (the limit is per process): before the fix, HDF5 crashed the process
    on the failed flush (rc 139) and gdstk wrote a truncated layout without a word."""
    script = tmp_path / "write.py"
    script.write_text(textwrap.dedent(_OVER_LIMIT))
    out = tmp_path / "out"
    out.mkdir()

    def run(limit: int, seed: int) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(script), str(out), fmt, str(limit), str(seed)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    assert run(0, 1).returncode == 0
    previous = _listing(out)
    sizes = {"layout": len(previous[f"chip.{fmt}"]), "manifest": len(previous["chip.h5"])}
    other = "manifest" if fails == "layout" else "layout"
    # A limit between the two sizes: the larger file, the one meant to fail, cannot be written.
    assert sizes[fails] > sizes[other], sizes
    limit = (sizes[fails] + sizes[other]) // 2
    result = run(limit, 2)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    line = result.stdout.strip()
    assert "\n" not in line and line.startswith("error: ")
    if fails == "layout":  # gdstk's image, in memory, is cut short: refused before any write
        assert f"could not write the whole {fmt} layout for {out / 'chip.gds'}" in line
    else:  # the layout's temporary is written, then the manifest's write fails
        assert f"writing {out / 'chip.h5'} failed: File too large" in line
    assert _listing(out) == previous
