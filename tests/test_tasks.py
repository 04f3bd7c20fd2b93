"""The task-family protocol: Task values, validation, sampling from an explicit generator."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import metarl
from metarl import Task, TaskParam, check_task_family, list_families, make_env


def test_task_is_hashable_printable_and_serialisable():
    t = Task.create("Navigation2D", goal=np.array([0.1, -0.25]))
    assert hash(t) == hash(Task.create("Navigation2D", goal=[0.1, -0.25]))
    assert {t: 1}[Task.create("Navigation2D", goal=(0.1, -0.25))] == 1
    assert "Navigation2D" in repr(t) and "0.1" in repr(t)
    blob = json.dumps(t.to_json())
    assert Task.from_json(blob) == t
    np.testing.assert_allclose(t["goal"], [0.1, -0.25])
    with pytest.raises(KeyError, match="no parameter 'speed'"):
        t["speed"]


def test_from_json_rejects_garbage():
    with pytest.raises(ValueError, match="not a serialised Task"):
        Task.from_json({"goal": [0, 0]})


def test_sample_tasks_uses_only_the_given_generator():
    env = gym.make("metarl/Navigation2D-v0")
    state = np.random.get_state()
    a = env.unwrapped.sample_tasks(8, rng=np.random.default_rng(0))
    b = env.unwrapped.sample_tasks(8, rng=np.random.default_rng(0))
    c = env.unwrapped.sample_tasks(8, rng=np.random.default_rng(1))
    assert a == b and a != c
    assert len(set(a)) == 8
    # the global NumPy RNG was not touched
    assert all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
               for x, y in zip(state, np.random.get_state()))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        env.unwrapped.sample_tasks(2, rng=0)
    with pytest.raises(ValueError, match="positive integer"):
        env.unwrapped.sample_tasks(0, rng=np.random.default_rng(0))


def test_set_and_get_task_roundtrip():
    env = gym.make("metarl/Navigation2D-v0")
    tasks = env.unwrapped.sample_tasks(8, rng=np.random.default_rng(0))
    env.unwrapped.set_task(tasks[3])
    assert env.unwrapped.get_task() == tasks[3]


def test_set_task_out_of_range_names_the_range():
    env = gym.make("metarl/Navigation2D-v0")
    with pytest.raises(ValueError, match=r"out of range.*\[-0.5, 0.5\]"):
        env.unwrapped.set_task(Task.create("Navigation2D", goal=[0.7, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        env.unwrapped.set_task(Task.create("Navigation2D", goal=[0.1, 0.0, 0.0]))
    with pytest.raises(ValueError, match="must have parameters"):
        env.unwrapped.set_task(Task.create("Navigation2D", target=[0.1, 0.0]))
    with pytest.raises(ValueError, match="family"):
        env.unwrapped.set_task(Task.create("HalfCheetahVel", goal=[0.1, 0.0]))
    with pytest.raises(TypeError, match="metarl.Task"):
        env.unwrapped.set_task({"goal": [0.1, 0.0]})
    # ranges are constructor kwargs
    wide = gym.make("metarl/Navigation2D-v0", goal_low=-1.0, goal_high=1.0)
    wide.unwrapped.set_task(Task.create("Navigation2D", goal=[0.7, 0.0]))


def test_task_param_choices():
    spec = TaskParam(choices=(-1, 1))
    assert spec.validate("HalfCheetahDir", "direction", 1) == 1
    with pytest.raises(ValueError, match=r"one of \[-1, 1\]"):
        spec.validate("HalfCheetahDir", "direction", 0)


def test_list_families_and_unknown_id():
    assert "metarl/Navigation2D-v0" in list_families()
    assert metarl.list_families() == list_families()
    with pytest.raises(ValueError, match="unknown env id.*metarl/Navigation2D-v0"):
        make_env("metarl/Navigation3D-v0")
    with pytest.raises(ValueError, match="cannot import"):
        make_env("no_such_module_xyz:Thing-v0")


def test_env_without_task_methods_is_rejected():
    with pytest.raises(TypeError, match="not a task family.*sample_tasks, set_task, get_task"):
        check_task_family(gym.make("CartPole-v1"))
