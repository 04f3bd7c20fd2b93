"""Sinusoid regression tasks (Finn et al. 2017, section 5.1).

A task is ``y = A sin(x - phase)`` with amplitude ``A ~ U[0.1, 5]``, phase ``~ U[0, pi]`` and
inputs ``x ~ U[-5, 5]``; a learner sees K (x, y) pairs of a task and must predict the rest of
the curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from metarl.fewshot.data import EpisodeBatch

__all__ = ["SinusoidTasks"]


@dataclass(frozen=True)
class SinusoidTasks:
    """The task distribution; :meth:`sample` draws a stack of tasks with support and query points."""

    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    input_range: tuple[float, float] = (-5.0, 5.0)

    def sample(self, rng: np.random.Generator, tasks: int, shots: int, queries: int) -> EpisodeBatch:
        """``tasks`` sinusoids with ``shots`` support and ``queries`` query points each.

        Returns an :class:`EpisodeBatch` of float32 tensors shaped ``(tasks, points, 1)``.
        """
        if tasks < 1 or shots < 1 or queries < 1:
            raise ValueError(f"tasks, shots and queries must be positive, got {tasks}, {shots}, {queries}")
        amplitude = rng.uniform(*self.amplitude_range, size=(tasks, 1, 1))
        phase = rng.uniform(*self.phase_range, size=(tasks, 1, 1))
        x = rng.uniform(*self.input_range, size=(tasks, shots + queries, 1))
        y = amplitude * np.sin(x - phase)
        x, y = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
        return EpisodeBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:])
