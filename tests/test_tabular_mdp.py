"""The random tabular-MDP family: task protocol, simplex validation, dynamics, and the batched fast path."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl  # noqa: F401  (registers the families)
from metarl import Task
from metarl.batched import make_batched_env
from metarl.envs.tabular import TabularMDPBatched, TabularMDPEnv

ENV_ID = "metarl/TabularMDP-v0"


def _task(transitions, reward_means) -> Task:
    return Task.create("TabularMDP", transitions=np.asarray(transitions, dtype=float),
                       reward_means=np.asarray(reward_means, dtype=float))


def test_defaults_one_hot_start_state_and_horizon():
    env = gym.make(ENV_ID)
    assert env.spec.max_episode_steps == 10
    assert env.action_space == gym.spaces.Discrete(5)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, np.eye(10, dtype=np.float32)[0])
    steps = 0
    while True:
        obs, _, terminated, truncated, _ = env.step(steps % 5)
        steps += 1
        assert obs.dtype == np.float32 and obs.sum() == 1 and env.observation_space.contains(obs)
        if terminated or truncated:
            break
    assert steps == 10 and truncated and not terminated


@pytest.mark.parametrize("kwargs", [{}, {"num_states": 3, "num_actions": 2}])
def test_check_env_on_sampled_tasks(kwargs):
    env = gym.make(ENV_ID, **kwargs)
    for task in env.unwrapped.sample_tasks(2, np.random.default_rng(0)):
        env.unwrapped.set_task(task)
        check_env(env.unwrapped, skip_render_check=True)


def test_sampled_tasks_follow_the_rl2_prior():
    base = TabularMDPEnv(num_states=4, num_actions=3)
    tasks = base.sample_tasks(400, np.random.default_rng(1))
    p = np.stack([t["transitions"] for t in tasks])
    r = np.stack([t["reward_means"] for t in tasks])
    assert p.shape == (400, 4, 3, 4) and r.shape == (400, 4, 3)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
    assert abs(p.mean() - 0.25) < 0.01  # flat Dirichlet: every entry has mean 1 / num_states
    assert abs(r.mean() - 1.0) < 0.05 and abs(r.std() - 1.0) < 0.05  # Normal(1, 1), 4800 draws
    assert tasks == base.sample_tasks(400, np.random.default_rng(1))


def test_validation_rejects_non_simplex_rows():
    base = TabularMDPEnv(num_states=2, num_actions=1)
    base.set_task(_task([[[0.25, 0.75]], [[1.0, 0.0]]], [[0.0], [1.0]]))
    with pytest.raises(ValueError, match=r"transitions\[1, 0, :\] sums to 0.9"):
        base.set_task(_task([[[0.25, 0.75]], [[0.9, 0.0]]], [[0.0], [1.0]]))
    with pytest.raises(ValueError, match="out of range"):
        base.set_task(_task([[[1.5, -0.5]], [[1.0, 0.0]]], [[0.0], [1.0]]))
    with pytest.raises(ValueError, match="shape"):
        base.set_task(_task([[0.5, 0.5], [1.0, 0.0]], [[0.0], [1.0]]))
    with pytest.raises(ValueError, match="out of range"):
        base.set_task(_task([[[0.5, 0.5]], [[1.0, 0.0]]], [[np.nan], [1.0]]))
    with pytest.raises(ValueError, match="reward_noise_std"):
        TabularMDPEnv(reward_noise_std=-1.0)


def test_noiseless_rewards_are_the_means_and_transitions_follow_p():
    row = [0.2, 0.5, 0.3]
    base = TabularMDPEnv(num_states=3, num_actions=1, reward_noise_std=0.0)
    base.set_task(_task([[row], [row], [row]], [[1.5], [-2.0], [0.25]]))
    obs, _ = base.reset(seed=0)
    counts = np.zeros(3)
    for _ in range(4000):
        state = int(np.argmax(obs))
        obs, reward, *_ = base.step(0)
        assert reward == [1.5, -2.0, 0.25][state]
        counts[np.argmax(obs)] += 1
    np.testing.assert_allclose(counts / 4000, row, atol=0.03)  # about 4 standard errors


def test_reward_noise_is_unit_gaussian():
    base = TabularMDPEnv(num_states=1, num_actions=1)
    base.set_task(_task([[[1.0]]], [[2.0]]))
    base.reset(seed=3)
    rewards = np.array([base.step(0)[1] for _ in range(5000)])
    assert abs(rewards.mean() - 2.0) < 0.06 and abs(rewards.std() - 1.0) < 0.04
    assert abs(np.mean(np.abs(rewards - 2.0) < 1.0) - 0.6827) < 0.03  # the Gaussian's 1-sigma mass


def test_batched_matches_single_env_for_the_same_seeds():
    base = gym.make(ENV_ID).unwrapped
    tasks = base.sample_tasks(3, np.random.default_rng(2))
    backend = make_batched_env(lambda: gym.make(ENV_ID), tasks, 2)
    assert isinstance(backend, TabularMDPBatched)
    seeds = np.array([11, 12, 13, 14, 15, 16])
    steps = 40  # beyond one block of pre-drawn uniforms
    actions = np.random.default_rng(4).integers(0, 5, size=(steps, 6))
    obs = backend.reset(seeds)
    np.testing.assert_array_equal(obs.argmax(1), 0)
    batched_obs, batched_rewards = [], []
    for t in range(steps):
        obs, reward, terminated, truncated, _ = backend.step(actions[t])
        assert obs.shape == (6, 10) and not terminated.any() and not truncated.any()
        batched_obs.append(obs)
        batched_rewards.append(reward)
    for i, seed in enumerate(seeds):
        base.set_task(tasks[i // 2])
        base.reset(seed=int(seed))
        for t in range(steps):
            obs, reward, *_ = base.step(int(actions[t, i]))
            np.testing.assert_array_equal(obs, batched_obs[t][i])
            assert reward == batched_rewards[t][i]


def test_batched_seeds_reproduce_and_errors():
    base = TabularMDPEnv(num_states=3, num_actions=2)
    tasks = base.sample_tasks(2, np.random.default_rng(0))
    backend = base.batched(tasks, 1)
    actions = np.array([0, 1])

    def run(seeds):
        backend.reset(seeds)
        return np.array([backend.step(actions)[1] for _ in range(20)])

    np.testing.assert_array_equal(run([3, 4]), run([3, 4]))
    assert not np.array_equal(run([3, 4]), run([3, 5]))
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        backend.step(np.array([0, 2]))
    with pytest.raises(ValueError, match="seeds"):
        backend.reset([1])
    with pytest.raises(ValueError, match="sums to"):
        backend.set_tasks([tasks[0], _task(np.full((3, 2, 3), 0.5), np.zeros((3, 2)))])
    with pytest.raises(RuntimeError, match="reset"):
        base.batched(tasks, 1).step(actions)
