"""metarl: meta-reinforcement learning and meta-learning on current Gymnasium, MuJoCo and PyTorch.

Importing ``metarl`` registers its task families with Gymnasium (``metarl/Navigation2D-v0``
and the others listed by :func:`metarl.list_families`). :func:`make_algorithm` builds any learner with
the settings ``metarl train`` would use and :func:`train` trains one as ``metarl train`` does, :func:`load_run`
gives back a trained one, :func:`load_policy` a trained meta-policy that adapts to a task and acts,
:func:`evaluate` its meta-test table on any family with its spaces, and
``metarl.fewshot.load_learner`` a few-shot learner ready to adapt, ``metarl.continual.load_learner`` an
online learner, :class:`TaskEncoder` (``metarl.encoders``) PEARL's context encoder for any agent (submodules
load on first use).
"""

import importlib
from typing import Any

from metarl.tasks import (
    REQUIRED_TASK_METHODS,
    Task,
    TaskFamily,
    TaskParam,
    check_task_family,
    list_families,
    make_env,
)

__version__ = "0.1.0"

import metarl.envs  # noqa: E402,F401  (registers the families)

__all__ = [
    "train",
    "load_policy",
    "evaluate",
    "make_algorithm",
    "load_run",
    "run_meta_training",
    "TaskEncoder",
    "Task",
    "TaskFamily",
    "TaskParam",
    "REQUIRED_TASK_METHODS",
    "check_task_family",
    "list_families",
    "make_env",
    "__version__",
]


_LAZY = {"train": "metarl.launcher", "load_policy": "metarl.policy", "evaluate": "metarl.evaluation",
         "make_algorithm": "metarl.launcher", "load_run": "metarl.launcher", "run_meta_training": "metarl.training",
         "TaskEncoder": "metarl.encoders"}
_SUBMODULES = ("fewshot", "continual", "agents", "launcher", "training", "presets", "config", "encoders", "policy",
               "evaluation", "plotting")


def __getattr__(name: str) -> Any:
    """``metarl.fewshot``, ``metarl.load_run``, ... without importing torch-heavy modules up front."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"metarl.{name}")
    raise AttributeError(f"module 'metarl' has no attribute {name!r}")
