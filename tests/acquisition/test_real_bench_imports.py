"""A real bench loads no simulator code: the simulated bench is built behind one door,
opened only for a config that asks for simulation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

PROBE = """
import json, sys
from pathlib import Path
import acquisition.cli, acquisition.engine, acquisition.runner, acquisition.scan_setup
from acquisition.bench import fiducial_locator, needs_simulator, simulated_bench
from instruments.config import instruments_config, read_toml
path = Path(sys.argv[1])
raw = read_toml(path)
instruments = instruments_config(raw, path)
out = {
    "needs": needs_simulator(raw, instruments),
    "bench": simulated_bench(raw, path, instruments) is not None,
    "locator": fiducial_locator(raw, path) is not None,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "simulators"),
}
print(json.dumps(out))
"""


def _probe(config: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_real_bench_config_loads_no_simulator_module() -> None:
    real = _probe(CONFIGS / "lab-bench.example.toml")
    assert real == {"needs": False, "bench": False, "locator": False, "loaded": []}


def test_a_simulated_bench_config_opens_the_door() -> None:
    simulated = _probe(CONFIGS / "sim-bench.toml")
    assert simulated["needs"] is True and simulated["locator"] is True
    assert simulated["bench"] is True
    loaded = simulated["loaded"]
    assert isinstance(loaded, list) and "simulators.simulated_bench" in loaded
