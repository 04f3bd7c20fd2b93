"""The errors a run can stop with, and the checks that raise them (imports nothing of metarl's).

Each one is caught by the ``metarl`` command and printed as one line; Python users catch them by type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["NonFiniteError", "TrainingInterrupted", "SamplerWorkerError", "check_finite", "check_validation_seed"]


class NonFiniteError(FloatingPointError):
    """A loss, gradient, parameter or return became NaN or infinite; the message says where."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; its state at the end of the last whole meta-iteration was checkpointed.

    Attributes:
        logdir: the run directory to ``--resume`` (the parent of a multi-seed run: it finishes every seed).
        iteration: the last whole meta-iteration.
    """

    def __init__(self, logdir: Path, iteration: int):
        super().__init__(f"interrupted at meta-iteration {iteration}; continue with --resume {logdir}")
        self.logdir, self.iteration = logdir, iteration


class SamplerWorkerError(RuntimeError):
    """A shard failed on ``worker_retries`` fresh workers in a row; the message holds the worker's traceback."""


def check_finite(value: Any, where: str) -> None:
    """Raise :class:`NonFiniteError` naming ``where`` if ``value`` (number, array or tensor) is not finite."""
    if isinstance(value, torch.Tensor):
        ok = bool(torch.isfinite(value).all())
    else:
        ok = bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    if not ok:
        raise NonFiniteError(
            f"non-finite value in {where}; the run was stopped before it was applied "
            "(the last checkpoint is intact). Lower the learning rate / step size or check the task's rewards"
        )


def check_validation_seed(seed: int, metatest_seed: int | None) -> None:
    """Raise ``ValueError`` if the validation seed is the meta-test's (the best checkpoint would be chosen on
    the test tasks). The one place this rule lives: the outer loop calls it before training starts."""
    if metatest_seed is not None and seed == metatest_seed:
        raise ValueError(f"the validation seed {seed} equals metatest_seed: choose another --eval-seed, "
                         "so the best checkpoint is not chosen on the test tasks")
