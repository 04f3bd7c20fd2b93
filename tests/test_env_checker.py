"""Every registered metarl family passes Gymnasium's env checker for sampled tasks."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from metarl import check_task_family
from tests.conftest import registered_families


@pytest.mark.parametrize("env_id", registered_families())
def test_check_env_on_sampled_tasks(env_id):
    env = gym.make(env_id)
    family = check_task_family(env)
    for task in family.sample_tasks(2, rng=np.random.default_rng(0)):
        family.set_task(task)
        assert family.get_task() == task
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unbounded Box observation warnings are expected
            check_env(env.unwrapped, skip_render_check=True)
    env.close()
