"""Per-(algorithm, family) settings, one YAML file per algorithm (as rl-baselines3-zoo's ``hyperparams/``).

``metarl/presets/<algo>.yaml`` maps a task family id (RL) or a dataset name (few-shot) to the
settings that differ from the config class's generic defaults: the settings behind the numbers in
``docs/results/``. The command line and the Python API read them through :func:`resolve_config`, so
``MAMLTRPO(env="metarl/Navigation2D-v0")`` built in Python trains with what ``metarl train`` uses.

A file may start with ``same_as: <algo>`` to take that algorithm's presets (entries it gives replace them).
An entry may hold ``cases``: a list of further settings, each applied when its ``when`` condition on
the family's constructor kwargs holds (``when: n > 20``; a kwarg not given takes the family's
default). A value ``{expr: "10 / n"}`` is computed from the kwargs the same way.
"""

from __future__ import annotations

import ast
import functools
import inspect
import operator
from collections.abc import Mapping
from importlib import resources
from typing import Any, TypeVar

import yaml

from metarl.config import RunConfig, config_from_dict

__all__ = ["preset", "resolve_config", "preset_names"]

C = TypeVar("C", bound=RunConfig)

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
              ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.USub: operator.neg}


def _evaluate(expression: str, names: Mapping[str, Any]) -> Any:
    """Arithmetic and comparisons over numbers and kwarg names (no calls, no attributes)."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ValueError(f"preset expression {expression!r} names {node.id!r}, which the family has no "
                                 "kwarg of")
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _OPERATORS:
            return _OPERATORS[type(node.ops[0])](ev(node.left), ev(node.comparators[0]))
        if isinstance(node, ast.BoolOp):
            values = [ev(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        raise ValueError(f"unsupported preset expression {expression!r}")

    return ev(ast.parse(expression, mode="eval"))


@functools.cache
def _load(algo: str) -> dict[str, Any]:
    try:
        text = resources.files(__package__).joinpath(f"{algo}.yaml").read_text()
    except FileNotFoundError:
        return {}
    data = yaml.safe_load(text) or {}
    same_as = data.pop("same_as", None)  # methods that share another's training settings say so
    return {**_load(same_as), **data} if same_as else data


def preset_names(algo: str) -> list[str]:
    """The families (or datasets) with a preset for ``algo``."""
    return sorted(_load(algo))


def _family_kwargs(env_id: str, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The family's constructor kwargs: registered ones and signature defaults, under those given."""
    import gymnasium as gym

    names: dict[str, Any] = {}
    spec = gym.registry.get(env_id)
    if spec is not None:
        entry = spec.entry_point
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            try:
                entry = getattr(__import__(module, fromlist=[attr]), attr)
            except (ImportError, AttributeError):
                entry = None
        if entry is not None:
            try:
                for name, param in inspect.signature(entry).parameters.items():
                    if param.default is not inspect.Parameter.empty:
                        names[name] = param.default
            except (TypeError, ValueError):
                pass
        names.update(spec.kwargs or {})
    names.update(env_kwargs)
    return names


def preset(algo: str, key: str, env_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The preset settings of ``algo`` for family (or dataset) ``key``; ``{}`` if it has none."""
    entry = _load(algo).get(key)
    if not entry:
        return {}
    entry = dict(entry)
    cases = entry.pop("cases", [])
    kwargs = _family_kwargs(key, dict(env_kwargs or {})) if cases or any(
        isinstance(v, dict) and "expr" in v for v in entry.values()) else {}
    settings = dict(entry)
    for case in cases:
        case = dict(case)
        if _evaluate(str(case.pop("when")), kwargs):
            settings.update(case)
    return {k: _evaluate(v["expr"], kwargs) if isinstance(v, dict) and set(v) == {"expr"} else v
            for k, v in settings.items()}


def resolve_config(algo: str, config_cls: type[C], settings: Mapping[str, Any] | None = None) -> C:
    """The validated config of an ``algo`` run: generic defaults, then the preset, then ``settings``.

    The preset is the one of the family (or dataset) named in ``settings`` (or the class default).

    Raises:
        ValueError / TypeError: an unknown setting name or a value out of range, naming it.
    """
    settings = dict(settings or {})
    key_field = config_cls.preset_key
    fields = config_cls.__dataclass_fields__
    key = settings.get(key_field, fields[key_field].default if key_field in fields else None)
    env_kwargs = settings.get("env_kwargs", {})
    values = {**(preset(algo, key, env_kwargs) if key is not None else {}), **settings}
    config = config_from_dict(config_cls, values)
    config.validate()
    return config
