"""pylon's own camera emulation as the simulated bench's cameras.

Basler cameras are not emulated byte by byte here: pylon ships an emulated camera
("BaslerCamEmu", serials ``0815-0000``, ``0815-0001``, …) that the real driver opens like any
other, and that shows an image file instead of a test pattern when ``TestImageSelector=Off``,
``ImageFileMode=On`` and ``ImageFilename`` names a 16-bit grayscale PNG.

When pylon reads ``PYLON_CAMEMU`` (measured with pypylon 26.9): at every device enumeration,
not at ``import pypylon`` and not when ``TlFactory.GetInstance()`` builds the factory. Setting
it after both still makes ``EnumerateDevices``/``CreateDevice`` see the emulated cameras, raising
or lowering it changes the count at the next enumeration (cameras already open keep working), and
pylon caps it at 256. Only ``TlFactory.CreateTl("BaslerCamEmu")`` depends on the value at that
moment (None while it is unset). Public examples say to set it before pylon builds its factory,
which other releases may require; :func:`enable_pylon_emulation` therefore checks the effect by
enumerating and raises if the cameras did not appear, rather than trusting either rule.

The emulation scales an image file to the grabbed pixel format by bit shifts: a 16-bit PNG comes
back unchanged at Mono16, as ``value >> 4`` at Mono12 and ``value >> 8`` at Mono8. Render frames at
16-bit full scale. An image smaller than the ROI is returned at the image's own size; a larger one
is cropped at (OffsetX, OffsetY). A TIFF was not read correctly in an earlier experiment: use PNG.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from common.atomic import atomic_output

EMULATED_DEVICE_CLASS = "BaslerCamEmu"
MAX_EMULATED_CAMERAS = 256
"""pylon enumerates at most this many emulated cameras, whatever PYLON_CAMEMU says."""


def emulated_serial(index: int) -> str:
    """The serial number pylon gives the emulated camera number ``index`` (from 0)."""
    return f"0815-{index:04d}"


def _pylon() -> Any:
    with warnings.catch_warnings():
        # pypylon's SWIG init warns about its builtin types; under an error filter the import
        # crashes the interpreter instead of raising.
        warnings.filterwarnings(
            "ignore",
            message=r"builtin type \w+ has no __module__ attribute",
            category=DeprecationWarning,
        )
        from pypylon import pylon
    return pylon


def _emulated_serials() -> list[str]:
    pylon = _pylon()
    wanted = pylon.DeviceInfo()
    wanted.SetDeviceClass(EMULATED_DEVICE_CLASS)
    devices = pylon.TlFactory.GetInstance().EnumerateDevices([wanted])
    return [str(d.GetSerialNumber()) for d in devices]


def enable_pylon_emulation(count: int) -> None:
    """Make pylon offer ``count`` emulated cameras, and prove that it does.

    Raises RuntimeError when the emulated cameras do not enumerate afterwards, i.e. when this
    pylon read ``PYLON_CAMEMU`` earlier than this call (a pylon that reads it once, when its
    transport-layer factory is built, needs the variable set before anything touches pypylon).
    """
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"count must be an int, not {count!r}")
    if not 1 <= count <= MAX_EMULATED_CAMERAS:
        raise ValueError(f"count {count} is outside 1..{MAX_EMULATED_CAMERAS} emulated cameras")
    os.environ["PYLON_CAMEMU"] = str(count)
    found = _emulated_serials()
    expected = [emulated_serial(i) for i in range(count)]
    if found != expected:
        raise RuntimeError(
            f"PYLON_CAMEMU={count} was set too late to take effect: pylon enumerates "
            f"{len(found)} emulated cameras ({', '.join(found) or 'none'}) instead of {count}; "
            "set PYLON_CAMEMU before pypylon is imported"
        )


def write_emulator_image(path: str | os.PathLike[str], image: npt.NDArray[np.uint16]) -> Path:
    """Write ``image`` as the 16-bit grayscale PNG an emulated camera shows, atomically.

    The emulation reads the file at every grab, so a grab concurrent with a rewrite must see
    the old or the new frame, never half of one: the PNG goes to a temporary name in the same
    directory and is renamed over ``path``. The temporary name ends in ``.part``, not an image
    suffix, so an emulated camera pointed at the whole directory does not pick it up.
    """
    array = np.asarray(image)
    if array.dtype != np.uint16 or array.ndim != 2 or 0 in array.shape:
        raise ValueError(
            f"emulator image must be a non-empty 2-D uint16 array, not {array.dtype} {array.shape}"
        )
    target = Path(path)
    with atomic_output(target) as temporary:
        Image.fromarray(np.ascontiguousarray(array)).save(temporary, format="PNG", compress_level=0)
    return target
