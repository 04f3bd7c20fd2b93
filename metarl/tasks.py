"""The task-family protocol: how a meta-learner gets tasks out of a Gymnasium environment.

A *task family* is a Gymnasium environment whose unwrapped env has three methods
(learn2learn's protocol):

``sample_tasks(n, rng)``
    ``n`` tasks drawn with the given ``numpy.random.Generator`` (never the global RNG).
``set_task(task)``
    make the env run that task from the next ``reset`` on; an out-of-range or malformed
    task raises ``ValueError`` naming the allowed range.
``get_task()``
    the task the env is running.

Any object with those methods is a family (duck typing, so a user's family does not have to
import metarl); :class:`TaskFamily` is a mixin that implements validation, sampling and
``get_task`` from a declarative :class:`TaskParam` space. :class:`Task` is the task value
type: immutable, hashable, printable and JSON-serialisable.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from metarl.env_kwargs import check_env_kwargs, check_kwarg_values
from metarl.imports import import_prefix

__all__ = [
    "Task",
    "TaskParam",
    "TaskFamily",
    "REQUIRED_TASK_METHODS",
    "check_task_family",
    "check_rng",
    "check_positive_int",
    "list_families",
    "make_env",
    "check_env_kwargs",
    "tasks_to_json",
    "draw_tasks",
    "has_task_splits",
    "TASK_SPLITS",
    "NAMESPACE",
]

#: the task sets a family may declare (``train_tasks`` / ``test_tasks``, or ``sample_tasks(..., split=...)``)
TASK_SPLITS = ("train", "test")

NAMESPACE = "metarl"
REQUIRED_TASK_METHODS = ("sample_tasks", "set_task", "get_task")


def _freeze(value: Any) -> Any:
    """Convert arrays/lists to nested tuples of Python scalars so a task is hashable."""
    if isinstance(value, np.ndarray):
        return _freeze(value.tolist())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"task parameter values must be numbers, strings or arrays, got {type(value).__name__}")


def _thaw(value: Any) -> Any:
    return np.asarray(value, dtype=np.float64) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Task:
    """One task of a family: the family's name and its parameter values.

    Values are stored frozen (nested tuples of Python scalars) so tasks are hashable and can
    key dicts and sets; indexing returns a NumPy array for array-valued parameters.

    >>> t = Task.create("Navigation2D", goal=[0.1, -0.2])
    >>> t["goal"]
    array([ 0.1, -0.2])
    """

    family: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def create(cls, family: str, **params: Any) -> "Task":
        """Build a task from keyword parameters (arrays, lists or scalars)."""
        return cls(family, tuple(sorted((k, _freeze(v)) for k, v in params.items())))

    def __getitem__(self, name: str) -> Any:
        for key, value in self.params:
            if key == name:
                return _thaw(value)
        raise KeyError(f"task of family {self.family!r} has no parameter {name!r}; it has {self.keys()}")

    def keys(self) -> list[str]:
        """Parameter names, sorted."""
        return [k for k, _ in self.params]

    def as_dict(self) -> dict[str, Any]:
        """Parameters as a dict of NumPy arrays / scalars."""
        return {k: _thaw(v) for k, v in self.params}

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (inverse: :meth:`from_json`)."""
        return {"family": self.family, "params": {k: v for k, v in self.params}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> "Task":
        """Rebuild a task from :meth:`to_json` output (a dict or a JSON string)."""
        if isinstance(data, str):
            data = json.loads(data)
        try:
            return cls.create(data["family"], **data["params"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a serialised Task (need 'family' and 'params'): {data!r}") from exc

    def __repr__(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, tuple):
                arr = np.asarray(v, dtype=np.float64)
                return np.array2string(arr, precision=4, separator=", ", threshold=12, suppress_small=True)
            return f"{v:.4g}" if isinstance(v, float) else repr(v)

        body = ", ".join(f"{k}={fmt(v)}" for k, v in self.params)
        return f"Task({self.family!r}, {body})"


@dataclass(frozen=True)
class TaskParam:
    """Allowed values of one task parameter.

    Either a box (``low``/``high`` bounds, inclusive, on every element of an array of
    ``shape``) or a finite set of ``choices``.
    """

    low: float = -math.inf
    high: float = math.inf
    shape: tuple[int, ...] = ()
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        """Human-readable allowed range, used in error messages."""
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        where = f"array of shape {self.shape} with every element" if self.shape else "a number"
        return f"{where} in [{self.low}, {self.high}]"

    def validate(self, family: str, name: str, value: Any) -> Any:
        """Return ``value`` if allowed, else raise ``ValueError`` naming the range."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(
                    f"{family} task parameter {name}={value!r} is not allowed; it must be {self.describe()}"
                )
            return value
        try:
            arr = np.asarray(_thaw(value), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{family} task parameter {name}={value!r:.60} must be numbers of shape "
                             f"{tuple(self.shape)} in {self.describe()}") from None
        if arr.shape != tuple(self.shape):
            raise ValueError(
                f"{family} task parameter {name!r} has shape {arr.shape}, expected {tuple(self.shape)}"
            )
        if not np.all(np.isfinite(arr)) or np.any(arr < self.low) or np.any(arr > self.high):
            raise ValueError(
                f"{family} task parameter {name}={np.round(arr, 4).tolist()} is out of range; it must be "
                f"{self.describe()} (sample tasks with env.unwrapped.sample_tasks or change the family's kwargs)"
            )
        return value


def check_rng(rng: Any) -> np.random.Generator:
    """Require an explicit ``numpy.random.Generator`` (task sampling never uses the global RNG)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
            "pass e.g. numpy.random.default_rng(seed)"
        )
    return rng


def check_positive_int(name: str, value: Any) -> int:
    """Raise ``ValueError`` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class TaskFamily:
    """Mixin implementing the task protocol from a declarative task space.

    A subclass sets :attr:`family_name`, implements :meth:`task_space`, :meth:`_draw_tasks`
    (vectorised sampling from the given generator) and :meth:`_apply_task` (configure the
    simulation). Families with constraints a box cannot express (e.g. probability simplices)
    extend :meth:`validate_task`.
    """

    family_name: ClassVar[str] = ""
    _task: Task | None = None

    #: bounds of numeric constructor kwargs whose type alone does not bound them, in the settings' notation
    #: (``{"log_scale_limit": "(0, 10]"}``)
    kwarg_bounds: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give every family constructor a ``task=`` keyword: ``gymnasium.make(id, task=...)`` builds the env
        running that task (a :class:`Task` or a mapping of its parameters, validated by :meth:`set_task`); and
        check the kwargs given by name (:func:`check_env_kwargs`' rules) before the constructor runs."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_takes_task", False):
            cls.__init__ = _with_task_keyword(init)  # type: ignore[method-assign]

    def as_task(self, task: Any) -> Task:
        """``task`` as this family's :class:`Task`: a Task as is, a mapping of parameters made into one."""
        if isinstance(task, Mapping) and not isinstance(task, Task):
            return Task.create(self.family_name, **task)
        return task

    def task_space(self) -> dict[str, TaskParam]:
        """Allowed values of each task parameter (may depend on constructor kwargs)."""
        raise NotImplementedError

    def _draw_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        raise NotImplementedError

    def _apply_task(self, task: Task) -> None:
        raise NotImplementedError

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        """Draw ``n`` tasks using only ``rng`` (a ``numpy.random.Generator``)."""
        n = check_positive_int("n", n)
        return self._draw_tasks(n, check_rng(rng))

    def validate_task(self, task: Any) -> Task:
        """Return ``task`` if this family can run it, else raise ``ValueError``/``TypeError``."""
        if not isinstance(task, Task):
            raise TypeError(
                f"{self.family_name}.set_task expects a metarl.Task (from sample_tasks), got {type(task).__name__}"
            )
        if task.family != self.family_name:
            raise ValueError(f"task of family {task.family!r} given to a {self.family_name!r} env")
        space = self.task_space()
        if set(task.keys()) != set(space):
            raise ValueError(
                f"{self.family_name} task must have parameters {sorted(space)}, got {task.keys()}"
            )
        for name, spec in space.items():
            spec.validate(self.family_name, name, dict(task.params)[name])
        return task

    def set_task(self, task: Task) -> None:
        """Run ``task`` from the next ``reset`` on (validated first)."""
        task = self.validate_task(task)
        self._task = task
        self._apply_task(task)

    def get_task(self) -> Task:
        """The task this env runs."""
        if self._task is None:
            raise RuntimeError(f"{self.family_name} has no task set; call set_task first")
        return self._task


def _with_task_keyword(init: Any) -> Any:
    try:
        hints = typing.get_type_hints(init)
    except (TypeError, NameError):
        hints = {}

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, task: Any = None, **kwargs: Any) -> None:
        # the family checks its own kwargs (gymnasium.make included): one place for the CLI and Python
        check_kwarg_values(type(self).__name__, kwargs, hints, getattr(self, "kwarg_bounds", {}))
        init(self, *args, **kwargs)
        if task is not None:
            self.set_task(self.as_task(task))

    __init__._takes_task = True  # type: ignore[attr-defined]
    return __init__


def has_task_splits(family: Any) -> bool:
    """Whether ``family`` declares fixed train and test task sets (``train_tasks``/``test_tasks``, or a
    ``split`` parameter of ``sample_tasks``)."""
    if all(getattr(family, f"{s}_tasks", None) is not None for s in TASK_SPLITS):
        return True
    try:
        return "split" in inspect.signature(family.sample_tasks).parameters
    except (TypeError, ValueError):
        return False


def draw_tasks(family: Any, n: int, rng: np.random.Generator, split: str | None = None) -> list[Any]:
    """``n`` tasks of ``family`` drawn with ``rng``; ``split="train"``/``"test"`` draws from the family's fixed
    task set of that name where it declares them (else from its one distribution, as without a split).

    From a fixed set of ``m`` tasks: a random order of all ``m`` (``n <= m``: the first ``n``, all distinct),
    repeated in new random orders when ``n > m``.

    Raises:
        ValueError: an unknown split, or an empty task set.
    """
    if split is not None and split not in TASK_SPLITS:
        raise ValueError(f"split must be one of {TASK_SPLITS}, got {split!r}")
    if split is None or not has_task_splits(family):
        return list(family.sample_tasks(n, rng))
    fixed = getattr(family, f"{split}_tasks", None)
    if fixed is None:
        return list(family.sample_tasks(n, rng, split=split))
    fixed = list(fixed)
    if not fixed:
        raise ValueError(f"{type(family).__name__} declares no {split} tasks ({split}_tasks is empty)")
    rounds = -(-n // len(fixed))
    order = np.concatenate([rng.permutation(len(fixed)) for _ in range(rounds)])[:n]
    return [fixed[i] for i in order]


def check_task_family(env: gym.Env) -> Any:
    """Return ``env.unwrapped`` if it implements the task protocol, else raise ``TypeError``."""
    base = env.unwrapped
    missing = [m for m in REQUIRED_TASK_METHODS if not callable(getattr(base, m, None))]
    if missing:
        env_id = env.spec.id if env.spec is not None else type(base).__name__
        raise TypeError(
            f"{env_id} is not a task family: its unwrapped env lacks {', '.join(missing)}. "
            "A family needs sample_tasks(n, rng), set_task(task) and get_task() "
            "(subclass metarl.TaskFamily to get them from a task space)"
        )
    return base


def list_families(namespace: str = NAMESPACE) -> list[str]:
    """Ids of the registered task families in ``namespace`` (default: metarl's own)."""
    return sorted(k for k, spec in gym.registry.items() if spec.namespace == namespace)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with errors that say what to do.

    Accepts Gymnasium's module-prefixed ids (``"mypkg.families:MyFamily-v0"``), which import
    the user's module (registering their family) first; its kwargs are checked first
    (:func:`check_env_kwargs`).
    """
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env id must be a non-empty string, got {env_id!r}")
    try:
        check_env_kwargs(import_prefix(env_id, "env id"), kwargs)
        return gym.make(env_id, **kwargs)
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound,
            gym.error.UnregisteredEnv) as exc:
        raise ValueError(
            f"unknown env id {env_id!r} ({exc}). metarl families: {', '.join(list_families())}. "
            "For your own family, register it with gymnasium.register and pass "
            "'your.module:YourFamily-v0' so the module is imported first"
        ) from exc
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise ValueError(f"{env_id} rejected its kwargs: {exc}") from exc
        raise


def tasks_to_json(tasks: Sequence[Any]) -> list[Any]:
    """Serialise tasks for logs: Task objects via ``to_json``, numbers as numbers, arrays as lists,
    anything else via ``repr``."""
    out: list[Any] = []
    for t in tasks:
        if isinstance(t, Task):
            out.append(t.to_json())
        elif isinstance(t, (bool, np.bool_)):
            out.append(bool(t))
        elif isinstance(t, (int, float, np.integer, np.floating)):
            out.append(t.item() if isinstance(t, np.generic) else t)
        elif isinstance(t, (np.ndarray, list, tuple)):
            out.append(np.asarray(t).tolist())
        elif isinstance(t, (str, dict)):
            out.append(t)
        else:
            out.append(repr(t))
    return out
