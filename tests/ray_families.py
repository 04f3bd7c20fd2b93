"""A task family for the Ray sampler's fault tests: a point on a line (as the README's own-family example) that
can kill its worker process, hang, or raise. Imported by module-prefixed id (``tests.ray_families:FaultyLine-v0``),
in the test process and in Ray's workers."""

from __future__ import annotations

import os
import signal
import time

import gymnasium as gym
import numpy as np


class FaultyLine(gym.Env):
    """Move to a target on a line. ``fault``: ``"kill"`` (SIGKILL its own process at step ``at_step`` of an
    episode, once per ``marker`` file), ``"hang"`` (sleep 600 s there, once per marker), ``"raise"`` (a
    ``ValueError`` at every step of the poison task 0.75, which is only a test task), or ``"none"``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Box(-0.1, 0.1, shape=(1,), dtype=np.float32)
    train_tasks = [-0.5, -0.25, 0.25, 0.5]
    test_tasks = [-0.75, 0.75]

    def __init__(self, fault: str = "none", marker: str = "", at_step: int = 5):
        self.fault, self.marker, self.at_step = fault, marker, at_step
        self.target, self.x, self.t = 0.0, 0.0, 0

    def sample_tasks(self, n, rng):
        return list(rng.uniform(-1.0, 1.0, size=n))

    def set_task(self, task):
        self.target = float(task)

    def get_task(self):
        return self.target

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-0.05, 0.05)), 0
        return np.array([self.x], dtype=np.float32), {}

    def _first_time(self) -> bool:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    def step(self, action):
        self.t += 1
        if self.t == self.at_step and self.fault in ("kill", "hang") and self._first_time():
            if self.fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(600)
        if self.fault == "raise" and self.target == 0.75:
            raise ValueError(f"FaultyLine cannot step on target {self.target}")
        self.x += float(np.clip(action[0], -0.1, 0.1))
        return np.array([self.x], dtype=np.float32), -abs(self.x - self.target), False, False, {}


gym.register("FaultyLine-v0", entry_point=FaultyLine, max_episode_steps=10)
