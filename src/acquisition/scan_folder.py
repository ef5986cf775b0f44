"""What a scan folder holds and what the files are called; the scan's identity for ``--resume``.

    scans/
      scan.json            identity: chip, config digest, arrays, alignment (written once)
      run.jsonl            run record (acquisition.run_record), appended by every invocation
      scan.log             log file of every invocation
      flat.h5              bare-glass flat + its darks (flat_<array>.h5 with [scan] flat_per_array)
      A0R0_r0c0.h5         one hypercube per array tile (contract 3), linked to its flat
      quicklook/A0R0.png   false-colour RGB and one band per array

A resumed scan must be the scan it resumes: the same chip, the same scan tables and the same
alignment; anything else would mix two plans in one folder, so it is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.atomic import atomic_output

IDENTITY = "scan.json"
RUN_RECORD = "run.jsonl"
LOG_FILE = "scan.log"
QUICKLOOK = "quicklook"


def flat_name(array: str | None) -> str:
    return "flat.h5" if array is None else f"flat_{array}.h5"


def tile_name(array: str, tile: tuple[int, int]) -> str:
    return f"{array}_r{tile[0]}c{tile[1]}.h5"


def config_digest(tables: dict[str, Any]) -> str:
    """SHA-256 of the scan tables as canonical JSON: equal plans have equal digests."""
    text = json.dumps(tables, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ScanIdentity:
    chip_id: str
    manifest: str
    config_digest: str
    arrays: tuple[str, ...]
    chip_to_stage: tuple[tuple[float, ...], ...]  # 2x3 [A | offset] of the alignment
    manifest_sha256: str  # ChipManifest.content_sha256: which chip, not just its name
    layout_sha256: str  # the layout the manifest was written with ("" if it records none)

    def write(self, folder: Path) -> None:
        with atomic_output(folder / IDENTITY) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, folder: Path) -> ScanIdentity:
        path = folder / IDENTITY
        try:
            data = json.loads(path.read_text())
            return cls(
                str(data["chip_id"]),
                str(data["manifest"]),
                str(data["config_digest"]),
                tuple(str(a) for a in data["arrays"]),
                tuple(tuple(float(v) for v in row) for row in data["chip_to_stage"]),
                str(data["manifest_sha256"]),
                str(data.get("layout_sha256", "")),
            )
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{folder} holds no scan to resume ({IDENTITY} missing); run without --resume"
            ) from None
        except KeyError as exc:
            raise ValueError(
                f"{path} is not a scan identity of this version (no {exc}); finish that scan "
                "with the version that started it, or start a new one"
            ) from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a scan identity ({exc})") from None

    def mismatch(self, other: ScanIdentity) -> str | None:
        """The first difference in words, or None (the alignment is a deterministic fit of the
        same fiducials, so it must agree to rounding)."""
        for name in ("chip_id", "manifest_sha256", "config_digest", "arrays"):
            if getattr(self, name) != getattr(other, name):
                return f"{name} {getattr(self, name)!r} != {getattr(other, name)!r}"
        for row_a, row_b in zip(self.chip_to_stage, other.chip_to_stage, strict=True):
            if any(abs(a - b) > 1e-9 * max(1.0, abs(a)) for a, b in zip(row_a, row_b, strict=True)):
                return "the chip-to-stage alignment differs"
        return None
