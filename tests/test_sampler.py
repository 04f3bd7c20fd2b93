"""The episode sampler: fast path == generic path, masking, determinism, any registered family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarl.batched import GenericBatchedEnv
from metarl.networks import GaussianMLPPolicy
from metarl.sampler import EpisodeSampler


def _random_policy_act(obs, generator):
    return torch.randn((*obs.shape[:-1], 2), generator=generator) * 0.1


@pytest.fixture
def tasks():
    sampler = EpisodeSampler("metarl/Navigation2D-v0")
    return sampler.sample_tasks(3, np.random.default_rng(0))


def test_fast_and_generic_paths_give_the_same_episodes(tasks):
    fast = EpisodeSampler("metarl/Navigation2D-v0", max_episode_steps=30)
    generic = EpisodeSampler("metarl/Navigation2D-v0", max_episode_steps=30, fast=False)
    a = fast.sample(_random_policy_act, tasks, 4, np.random.default_rng(5))
    b = generic.sample(_random_policy_act, tasks, 4, np.random.default_rng(5))
    assert isinstance(generic.backend(tasks, 4), GenericBatchedEnv)
    assert not isinstance(fast.backend(tasks, 4), GenericBatchedEnv)
    for name in ("observations", "actions", "rewards", "mask"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-6, rtol=0)
    assert a.observations.shape == (3, 4, 30, 2) and a.rewards.shape == (3, 4, 30)


def test_same_generator_state_gives_same_episodes(tasks):
    sampler = EpisodeSampler("metarl/Navigation2D-v0")
    a = sampler.sample(_random_policy_act, tasks, 2, np.random.default_rng(1))
    b = sampler.sample(_random_policy_act, tasks, 2, np.random.default_rng(1))
    c = sampler.sample(_random_policy_act, tasks, 2, np.random.default_rng(2))
    torch.testing.assert_close(a.rewards, b.rewards)
    assert not torch.equal(a.rewards, c.rewards)


def test_mask_stops_after_termination():
    from metarl import Task

    sampler = EpisodeSampler("metarl/Navigation2D-v0")
    goal_task = [Task.create("Navigation2D", goal=[0.1, 0.1])]
    eps = sampler.sample(lambda obs, g: torch.full((*obs.shape[:-1], 2), 0.05), goal_task, 2,
                         np.random.default_rng(0))
    # two steps of 0.05 reach the goal: mask is 1 for steps 0, 1 and 0 afterwards
    torch.testing.assert_close(eps.mask[0, 0, :4], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert eps.num_steps == 4
    assert torch.all(eps.rewards[..., 2:] == 0)


def test_policy_sampling_shapes(tasks):
    sampler = EpisodeSampler("metarl/Navigation2D-v0", max_episode_steps=5)
    policy = GaussianMLPPolicy(2, 2, hidden=(8,))
    eps = sampler.sample(lambda obs, g: policy(obs).sample(g), tasks, 3, np.random.default_rng(0))
    assert eps.actions.shape == (3, 3, 5, 2)
    assert eps.episode_returns.shape == (3, 3)
    assert sampler.last_fps > 0


def test_bad_arguments(tasks):
    sampler = EpisodeSampler("metarl/Navigation2D-v0")
    with pytest.raises(ValueError, match="episodes_per_task must be a positive integer"):
        sampler.sample(_random_policy_act, tasks, 0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        sampler.sample(_random_policy_act, tasks, 1, 42)
    with pytest.raises(ValueError, match="max_episode_steps must be a positive integer"):
        EpisodeSampler("metarl/Navigation2D-v0", max_episode_steps=-3)
    with pytest.raises(TypeError, match="not a task family"):
        EpisodeSampler("CartPole-v1")


def test_generic_backends_of_one_sampler_share_their_envs(tasks):
    """Backends of several sizes draw their envs from one pool (the largest size, not the sum, is alive)."""
    sampler = EpisodeSampler("metarl/Navigation2D-v0", fast=False)

    def act(obs, generator):
        return torch.zeros((*obs.shape[:2], 2))

    rng = np.random.default_rng(0)
    sampler.sample(act, tasks[:2], 3, rng)
    sampler.sample(act, tasks[:4], 1, rng)
    sampler.sample(act, tasks[:1], 2, rng)
    assert len(sampler._env_pool) == 6 and len(sampler._backends) == 3
    reference = EpisodeSampler("metarl/Navigation2D-v0", fast=False).sample(act, tasks[:1], 2,
                                                                              np.random.default_rng(5))
    again = sampler.sample(act, tasks[:1], 2, np.random.default_rng(5))
    torch.testing.assert_close(again.rewards, reference.rewards)
    sampler.close()


def test_maml_meta_test_respects_a_family_simulation_limit(monkeypatch, tiny_maml_config):
    """A family with ``max_simulations`` (Meta-World's large envs) is meta-tested a few tasks at a time."""
    from metarl.agents.maml_trpo import MAMLTRPO
    from metarl.envs.navigation import Navigation2DEnv

    monkeypatch.setattr(Navigation2DEnv, "max_simulations", 8, raising=False)
    algo = MAMLTRPO(tiny_maml_config)
    sizes = []
    original = EpisodeSampler.sample

    def record(self, act_fn, tasks, episodes_per_task, rng, **kwargs):
        sizes.append(len(tasks) * episodes_per_task)
        return original(self, act_fn, tasks, episodes_per_task, rng, **kwargs)

    monkeypatch.setattr(EpisodeSampler, "sample", record)
    result = algo.meta_test()
    assert max(sizes) <= 8 and len(sizes) == 2 * (tiny_maml_config.metatest_steps + 1)
    assert len(result["returns_by_task"][0]) == tiny_maml_config.metatest_tasks
