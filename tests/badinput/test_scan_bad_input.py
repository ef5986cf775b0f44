"""``metascan scan`` and ``metascan instruments check``: one line, exit 2, files untouched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from edits import append, bench, write
from world import Case


def scan(*extra: str, config: str = "{w}/bench.toml", manifest: str = "{w}/chip.h5") -> list[str]:
    return ["scan", "-c", config, "-m", manifest, "-o", "{w}/scan2", "--no-progress", *extra]


def resume(*extra: str, manifest: str = "{w}/chip.h5") -> list[str]:
    return [
        "scan",
        "-c",
        "{w}/bench.toml",
        "-m",
        manifest,
        "-o",
        "{w}/scans",
        "--resume",
        "--arrays",
        "A0C",
        "--no-progress",
        *extra,
    ]


UNREACHABLE = "TCPIP::127.0.0.1::1::SOCKET"  # port 1: nothing listens, the connect is refused

CASES = [
    Case("scan manifest missing", scan(manifest="{w}/none.h5"), "chip manifest"),
    Case("scan config missing", scan(config="{w}/none.toml"), "bench config"),
    Case("scan config not TOML", scan(config="{w}/notes.txt"), "not valid TOML"),
    Case(
        "scan unknown table",
        scan(config="{w}/typo.toml"),
        "unknown table [scna] (did you mean [scan]?)",
        prepare=append("typo.toml", "\n[scna]\nframes = 2\n"),
    ),
    Case(
        "scan both cameras one serial",
        scan(config="{w}/same.toml"),
        "camera and reference_camera have the same serial '0815-0000'",
        prepare=bench("same.toml", 'serial = "0815-0001"', 'serial = "0815-0000"'),
    ),
    Case(
        "scan timeout out of range",
        scan(config="{w}/slow.toml"),
        "filter.timeout_s",
        prepare=bench("slow.toml", "timeout_s = 1.0", "timeout_s = -1.0"),
    ),
    Case(
        "scan output is the manifest",
        ["scan", "-c", "{w}/bench.toml", "-m", "{w}/chip.h5", "-o", "{w}/chip.h5"],
        "--output {w}/chip.h5 is a file; give a directory",
    ),
    Case(
        "scan optics NaN",
        scan(config="{w}/nan.toml"),
        "optics.um_per_px",
        prepare=bench("nan.toml", "um_per_px = 0.25", "um_per_px = nan"),
    ),
    Case(
        "scan simulated mount NaN",
        scan(config="{w}/mount.toml"),
        "[simulation.microscope.mount] rotation_deg = nan must be finite",
        prepare=append("mount.toml", "\n[simulation.microscope.mount]\nrotation_deg = nan\n"),
    ),
    Case("scan arrays unknown", scan("--arrays", "ZZZ"), "ZZZ"),
    Case("scan arrays twice", scan("--arrays", "A0C,A0C"), "names A0C more than once"),
    Case("scan arrays empty", scan("--arrays", ","), "--arrays ',' names no array"),
    Case(
        "scan resume with another chip's manifest",
        resume(manifest="{w}/other.h5"),
        "holds another scan (manifest_sha256",
    ),
    Case(
        "scan again into a scan folder",
        [
            "scan",
            "-c",
            "{w}/bench.toml",
            "-m",
            "{w}/chip.h5",
            "-o",
            "{w}/scans",
            "--arrays",
            "A0C",
            "--no-progress",
        ],
        "already holds a scan; pass --resume",
    ),
    Case("scan resume of nothing", scan("--resume"), "holds no scan to resume"),
    Case(
        "check unreachable filter",
        ["instruments", "check", "-c", "{w}/far.toml"],
        f"filter (thorlabs.kurios) at {UNREACHABLE} could not be connected",
        prepare=bench("far.toml", 'address = "sim"', f'address = "{UNREACHABLE}"'),
    ),
    Case(
        "check bad address form",
        ["instruments", "check", "-c", "{w}/odd.toml"],
        "is neither 'sim' nor a VISA resource",
        prepare=bench("odd.toml", 'address = "sim"', 'address = "COM3"'),
    ),
    Case(
        "check two devices on one port",
        ["instruments", "check", "-c", "{w}/twice.toml"],
        "have the same address",
        prepare=lambda w: write(
            "twice.toml",
            (w / "bench.toml")
            .read_text()
            .replace('address = "sim"', f'address = "{UNREACHABLE}"', 2),
        )(w),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_scan_refuses_bad_input(case: Case, refused: Callable[[Case], None]) -> None:
    refused(case)


def test_a_scan_the_disk_cannot_hold_is_refused_before_anything_moves(
    world: Path,
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    import acquisition.estimate

    class Usage:
        free = 1000

    monkeypatch.setattr(acquisition.estimate.shutil, "disk_usage", lambda _p: Usage())
    code, _, err = cli(*[a.replace("{w}", str(world)) for a in scan()])
    assert code == 2 and err.count("\n") == 1, err
    assert "disk space shortfalls" in err and "GB free" in err
    assert not (world / "scan2").exists()


def test_every_bench_table_is_read_by_a_package() -> None:
    from acquisition.scan_config import SCAN_TABLES
    from instruments.config import BENCH_TABLES, DEVICE_TABLES

    assert set(BENCH_TABLES) == {*DEVICE_TABLES, *SCAN_TABLES, "simulation"}
    assert len(BENCH_TABLES) == len(set(BENCH_TABLES))
