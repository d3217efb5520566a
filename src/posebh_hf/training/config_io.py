"""Strict conversion between plain dicts (YAML) and the training config dataclasses, with dotted overrides.

Errors name the offending key path (``schedule.epochs``), the value and, for unknown keys, the closest known
keys, so a typo in a YAML file or on the command line fails at start-up instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["ConfigError", "apply_overrides", "from_dict", "load_yaml", "parse_override", "to_dict"]

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid training configuration; the message names the key path and the value."""


# ----------------------------------------------------------------------------------------------- dict -> dataclass
def from_dict(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass `cls` from `data`, recursively; unknown keys and wrong types raise `ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(_unknown_key_message(_join(path, str(key)), str(key), list(fields)))
    kwargs = {name: _convert(hints[name], data[name], _join(path, name)) for name in fields if name in data}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path or 'config'}: {err}") from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _unknown_key_message(full: str, key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown config key {full!r}{hint} (known keys here: {', '.join(sorted(known))})"


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Coerce a YAML value to type `tp` (dataclass, list[X], dict, X | None, int, float, bool, str, Any)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{path}: must not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of "
                          f"{[getattr(o, '__name__', str(o)) for o in options]}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if value is None:
        raise ConfigError(f"{path}: must not be null")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        out = [_convert(item, v, f"{path}.{i}") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
        args = typing.get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return {str(k): _convert(item, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    if typing.get_origin(tp) is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{path}: {value!r} is not one of {list(typing.get_args(tp))}")
    raise ConfigError(f"{path}: unsupported config type {tp!r}")  # a programming error in the dataclasses


# ----------------------------------------------------------------------------------------------- dataclass -> dict
def to_dict(obj: Any) -> Any:
    """A dataclass (recursively) as plain YAML-safe Python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


# ----------------------------------------------------------------------------------------------- YAML + overrides
def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or invalid YAML raises `ConfigError` naming the file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {file} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file}: the top level must be a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"schedule.epochs=3"`` -> (["schedule", "epochs"], 3); the value is parsed as YAML (``null``, lists...)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value (e.g. schedule.epochs=3)")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"override {text!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {err}") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], schema: type | None = None) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to a nested dict (in place; also returned).

    With `schema` (the root dataclass), each key is checked against the dataclass fields before it is set, so
    ``schedule.epoch=3`` fails with a suggestion instead of being silently added. List items are addressed by
    index (``data.datasets.0.ratio=2``); the index one past the end appends.
    """
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        tp: Any = schema
        for depth, part in enumerate(parts):
            here = ".".join(parts[:depth + 1])
            last = depth == len(parts) - 1
            tp = _child_type(tp, part, here) if tp is not None else None
            if isinstance(node, list):
                # an index equal to the length appends (data.datasets.2={...} adds a third dataset)
                if not part.lstrip("-").isdigit() or not -len(node) <= int(part) <= len(node):
                    raise ConfigError(f"override {text!r}: {here!r} needs a list index in [0, {len(node)}]")
                if int(part) == len(node):
                    node.append(value if last else {})
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[:depth])!r} is not a mapping")
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
    return data


def _child_type(tp: Any, key: str, path: str) -> Any:
    """The type of field `key` inside type `tp` (unwrapping Optional / list), or ConfigError if unknown."""
    tp = _strip_optional(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp) if f.init]
        if key not in names:
            raise ConfigError(_unknown_key_message(path, key, names))
        return hints[key]
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return args[0] if args else None
    if origin is dict:
        args = typing.get_args(tp)
        return args[1] if len(args) == 2 else None
    return None  # free-form (Any / dict): accept any key


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        structured = [o for o in options if dataclasses.is_dataclass(o) or typing.get_origin(o) in (list, dict)]
        if structured:
            return structured[0]
        return options[0] if len(options) == 1 else None
    return tp
