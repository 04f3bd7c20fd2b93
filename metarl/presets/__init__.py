"""Per-(algorithm, family) settings, one YAML file per algorithm (as rl-baselines3-zoo's ``hyperparams/``).

``metarl/presets/<algo>.yaml`` maps a task family id (RL) or a dataset name (few-shot) to the
settings that differ from the config class's generic defaults: the settings behind the numbers in
``docs/results/``. The command line and the Python API read them through
:func:`metarl.registry.resolve_config` (a user's algorithm may give its own file or mapping), so
``MAMLTRPO(env="metarl/Navigation2D-v0")`` built in Python trains with what ``metarl train`` uses.

A file may start with ``same_as: <algo>`` to take that algorithm's presets (entries it gives replace them), or
``extends: <algo>`` to take them with its own settings merged into each entry (a variant of that algorithm:
``rl2-transformer`` extends ``rl2-ppo``; its ``cases`` follow the base entry's).
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
import os
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml

from metarl.env_kwargs import check_env_kwargs, family_entry_point

__all__ = ["preset", "preset_names", "PresetSource"]

#: where presets come from: a built-in algorithm's name, a YAML file's path, or a mapping
PresetSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]

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
def _load_file(source: str) -> dict[str, Any]:
    if source.endswith((".yaml", ".yml")):  # a user's presets file
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read presets file {source}: {exc.strerror or exc}") from exc
    else:
        try:
            text = resources.files(__package__).joinpath(f"{source}.yaml").read_text()
        except FileNotFoundError:
            return {}
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"presets {source} are not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"presets {source} must map a family or dataset to its settings, got {type(data).__name__}")
    same_as = data.pop("same_as", None)  # methods that share another's training settings say so
    if same_as:
        return {**_load_file(same_as), **data}
    extends = data.pop("extends", None)  # a variant of another algorithm: its entries, with these on top
    if extends:
        return _extend(_load_file(extends), data)
    return data


def _extend(base: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """``own``'s entries on top of ``base``'s, family by family: settings replaced, ``cases`` appended."""
    out = {key: dict(entry) for key, entry in base.items()}
    for key, entry in own.items():
        merged = {**out.get(key, {}), **dict(entry or {})}
        cases = list(out.get(key, {}).get("cases", [])) + list((entry or {}).get("cases", []))
        if cases:
            merged["cases"] = cases
        out[key] = merged
    return out


def _load(source: PresetSource) -> Mapping[str, Any]:
    """The presets table of ``source``: an algorithm name (``metarl/presets/<name>.yaml``), a YAML file's path,
    or a mapping ``{family or dataset: {setting: value}}``."""
    if isinstance(source, Mapping):
        return source
    return _load_file(os.fspath(source))


def preset_names(source: PresetSource) -> list[str]:
    """The families (or datasets) with a preset in ``source`` (an algorithm's name, a file or a mapping)."""
    return sorted(_load(source))


def _family_kwargs(env_id: str, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The family's constructor kwargs: registered ones and signature defaults, under those given."""
    import gymnasium as gym

    names: dict[str, Any] = {}
    entry = family_entry_point(env_id)
    if entry is not None:
        try:
            for name, param in inspect.signature(entry).parameters.items():
                if param.default is not inspect.Parameter.empty:
                    names[name] = param.default
        except (TypeError, ValueError):
            pass
    spec = gym.registry.get(env_id)
    if spec is not None:
        names.update(spec.kwargs or {})
    names.update(env_kwargs)
    return names


def _entry(table: Mapping[str, Any], key: str) -> Any:
    """``table``'s entry for ``key``; several datasets (``clinc150+banking77``) match in any order."""
    entry = table.get(key)
    if entry is None and "+" in key:
        names = sorted(key.split("+"))
        entry = next((v for k, v in table.items() if isinstance(k, str) and sorted(k.split("+")) == names), None)
    return entry


def preset(source: PresetSource, key: str, env_kwargs: Mapping[str, Any] | None = None,
           chosen: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The preset settings for family (or dataset) ``key`` in ``source`` (an algorithm's name, a presets file or
    a mapping); ``{}`` if it has none.

    An entry may hold ``by: {setting: {value: {...}}}``: variants chosen by another setting's value, ``chosen``
    (the flags'; else the entry's own value of that setting) - the text presets by ``encoder``."""
    entry = _entry(_load(source), key)
    if not entry:
        return {}
    entry = dict(entry)
    for name, variants in (entry.pop("by", None) or {}).items():
        value = (chosen or {}).get(name, entry.get(name))
        entry.update(dict(variants or {}).get(value) or {})
    cases = entry.pop("cases", [])
    needs_kwargs = bool(cases) or any(isinstance(v, dict) and "expr" in v for v in entry.values())
    if needs_kwargs and env_kwargs:
        check_env_kwargs(key, env_kwargs)  # a preset computed from a kwarg of the wrong type would fail obscurely
    kwargs = _family_kwargs(key, dict(env_kwargs or {})) if needs_kwargs else {}
    settings = dict(entry)
    for case in cases:
        case = dict(case)
        if _evaluate(str(case.pop("when")), kwargs):
            settings.update(case)
    return {k: _evaluate(v["expr"], kwargs) if isinstance(v, dict) and set(v) == {"expr"} else v
            for k, v in settings.items()}
