"""The Bernoulli bandit family: registration, task protocol, rewards, and the batched fast path."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl  # noqa: F401  (registers the families)
from metarl import Task
from metarl.batched import GenericBatchedEnv, make_batched_env
from metarl.envs.bandits import BernoulliBanditBatched, BernoulliBanditEnv

ENV_ID = "metarl/BernoulliBandit-v0"


def test_kwargs_set_arms_and_pulls():
    env = gym.make(ENV_ID, k=10, n=100)
    assert env.action_space == gym.spaces.Discrete(10)
    assert env.unwrapped.horizon == 100
    env.reset(seed=0)
    for pull in range(1, 101):
        _, reward, terminated, truncated, _ = env.step(pull % 10)
        assert reward in (0.0, 1.0) and not terminated
        assert truncated == (pull == 100)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_defaults_and_spec():
    env = gym.make(ENV_ID)
    assert env.action_space.n == 5 and env.unwrapped.horizon == 10
    assert env.spec.max_episode_steps is None  # the env truncates itself at n
    obs, _ = env.reset(seed=1)
    assert obs.shape == (1,) and obs.dtype == np.float32 and env.observation_space.contains(obs)


@pytest.mark.parametrize("kwargs", [{}, {"k": 3, "n": 4}])
def test_check_env_on_sampled_tasks(kwargs):
    env = gym.make(ENV_ID, **kwargs)
    for task in env.unwrapped.sample_tasks(2, np.random.default_rng(0)):
        env.unwrapped.set_task(task)
        check_env(env.unwrapped, skip_render_check=True)


def test_sample_tasks_uniform_means_and_reproducible():
    base = gym.make(ENV_ID, k=4).unwrapped
    tasks = base.sample_tasks(500, np.random.default_rng(3))
    means = np.stack([t["means"] for t in tasks])
    assert means.shape == (500, 4) and means.min() >= 0 and means.max() <= 1
    assert abs(means.mean() - 0.5) < 0.03  # U[0, 1]: std of the mean is 0.29 / sqrt(2000)
    assert tasks == base.sample_tasks(500, np.random.default_rng(3))
    with pytest.raises(TypeError, match="Generator"):
        base.sample_tasks(2, 0)


def test_set_task_validates():
    base = BernoulliBanditEnv(k=3)
    with pytest.raises(ValueError, match="out of range"):
        base.set_task(Task.create("BernoulliBandit", means=[0.2, 1.5, 0.1]))
    with pytest.raises(ValueError, match="shape"):
        base.set_task(Task.create("BernoulliBandit", means=[0.2, 0.5]))
    with pytest.raises(ValueError):
        BernoulliBanditEnv(k=0)
    with pytest.raises(ValueError, match="arm index"):
        base.reset(seed=0)
        base.step(3)


def test_rewards_are_bernoulli_with_the_arm_means():
    base = BernoulliBanditEnv(k=3, n=3000)
    base.set_task(Task.create("BernoulliBandit", means=[0.0, 1.0, 0.3]))
    base.reset(seed=0)
    assert base.step(0)[1] == 0.0 and base.step(1)[1] == 1.0
    rewards = [base.step(2)[1] for _ in range(2998)]
    assert abs(np.mean(rewards) - 0.3) < 0.04  # about 4.7 standard errors


def _single_env_rewards(base, tasks, episodes_per_task, seeds, actions):
    rewards = np.zeros(actions.shape)
    for i, seed in enumerate(seeds):
        base.set_task(tasks[i // episodes_per_task])
        base.reset(seed=int(seed))
        for t in range(actions.shape[0]):
            rewards[t, i] = base.step(int(actions[t, i]))[1]
    return rewards


def test_batched_matches_single_env_for_the_same_seeds():
    base = gym.make(ENV_ID, k=4, n=12).unwrapped
    tasks = base.sample_tasks(3, np.random.default_rng(0))
    backend = make_batched_env(lambda: gym.make(ENV_ID, k=4, n=12), tasks, 2)
    assert isinstance(backend, BernoulliBanditBatched) and backend.num_envs == 6
    seeds = np.array([5, 6, 7, 8, 9, 10])
    actions = np.random.default_rng(1).integers(0, 4, size=(12, 6))
    backend.reset(seeds)
    batched = []
    for t in range(12):
        obs, reward, terminated, truncated, _ = backend.step(actions[t])
        assert obs.shape == (6, 1) and not terminated.any()
        assert truncated.all() == (t == 11)
        batched.append(reward)
    np.testing.assert_array_equal(np.array(batched), _single_env_rewards(base, tasks, 2, seeds, actions))

    generic = GenericBatchedEnv(lambda: gym.make(ENV_ID, k=4, n=12), tasks, 2)
    generic.reset(seeds)
    np.testing.assert_array_equal(np.array([generic.step(a)[1] for a in actions]), np.array(batched))


def test_batched_reset_seeds_drive_the_rewards():
    base = BernoulliBanditEnv(k=2, n=50)
    backend = base.batched([Task.create("BernoulliBandit", means=[0.5, 0.5])], 2)
    actions = np.zeros(2, dtype=np.int64)

    def run(seeds):
        backend.reset(seeds)
        return np.array([backend.step(actions)[1] for _ in range(50)])

    first = run([1, 2])
    np.testing.assert_array_equal(first, run([1, 2]))
    assert not np.array_equal(first[:, 0], first[:, 1])


def test_batched_set_tasks_and_errors():
    base = BernoulliBanditEnv(k=2, n=3)
    backend = base.batched([Task.create("BernoulliBandit", means=[0.0, 1.0])], 1)
    backend.reset([0])
    assert backend.step(np.array([1]))[1][0] == 1.0
    backend.set_tasks([Task.create("BernoulliBandit", means=[1.0, 0.0])])
    backend.reset([0])
    assert backend.step(np.array([1]))[1][0] == 0.0
    with pytest.raises(ValueError, match="arm indices"):
        backend.step(np.array([2]))
    with pytest.raises(ValueError, match="integer"):
        backend.step(np.array([0.5]))
    with pytest.raises(ValueError, match="seeds"):
        backend.reset([0, 1])
    with pytest.raises(ValueError, match="runs 1 tasks"):
        backend.set_tasks([])
