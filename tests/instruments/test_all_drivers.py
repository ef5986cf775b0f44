"""Rules every driver keeps, checked over all of them (in the spirit of PyMeasure's
``test_all_instruments``): constructible with a fake adapter and no I/O in ``__init__``,
PyMeasure property docstrings that say Control/Measure/Set/Get, documented public API, and the
device protocol satisfied without touching the device."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pytest
from pymeasure.instruments import Instrument
from pymeasure.test import expected_protocol
from typing_extensions import get_protocol_members

import instruments
from instruments.ascii_instrument import AsciiInstrument
from instruments.asi import MS2000
from instruments.basler import BaslerCamera
from instruments.protocols import Camera, PolarizationRotator, Stage, TunableFilter
from instruments.thorlabs import ELL14, Kurios


def driver_classes() -> list[type[Any]]:
    found: dict[str, type[Any]] = {}
    for info in pkgutil.walk_packages(instruments.__path__, "instruments."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            is_driver = (
                issubclass(obj, Instrument) and obj is not AsciiInstrument
            ) or obj is BaslerCamera
            if is_driver and obj.__module__.startswith("instruments."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


DRIVERS = driver_classes()
PYMEASURE_DRIVERS = [d for d in DRIVERS if issubclass(d, Instrument)]
PROTOCOL_OF = {
    Kurios: TunableFilter,
    ELL14: PolarizationRotator,
    MS2000: Stage,
    BaslerCamera: Camera,
}


def test_every_driver_is_found() -> None:
    assert set(PROTOCOL_OF) <= set(DRIVERS)


@pytest.mark.parametrize("cls", PYMEASURE_DRIVERS, ids=lambda c: c.__name__)
def test_constructible_with_no_io(cls: type[Any]) -> None:
    # An empty protocol fails on any write or read, so construction must not talk to the device.
    with expected_protocol(cls, []) as driver:
        assert driver.name


def _pymeasure_properties(cls: type[Any]) -> dict[str, Any]:
    props = {}
    for name in dir(cls):
        attr = inspect.getattr_static(cls, name)
        fget = getattr(attr, "fget", None)
        if fget is not None and "CommonBase.control.<locals>" in fget.__qualname__:
            owner = next(k for k in cls.__mro__ if name in vars(k))
            if owner.__module__.startswith("instruments."):
                props[name] = attr
    return props


@pytest.mark.parametrize("cls", PYMEASURE_DRIVERS, ids=lambda c: c.__name__)
def test_pymeasure_property_docstrings(cls: type[Any]) -> None:
    props = _pymeasure_properties(cls)
    assert props, f"{cls.__name__} defines no PyMeasure properties"
    for name, prop in props.items():
        doc = (prop.fget.__doc__ or "").strip()
        assert doc.split(" ")[0] in {"Control", "Measure", "Set", "Get"}, (
            f"{cls.__name__}.{name}: {doc!r}"
        )


@pytest.mark.parametrize("cls", DRIVERS, ids=lambda c: c.__name__)
def test_public_api_is_documented(cls: type[Any]) -> None:
    assert (cls.__doc__ or "").strip(), f"{cls.__name__} has no class docstring"
    undocumented = []
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        target = attr.fget if isinstance(attr, property) else attr
        if isinstance(attr, (staticmethod, classmethod)):
            target = attr.__func__
        if callable(target) and not (target.__doc__ or "").strip():
            undocumented.append(name)
    assert not undocumented, f"{cls.__name__}: {undocumented}"


@pytest.mark.parametrize("cls", list(PROTOCOL_OF), ids=lambda c: c.__name__)
def test_driver_has_every_protocol_member(cls: type[Any]) -> None:
    protocol = PROTOCOL_OF[cls]
    missing = [m for m in get_protocol_members(protocol) if not hasattr(cls, m)]
    assert not missing, f"{cls.__name__} lacks {missing} of {protocol.__name__}"


@pytest.mark.parametrize("cls", PYMEASURE_DRIVERS, ids=lambda c: c.__name__)
def test_protocol_isinstance_does_no_io(cls: type[Any]) -> None:
    """``isinstance`` against a protocol must not read properties (it would query the device)."""
    protocol = PROTOCOL_OF[cls]
    with expected_protocol(cls, []) as driver:
        assert isinstance(driver, protocol)


@pytest.mark.parametrize("cls", PYMEASURE_DRIVERS, ids=lambda c: c.__name__)
def test_framing_is_declared(cls: type[Any]) -> None:
    assert issubclass(cls, AsciiInstrument)
    assert cls.READ_TERMINATION, "a reply needs an end marker"
    assert cls.BAUD_RATE in {9600, 19200, 38400, 57600, 115200}
