"""metarl: meta-reinforcement learning and meta-learning on current Gymnasium, MuJoCo and PyTorch.

Importing ``metarl`` registers its task families with Gymnasium (``metarl/Navigation2D-v0``
and the others listed by :func:`metarl.list_families`). :func:`train` trains any registered algorithm as
``metarl train`` / ``fewshot`` / ``continual`` do (with your own :class:`BaseCallback` objects),
:func:`load` gives back what a user holds for any run (a meta-policy that adapts and acts, a few-shot or
an online learner; :func:`load_policy`, ``metarl.fewshot.load_learner`` and ``metarl.continual.load_learner``
are the same call for one kind), :func:`make_algorithm` builds a learner with the settings the command
line would use, :func:`load_run` the trained algorithm itself, :func:`evaluate` a policy's meta-test on
any family with its spaces, :func:`metaworld_evaluation` Meta-World's evaluation protocol on a policy, :func:`register_algorithm` adds an algorithm of your own to all of these,
:class:`TaskEncoder` (``metarl.encoders``) is PEARL's context encoder for any agent (submodules load on
first use).
"""

import importlib
import os
from typing import Any

# Run from a source checkout (an editable install, or Python started in the repository), the subpackages
# metarl.envs and metarl.agents live beside this directory (the repository's envs/ and agents/, mapped by
# pyproject.toml's package-dir); an installed wheel has them inside it.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.path.isdir(os.path.join(os.path.dirname(__file__), "envs")) and \
        os.path.isfile(os.path.join(_CHECKOUT, "envs", "__init__.py")) and _CHECKOUT not in __path__:
    __path__.append(_CHECKOUT)

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
    "load",
    "register_algorithm",
    "BaseCallback",
    "load_policy",
    "evaluate",
    "metaworld_evaluation",
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
         "metaworld_evaluation": "metarl.protocols",
         "make_algorithm": "metarl.registry", "load_run": "metarl.registry", "run_meta_training": "metarl.training",
         "load": "metarl.registry", "register_algorithm": "metarl.registry", "BaseCallback": "metarl.callbacks",
         "TaskEncoder": "metarl.encoders"}
_SUBMODULES = ("fewshot", "continual", "agents", "launcher", "training", "presets", "config", "encoders", "policy",
               "evaluation", "protocols", "plotting", "registry", "callbacks", "algorithm", "meta_rl", "errors")


def __getattr__(name: str) -> Any:
    """``metarl.fewshot``, ``metarl.load_run``, ... without importing torch-heavy modules up front."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"metarl.{name}")
    raise AttributeError(f"module 'metarl' has no attribute {name!r}")
