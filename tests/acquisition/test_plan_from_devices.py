"""The scan plan is built from what the connected filter reports, not from assumptions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from scan_bench import bench_config, write_chip

from acquisition.messages import AutoExpose, Exposures, Plan, SetMode
from acquisition.scan_setup import scan_setup
from instruments.protocols import BandwidthMode


@dataclass
class ReportingFilter:
    """Only what the plan asks of a filter: its narrowest mode and its range."""

    narrowest_mode: BandwidthMode
    wavelength_range_nm: tuple[float, float] = (420.0, 730.0)
    identity: str = "test filter"


def _modes(plan: Plan) -> set[BandwidthMode]:
    """The bandwidth modes the plan sets, answering every auto-exposure with 10 ms."""
    modes, answer = set(), None
    try:
        while True:
            message = plan.send(answer)
            answer = Exposures(0.01, 0.01) if isinstance(message, AutoExpose) else None
            if isinstance(message, SetMode):
                modes.add(message.mode)
    except StopIteration:
        return modes


def test_narrowest_is_the_connected_filters(tmp_path: Path) -> None:
    setup = scan_setup(bench_config(tmp_path), write_chip(tmp_path))
    assert setup.config.scan.bandwidth == "narrowest"
    assert _modes(setup.plan()) == {BandwidthMode.NARROW, BandwidthMode.BLACK}  # a dry run
    medium = setup.plan(ReportingFilter(BandwidthMode.MEDIUM))  # type: ignore[arg-type]
    assert _modes(medium) == {BandwidthMode.MEDIUM, BandwidthMode.BLACK}


def test_bands_outside_the_filters_range_are_refused(tmp_path: Path) -> None:
    setup = scan_setup(bench_config(tmp_path), write_chip(tmp_path))
    short = ReportingFilter(BandwidthMode.NARROW, (420.0, 650.0), "Kurios-VB1 test")
    with pytest.raises(ValueError, match=r"outside the connected filter's range 420-650 nm"):
        setup.plan(short)  # type: ignore[arg-type]
