"""RL^2 with PPO: recurrent state across episodes and trials, trial packing, meta-test, resume, learning."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from metarl.agents.rl2 import RL2Config, RL2PPO, compact_trials
from metarl.presets import preset
from metarl.checkpoint import load_checkpoint
from metarl.training import run_meta_training
from tests.conftest import REPO
from tests.test_save_load import scalars

# early-terminating navigation (goals near the start, wide tolerance): trials with idle steps
NAV_IDLE = dict(env="metarl/Navigation2D-v0", env_kwargs={"goal_low": -0.2, "goal_high": 0.2, "goal_tolerance": 0.15},
                max_episode_steps=8, episodes_per_trial=3)


def _tiny(**kwargs) -> RL2Config:
    base = dict(meta_batch_size=4, trials_per_task=2, hidden_size=16, ppo_epochs=2, num_minibatches=2,
                metatest_tasks=6)
    return RL2Config(**{**base, **kwargs})


def _record_steps(algo):
    """Record the state each ``net.step`` call receives and the log-probabilities it gives."""
    calls = []
    step = algo.net.step

    def recording_step(inputs, state, active=None):
        dist, new_state = step(inputs, state, active)
        calls.append({"state_in": state.clone(), "state_out": new_state.clone(), "active": active.clone(),
                      "dist": dist})
        return dist, new_state

    algo.net.step = recording_step
    return calls


@pytest.mark.parametrize("settings", [
    dict(env="metarl/BernoulliBandit-v0", env_kwargs={"k": 3, "n": 4}, episodes_per_trial=3),
    NAV_IDLE,
], ids=["bandit", "navigation-with-idle-steps"])
def test_hidden_state_is_kept_across_episode_boundaries_and_reset_between_trials(settings):
    torch.manual_seed(0)
    algo = RL2PPO(_tiny(**settings))
    calls = _record_steps(algo)
    tasks = algo.sampler.sample_tasks(3, np.random.default_rng(0))
    trials = algo.rollout(tasks, 2, np.random.default_rng(1))
    n_calls = len(calls)
    horizon = algo.sampler.episode_horizon

    # reset between trials: every trial starts from the zero state ...
    assert torch.all(calls[0]["state_in"] == 0)
    algo.rollout(tasks, 2, np.random.default_rng(2))
    assert torch.all(calls[n_calls]["state_in"] == 0), "the next batch of trials starts from a fresh state"
    # ... and nowhere else: at each episode boundary the state is the one the previous step left
    for t in range(horizon, n_calls, horizon):
        torch.testing.assert_close(calls[t]["state_in"], calls[t - 1]["state_out"])
        assert calls[t]["state_in"].abs().sum() > 0
    # idle steps (an episode over before its slot) leave the state as it was
    for call in calls[:n_calls]:
        idle = ~call["active"]
        torch.testing.assert_close(call["state_out"][:, idle], call["state_in"][:, idle])
    if settings is NAV_IDLE:
        assert any((~c["active"]).any() for c in calls[:n_calls]), "the test should exercise idle steps"

    # the policy the sampler acted with == one GRU pass over each trial's valid steps (no reset inside a trial)
    batch = compact_trials(trials.observations, trials.actions, trials.rewards, trials.mask)
    with torch.no_grad():
        dist, _, _ = algo.net(batch.inputs)
        log_probs = dist.log_prob(batch.actions)
    n_trials, T = trials.mask.shape[0] * trials.mask.shape[1], trials.mask.shape[-1]
    flat_actions = trials.actions.reshape(n_trials, T, *trials.actions.shape[3:])
    acted = torch.zeros(n_trials, T)
    for t, call in enumerate(calls[:n_calls]):
        acted[:, t] = call["dist"].log_prob(flat_actions[:, t])
    acted_packed = compact_trials(acted.unsqueeze(-1), flat_actions, acted,
                                  trials.mask.reshape(n_trials, T)).inputs[..., 0]
    valid = batch.mask > 0
    torch.testing.assert_close(log_probs[valid], acted_packed[valid], atol=1e-5, rtol=1e-5)
    # resetting the state at the second episode's start would change the policy there
    split = horizon if settings is not NAV_IDLE else None
    if split is not None:
        with torch.no_grad():
            dist2, _, _ = algo.net(batch.inputs[:, split:])
        assert not torch.allclose(dist2.log_prob(batch.actions[:, split:])[:, 0], log_probs[:, split])


def test_compact_trials_packs_valid_steps_in_order():
    mask = torch.tensor([[[1, 1, 0, 0, 1, 0]], [[1, 0, 1, 1, 1, 1]]], dtype=torch.float32)  # (tasks, trials, T)
    values = torch.arange(12, dtype=torch.float32).reshape(2, 1, 6)
    inputs = torch.stack([values, -values], dim=-1)
    batch = compact_trials(inputs, values.long(), values, mask)
    assert batch.inputs.shape == (2, 5, 2)
    torch.testing.assert_close(batch.mask, torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1.]]))
    assert batch.actions[0, :3].tolist() == [0, 1, 4] and batch.actions[1].tolist() == [6, 8, 9, 10, 11]
    torch.testing.assert_close(batch.inputs[..., 1], -batch.inputs[..., 0])
    assert batch.rewards[0, 3:].abs().sum() == 0, "padding carries no reward"


def test_meta_test_reports_rl2_and_the_baselines_on_the_same_tasks():
    torch.manual_seed(0)
    algo = RL2PPO(_tiny(env="metarl/BernoulliBandit-v0", env_kwargs={"k": 3, "n": 6}, episodes_per_trial=1,
                        metatest_tasks=30))
    result = algo.meta_test()
    assert result["n_tasks"] == 30 and result["episodes_per_trial"] == 1
    names = set(result["mean_total_return"])
    assert {"rl2", "random", "greedy", "epsilon_greedy", "ucb1", "thompson", "gittins"} <= names
    assert all(len(v) == 1 for v in result["mean_return_by_episode"].values())
    assert result == algo.meta_test(), "the meta-test is fixed by metatest_seed"
    json.dumps(result)
    assert "thompson" in algo.format_metatest(result)
    # families without classic baselines get a random policy through the same trial sampler
    nav = RL2PPO(_tiny(env="metarl/Navigation2D-v0", max_episode_steps=5, metatest_tasks=4))
    out = nav.meta_test()
    assert set(out["mean_total_return"]) == {"rl2", "random"}
    assert len(out["mean_return_by_episode"]["rl2"]) == 2
    total = out["mean_total_return"]["rl2"]
    assert total == pytest.approx(sum(out["mean_return_by_episode"]["rl2"]))


def _train(cfg, logdir, iterations, resume=False):
    torch.manual_seed(0)
    return run_meta_training(RL2PPO(cfg), iterations=iterations, seed=3, logdir=logdir, resume=resume,
                             checkpoint_every=1, progress=False, print_fn=None)


def test_resume_gives_the_same_curve_and_weights_as_an_uninterrupted_run(tmp_path):
    cfg = _tiny(**NAV_IDLE)
    full = _train(cfg, tmp_path / "full", 3)
    _train(cfg, tmp_path / "split", 2)
    resumed = _train(cfg, tmp_path / "split", 3, resume=True)
    for tag in ("rollout/trial_return", "train/policy_gradient_loss", "train/value_loss"):
        assert scalars(tmp_path / "split", tag) == scalars(tmp_path / "full", tag)
    assert len(scalars(tmp_path / "full", "rollout/trial_return")) == 3
    assert resumed["mean_total_return"] == full["mean_total_return"]
    a = load_checkpoint(tmp_path / "full")["algorithm"]["net"]
    b = load_checkpoint(tmp_path / "split")["algorithm"]["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bandit_preset_depends_on_the_trial_length():
    short, long = preset("rl2-ppo", "metarl/BernoulliBandit-v0"), preset("rl2-ppo", "metarl/BernoulliBandit-v0",
                                                                         {"n": 100})
    assert (short["meta_batch_size"], short["iterations"], short.get("reward_scale", 1.0)) == (1024, 400, 1.0)
    assert (long["meta_batch_size"], long["iterations"], long["reward_scale"]) == (256, 220, 0.1)
    assert preset("rl2-ppo", "metarl/BernoulliBandit-v0", {"n": 20})["meta_batch_size"] == 1024, "n <= 20 is short"


def test_train_script_uses_the_family_defaults_and_writes_metatest_json(tmp_path):
    logdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--algo", "rl2-ppo", "--env", "metarl/TabularMDP-v0",
         "--logdir", str(logdir), "--iterations", "2", "--meta-batch-size", "4", "--num-minibatches", "2",
         "--hidden-size", "8", "--metatest-tasks", "5", "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((logdir / "metatest.json").read_text())
    assert result["algo"] == "rl2-ppo" and result["n_tasks"] == 5
    assert set(result["mean_total_return"]) == {"rl2", "random", "psrl"}
    assert len(result["mean_return_by_episode"]["rl2"]) == 10, "the family default: 10 episodes per trial"
    config = load_checkpoint(logdir)["config"]
    defaults = preset("rl2-ppo", "metarl/TabularMDP-v0")
    assert config["episodes_per_trial"] == defaults["episodes_per_trial"] == 10
    assert config["meta_batch_size"] == 4, "flags override the family defaults"
    assert "psrl" in proc.stdout
    steps = [s for s, _ in scalars(logdir, "rollout/trial_return")]
    assert steps == [4 * 100, 2 * 4 * 100], "the x axis counts environment steps"


@pytest.mark.slow
def test_rl2_learns_to_explore_and_exploit_a_bandit():
    torch.manual_seed(0)
    cfg = RL2Config(env="metarl/BernoulliBandit-v0", env_kwargs={"k": 5, "n": 10}, episodes_per_trial=1,
                    meta_batch_size=256, num_minibatches=8, hidden_size=64, gamma=1.0, gae_lambda=0.3,
                    metatest_tasks=500)
    algo = RL2PPO(cfg)
    rng = np.random.default_rng(0)
    returns = [algo.meta_train_step(rng)["rollout/trial_return"] for _ in range(40)]
    totals = algo.meta_test()["mean_total_return"]
    # a random arm pays 5.0 per trial in expectation; 40 iterations (10k trials, ~15 s) reach about 5.5
    assert np.mean(returns[-10:]) > np.mean(returns[:5]) + 0.25, returns
    assert totals["rl2"] > totals["random"] + 0.3, totals


def test_target_kl_stops_the_ppo_epochs_early(tmp_path):
    """SB3's target_kl: with a tiny target only the first minibatch update runs; without it, all of them."""
    from metarl.agents.rl2 import RL2Config, RL2PPO

    base = dict(env="metarl/BernoulliBandit-v0", env_kwargs={"k": 3, "n": 5}, episodes_per_trial=1,
                meta_batch_size=8, hidden_size=8, ppo_epochs=3, num_minibatches=2)
    full = RL2PPO(RL2Config(**base)).meta_train_step(np.random.default_rng(0))
    early = RL2PPO(RL2Config(**base, target_kl=1e-9)).meta_train_step(np.random.default_rng(0))
    assert full["train/ppo_updates"] == 6 and early["train/ppo_updates"] == 1
