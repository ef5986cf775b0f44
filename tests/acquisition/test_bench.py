"""Bench configs → connected benches, over in-process emulators and over 127.0.0.1 TCP, and the
commands that use them: `instruments check`, `instruments list`, `sim serve`."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

import simulators.cli as sim_cli
from acquisition.bench import connected_bench
from instruments.config import load_instruments_config
from instruments.protocols import Camera, PolarizationRotator, Stage, TunableFilter
from simulators.devices.serve import serve_bench

if TYPE_CHECKING:
    from conftest import Cli

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def fast_sim_bench(tmp_path: Path, **replace: str) -> Path:
    """The shipped sim bench with emulated time 100x faster (and optional text replacements)."""
    text = (CONFIGS / "sim-bench.toml").read_text()
    text = text.replace("time_scale = 1.0", "time_scale = 0.01")
    # Grabs that must succeed get 10 s beyond the exposure: more than a busy machine can take.
    text = text.replace("bit_depth = 16\n", "bit_depth = 16\nreadout_margin_s = 10.0\n")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def test_shipped_configs_validate() -> None:
    sim = load_instruments_config(CONFIGS / "sim-bench.toml")
    lab = load_instruments_config(CONFIGS / "lab-bench.example.toml")
    tcp = load_instruments_config(CONFIGS / "sim-bench-tcp.toml")
    assert [d.tcp_port for d in tcp.serial_devices.values()] == [50100, 50101, 50102]
    assert all(d.is_emulated for d in sim.serial_devices.values())
    assert not any(d.is_emulated for d in lab.serial_devices.values())
    assert lab.camera.serial != lab.reference_camera.serial


def test_sim_bench_connects_and_every_device_works(tmp_path: Path) -> None:
    with connected_bench(fast_sim_bench(tmp_path)) as bench:
        assert isinstance(bench.filter, TunableFilter)
        assert isinstance(bench.rotator, PolarizationRotator)
        assert isinstance(bench.stage, Stage)
        assert isinstance(bench.camera, Camera) and isinstance(bench.reference_camera, Camera)
        bench.filter.wavelength_nm = 612.0
        bench.filter.wait_until_ready(timeout_s=10.0)
        bench.rotator.move_to(45.0)
        bench.stage.move_to(1000.0, -500.0)
        bench.stage.wait_until_idle(timeout_s=10.0)
        # The emulators' physical state is what the virtual microscope will render from.
        assert bench.emulators["filter"].wavelength_nm == pytest.approx(612.0)  # type: ignore[attr-defined]
        assert bench.emulators["rotator"].angle_deg == pytest.approx(45.0, abs=0.01)  # type: ignore[attr-defined]
        assert bench.emulators["stage"].position_um[:2] == pytest.approx((1000.0, -500.0))  # type: ignore[attr-defined]
        assert bench.stage.position_um == pytest.approx((1000.0, -500.0))
        assert bench.camera.serial != bench.reference_camera.serial
        frame = bench.camera.grab(2)
        assert frame.frames_averaged == 2 and frame.data.dtype.name == "float64"


def test_bench_over_tcp_through_sim_serve(tmp_path: Path) -> None:
    config = fast_sim_bench(tmp_path)
    with serve_bench(config) as served:
        servers = served.servers
        assert set(servers) == {"filter", "rotator", "stage"}
        text = config.read_text()
        for role, server in servers.items():
            text = re.sub(
                rf'(\[{role}\][^\[]*?)address = "sim"',
                rf'\1address = "{server.resource_name}"',
                text,
                count=1,
            )
        assert text.count('address = "TCPIP::127.0.0.1::') == 3
        remote = tmp_path / "remote.toml"
        remote.write_text(text)
        with connected_bench(remote) as bench:
            assert bench.emulators == {}  # nothing in-process: every byte went over TCP
            bench.filter.wavelength_nm = 480.0
            assert bench.filter.wavelength_nm == pytest.approx(480.0)
            bench.rotator.move_to(90.0)
            assert bench.rotator.angle_deg == pytest.approx(90.0, abs=0.01)
            assert servers["filter"].emulator.wavelength_nm == pytest.approx(480.0)  # type: ignore[attr-defined]


def test_instruments_check_prints_every_device(tmp_path: Path, cli: Cli) -> None:
    code, out, err = cli("instruments", "check", "--config", str(fast_sim_bench(tmp_path)))
    assert code == 0, err
    for expected in (
        "THORLABS KURIOS-VB1",
        "Elliptec model 0E",
        "ASI MS-2000 USB-9.2p",
        "0815-0000",
        "0815-0001",
    ):
        assert expected in out
    assert "all devices answered" in out


def test_instruments_list_finds_the_emulated_cameras(cli: Cli) -> None:
    code, out, err = cli("instruments", "list")
    assert code == 0, err
    assert "VISA resources" in out
    assert "0815-0000" in out and "0815-0001" in out


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'address = "sim"\ntimeout_s = 1.0\nsettle_s',
            'address = "COM3"\ntimeout_s = 1.0\nsettle_s',
            "filter.address",
        ),
        ("x = [-20000.0, 20000.0]", "x = [20000.0, -20000.0]", "soft_limits_um"),
        ('bus_address = "0"', 'bus_address = "G"', "rotator.bus_address"),
        ("timeout_s = 1.2", "timeout_s = 1.2\nspeed = 3", "rotator.speed"),
        ("time_scale = 0.01", "time_scale = -1", "simulation.time_scale"),
    ],
)
def test_bad_config_is_one_line_naming_the_field(
    tmp_path: Path, old: str, new: str, message: str, cli: Cli
) -> None:
    config = fast_sim_bench(tmp_path, **{old: new})
    code, _, err = cli("instruments", "check", "--config", str(config))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and str(config) in err
    assert "Traceback" not in err


def test_missing_table_and_missing_file(tmp_path: Path, cli: Cli) -> None:
    text = (CONFIGS / "sim-bench.toml").read_text()
    broken = tmp_path / "no-stage.toml"
    broken.write_text(text.replace("[stage]", "[stage_typo]"))
    code, _, err = cli("instruments", "check", "--config", str(broken))
    assert code == 2 and "stage" in err and err.count("\n") == 1
    code, _, err = cli("instruments", "check", "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "does not exist" in err


def test_sim_serve_prints_visa_names_and_stops(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(sim_cli, "time", SimpleNamespace(sleep=slept.append))
    code, out, err = cli(
        "sim",
        "serve",
        "--config",
        str(fast_sim_bench(tmp_path)),
        "--duration-s",
        "0.2",
    )
    assert code == 0, err
    names = re.findall(r"TCPIP::127\.0\.0\.1::(\d+)::SOCKET", out)
    assert len(names) == 3 and len(set(names)) == 3
    assert "serving 0.2 s" in out
    assert slept == [0.2]  # served for the duration once, then stopped: the command returned
