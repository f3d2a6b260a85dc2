"""Typed builders: a JSON/YAML mapping a user handed us into a frozen dataclass, rejecting unknown keys (with a close
match), missing keys and wrong types, each named with where it sits in the file ("recipe r.yaml: stages[1]: lr").

Every structure a user can hand us goes through `build` (recipes, run state, tables, predictors, device files), after
`ofakit.io.read_user_file` has read and parsed the file.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
from collections.abc import Mapping
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError, ConfigError, OfakitError

T = TypeVar("T")


def check_keys(data: Any, allowed: list[str] | tuple[str, ...] | None, where: str, *,
               required: list[str] | tuple[str, ...] = ()) -> Mapping[str, Any]:
    """`data` as a mapping whose keys are all in `allowed` (None: any key) and include `required`; else a
    ConfigError naming them."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {_kind(data)}")
    unknown = [] if allowed is None else [k for k in data if k not in allowed]
    if unknown:
        msgs = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            msgs.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(msgs)}; allowed: {', '.join(allowed)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    return data


def build(cls: type[T], data: Any, where: str) -> T:
    """A `cls` (a dataclass) from a mapping: keys are its fields, values are coerced to the field types (nested
    dataclasses, tuples, optionals, numbers, strings, ArchConfig); a `__post_init__` error keeps `where`."""
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    required = [f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    data = check_keys(data, names, where, required=required)
    hints = get_type_hints(cls)
    values = {key: coerce(value, hints[key], f"{where}: {key}") for key, value in data.items()}
    try:
        return cls(**values)
    except (OfakitError, ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError) and str(exc).startswith(where):
            raise
        raise ConfigError(f"{where}: {exc}") from None


def coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against the type `hint` (and converted where JSON cannot say it: lists become tuples)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: a value is required")
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(value, inner[0], where)
        for option in inner:
            try:
                return coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {' or '.join(_name(a) for a in inner)}, got {_kind(value)}")
    if value is None:
        raise ConfigError(f"{where}: a value is required")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected a list of {len(args)} items, got {len(value)}")
        if not args:
            return tuple(value)
        return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_kind(value)}")
        if len(args) == 2:
            return {coerce(k, args[0], where): coerce(v, args[1], f"{where}: {k}") for k, v in value.items()}
        return dict(value)
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
        return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_kind(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a number, got {_kind(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_kind(value)}")
        return value
    if hint is ArchConfig:
        if isinstance(value, ArchConfig):
            return value
        try:
            return ArchConfig.from_dict(value)
        except ArchError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return value if isinstance(value, hint) else build(hint, value, where)
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float)):
        return f"{value!r}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else "a string"
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def _name(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


__all__ = ["build", "check_keys", "coerce"]
