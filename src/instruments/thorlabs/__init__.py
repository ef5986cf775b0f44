"""Thorlabs devices: the Kurios tunable filter and the Elliptec rotation mounts."""

from __future__ import annotations

from instruments.thorlabs.ell14 import ELL14
from instruments.thorlabs.kurios import Kurios

__all__ = ["ELL14", "Kurios"]
