"""Quality flags shared by acquisition (per band) and extraction (per pad).

Bit flags rather than booleans so one uint8/uint16 column carries every reason a value is doubtful,
and curation can count rejections by reason. The numeric values are part of the file formats
(hypercube ``band_flags``, array-spectra ``flags``): never renumber, only append.
"""

from __future__ import annotations

from enum import IntFlag


class BandFlag(IntFlag):
    """Why one acquired band (polarization, wavelength) of a hypercube is doubtful."""

    NONE = 0
    SATURATED = 1  # pixels at full scale in the band's frames
    LOW_SIGNAL = 2  # below the target fraction even at the longest allowed exposure
    LAMP_INTERRUPTED = 4  # the reference reading collapsed; the band was re-taken


class PadFlag(IntFlag):
    """Why one pad's extracted spectrum is doubtful."""

    NONE = 0
    SATURATED = 1
    LOW_SIGNAL = 2
    REGISTRATION_DOUBTFUL = 4
    NON_UNIFORM = 8  # spread inside the eroded pad region above the threshold
    MISSING = 16  # the pad region is not (fully) in any tile's image, or looks like bare glass


def describe(flags: int, kind: type[BandFlag] | type[PadFlag]) -> str:
    """Comma-separated lower-case names of the set bits (``"ok"`` when none), for reports."""
    names = [f.name.lower() for f in kind if f.value and flags & f.value and f.name]
    return ", ".join(names) if names else "ok"
