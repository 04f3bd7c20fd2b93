"""MAML-PPO: the clipped outer step through the inner step, its settings, resume, the CLI and a short learning check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from metarl.adaptation import detach_params
from metarl.agents.maml import MAMLConfig, MAMLPPOConfig
from metarl.agents.maml_ppo import MAMLPPO
from metarl.agents.maml_trpo import MAMLTRPO
from metarl.checkpoint import load_checkpoint
from metarl.returns import masked_mean
from metarl.training import run_meta_training
from tests.test_save_load import scalars

TINY = dict(meta_batch_size=3, episodes_per_task=4, max_episode_steps=12, hidden_sizes=(16,), metatest_tasks=4,
            metatest_steps=2)


def _meta_batch(algo, seed=0, n_tasks=3, episodes=4):
    """Pre-adaptation batch, post-adaptation batch and the sampling distribution, as in ``meta_train_step``."""
    rng = np.random.default_rng(seed)
    tasks = algo.sampler.sample_tasks(n_tasks, rng)
    params = algo.meta_params()
    train = algo.task_batch(algo.sampler.sample(algo.act_fn(params, False), tasks, episodes, rng))
    with torch.no_grad():
        train["sampling_log_probs"] = algo._dist(params, train["observations"], False).log_prob(train["actions"])
        adapted = algo.adapt(detach_params(params), train, steps=1, first_order=True)
    valid = algo.task_batch(algo.sampler.sample(algo.act_fn(adapted, True), tasks, episodes, rng))
    with torch.no_grad():
        old = algo._dist(adapted, valid["observations"], batched=True).detach()
    return params, train, valid, old


def test_defaults_are_promps_outer_step_without_the_inner_kl_penalty_plus_an_early_stop():
    cfg = MAMLPPOConfig()
    assert (cfg.outer_lr, cfg.ppo_epochs, cfg.clip_range, cfg.inner_kl_coef, cfg.target_kl, cfg.kl_backtracks) == \
        (1e-3, 5, 0.3, 0.0, 0.02, 10)
    shared = {f.name for f in dataclasses.fields(MAMLConfig)} & {f.name for f in dataclasses.fields(MAMLPPOConfig)}
    assert all(getattr(cfg, name) == getattr(MAMLConfig(), name) for name in shared), "same shared defaults"


def test_meta_train_step_improves_the_clipped_objective():
    torch.manual_seed(0)
    algo = MAMLPPO(MAMLPPOConfig(**TINY, target_kl=0.0))
    before = {k: v.detach().clone() for k, v in algo.policy.state_dict().items()}
    metrics = algo.meta_train_step(np.random.default_rng(0))
    assert metrics["train/ppo_epochs"] == 5
    assert metrics["samples"] == 2 * 3 * 4 * 12
    assert metrics["train/surrogate_loss_after"] < metrics["train/surrogate_loss_before"]
    assert metrics["train/approx_kl"] > 0 and metrics["train/inner_kl"] > 0 and 0 <= metrics["train/clip_fraction"] <= 1
    after = algo.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    adam = algo.outer_opt.state_dict()["state"]
    assert adam and all(int(s["step"]) == 5 for s in adam.values()), "one Adam step per PPO epoch"


def test_first_epoch_meta_gradient_is_maml_trpos():
    """At the sampling parameters ratio = 1 and the importance weights are 1: same gradient as MAML-TRPO's surrogate."""
    torch.manual_seed(0)
    ppo = MAMLPPO(MAMLPPOConfig(**TINY))
    torch.manual_seed(0)
    trpo = MAMLTRPO(MAMLConfig(**TINY))
    params, train, valid, old = _meta_batch(ppo)
    assert torch.equal(ppo.importance_weights(params, train, batched=False), train["mask"])
    old_log_probs = old.log_prob(valid["actions"])
    loss, (ratio,), _ = ppo.clipped_objective(params, [train], [valid], [old_log_probs], first_order=False)
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-5, rtol=0)
    reference, _ = trpo._surrogate(trpo.meta_params(), [train], [valid], [old_log_probs], [old], first_order=False)
    ours = torch.autograd.grad(loss, list(params.values()))
    theirs = torch.autograd.grad(reference, list(trpo.meta_params().values()))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("first_order,estimator", [(False, "vpg"), (True, "vpg"), (False, "lvc")])
def test_meta_gradient_flows_through_the_inner_step(first_order, estimator):
    """The clipped objective's gradient equals a hand-built per-task autograd reference (after a move of theta);
    with LVC the reference inner loss is ProMP's, -mean(pi_theta / pi_sampling * A) differentiated through pi_theta."""
    torch.manual_seed(0)
    algo = MAMLPPO(MAMLPPOConfig(**TINY, first_order=first_order, inner_estimator=estimator))
    params, train, valid, old = _meta_batch(algo)
    sampling_log_probs = train["sampling_log_probs"]
    with torch.no_grad():
        for p in params.values():  # move theta off the sampling parameters, as after a PPO epoch: ratios != 1
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    old_log_probs = old.log_prob(valid["actions"])
    loss, (ratio,), _ = algo.clipped_objective(params, [train], [valid], [old_log_probs], first_order=first_order)
    assert float((ratio.detach() - 1).abs().max()) > 0.3, "some ratios are clipped"
    ours = torch.autograd.grad(loss, list(params.values()))

    names, eps = list(params), algo.cfg.clip_range
    per_task = []
    for k in range(3):
        dist = algo.policy(train["observations"][k])
        log_probs = dist.log_prob(train["actions"][k])
        weights = torch.exp(log_probs - sampling_log_probs[k]).detach() * train["mask"][k]
        if estimator == "lvc":
            ratio_s = torch.exp(log_probs - sampling_log_probs[k]) * train["mask"][k]
            inner = -masked_mean(ratio_s * train["advantages"][k], train["mask"][k])
        else:
            inner = -masked_mean(log_probs * train["advantages"][k] * weights, train["mask"][k])
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=not first_order)
        adapted = {n: p - 0.1 * (g.detach() if first_order else g) for (n, p), g in zip(params.items(), grads)}
        new = torch.func.functional_call(algo.policy, adapted, (valid["observations"][k],))
        r = torch.exp(new.log_prob(valid["actions"][k]) - old_log_probs[k])
        adv = valid["advantages"][k]
        per_task.append(-masked_mean(torch.minimum(r * adv, r.clamp(1 - eps, 1 + eps) * adv), valid["mask"][k]))
    reference = torch.autograd.grad(torch.stack(per_task).mean(), list(params.values()))
    for name, a, b in zip(names, ours, reference):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4, msg=f"meta-gradient of {name}")


def test_second_order_term_changes_the_meta_gradient():
    torch.manual_seed(0)
    algo = MAMLPPO(MAMLPPOConfig(**TINY))
    params, train, valid, old = _meta_batch(algo)
    grads = {}
    for first_order in (False, True):
        loss, _, _ = algo.clipped_objective(params, [train], [valid], [old.log_prob(valid["actions"])], first_order)
        grads[first_order] = torch.autograd.grad(loss, list(params.values()))
    assert sum(float((a - b).abs().sum()) for a, b in zip(grads[False], grads[True])) > 1e-6


def test_inner_kl_penalty_option_keeps_the_pre_adaptation_policy_closer():
    kls = {}
    for coef in (0.0, 50.0):
        torch.manual_seed(0)
        algo = MAMLPPO(MAMLPPOConfig(**TINY, inner_kl_coef=coef, outer_lr=1e-2))
        kls[coef] = algo.meta_train_step(np.random.default_rng(0))["train/inner_kl"]
    assert 0 < kls[50.0] < kls[0.0]


def test_target_kl_stops_the_epochs_and_undoes_a_step_that_cannot_be_shrunk_inside_it():
    """SB3's early stop plus an undo (no backtracks): a tiny target undoes even the first step; a loose one keeps all."""
    for target_kl, epochs, kept in ((1e-12, 0, 0.0), (0.0, 5, 1.0), (1e6, 5, 1.0)):
        torch.manual_seed(0)
        algo = MAMLPPO(MAMLPPOConfig(**TINY, target_kl=target_kl, outer_lr=1e-2, kl_backtracks=0))
        before = {k: v.detach().clone() for k, v in algo.policy.state_dict().items()}
        metrics = algo.meta_train_step(np.random.default_rng(0))
        assert (metrics["train/ppo_epochs"], metrics["train/last_step_kept"]) == (epochs, kept), target_kl
        after = algo.policy.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before) == (epochs == 0)
        assert metrics["train/approx_kl"] <= 1.5 * target_kl or target_kl == 0.0


def test_a_step_past_the_limit_is_halved_until_inside_or_undone_without_backtracks():
    torch.manual_seed(0)
    one = MAMLPPO(MAMLPPOConfig(**TINY, target_kl=0.0, outer_lr=1e-2, ppo_epochs=1))
    full_kl = one.meta_train_step(np.random.default_rng(0))["train/approx_kl"]
    for backtracks, kept in ((10, 0.5), (0, 0.0)):
        torch.manual_seed(0)
        algo = MAMLPPO(MAMLPPOConfig(**TINY, target_kl=full_kl / 3, outer_lr=1e-2, ppo_epochs=1,
                                     kl_backtracks=backtracks))
        metrics = algo.meta_train_step(np.random.default_rng(0))
        assert metrics["train/last_step_kept"] == kept, backtracks
        assert metrics["train/approx_kl"] <= full_kl / 2 + 1e-9
        assert metrics["train/ppo_epochs"] == (1 if kept else 0)


def test_target_kl_keeps_the_steps_inside_the_limit():
    """A middle target: the steps kept end inside 1.5 x target_kl, and at least the first is kept."""
    torch.manual_seed(0)
    free = MAMLPPO(MAMLPPOConfig(**TINY, target_kl=0.0, outer_lr=1e-2))
    kl_free = free.meta_train_step(np.random.default_rng(0))["train/approx_kl"]
    torch.manual_seed(0)
    algo = MAMLPPO(MAMLPPOConfig(**TINY, target_kl=kl_free / 3, outer_lr=1e-2))
    metrics = algo.meta_train_step(np.random.default_rng(0))
    assert metrics["train/approx_kl"] <= 1.5 * kl_free / 3 + 1e-9
    assert 1 <= metrics["train/ppo_epochs"] < 5


@pytest.mark.parametrize("field,value,message", [
    ("target_kl", -0.01, "target_kl must be a non-negative number"),
    ("target_kl", float("nan"), "target_kl must be a non-negative number"),
    ("kl_backtracks", -1, "kl_backtracks must be a non-negative integer"),
    ("outer_lr", 0.0, "outer_lr must be a positive number"),
    ("outer_lr", -1e-3, "outer_lr must be a positive number"),
    ("outer_lr", float("inf"), "outer_lr must be a positive number"),
    ("clip_range", 0.0, r"clip_range must be a number in \(0, 1\)"),
    ("clip_range", -0.2, r"clip_range must be a number in \(0, 1\)"),
    ("clip_range", 1.5, r"clip_range must be a number in \(0, 1\)"),
    ("ppo_epochs", 0, "ppo_epochs must be a positive integer"),
    ("ppo_epochs", -3, "ppo_epochs must be a positive integer"),
    ("ppo_epochs", 2.5, "ppo_epochs must be a positive integer"),
    ("inner_kl_coef", -1.0, "inner_kl_coef must be a non-negative number"),
    ("inner_lr", 0.0, "inner_lr must be a positive number"),
])
def test_invalid_hyperparameters_are_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        MAMLPPO(MAMLPPOConfig(**{**TINY, field: value}))


def _run(logdir, iterations, resume=False):
    torch.manual_seed(0)
    return run_meta_training(MAMLPPO(MAMLPPOConfig(**TINY)), iterations=iterations, seed=3, logdir=logdir,
                             resume=resume, checkpoint_every=1, progress=False, print_fn=None)


def test_resume_gives_the_same_curve_weights_and_adam_state(tmp_path):
    full = _run(tmp_path / "full", 3)
    _run(tmp_path / "split", 2)
    resumed = _run(tmp_path / "split", 3, resume=True)
    for tag in ("rollout/return_after_adaptation", "train/surrogate_loss_after", "train/approx_kl"):
        assert scalars(tmp_path / "split", tag) == scalars(tmp_path / "full", tag)
    assert len(scalars(tmp_path / "full")) == 3
    assert resumed["returns_by_step"] == full["returns_by_step"] and resumed["algo"] == "maml-ppo"
    assert resumed["train_seconds"] > 0
    a, b = (load_checkpoint(tmp_path / run)["algorithm"] for run in ("full", "split"))
    assert all(torch.equal(a["policy"][k], b["policy"][k]) for k in a["policy"])
    for key, state in a["outer_opt"]["state"].items():
        assert int(state["step"]) == 3 * 5
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[moment], b["outer_opt"]["state"][key][moment])


def test_half_cheetah_presets_are_the_original_codes_with_promps_network():
    from metarl.presets import preset
    from metarl.registry import resolve_config

    for algo in ("maml-trpo", "maml-ppo"):
        for env in ("metarl/HalfCheetahDir-v0", "metarl/HalfCheetahVel-v0"):
            config = resolve_config(algo, MAMLPPOConfig if algo == "maml-ppo" else MAMLConfig, {"env": env})
            assert (config.meta_batch_size, config.episodes_per_task, config.inner_lr, config.hidden_sizes,
                    config.activation, config.iterations) == (40, 20, 0.1, (64, 64), "tanh", 1000)
        assert preset(algo, "metarl/TabularMDP-v0") == {}
        assert resolve_config(algo, MAMLConfig, {"env": "metarl/TabularMDP-v0"}).iterations == 300
    # Navigation2D keeps the original network, inner step size, batch and trust region; it adds run-length, speed
    # and adaptation-schedule settings (docs/results/navigation.md)
    assert set(preset("maml-trpo", "metarl/Navigation2D-v0")) <= {
        "gae_lambda", "fisher_subsample", "iterations", "inner_steps", "multi_step_loss", "learn_step_sizes",
        "multi_step_weights"}


def test_python_api_gets_the_presets_the_command_line_uses():
    built = MAMLTRPO(env="metarl/Navigation2D-v0", seed=1, meta_batch_size=2)
    assert built.cfg.gae_lambda == 0.9 and built.cfg.fisher_subsample == 10, "the preset applies in Python too"
    assert built.cfg.meta_batch_size == 2 and built.cfg.seed == 1, "settings given win over the preset"
    explicit = MAMLTRPO(MAMLConfig(env="metarl/Navigation2D-v0"))
    assert explicit.cfg.gae_lambda == 1.0, "a complete config is used as given"
    with pytest.raises(ValueError, match="unknown setting 'inner_rate'"):
        MAMLTRPO(env="metarl/Navigation2D-v0", inner_rate=0.1)
    with pytest.raises(TypeError, match="either a config or settings"):
        MAMLTRPO(MAMLConfig(), seed=2)


def test_train_command_runs_maml_ppo_with_the_family_defaults(tmp_path):
    from metarl.cli import train_main

    logdir = tmp_path / "run"
    result = train_main(["--algo", "maml-ppo", "--env", "metarl/HalfCheetahDir-v0", "--logdir", str(logdir),
                         "--iterations", "1", "--meta-batch-size", "2", "--episodes-per-task", "2",
                         "--max-episode-steps", "20", "--metatest-tasks", "2", "--metatest-steps", "1",
                         "--ppo-epochs", "2", "--no-progress"])
    assert result["algo"] == "maml-ppo" and len(result["returns_by_step"]) == 2 and result["train_seconds"] > 0
    config = load_checkpoint(logdir)["config"]
    assert config["hidden_sizes"] == [64, 64] and config["inner_lr"] == 0.1, "HalfCheetah defaults applied"
    assert config["meta_batch_size"] == 2 and config["ppo_epochs"] == 2, "flags override the family defaults"
    assert len(scalars(logdir, "time/elapsed_seconds")) == 1


@pytest.mark.slow
def test_maml_ppo_improves_post_adaptation_return_on_navigation():
    torch.manual_seed(0)
    algo = MAMLPPO(MAMLPPOConfig(meta_batch_size=10, episodes_per_task=10, max_episode_steps=50, hidden_sizes=(32, 32),
                                 metatest_tasks=10, metatest_steps=1))
    rng = np.random.default_rng(0)
    after = [algo.meta_train_step(rng)["rollout/return_after_adaptation"] for _ in range(15)]
    first, last = np.mean(after[:3]), np.mean(after[-3:])
    # from about -28 (random initial policy, horizon 50) the default outer step reaches about -19 in 15 iterations
    assert last > first + 5, f"post-adaptation return did not improve: {first:.1f} -> {last:.1f}"
    result = algo.meta_test()
    assert result["returns_by_step"][1] > result["returns_by_step"][0], "adaptation step does not help"
