"""Building a dataclass tree from plain data (YAML), strictly: unknown keys, wrong types and
impossible nesting fail before any work, naming the dotted key."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from ..errors import ConfigError




def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _not_finite(value: Any) -> bool:
    """NaN or infinite: a float, or text that reads as one ('nan', 'inf': YAML 1.1 keeps them as text)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, float) and not math.isfinite(value)


def _coerce(value: Any, tp: Any, where: str, moved: dict[str, str] | None = None) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted as floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where, moved)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        return build_strict(tp, value, where, moved)
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and _not_finite(value):
        raise ConfigError(f"{where} must be a finite number, got {value}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def build_strict(cls: type, data: Any, where: str = "", moved: dict[str, str] | None = None) -> Any:
    """``cls`` (a dataclass tree) from plain data: unknown keys and wrong types fail, naming the
    dotted key; ``moved`` maps keys of older files to where they live now."""
    moved = moved or {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            path = f"{where}.{key}" if where else key
            if path in moved:
                raise ConfigError(f"config key '{path}' is now '{moved[path]}' (one front-end setting for "
                                  f"validation, compare and inference): move it there")
            raise ConfigError(f"unknown config key '{path}' (allowed here: {', '.join(names)})")
    values = {}
    for name in names:
        if name in data:
            path = f"{where}.{name}" if where else name
            values[name] = _coerce(data[name], hints[name], path, moved)
    return cls(**values)
