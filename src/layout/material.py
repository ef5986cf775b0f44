"""The film material a file was made for or computed with: its name, and the one way files
record, read and compare it.

A chip is designed to be made of one film (the manifest says which), and every spectrum of the
project was computed with, or measured on, one film: synthetic pairs with the material their
spectral model was given, curated pairs on the chips they were scanned from, a model on the
pairs it learned, targets on the pairs they were drawn from. Each of those files carries the
root attribute ``material``; readers refuse a file without it (it was written before materials
were recorded, and guessing would silently relabel it) and any combination of two files of
different materials, with one line naming both, so a model never learns, is scored on, or
designs in a film it was not made for.

The names live here, in ``layout``, because the manifest records them and every package may
import ``layout``; the optics of each name (its refractive index and the table it comes from)
live in ``simulators.materials``.

* ``"a-Si"`` (the default): hydrogen-free amorphous silicon, the film MOCLIP fabricated (LPCVD).
* ``"a-Si:H"``: hydrogenated amorphous silicon (PECVD), selectable, never assumed.
* ``"n=<complex>"``, e.g. ``"n=3.5"`` or ``"n=3.5+0.01j"``: a dispersionless film, for tests and
  what-if studies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

ATTRIBUTE = "material"
MOCLIP_MATERIAL = "a-Si"
"""MOCLIP's films, LPCVD amorphous silicon (hydrogen-free): what its public release measured."""
DEFAULT_MATERIAL = MOCLIP_MATERIAL
"""The project's default film is the one MOCLIP fabricated (see ``simulators.materials``)."""
FILM_MATERIALS = ("a-Si", "a-Si:H")
"""Named films; every name has an index model in ``simulators.materials``."""
CONSTANT_PREFIX = "n="
ALLOWED = f"{', '.join(FILM_MATERIALS)} or n=<complex index>"


def constant_index(text: str) -> complex:
    """The index of a dispersionless ``n=<complex>`` film; one-line ValueError otherwise."""
    try:
        value = complex(text[len(CONSTANT_PREFIX) :].replace(" ", ""))
    except ValueError:
        raise ValueError(
            f"material {text!r}: expected n=<number>, e.g. n=3.5 or n=3.5+0.01j"
        ) from None
    if (
        not (math.isfinite(value.real) and math.isfinite(value.imag))
        or value.real <= 0
        or value.imag < 0
    ):
        raise ValueError(f"material {text!r}: need Re n > 0 and Im n >= 0 (loss, not gain)")
    return value


def check_name(name: object, what: str = "material") -> str:
    """``name`` if it names a film (:data:`FILM_MATERIALS` or ``n=<complex>``), else a one-line
    ValueError naming it and the allowed set: a typo must fail where it is typed, not when the
    chip is first simulated."""
    if isinstance(name, str) and name.startswith(CONSTANT_PREFIX):
        constant_index(name)
        return name
    if not isinstance(name, str) or name not in FILM_MATERIALS:
        raise ValueError(f"{what} {name!r} is not a film material; known: {ALLOWED}")
    return name


def stored(attrs: Mapping[str, Any], source: str, rewrite: str) -> str:
    """The material a file's attributes record. A file without one is refused: it was written
    before materials were recorded, and ``rewrite`` says which command writes it anew."""
    value = attrs.get(ATTRIBUTE)
    if isinstance(value, bytes):
        value = value.decode()
    if value is None:
        raise ValueError(
            f"{source} does not record its film material (no {ATTRIBUTE!r} attribute: written "
            f"before materials were recorded); rewrite it with {rewrite}"
        )
    return check_name(value, f"{source}: material")


def require(found: str, found_source: str, expected: str, expected_source: str) -> None:
    """Refuse to combine two things of different film materials, naming both."""
    if found != expected:
        raise ValueError(
            f"{found_source} (material {found!r}) and {expected_source} (material "
            f"{expected!r}) are of different films; spectra of different films are never mixed"
        )


def common(materials: Iterable[tuple[str, str]]) -> str:
    """The one material of several ``(source, material)`` items (e.g. the chips of a curation);
    a mix is refused, naming the first two sources that differ."""
    items = list(materials)
    if not items:
        raise ValueError("no material given: nothing to take one from")
    first_source, first = items[0]
    for source, value in items[1:]:
        require(value, source, first, first_source)
    return first
