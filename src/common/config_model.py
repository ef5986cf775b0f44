"""The base of every config table: pydantic models that refuse unknown keys and non-finite
numbers, and are frozen once read (a config is a record of what was asked, never edited)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StrictConfigModel(ConfigModel):
    """Also no type coercion: ``"3"`` is not 3 (the scan's tables, which users type by hand and
    which name physical settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
