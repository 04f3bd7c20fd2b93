"""PEARL's protocol options: the meta-test's prior episodes (the public code's num_exp_traj_eval), random-walk
prior episodes, and the critic's sparse-plus-dense reward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import metarl
from metarl.agents.pearl import PEARL
from metarl.training import run_meta_training
from tests.test_pearl import _tiny


def test_the_meta_test_explores_with_the_prior_for_the_episodes_asked_then_samples_the_posterior(monkeypatch):
    """``metatest_prior_episodes`` (the public code's ``num_exp_traj_eval``: 5 for its sparse point robot): that
    many episodes act with prior draws of ``z`` (actions sampled), the rest with posterior draws and the mode."""
    algo = PEARL(_tiny(metatest_episodes=6, metatest_prior_episodes=4, metatest_tasks=2))
    calls: list[tuple[str, bool]] = []
    rollout, infer = algo._rollout, algo.infer_posterior

    def recording_rollout(tasks, z, rng, deterministic=False, uniform=False):
        calls.append(("rollout", deterministic))
        return rollout(tasks, z, rng, deterministic=deterministic, uniform=uniform)

    def recording_infer(context, mask=None):
        calls.append(("posterior", context.shape[1]))
        return infer(context, mask)

    monkeypatch.setattr(algo, "_rollout", recording_rollout)
    monkeypatch.setattr(algo, "infer_posterior", recording_infer)
    returns, _ = algo.adaptation_trials(algo.sampler.sample_tasks(2, np.random.default_rng(0), split="test"), 6,
                                        np.random.default_rng(1))
    assert returns.shape == (2, 6)
    assert calls == [("rollout", False)] * 4 + [("posterior", 40), ("rollout", True), ("posterior", 50),
                                                 ("rollout", True)]
    with pytest.raises(ValueError, match="leaves no posterior episode"):
        _tiny(metatest_episodes=3, metatest_prior_episodes=3).validate()


def test_the_critic_can_learn_from_the_sparse_reward_plus_a_weighted_dense_one():
    """``--critic-reward env+dense``: the replay's rewards are the family's (sparse) plus ``dense_reward_weight``
    times the dense one; the encoder's context keeps the family's."""
    rewards = {}
    for kind in ("env", "dense", "env+dense"):
        torch.manual_seed(0)  # the same networks, so the same episodes
        algo = PEARL(_tiny(env="metarl/SparsePointRobot-v0", critic_reward=kind, dense_reward_weight=0.25))
        tasks = algo.sampler.sample_tasks(2, np.random.default_rng(0), split="test")
        episodes = algo._rollout(tasks, torch.zeros(2, 1, 3), np.random.default_rng(1))
        algo._store([0, 1], episodes, to_context=True)
        n = algo.replay.size(0)
        rewards[kind] = algo.replay.sample([0], n, torch.Generator().manual_seed(0))["rewards"]
        context = algo.context_buffer.sample([0], n, torch.Generator().manual_seed(0))["rewards"]
        assert torch.equal(context, rewards["env"] if kind != "env" else rewards[kind])
    assert torch.allclose(rewards["env+dense"], rewards["env"] + 0.25 * rewards["dense"])
    assert (rewards["dense"] < 0).all() and not torch.equal(rewards["env"], rewards["dense"])


def test_prior_episodes_may_act_uniformly_at_random_at_training_and_meta_test(tmp_path):
    """``--prior-actions uniform``: the prior episodes (training's and the meta-test's) are random walks in the
    action box; posterior episodes act with the policy; the trained policy a user loads adapts the same way."""
    torch.manual_seed(0)
    algo = PEARL(_tiny(prior_actions="uniform", metatest_tasks=3))
    tasks = algo.sampler.sample_tasks(3, np.random.default_rng(0), split="test")
    walk = algo._rollout(tasks, torch.zeros(3, 2, 3), np.random.default_rng(1), uniform=True)
    steered = algo._rollout(tasks, torch.zeros(3, 2, 3), np.random.default_rng(1), deterministic=True)
    low, high = algo.sampler.action_space.low, algo.sampler.action_space.high
    actions = walk.actions[walk.mask > 0]
    assert (actions >= torch.as_tensor(low)).all() and (actions <= torch.as_tensor(high)).all()
    assert actions.std(0).min() > 0.3 * float((high - low).min()) / 2, "spread over the box, not the policy's mode"
    assert not torch.equal(walk.actions, steered.actions)
    run_meta_training(algo, iterations=1, logdir=tmp_path / "run")
    assert algo.meta_test()["episodes_per_trial"] == 3
    env = gym.make("metarl/Navigation2D-v0", max_episode_steps=10)
    env.unwrapped.set_task(tasks[0])
    adapted = metarl.agents.pearl.PEARLPolicy(algo).adapt(env, episodes=1, seed=0)
    assert not adapted.uniform, "after the prior episode the posterior's policy acts"
