"""Applied Scientific Instrumentation (ASI) stage controllers."""

from __future__ import annotations

from instruments.asi.ms2000 import MS2000

__all__ = ["MS2000"]
