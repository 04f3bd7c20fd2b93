"""Navigation2D: the MAML point task, and its batched backend against the single env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from metarl import Task


def test_dynamics_reward_and_clipping():
    env = gym.make("metarl/Navigation2D-v0")
    env.unwrapped.set_task(Task.create("Navigation2D", goal=[0.3, -0.4]))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    obs, reward, terminated, truncated, _ = env.step(np.array([5.0, -0.05]))  # x clipped to 0.1
    np.testing.assert_allclose(obs, [0.1, -0.05], atol=1e-7)
    assert reward == pytest.approx(-np.hypot(0.2, 0.35))
    assert not terminated and not truncated


def test_terminates_at_goal_and_truncates_at_horizon():
    env = gym.make("metarl/Navigation2D-v0")
    env.unwrapped.set_task(Task.create("Navigation2D", goal=[0.2, 0.0]))
    env.reset(seed=0)
    env.step(np.array([0.1, 0.0]))
    _, reward, terminated, _, _ = env.step(np.array([0.1, 0.0]))
    assert terminated and reward == pytest.approx(0.0, abs=1e-9)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, term, trunc, _ = env.step(np.array([-0.1, 0.0]))
        steps, done = steps + 1, term or trunc
    assert steps == 100 and trunc and not term
    assert gym.make("metarl/Navigation2D-v0", max_episode_steps=7).spec.max_episode_steps == 7


def test_bad_constructor_kwargs():
    with pytest.raises(ValueError, match="low < high"):
        gym.make("metarl/Navigation2D-v0", goal_low=1.0, goal_high=-1.0)
    with pytest.raises(ValueError, match="max_action must be positive"):
        gym.make("metarl/Navigation2D-v0", max_action=0.0)


def test_batched_backend_matches_single_env():
    env = gym.make("metarl/Navigation2D-v0")
    family = env.unwrapped
    rng = np.random.default_rng(3)
    tasks = family.sample_tasks(4, rng) + [Task.create("Navigation2D", goal=[0.05, 0.05])]
    episodes = 3
    batched = family.batched(tasks, episodes)
    seeds = rng.integers(0, 1000, size=batched.num_envs)
    actions = rng.uniform(-0.15, 0.15, size=(100, batched.num_envs, 2))
    actions[:, -episodes:] = 0.05  # the last task reaches its goal and terminates
    obs_b = batched.reset(seeds)
    singles = []
    for i, task in enumerate(np.repeat(np.arange(len(tasks)), episodes)):
        e = gym.make("metarl/Navigation2D-v0")
        e.unwrapped.set_task(tasks[task])
        o, _ = e.reset(seed=int(seeds[i]))
        np.testing.assert_array_equal(o, obs_b[i])
        singles.append(e)
    alive = np.ones(batched.num_envs, dtype=bool)
    for t in range(100):
        obs_b, rew_b, term_b, trunc_b, _ = batched.step(actions[t])
        for i, e in enumerate(singles):
            if not alive[i]:
                continue
            o, r, term, trunc, _ = e.step(actions[t, i])
            np.testing.assert_allclose(obs_b[i], o, atol=1e-7)
            assert rew_b[i] == pytest.approx(r, abs=1e-9)
            assert term_b[i] == term
            alive[i] = not (term or trunc)
    assert not alive[-episodes:].any(), "the goal-reaching simulations should have terminated"
    with pytest.raises(ValueError, match="actions must have shape"):
        batched.step(np.zeros((2, 2)))
