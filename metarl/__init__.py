"""metarl: meta-reinforcement learning and meta-learning on current Gymnasium, MuJoCo and PyTorch.

Importing ``metarl`` registers its task families with Gymnasium (``metarl/Navigation2D-v0``
and the others listed by :func:`metarl.list_families`).
"""

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
    "Task",
    "TaskFamily",
    "TaskParam",
    "REQUIRED_TASK_METHODS",
    "check_task_family",
    "list_families",
    "make_env",
    "__version__",
]
