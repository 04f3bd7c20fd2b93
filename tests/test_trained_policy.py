"""A trained meta-policy in a user's code: ``metarl.load_policy(DIR).adapt(env, episodes=K).act(obs)``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import metarl
from metarl.cli import main
from metarl.wrappers import episode_seeds
from tests.test_entry_points import TINY

NAV = "metarl/Navigation2D-v0"


def train(tmp_path, algo: str, env: str = NAV, *extra: str):
    logdir = tmp_path / algo
    args = ["train", "--algo", algo, "--env", env, "--iterations", "1", "--logdir", str(logdir), "--no-progress",
            "--max-episode-steps", "8", *TINY[algo], *extra]
    assert main(args) == 0
    return logdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("policies")
    return {algo: train(root, algo) for algo in ("maml-trpo", "rl2-ppo", "pearl")}


@pytest.mark.parametrize("algo", ["maml-trpo", "rl2-ppo", "pearl"])
def test_load_adapt_act_on_a_task_set_at_construction(runs, algo):
    policy = metarl.load_policy(runs[algo])
    env = gym.make(NAV, task={"goal": (0.3, -0.2)}, max_episode_steps=8)
    obs, _ = env.reset(seed=1)
    action = policy.adapt(env, episodes=2, seed=0).act(obs)
    assert env.action_space.shape == np.shape(action) and np.all(np.isfinite(action))
    first = policy.adapt(env, episodes=2, seed=0).run_episode(env, seed=3)  # (RL^2's act moves its state on)
    assert len(first.rewards) == 8 and first.observations.shape == (8, 2)
    # the same seed gives the same adapted policy; deterministic acting repeats itself
    again = policy.adapt(env, episodes=2, seed=0).run_episode(env, seed=3)
    np.testing.assert_allclose(again.rewards, first.rewards)
    sampled = policy.adapt(env, episodes=2, seed=0).run_episode(env, seed=3, sample=True)
    assert not np.allclose(sampled.actions, first.actions)


def test_maml_adaptation_is_its_inner_step_on_the_collected_episodes(runs):
    """The adapted parameters equal one inner step (inner lr, the run's loss) on K episodes collected by the
    meta-policy, and K=0 leaves the meta-policy, acting with its mean."""
    policy = metarl.load_policy(runs["maml-trpo"])
    algo = policy.algorithm
    env = gym.make(NAV, task={"goal": (0.4, 0.1)}, max_episode_steps=8)
    unadapted = policy.adapt(env, episodes=0)
    obs = np.array([0.05, -0.02], dtype=np.float32)
    np.testing.assert_allclose(unadapted.act(obs), algo.policy(torch.as_tensor(obs)[None]).mode()[0].detach().numpy(),
                               rtol=1e-6)
    adapted = policy.adapt(env, episodes=3, seed=5, steps=1)
    # recollect the same episodes: the same seed draws the same resets and action noise
    from metarl.agents.maml_policy import _MAMLAdapted
    from metarl.policy import records_to_episodes
    meta = {k: v.detach() for k, v in algo.meta_params().items()}
    actor = _MAMLAdapted(policy, torch.Generator().manual_seed(int(np.random.default_rng(5).integers(0, 2**62))),
                         meta, batched=False)
    seeds = np.random.default_rng(5).integers(0, 2**31 - 1, size=3).tolist()
    batch = algo.task_batch(records_to_episodes(policy.collect(env, actor, seeds)))
    params = {k: v.clone().requires_grad_(True) for k, v in meta.items()}
    single = {k: v[0] for k, v in batch.items()}
    grads = torch.autograd.grad(algo.inner_loss(params, single), list(params.values()), allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params.values(), grads)]
    size = algo.step_size(meta, 0)
    for (name, value), grad in zip(meta.items(), grads):
        np.testing.assert_allclose(adapted.params[name][0].numpy(), (value - size * grad).numpy(), atol=1e-6)


def test_rl2_adapted_policy_continues_the_trial_the_meta_test_runs(runs):
    """Acting step by step (the trial's first episodes in adapt, the last with act/observe) reproduces the
    batched trial of the meta-test's sampler exactly, with the same resets and the policy's mode."""
    policy = metarl.load_policy(runs["rl2-ppo"])
    algo = policy.algorithm
    task = algo.sampler.sample_tasks(1, np.random.default_rng(0))[0]
    trials = algo.rollout([task], 1, np.random.default_rng(7), deterministic=True)
    expected = algo.sampler.episode_returns_by_index(trials.rewards)[0, 0].numpy()
    trial_seed = np.random.default_rng(7).integers(0, 2**31 - 1, size=1)[0]
    seeds = episode_seeds(trial_seed, algo.cfg.episodes_per_trial).tolist()
    env = gym.make(NAV, task=task, max_episode_steps=8)
    from metarl.agents.rl2 import _RL2Adapted
    actor = _RL2Adapted(policy, torch.Generator())
    records = policy.collect(env, actor, seeds[:-1], sample=False)
    last = actor.run_episode(env, seed=seeds[-1])
    got = [r.episode_return for r in records] + [last.episode_return]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_pearl_posterior_comes_from_the_episodes(runs):
    policy = metarl.load_policy(runs["pearl"])
    env = gym.make(NAV, task={"goal": (-0.3, 0.3)}, max_episode_steps=8)
    prior = policy.adapt(env, episodes=0, seed=0)
    torch.testing.assert_close(prior.posterior.loc, torch.zeros_like(prior.posterior.loc))
    adapted = policy.adapt(env, episodes=2, seed=0)
    assert not torch.allclose(adapted.posterior.loc, prior.posterior.loc)
    assert bool((adapted.posterior.scale < 1).all()), "two episodes of context narrow the posterior"
    low, high = env.action_space.low, env.action_space.high
    action = adapted.act(np.zeros(2, dtype=np.float32), sample=True)
    assert np.all(action >= low) and np.all(action <= high)


def test_errors_are_one_line(runs, tmp_path):
    policy = metarl.load_policy(runs["maml-trpo"])
    with pytest.raises(ValueError, match="trained on the observation space .* use a family with the same spaces"):
        policy.adapt(gym.make("metarl/TabularMDP-v0"))
    with pytest.raises(ValueError, match="episodes must be a non-negative integer"):
        policy.adapt(gym.make(NAV), episodes=-1)
    with pytest.raises(Exception, match="checkpoint"):
        metarl.load_policy(tmp_path / "nothing")
    few = tmp_path / "fewshot"
    assert main(["fewshot", "--algo", "maml", "--dataset", "sinusoid", "--iterations", "1", "--logdir", str(few),
                 "--no-progress", "--meta-batch-size", "2", "--metatest-tasks", "2"]) == 0
    with pytest.raises(ValueError, match="metarl.fewshot.load_learner"):
        metarl.load_policy(few)


@pytest.mark.parametrize("algo", ["rl2-ppo", "pearl"])
def test_evaluate_command_repeats_the_meta_test_and_pictures_the_plane(runs, algo, tmp_path):
    import json

    saved = json.loads((runs[algo] / "metatest.json").read_text())
    out = tmp_path / "again.json"
    assert main(["evaluate", str(runs[algo]), "--json", str(out), "--video", str(tmp_path / "trial.gif")]) == 0
    key = "mean_total_return" if algo == "rl2-ppo" else "mean_return_by_episode"
    assert json.loads(out.read_text())[key] == saved[key]
    assert (tmp_path / "trial.png").is_file(), "the plane is drawn, whatever the video name"


def test_rl2_sampled_actions_stay_in_the_action_box(runs):
    policy = metarl.load_policy(runs["rl2-ppo"])
    env = gym.make(NAV, task={"goal": (0.3, -0.2)}, max_episode_steps=8)
    adapted = policy.adapt(env, episodes=1, seed=0)
    obs, _ = env.reset(seed=1)
    for _ in range(50):
        action = adapted.act(obs, sample=True)
        assert env.action_space.contains(action), action
        obs, reward, *_ = env.step(action)
        adapted.observe(float(reward))
