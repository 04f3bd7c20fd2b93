"""RL^2 trial wrappers: the added inputs, episode chaining, seeds, and batched == single env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from metarl.batched import make_batched_env
from metarl.tasks import Task, make_env
from metarl.wrappers import RL2Inputs, RL2TrialBatchedEnv, RL2TrialSampler, RL2TrialWrapper, episode_seeds


def _bandit(means, n):
    env = make_env("metarl/BernoulliBandit-v0", k=len(means), n=n)
    env.unwrapped.set_task(Task.create("BernoulliBandit", means=np.asarray(means, dtype=float)))
    return env


def test_wrapper_inputs_are_obs_previous_action_reward_and_done_flag():
    # arm 0 always pays, arm 1 never: the rewards are known without looking at the random stream
    env = RL2TrialWrapper(_bandit([1.0, 0.0, 0.0], n=3), episodes_per_trial=2)
    inputs = env.inputs
    assert (inputs.obs_slice, inputs.action_slice, inputs.reward_index, inputs.done_index) == (
        slice(0, 1), slice(1, 4), 4, 5)
    assert env.observation_space.shape == (6,)
    obs, info = env.reset(seed=3)
    np.testing.assert_array_equal(obs, [0, 0, 0, 0, 0, 0])  # nothing before the first step
    assert info["episode_index"] == 0
    expected = [  # action -> (prev-action one-hot, prev reward, done flag, trial over)
        (0, [1, 0, 0], 1.0, 0.0, False),
        (1, [0, 1, 0], 0.0, 0.0, False),
        (0, [1, 0, 0], 1.0, 1.0, False),  # third pull ends episode 1; the next obs starts episode 2
        (2, [0, 0, 1], 0.0, 0.0, False),
        (1, [0, 1, 0], 0.0, 0.0, False),
        (0, [1, 0, 0], 1.0, 1.0, True),
    ]
    total = 0.0
    for step, (action, one_hot, reward, done, trial_over) in enumerate(expected):
        obs, r, terminated, truncated, info = env.step(action)
        total += r
        assert r == reward
        np.testing.assert_array_equal(obs[inputs.action_slice], one_hot)
        assert obs[inputs.reward_index] == reward and obs[inputs.done_index] == done
        assert (terminated, truncated) == (trial_over, False)
        assert info["episode_index"] == step // 3
    assert total == 3.0
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


def test_box_actions_are_fed_back_clipped_to_the_action_bounds():
    env = RL2TrialWrapper(make_env("metarl/Navigation2D-v0", goal_tolerance=0.0), episodes_per_trial=2)
    env.reset(seed=0)
    obs, *_ = env.step(np.array([0.5, -0.05], dtype=np.float32))
    np.testing.assert_allclose(obs[2:4], [0.1, -0.05], rtol=1e-6)  # max_action=0.1
    np.testing.assert_allclose(obs[0:2], [0.1, -0.05], rtol=1e-6)  # the env moved by the clipped action too


def test_inner_episodes_reset_with_seeds_derived_from_the_trial_seed():
    env = RL2TrialWrapper(_bandit([0.5, 0.5], n=5), episodes_per_trial=3)
    seeds = episode_seeds(11, 3)
    assert len(set(seeds.tolist())) == 3
    env.reset(seed=11)
    rewards = [env.step(0)[1] for _ in range(15)]
    # the same pulls on plain episodes reset with the derived seeds give the same rewards
    plain = _bandit([0.5, 0.5], n=5)
    expected = []
    for s in seeds:
        plain.reset(seed=int(s))
        expected += [plain.step(0)[1] for _ in range(5)]
    assert rewards == expected


def test_sample_task_on_reset_draws_a_new_task_every_trial_seeded_by_reset():
    env = RL2TrialWrapper(make_env("metarl/BernoulliBandit-v0", k=4, n=3), 1, sample_task_on_reset=True)
    env.reset(seed=0)
    first = env.unwrapped.get_task()["means"].copy()
    env.reset()
    second = env.unwrapped.get_task()["means"].copy()
    assert not np.allclose(first, second)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.unwrapped.get_task()["means"], first)


@pytest.mark.parametrize("env_id, kwargs", [
    ("metarl/BernoulliBandit-v0", {"k": 3, "n": 4}),
    ("metarl/TabularMDP-v0", {}),
    ("metarl/Navigation2D-v0", {}),
    ("metarl/HalfCheetahVel-v0", {}),
])
@pytest.mark.filterwarnings("ignore:.*(unwrapped version|infinity):UserWarning")  # the reward input is unbounded
def test_wrapper_passes_the_gymnasium_env_checker(env_id, kwargs):
    env = RL2TrialWrapper(make_env(env_id, **kwargs), episodes_per_trial=2, sample_task_on_reset=True)
    check_env(env, skip_render_check=True)


def test_wrapper_passes_the_stable_baselines3_checker_and_trains_with_sb3():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = RL2TrialWrapper(make_env("metarl/BernoulliBandit-v0", k=3, n=5), 1, sample_task_on_reset=True)
    sb3_check_env(env)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps == 64


def test_unsupported_spaces_are_rejected_with_the_fix():
    with pytest.raises(ValueError, match="FlattenObservation"):
        RL2Inputs.for_spaces(gym.spaces.Box(0, 1, (2, 2)), gym.spaces.Discrete(2))
    with pytest.raises(ValueError, match="Discrete or flat Box"):
        RL2Inputs.for_spaces(gym.spaces.Box(0, 1, (2,)), gym.spaces.MultiDiscrete([2, 2]))


def _batched_valid_sequences(env_id, kwargs, tasks, seeds, actions_fn, episodes, horizon, fast):
    """Drive an RL2TrialBatchedEnv; return each simulation's (inputs consumed, actions, rewards) on valid steps."""
    env_fn = lambda: make_env(env_id, max_episode_steps=horizon, **kwargs)  # noqa: E731
    backend = RL2TrialBatchedEnv(make_batched_env(env_fn, tasks, 1, fast=fast), episodes, horizon)
    obs = backend.reset(np.asarray(seeds))
    out = [([], [], []) for _ in tasks]
    for t in range(episodes * horizon):
        active = backend.active.copy()
        actions = actions_fn(t, len(tasks))
        next_obs, reward, terminated, truncated, info = backend.step(actions)
        np.testing.assert_array_equal(info["valid"], active)
        for i in np.flatnonzero(active):
            out[i][0].append(obs[i])
            out[i][1].append(actions[i])
            out[i][2].append(reward[i])
        assert not np.any(reward[~active]), "idle steps pay nothing"
        obs = next_obs
    assert not backend.active.any()
    return out


def _single_sequence(env_id, kwargs, task, seed, actions, episodes, horizon):
    """Run one RL2TrialWrapper trial taking ``actions`` in order; return its inputs and rewards."""
    env = RL2TrialWrapper(make_env(env_id, max_episode_steps=horizon, **kwargs), episodes)
    env.unwrapped.set_task(task)
    obs, _ = env.reset(seed=seed)
    inputs, rewards = [], []
    done = False
    while not done:
        inputs.append(obs)
        obs, r, done, _, _ = env.step(actions[len(rewards)])
        rewards.append(r)
    return inputs, rewards


NAV_EARLY_ENDS = {"goal_low": -0.2, "goal_high": 0.2, "goal_tolerance": 0.15}


@pytest.mark.parametrize("env_id, kwargs, episodes, horizon, fast", [
    # goals near the start and a wide tolerance: many episodes end early, so there are idle steps
    ("metarl/Navigation2D-v0", NAV_EARLY_ENDS, 3, 25, True),
    ("metarl/Navigation2D-v0", NAV_EARLY_ENDS, 3, 25, False),  # one Gymnasium env per simulation
    ("metarl/BernoulliBandit-v0", {"k": 3, "n": 6}, 2, 6, True),
    ("metarl/TabularMDP-v0", {}, 3, 10, True),
])
def test_batched_trials_equal_single_env_trials_on_their_valid_steps(env_id, kwargs, episodes, horizon, fast):
    family = make_env(env_id, **kwargs).unwrapped
    tasks = family.sample_tasks(4, np.random.default_rng(0))
    seeds = [5, 6, 7, 8]
    space = family.action_space
    gen = np.random.default_rng(1)
    if isinstance(space, gym.spaces.Discrete):
        table = gen.integers(0, space.n, size=(episodes * horizon, len(tasks)))
    else:
        table = gen.uniform(-0.1, 0.1, size=(episodes * horizon, len(tasks), 2)).astype(np.float32)
    batched = _batched_valid_sequences(env_id, kwargs, tasks, seeds, lambda t, n: table[t], episodes, horizon, fast)
    idle = sum(episodes * horizon - len(b[0]) for b in batched)
    if env_id.startswith("metarl/Navigation2D"):
        assert idle > 0, "the test should exercise idle steps"
    for i, task in enumerate(tasks):
        # the single env has no idle steps: its k-th step takes the batched trial's k-th valid action
        inputs, rewards = _single_sequence(env_id, kwargs, task, seeds[i], batched[i][1], episodes, horizon)
        assert len(inputs) == len(batched[i][0])
        np.testing.assert_allclose(np.stack(inputs), np.stack(batched[i][0]), atol=1e-6)
        np.testing.assert_allclose(rewards, batched[i][2], atol=1e-9)


def test_trial_sampler_masks_idle_steps_and_counts_returns_per_episode():
    sampler = RL2TrialSampler("metarl/Navigation2D-v0", NAV_EARLY_ENDS, episodes_per_trial=3,
                              max_episode_steps=25)
    assert sampler.horizon == 75 and sampler.episode_horizon == 25
    assert sampler.observation_space.shape == (2 + 2 + 2,)
    tasks = sampler.sample_tasks(3, np.random.default_rng(0))

    def act(obs, generator):
        return torch.rand((*obs.shape[:2], 2), generator=generator) * 0.2 - 0.1

    trials = sampler.sample(act, tasks, 2, np.random.default_rng(4))
    assert trials.observations.shape == (3, 2, 75, 6)
    mask = trials.mask
    assert bool((mask.sum(-1) < 75).any()), "some episodes ended early"
    holes = (mask[..., 1:] > mask[..., :-1]).any()
    assert bool(holes), "idle steps inside a trial are masked and real steps follow them"
    assert torch.all(trials.rewards[mask == 0] == 0)
    by_episode = sampler.episode_returns_by_index(trials.rewards)
    assert by_episode.shape == (3, 2, 3)
    torch.testing.assert_close(by_episode.sum(-1), trials.episode_returns)
    # the first input of a trial carries no previous action / reward / done
    assert torch.all(trials.observations[:, :, 0, 2:] == 0)
    assert trials.num_steps == int(mask.sum())


def test_trial_sampler_runs_a_mujoco_family_on_its_batched_backend():
    sampler = RL2TrialSampler("metarl/HalfCheetahVel-v0", episodes_per_trial=2, max_episode_steps=5)
    tasks = sampler.sample_tasks(2, np.random.default_rng(0))
    obs_dim, act_dim = sampler.env.observation_space.shape[0], sampler.action_space.shape[0]
    assert sampler.observation_space.shape == (obs_dim + act_dim + 2,)

    def act(obs, generator):
        return torch.randn((*obs.shape[:2], act_dim), generator=generator)

    trials = sampler.sample(act, tasks, 1, np.random.default_rng(0))
    assert trials.observations.shape == (2, 1, 10, obs_dim + act_dim + 2)
    assert float(trials.mask.sum()) == 2 * 10
    done = trials.observations[..., -1]
    assert done[..., 5].eq(1).all() and done[..., [1, 2, 3, 4, 6, 7, 8, 9]].eq(0).all(), \
        "the flag is set on the first step of the second episode only"
    # the previous-action input is the action clipped to the Box bounds
    prev = trials.observations[:, :, 1:, obs_dim:obs_dim + act_dim]
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (sampler.action_space.low, sampler.action_space.high))
    torch.testing.assert_close(prev, torch.maximum(torch.minimum(trials.actions[:, :, :-1], high), low))
