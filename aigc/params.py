"""Typed, validated loading of `params.yaml` sections.

Every stage reads its section into a dataclass before any heavy work. A section is checked
field by field: an unknown key, a missing key, a value of the wrong type or outside its allowed
range raises `ParamsError` whose one-line message names the dotted key, the value and what is
allowed. Stages call `load_section(...)` inside `aigc.errors.exit_on_error()`, which turns that
error into one line on stderr and exit status 2.

Declare a params dataclass with `spec(...)` fields:

    @dataclass(frozen=True)
    class SplitParams:
        val_fraction: float = spec(ge=0.0, lt=1.0, doc="share of training items held out")
        seed: int = spec(ge=0)

    split = load_section("params.yaml", "split", SplitParams)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

__all__ = ["ParamsError", "spec", "from_dict", "load_section", "read_params"]


class ParamsError(ValueError):
    """A bad value in params.yaml; the message is one line naming the key."""


def spec(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    doc: str = "",
    default: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its allowed range; without `default` the key is required."""
    metadata = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "doc": doc}
    return dataclasses.field(default=default, metadata=metadata)


def read_params(path: str | Path = "params.yaml") -> dict:
    """The whole params file as a dict (a missing or malformed file is a ParamsError)."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(loaded).__name__}")
    return loaded


def load_section(
    path: str | Path, section: str, cls: type[T], fixed: Mapping[str, Any] | None = None
) -> T:
    """Read dotted `section` (e.g. "train.dcgan") of the params file into `cls`."""
    node: Any = read_params(path)
    for part in section.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"{section}: missing section in {path}")
        node = node[part]
    return from_dict(cls, node, section, fixed)


def from_dict(cls: type[T], values: Any, where: str, fixed: Mapping[str, Any] | None = None) -> T:
    """Build dataclass `cls` from `values`, checking every key; `where` is the dotted prefix.

    `fixed` supplies fields that code derives (say, `image_size` from the data); they must not
    also appear in `values`.
    """
    if not isinstance(values, Mapping):
        raise ParamsError(f"{where}: expected a mapping of keys, got {_show(values)}")
    fixed = dict(fixed or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    settable = sorted(set(fields) - set(fixed))
    for key in values:
        if key not in settable:
            raise ParamsError(f"{where}.{key}: unknown key; allowed keys: {', '.join(settable)}")
    hints = typing.get_type_hints(cls)
    built = {}
    for name, field in fields.items():
        key = f"{where}.{name}"
        if name in fixed:
            built[name] = fixed[name]
        elif name in values:
            built[name] = _check(key, values[name], hints[name], field.metadata)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{key}: missing key ({_describe(hints[name], field.metadata)})")
    return cls(**built)


def _check(key: str, value: Any, hint: Any, metadata: Mapping[str, Any]) -> Any:
    value = _coerce(key, value, hint, metadata)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        bounds = [
            ("ge", lambda v, b: v >= b),
            ("gt", lambda v, b: v > b),
            ("le", lambda v, b: v <= b),
            ("lt", lambda v, b: v < b),
        ]
        for name, ok in bounds:
            bound = metadata.get(name)
            if bound is not None and not ok(value, bound):
                raise ParamsError(
                    f"{key} = {_show(value)} is out of range; allowed: {_describe(hint, metadata)}"
                )
    choices = metadata.get("choices")
    if choices is not None and not isinstance(value, tuple) and value not in choices:
        raise ParamsError(
            f"{key} = {_show(value)} is not allowed; allowed: {', '.join(map(str, choices))}"
        )
    return value


def _coerce(key: str, value: Any, hint: Any, metadata: Mapping[str, Any]) -> Any:
    """Check `value` against the annotation `hint`, returning it in the field's type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, arg, metadata)
            except ParamsError as error:
                errors.append(error)
        raise ParamsError(
            f"{key} = {_show(value)} has the wrong type; allowed: {_describe(hint, metadata)}"
        )
    if origin is typing.Literal:
        if value not in args:
            raise ParamsError(
                f"{key} = {_show(value)} is not allowed; allowed: {', '.join(map(str, args))}"
            )
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(
                f"{key} = {_show(value)} has the wrong type; allowed: {_describe(hint, metadata)}"
            )
        item_hint = args[0] if args else Any
        items = [_check(f"{key}[{i}]", v, item_hint, metadata) for i, v in enumerate(value)]
        return tuple(items)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key} = {_show(value)} has the wrong type; allowed: a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key} = {_show(value)} has the wrong type; allowed: an integer")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key} = {_show(value)} has the wrong type; allowed: true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key} = {_show(value)} has the wrong type; allowed: a string")
        return value
    raise TypeError(f"{key}: unsupported annotation {hint!r}")  # a bug in the dataclass, not params


def _describe(hint: Any, metadata: Mapping[str, Any]) -> str:
    """What a field allows, in words: 'a number > 0 and <= 1'."""
    if metadata.get("choices") is not None:
        return "one of " + ", ".join(map(str, metadata["choices"]))
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a, metadata) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return " or ".join(parts)
    if origin in (tuple, list):
        return f"a list of {_describe(args[0], metadata) if args else 'values'}"
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    text = names.get(hint, getattr(hint, "__name__", str(hint)))
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    limits = [f"{signs[k]} {metadata[k]}" for k in signs if metadata.get(k) is not None]
    if limits:
        text += " " + " and ".join(limits)
    return text


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
