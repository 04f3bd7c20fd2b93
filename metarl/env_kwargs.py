"""The rules a task family's constructor kwargs must follow, checked in one place: by the family itself when
it is built (``gymnasium.make`` included, through :class:`metarl.tasks.TaskFamily`) and by the command line
before anything is built (:func:`check_env_kwargs`)."""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.config import in_bounds

__all__ = ["check_env_kwargs", "check_kwarg_values", "family_entry_point"]


def _entry_point_hints(env_id: str) -> tuple[dict[str, Any], set[str] | None]:
    """Annotations of the family's constructor kwargs, and their names (``None`` if it takes ``**kwargs``)."""
    entry = family_entry_point(env_id)
    if entry is None:
        return {}, None
    init = entry.__init__ if isinstance(entry, type) else entry
    try:
        hints = typing.get_type_hints(init)
        params = inspect.signature(init).parameters
    except (TypeError, ValueError, NameError):
        return {}, None
    names = None if any(p.kind is p.VAR_KEYWORD for p in params.values()) else \
        {n for n in params if n != "self"}
    return hints, names


def check_env_kwargs(env_id: str, kwargs: Mapping[str, Any]) -> None:
    """Reject family kwargs that cannot work, naming them: a wrong type for an annotated kwarg, a NaN,
    an infinite scalar, a ``*_range`` pair that is not increasing, a value outside the family's
    ``kwarg_bounds``, a name the family does not take. Families check their own kwargs with the same rules
    when constructed (``gymnasium.make`` included); this is the check before anything is built.

    Raises:
        ValueError: naming the kwarg and the family.
    """
    hints, names = _entry_point_hints(env_id)
    if names is not None:
        for key in kwargs:
            if key not in names and key not in ("max_episode_steps", "render_mode", "task"):
                raise ValueError(f"{env_id} takes no kwarg {key!r}; it takes {sorted(names)}")
    bounds = getattr(family_entry_point(env_id), "kwarg_bounds", {})
    check_kwarg_values(env_id, kwargs, hints, bounds)


def check_kwarg_values(family: str, kwargs: Mapping[str, Any], hints: Mapping[str, Any],
                       bounds: Mapping[str, str]) -> None:
    """The value rules of :func:`check_env_kwargs` for ``kwargs`` of ``family`` with constructor annotations
    ``hints`` and ``bounds`` per kwarg (the settings' notation: ``"(0, 10]"``)."""
    for key, value in kwargs.items():
        if key in ("max_episode_steps", "render_mode", "task"):
            continue
        hint = hints.get(key)
        where = f"env kwarg {key} of {family}"
        if hint in (float, int) and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))):
            raise ValueError(f"{where} must be a number, got {value!r}")
        if hint is bool and not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{where} must be True or False, got {value!r}")
        if isinstance(value, (float, np.floating)) and not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
        if isinstance(value, (tuple, list)) and any(isinstance(v, float) and math.isnan(v) for v in value):
            raise ValueError(f"{where} holds NaN: {value!r}")
        if key.endswith("_range") and isinstance(value, (tuple, list)) and len(value) == 2 \
                and all(isinstance(v, (int, float)) for v in value) and not value[0] < value[1]:
            raise ValueError(f"{where} must be an increasing (low, high) pair, got {value!r}")
        if key in bounds and isinstance(value, (int, float, np.number)) and not isinstance(value, bool) \
                and not in_bounds(float(value), bounds[key]):
            raise ValueError(f"{where} must be in {bounds[key]}, got {value!r}")


def family_entry_point(env_id: str) -> Any:
    """The class (or function) registered for ``env_id`` with Gymnasium, imported; ``None`` if unknown."""
    spec = gym.registry.get(env_id)
    entry = spec.entry_point if spec is not None else None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        try:
            return getattr(__import__(module, fromlist=[attr]), attr)
        except (ImportError, AttributeError):
            return None
    return entry
