"""PEARL: the task encoder, per-task replay, the SAC update, the sparse point robot, determinism and learning."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import metarl
from metarl.agents.pearl import PEARL, PEARLConfig
from metarl.checkpoint import load_checkpoint
from metarl.encoders import TaskEncoder, make_context
from metarl.replay import MultiTaskReplayBuffer
from metarl.sac import soft_q_target
from metarl.sampler import EpisodeSampler
from metarl.training import run_meta_training
from tests.test_save_load import scalars


def _tiny(**kwargs) -> PEARLConfig:
    base = dict(env="metarl/Navigation2D-v0", max_episode_steps=10, train_tasks=6, tasks_per_iteration=2,
                initial_episodes=2, prior_episodes=1, posterior_episodes=1, extra_posterior_episodes=1,
                gradient_steps=3, meta_batch_size=3, batch_size=8, context_size=5, hidden_sizes=(16,),
                encoder_hidden_sizes=(16,), latent_dim=3, metatest_tasks=4, metatest_episodes=3)
    return PEARLConfig(**{**base, **kwargs})


def _metarl(*args: str, cwd) -> subprocess.CompletedProcess:
    """The installed console command, as a user runs it."""
    command = str(Path(sys.executable).with_name("metarl"))
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


# ----- the task encoder -------------------------------------------------------------------------------------


def test_encoder_posterior_ignores_the_order_of_the_transitions():
    torch.manual_seed(0)
    encoder = TaskEncoder(TaskEncoder.transition_dim(2, 2), latent_dim=4, hidden_sizes=(32, 32))
    context = torch.randn(3, 12, encoder.input_dim)
    a = encoder(context)
    b = encoder(context[:, torch.randperm(12)])
    assert torch.allclose(a.loc, b.loc, atol=1e-5) and torch.allclose(a.scale, b.scale, atol=1e-5)
    assert a.loc.shape == (3, 4)


def test_encoder_posterior_narrows_with_more_context_and_is_the_prior_without_any():
    torch.manual_seed(1)
    encoder = TaskEncoder(TaskEncoder.transition_dim(2, 2), latent_dim=5, hidden_sizes=(32,))
    context = torch.randn(4, 30, encoder.input_dim)
    variances = [encoder(context[:, :n]).variance for n in (1, 5, 30)]
    assert (variances[1] < variances[0]).all() and (variances[2] < variances[1]).all()
    empty = encoder(context[:, :0])
    assert torch.equal(empty.loc, torch.zeros(4, 5)) and torch.equal(empty.scale, torch.ones(4, 5))
    # padding marked by the mask counts for nothing; a fully masked context is the prior
    mask = torch.zeros(4, 30)
    mask[:, :5] = 1
    padded = encoder(context, mask)
    assert torch.allclose(padded.loc, encoder(context[:, :5]).loc, atol=1e-6)
    assert torch.equal(encoder(context, torch.zeros(4, 30)).scale, torch.ones(4, 5))


def test_encoder_product_of_factors_and_kl_match_the_formulas():
    torch.manual_seed(2)
    encoder = TaskEncoder(TaskEncoder.transition_dim(1, 1), latent_dim=2, hidden_sizes=(8,))
    context = torch.randn(7, encoder.input_dim)
    means, variances = encoder.factors(context)
    posterior = encoder(context)
    precision = (1 / variances).sum(0)
    assert torch.allclose(posterior.variance, 1 / precision, rtol=1e-5)
    assert torch.allclose(posterior.loc, (means / variances).sum(0) / precision, rtol=1e-4, atol=1e-6)
    expected = torch.distributions.kl_divergence(posterior, encoder.prior()).sum(-1)
    assert torch.allclose(TaskEncoder.kl_to_prior(posterior), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="context must be"):
        encoder(torch.randn(5, encoder.input_dim + 1))


def test_mean_aggregator_is_order_invariant_masks_padding_and_regresses_a_goal_from_ring_constraints():
    torch.manual_seed(3)
    encoder = TaskEncoder(3, latent_dim=2, hidden_sizes=(64, 64), aggregator="mean")
    context = torch.randn(5, 9, 3)
    a, b = encoder(context), encoder(context[:, torch.randperm(9)])
    assert torch.allclose(a.loc, b.loc, atol=1e-5) and torch.allclose(a.scale, b.scale, atol=1e-5)
    mask = torch.zeros(5, 9)
    mask[:, :4] = 1
    assert torch.allclose(encoder(context, mask).loc, encoder(context[:, :4]).loc, atol=1e-6)
    empty = encoder(context, torch.zeros(5, 9))
    assert torch.equal(empty.loc, torch.zeros(5, 2)) and torch.equal(empty.scale, torch.ones(5, 2))
    assert torch.equal(encoder(context[:, :0]).scale, torch.ones(5, 2))
    with pytest.raises(ValueError, match="only the product"):
        encoder.factors(context)
    with pytest.raises(ValueError, match="aggregator must be one of"):
        TaskEncoder(3, aggregator="max")

    # a goal g in the plane, each transition a point p and its distance |p - g| (a ring around p): the mean
    # aggregator regresses g from 16 such transitions to a small fraction of the goal variance (0.0099 against 0.33;
    # the product aggregator reaches 0.020 on the same data)
    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        goals, points = torch.rand(n, 1, 2) * 2 - 1, torch.rand(n, 16, 2) * 2 - 1
        return torch.cat([points, (points - goals).norm(dim=-1, keepdim=True)], -1), goals[:, 0]

    optimiser = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    for _ in range(600):
        ctx, goals = batch(64)
        loss = ((encoder(ctx).loc - goals) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    ctx, goals = batch(512)
    with torch.no_grad():
        error = ((encoder(ctx).loc - goals) ** 2).mean()
    assert error < 0.1 * goals.var(0).mean(), f"mean-aggregated encoder error {error:.4f} of goal variance"


def test_make_context_lays_out_state_action_reward_and_next_state():
    obs, act, rew, nxt = torch.ones(2, 3, 4), 2 * torch.ones(2, 3, 2), 3 * torch.ones(2, 3), 4 * torch.ones(2, 3, 4)
    ctx = make_context(obs, act, rew)
    assert ctx.shape == (2, 3, 7) and ctx[0, 0].tolist() == [1, 1, 1, 1, 2, 2, 3]
    assert make_context(obs, act, rew, nxt).shape == (2, 3, 11) == (2, 3, TaskEncoder.transition_dim(4, 2, True))


def test_task_encoder_is_public_api():
    assert metarl.TaskEncoder is TaskEncoder and metarl.encoders.TaskEncoder is TaskEncoder


# ----- replay ------------------------------------------------------------------------------------------------


def test_per_task_buffers_never_mix_tasks_and_keep_the_newest():
    buffer = MultiTaskReplayBuffer(3, capacity=50, obs_dim=1, act_dim=1)
    for task in range(3):
        for chunk in range(4):  # 80 transitions into a 50-transition ring: the first 30 are overwritten
            values = torch.arange(20.0) + 20 * chunk
            buffer.add(task, {"observations": torch.full((20, 1), float(task)), "actions": values[:, None],
                              "rewards": values, "next_observations": torch.full((20, 1), float(task)),
                              "terminals": torch.zeros(20)})
    assert [buffer.size(t) for t in range(3)] == [50, 50, 50]
    batch = buffer.sample([2, 0, 2], 500, torch.Generator().manual_seed(0))
    assert batch["observations"].shape == (3, 500, 1)
    assert (batch["observations"][:, :, 0] == torch.tensor([2.0, 0.0, 2.0])[:, None]).all()
    assert batch["rewards"].min() >= 30 and set(batch["rewards"][1].long().tolist()) == set(range(30, 80))
    buffer.clear(1)
    with pytest.raises(ValueError, match="task 1 is empty"):
        buffer.sample([1], 4, torch.Generator())
    restored = MultiTaskReplayBuffer(3, capacity=50, obs_dim=1, act_dim=1)
    restored.load_state_dict(buffer.state_dict())
    again = restored.sample([2, 0, 2], 500, torch.Generator().manual_seed(0))
    assert all(torch.equal(again[k], batch[k]) for k in batch)


def test_pearl_replay_holds_only_each_training_tasks_own_transitions():
    """Navigation2D's reward is minus the distance of s' to the goal: every stored transition must fit its task."""
    torch.manual_seed(0)
    algo = PEARL(_tiny())
    algo.meta_train_step(np.random.default_rng(0))
    for i, task in enumerate(algo.train_tasks):
        n = algo.replay.size(i)
        assert n > 0
        data = {k: v[i, :n] for k, v in algo.replay._data.items()}
        expected = -torch.linalg.norm(data["next_observations"] - torch.as_tensor(task["goal"]).float(), dim=1)
        assert torch.allclose(data["rewards"], expected, atol=1e-5), f"task {i} holds another task's transitions"


# ----- SAC -------------------------------------------------------------------------------------------------


def test_soft_q_target_matches_a_hand_computed_target():
    target = soft_q_target(rewards=torch.tensor([1.0, 2.0]), terminals=torch.tensor([0.0, 1.0]),
                           next_q=torch.tensor([3.0, 4.0]), next_log_prob=torch.tensor([0.5, -1.0]), alpha=0.2,
                           gamma=0.9, reward_scale=2.0)
    # 2*1 + 0.9*(3 - 0.2*0.5) = 4.61 ; 2*2 + 0 (terminal) = 4
    assert torch.allclose(target, torch.tensor([4.61, 4.0]))


def test_sac_update_minimises_the_bellman_error_to_the_soft_target_on_a_tiny_batch():
    """Recompute one update's critic loss by hand from copies of the networks and the same random draws."""
    torch.manual_seed(0)
    algo = PEARL(_tiny(meta_batch_size=2, batch_size=3, context_size=2, alpha=0.3, reward_scale=2.0, gamma=0.9))
    algo.meta_train_step(np.random.default_rng(0))
    before = copy.deepcopy(algo)
    out = algo._update(torch.Generator().manual_seed(7))

    g = torch.Generator().manual_seed(7)  # the same draws, in the update's order
    ids = torch.randperm(before.cfg.train_tasks, generator=g)[:2].tolist()
    context = before.context_of(before.context_buffer.sample(ids, 2, g))
    batch = before.replay.sample(ids, 3, g)
    post = before.encoder(context)
    z = post.loc + post.scale * torch.randn(post.loc.shape, generator=g)
    zb = z[:, None].expand(-1, 3, -1)
    with torch.no_grad():
        nxt = before.policy(torch.cat([batch["next_observations"], zb], -1), g)
        xa = torch.cat([batch["next_observations"], zb, nxt.actions], -1)
        q_next = torch.minimum(before.critic_target.q1(xa), before.critic_target.q2(xa)).squeeze(-1)
        target = 2.0 * batch["rewards"] + 0.9 * (1 - batch["terminals"]) * (q_next - 0.3 * nxt.log_prob)
        sa = torch.cat([batch["observations"], zb, batch["actions"]], -1)
        loss = ((before.critic.q1(sa).squeeze(-1) - target) ** 2).mean() + \
            ((before.critic.q2(sa).squeeze(-1) - target) ** 2).mean()
    assert out["critic_loss"] == pytest.approx(float(loss), rel=1e-5)
    # the critic, encoder and actor moved; the target networks moved by tau only
    assert not torch.equal(algo.critic.q1[0].weight, before.critic.q1[0].weight)
    assert not torch.equal(algo.encoder.net[0].weight, before.encoder.net[0].weight)
    assert not torch.equal(algo.policy.net[0].weight, before.policy.net[0].weight)
    expected_target = (1 - algo.cfg.tau) * before.critic_target.q1[0].weight + algo.cfg.tau * algo.critic.q1[0].weight
    assert torch.allclose(algo.critic_target.q1[0].weight, expected_target, atol=1e-7)


def test_learned_temperature_moves_towards_the_entropy_target():
    torch.manual_seed(0)
    algo = PEARL(_tiny(learn_alpha=True, target_entropy=-50.0, gradient_steps=20))
    algo.meta_train_step(np.random.default_rng(0))
    assert algo.alpha < 1.0, "the policy's entropy is far above -50, so the temperature falls"


# ----- the sparse point robot ------------------------------------------------------------------------------


def test_sparse_point_robot_rewards_only_the_goal_region():
    env = gym.make("metarl/SparsePointRobot-v0")
    family = env.unwrapped
    assert env.spec.max_episode_steps == 20
    family.set_task(metarl.Task.create("SparsePointRobot", angle=np.pi / 2))  # goal (0, 1)
    env.reset(seed=0)
    rewards = [env.step(np.array([0.0, 0.095]))[1] for _ in range(10)]
    # positions y = 0.095 k: outside the radius 0.2 up to y = 0.76, then 1 - distance = y
    assert rewards[:8] == [0.0] * 8 and rewards[8] == pytest.approx(0.855) and rewards[9] == pytest.approx(0.95)
    _, _, _, _, info = env.step(np.array([5.0, 5.0]))  # clipped to (0.1, 0.1)
    assert info["dense_reward"] == pytest.approx(-np.hypot(0.1, 0.05))  # at (0.1, 1.05)
    assert family.episode_success(np.array([[0, 0.5], [0, 0]])).tolist() == [True, False]
    goals = np.stack([family.goal_of(t) for t in family.sample_tasks(200, np.random.default_rng(0))])
    assert np.allclose(np.linalg.norm(goals, axis=1), 1.0) and (goals[:, 1] >= 0).all()
    with pytest.raises(ValueError, match="angle"):
        family.set_task(metarl.Task.create("SparsePointRobot", angle=4.0))


def test_sparse_point_robot_fast_path_equals_the_gymnasium_env():
    rng = np.random.default_rng(3)
    actions = torch.as_tensor(rng.uniform(-0.15, 0.15, size=(20, 3, 2, 2)), dtype=torch.float32)
    step = iter(range(20))

    def act(obs, generator):
        return actions[next(step)]

    fast, slow = EpisodeSampler("metarl/SparsePointRobot-v0"), EpisodeSampler("metarl/SparsePointRobot-v0", fast=False)
    tasks = fast.sample_tasks(3, np.random.default_rng(0))
    a = fast.sample(act, tasks, 2, np.random.default_rng(0), info_keys=("dense_reward",))
    step = iter(range(20))
    b = slow.sample(act, tasks, 2, np.random.default_rng(0), info_keys=("dense_reward",))
    assert torch.allclose(a.rewards, b.rewards, atol=1e-6) and torch.allclose(a.observations, b.observations)
    assert torch.allclose(a.infos["dense_reward"], b.infos["dense_reward"], atol=1e-6)
    assert torch.allclose(a.final_observations, b.final_observations)


def test_point_robot_starts_anywhere_in_the_square_and_rewards_minus_the_distance():
    env = gym.make("metarl/PointRobot-v0")
    family = env.unwrapped
    assert env.spec.max_episode_steps == 20
    starts = np.stack([env.reset(seed=s)[0] for s in range(200)])
    assert np.abs(starts).max() <= 1.0 and starts.std(axis=0).min() > 0.4, "starts spread over [-1, 1]^2"
    assert np.array_equal(env.reset(seed=7)[0], env.reset(seed=7)[0])
    family.set_task(metarl.Task.create("PointRobot", goal=[0.5, -0.5]))
    start, _ = env.reset(seed=1)
    obs, reward, terminated, truncated, _ = env.step(np.array([5.0, 0.0]))  # clipped to (0.1, 0)
    assert np.allclose(obs, start + np.array([0.1, 0.0]))
    assert reward == pytest.approx(-np.hypot(obs[0] - 0.5, obs[1] + 0.5), abs=1e-6) and not terminated
    for _ in range(40):  # no termination, even at the goal: the 20-step time limit ends the episode
        terminated = env.unwrapped.step(np.array([0.5, -0.5]) - env.unwrapped._position)[2] or terminated
    assert not terminated
    goals = np.stack([family.goal_of(t) for t in family.sample_tasks(500, np.random.default_rng(0))])
    assert goals.min() >= -1.0 and goals.max() <= 1.0 and goals.min() < -0.9 and goals.max() > 0.9
    with pytest.raises(ValueError, match="start_range"):
        gym.make("metarl/PointRobot-v0", start_range=-1.0)


def test_point_robot_fast_path_equals_the_gymnasium_env():
    rng = np.random.default_rng(4)
    actions = torch.as_tensor(rng.uniform(-0.15, 0.15, size=(20, 3, 2, 2)), dtype=torch.float32)
    steps = [iter(range(20)), iter(range(20))]

    def actor(k):
        return lambda obs, generator: actions[next(steps[k])]

    fast, slow = EpisodeSampler("metarl/PointRobot-v0"), EpisodeSampler("metarl/PointRobot-v0", fast=False)
    tasks = fast.sample_tasks(3, np.random.default_rng(0))
    a = fast.sample(actor(0), tasks, 2, np.random.default_rng(0))
    b = slow.sample(actor(1), tasks, 2, np.random.default_rng(0))
    assert torch.equal(a.observations, b.observations) and torch.equal(a.rewards, b.rewards)
    assert torch.equal(a.final_observations, b.final_observations)
    assert a.observations[:, :, 0].reshape(-1, 2).unique(dim=0).shape[0] == 6, "every episode starts somewhere else"


def test_pearl_runs_the_dense_point_robot_with_a_mean_encoder_from_the_console(tmp_path):
    proc = _metarl("train", "--algo", "pearl", "--env", "metarl/PointRobot-v0", "--encoder-aggregator", "mean",
                   "--logdir", "run", "--iterations", "1", "--train-tasks", "4", "--tasks-per-iteration", "2",
                   "--initial-episodes", "1", "--prior-episodes", "1", "--extra-posterior-episodes", "1",
                   "--gradient-steps", "3", "--meta-batch-size", "2", "--batch-size", "8", "--context-size", "8",
                   "--hidden-sizes", "16", "--encoder-hidden-sizes", "16", "--metatest-tasks", "3", "--no-progress",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    config = load_checkpoint(tmp_path / "run")["config"]
    assert config["encoder_aggregator"] == "mean" and config["reward_scale"] == 100.0, "the PointRobot preset"
    assert len(json.loads((tmp_path / "run" / "metatest.json").read_text())["mean_return_by_episode"]) == 3
    bad = _metarl("train", "--algo", "pearl", "--env", "metarl/PointRobot-v0", "--encoder-aggregator", "max",
                  cwd=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "product" in bad.stderr


# ----- the run -----------------------------------------------------------------------------------------------


def _train(cfg: PEARLConfig, logdir, iterations: int, resume: bool = False):
    torch.manual_seed(cfg.seed)
    return run_meta_training(PEARL(cfg), iterations=iterations, seed=cfg.seed, logdir=logdir, resume=resume,
                             checkpoint_every=1, progress=False, print_fn=None)


def test_same_seed_same_curve_and_resume_continues_it_exactly(tmp_path):
    cfg = _tiny()
    full = _train(cfg, tmp_path / "full", 3)
    again = _train(cfg, tmp_path / "again", 3)
    _train(cfg, tmp_path / "split", 2)
    resumed = _train(cfg, tmp_path / "split", 3, resume=True)
    for tag in ("train/critic_loss", "train/kl", "rollout/return_after_adaptation"):
        assert scalars(tmp_path / "full", tag) == scalars(tmp_path / "again", tag) == scalars(tmp_path / "split", tag)
    assert full["mean_return_by_episode"] == again["mean_return_by_episode"] == resumed["mean_return_by_episode"]
    a, b = load_checkpoint(tmp_path / "full")["algorithm"], load_checkpoint(tmp_path / "split")["algorithm"]
    assert all(torch.equal(a["critic"][k], b["critic"][k]) for k in a["critic"])
    assert a["replay"]["sizes"].tolist() == b["replay"]["sizes"].tolist()


def test_pearl_trains_from_the_console_and_reports_every_episode_of_the_trial(tmp_path):
    proc = _metarl("train", "--algo", "pearl", "--env", "metarl/SparsePointRobot-v0", "--logdir", "run",
                   "--iterations", "2", "--train-tasks", "6", "--tasks-per-iteration", "2", "--initial-episodes",
                   "2", "--posterior-episodes", "2", "--gradient-steps", "4", "--meta-batch-size", "3",
                   "--batch-size", "8", "--context-size", "8", "--hidden-sizes", "16", "--encoder-hidden-sizes",
                   "16", "--metatest-tasks", "5", "--metatest-episodes", "3", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "run" / "metatest.json").read_text())
    assert result["algo"] == "pearl" and result["n_tasks"] == 5
    assert len(result["mean_return_by_episode"]) == len(result["success_rate_by_episode"]) == 3
    assert result["env_steps"] == int(load_checkpoint(tmp_path / "run")["samples"])
    assert "success rate" in proc.stdout
    config = load_checkpoint(tmp_path / "run")["config"]
    assert config["critic_reward"] == "dense", "the SparsePointRobot preset trains the critic on the dense reward"
    for tag in ("rollout/return_after_adaptation", "train/critic_loss", "time/gradient_steps_per_second"):
        assert len(scalars(tmp_path / "run", tag)) == 2


@pytest.mark.parametrize("args, message", [
    (["--env", "metarl/BernoulliBandit-v0"], "pearl needs a continuous (Box) action space"),
    (["--env", "metarl/Navigation2D-v0", "--critic-reward", "dense", "--iterations", "1", "--initial-episodes", "1",
      "--train-tasks", "2", "--meta-batch-size", "2", "--tasks-per-iteration", "1"], "needs a family whose step info"),
    (["--env", "metarl/Navigation2D-v0", "--critic-reward", "sparse"], "invalid choice: 'sparse'"),
    (["--env", "metarl/Navigation2D-v0", "--train-tasks", "3", "--meta-batch-size", "4"], "exceeds train_tasks"),
])
def test_bad_pearl_settings_get_one_line_errors(tmp_path, args, message):
    proc = _metarl("train", "--algo", "pearl", "--logdir", "run", "--no-progress", *args, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_pearl_learns_to_tell_two_goals_apart_from_context():
    """Two training goals on opposite sides (seed 4): after a short run the encoder's posteriors differ between
    them and the first posterior episode beats both the untrained policy and the trial's prior episode."""
    cfg = PEARLConfig(env="metarl/Navigation2D-v0", seed=4, max_episode_steps=20, train_tasks=2, tasks_per_iteration=2,
                      initial_episodes=2, prior_episodes=2, extra_posterior_episodes=1, gradient_steps=100,
                      meta_batch_size=2, batch_size=128, context_size=32, hidden_sizes=(64, 64),
                      encoder_hidden_sizes=(32,), learn_alpha=True, reward_scale=10.0, gamma=0.9, use_next_obs=True,
                      outer_lr=1e-3, kl_lambda=0.0)
    torch.manual_seed(4)
    algo = PEARL(cfg)
    goals = np.stack([t["goal"] for t in algo.train_tasks])
    assert goals[0] @ goals[1] < 0, "the two goals lie on opposite sides of the start"

    def trial_returns() -> np.ndarray:
        return algo.adaptation_trials(algo.train_tasks * 10, 2, np.random.default_rng(1))[0].mean(0)

    untrained = trial_returns()
    rng = np.random.default_rng(0)
    for _ in range(15):
        algo.meta_train_step(rng)
    trained = trial_returns()
    context = algo.context_of(algo.context_buffer.sample([0, 1], 32, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        posterior = algo.encoder(context)
    assert (posterior.loc[0] - posterior.loc[1]).abs().max() > 5 * posterior.scale.max(), "z tells the goals apart"
    assert trained[1] > untrained[1] + 3 and trained[1] > trained[0], (untrained, trained)
