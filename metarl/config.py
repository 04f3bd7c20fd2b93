"""Dataclass settings <-> command-line flags (CleanRL's one-dataclass-of-arguments pattern).

Each field of a settings dataclass becomes ``--field-name``; its help text is the field's
``metadata["help"]``. Booleans become ``--flag/--no-flag`` switches.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

__all__ = ["add_dataclass_arguments", "dataclass_from_args", "field"]

T = TypeVar("T")


def field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a help string for its command-line flag."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: default, metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def _base_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return args[0]
    return tp


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of dataclass ``cls`` (defaults from the dataclass)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        elif typing.get_origin(tp) is typing.Literal:
            parser.add_argument(flag, dest=f.name, choices=list(typing.get_args(tp)), default=default, help=help_text)
        elif typing.get_origin(tp) in (tuple, list):
            inner = typing.get_args(tp)[0]
            parser.add_argument(flag, dest=f.name, type=inner, nargs="+", default=default, help=help_text)
        elif tp in (int, float, str):
            parser.add_argument(flag, dest=f.name, type=tp, default=default,
                                help=f"{help_text} (default: {default})")
        else:
            parser.add_argument(flag, dest=f.name, default=default, help=help_text)


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from parsed flags (fields missing from ``args`` keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)  # type: ignore[call-arg]
