"""MAML-TRPO: one meta-iteration, the inner step through the core, the meta-test, settings validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from metarl.adaptation import adapt_batch, detach_params
from metarl.agents.maml import MAMLConfig
from metarl.agents.maml_trpo import MAMLTRPO
from metarl.returns import masked_mean
from metarl.training import NonFiniteError


def test_defaults_are_the_original_navigation_settings():
    cfg = MAMLConfig()
    assert (cfg.hidden_sizes, cfg.activation, cfg.inner_lr, cfg.episodes_per_task, cfg.meta_batch_size,
            cfg.max_kl, cfg.gamma, cfg.first_order) == ((100, 100), "relu", 0.1, 20, 20, 0.01, 0.99, False)


def test_meta_train_step_improves_the_surrogate(tiny_maml_config):
    torch.manual_seed(0)
    algo = MAMLTRPO(tiny_maml_config)
    before = {k: v.detach().clone() for k, v in algo.policy.state_dict().items()}
    metrics = algo.meta_train_step(np.random.default_rng(0))
    assert metrics["samples"] == 2 * 3 * 4 * 12
    assert metrics["train/step_accepted"] == 1.0
    assert metrics["train/surrogate_loss_after"] < metrics["train/surrogate_loss_before"]
    assert 0 < metrics["train/approx_kl"] <= tiny_maml_config.max_kl
    after = algo.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_inner_step_is_a_policy_gradient_step_through_the_core(tiny_maml_config):
    torch.manual_seed(0)
    algo = MAMLTRPO(tiny_maml_config)
    rng = np.random.default_rng(0)
    tasks = algo.sampler.sample_tasks(2, rng)
    params = algo.meta_params()
    eps = algo.sampler.sample(algo.act_fn(params, batched=False), tasks, 4, rng)
    batch = algo.task_batch(eps)
    adapted = algo.adapt(detach_params(params), batch, steps=1, first_order=True)
    for k in range(2):
        one = {name: v[k] for name, v in batch.items()}
        loss = algo.inner_loss(params, one)
        grads = torch.autograd.grad(loss, list(params.values()))
        for (name, p), g in zip(params.items(), grads):
            torch.testing.assert_close(adapted[name][k], p.detach() - 0.1 * g, atol=1e-6, rtol=1e-5)


def test_first_order_switch_changes_the_meta_gradient(tiny_maml_config):
    torch.manual_seed(0)
    algo = MAMLTRPO(tiny_maml_config)
    rng = np.random.default_rng(0)
    tasks = algo.sampler.sample_tasks(2, rng)
    params = algo.meta_params()
    batch = algo.task_batch(algo.sampler.sample(algo.act_fn(params, False), tasks, 4, rng))
    grads = {}
    for fo in (False, True):
        adapted = adapt_batch(algo.inner_loss, params, batch, step_size=0.1, first_order=fo)
        dist = algo._dist(adapted, batch["observations"], batched=True)
        loss = -(dist.log_prob(batch["actions"]) * batch["advantages"]).mean()
        grads[fo] = torch.autograd.grad(loss, list(params.values()))
    diff = sum(float((a - b).abs().sum()) for a, b in zip(grads[False], grads[True]))
    assert diff > 1e-6


@pytest.mark.parametrize("estimator", ["vpg", "lvc"])
def test_inner_estimators_meta_gradient_matches_its_explicit_hessian(tiny_maml_config, estimator):
    """Both inner losses give the same inner step; the meta-gradient of a loss L(theta') is
    (I - alpha H) grad L, with H the REINFORCE Hessian for 'vpg' and the REINFORCE Hessian minus
    mean_t(grad log pi_t grad log pi_t^T A_t) for ProMP's LVC (computed here step by step)."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_maml_config, inner_estimator=estimator)
    algo = MAMLTRPO(cfg)
    rng = np.random.default_rng(0)
    params = algo.meta_params()
    batch = algo.task_batch(algo.sampler.sample(algo.act_fn(params, False), algo.sampler.sample_tasks(1, rng), 3, rng))
    one = {name: v[0] for name, v in batch.items()}
    batch["mask"][0, 1, -4:] = 0.0  # an episode that ended early
    names = list(params)
    weights = {name: torch.randn_like(p) for name, p in params.items()}  # L(theta') = sum(weights * theta')
    adapted = adapt_batch(algo.inner_loss, params, batch, step_size=cfg.inner_lr)
    meta_grad = torch.autograd.grad(sum((adapted[n][0] * weights[n]).sum() for n in names), [params[n] for n in names])

    def reinforce(p):
        dist = algo._dist(p, one["observations"], batched=False)
        return dist.log_prob(one["actions"])

    log_probs = reinforce(params)
    loss = -(log_probs * one["advantages"] * one["mask"]).sum() / one["mask"].sum()
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True)
    hvp = torch.autograd.grad(sum((g * weights[n]).sum() for g, n in zip(grads, names)), [params[n] for n in names],
                              retain_graph=True)
    hvp = [h.clone() for h in hvp]
    if estimator == "lvc":
        for e, t in zip(*torch.nonzero(one["mask"], as_tuple=True)):
            g_t = torch.autograd.grad(log_probs[e, t], [params[n] for n in names], retain_graph=True)
            dot = sum((g * weights[n]).sum() for g, n in zip(g_t, names))
            for i, g in enumerate(g_t):
                hvp[i] -= dot * g * one["advantages"][e, t] / one["mask"].sum()
    for i, n in enumerate(names):
        torch.testing.assert_close(meta_grad[i], weights[n] - cfg.inner_lr * hvp[i], atol=1e-5, rtol=1e-4)


def test_lvc_keeps_the_inner_step_and_changes_the_meta_gradient(tiny_maml_config):
    torch.manual_seed(0)
    algos = {e: MAMLTRPO(dataclasses.replace(tiny_maml_config, inner_estimator=e)) for e in ("vpg", "lvc")}
    algos["lvc"].policy.load_state_dict(algos["vpg"].policy.state_dict())
    rng = np.random.default_rng(0)
    params = algos["vpg"].meta_params()
    batch = algos["vpg"].task_batch(algos["vpg"].sampler.sample(algos["vpg"].act_fn(params, False),
                                                                 algos["vpg"].sampler.sample_tasks(2, rng), 4, rng))
    steps, meta_grads = {}, {}
    for e, algo in algos.items():
        p = algo.meta_params()
        adapted = algo.adapt(p, batch, steps=1, first_order=False)
        steps[e] = [v.detach() for v in adapted.values()]
        meta_grads[e] = torch.autograd.grad(sum(v.square().sum() for v in adapted.values()), list(p.values()))
    for a, b in zip(steps["vpg"], steps["lvc"]):
        torch.testing.assert_close(a, b)
    assert sum(float((a - b).abs().sum()) for a, b in zip(meta_grads["vpg"], meta_grads["lvc"])) > 1e-4
    with pytest.raises(ValueError, match="inner_estimator must be one of \\['vpg', 'lvc'\\]"):
        MAMLTRPO(dataclasses.replace(tiny_maml_config, inner_estimator="dice"))


def test_meta_test_reports_each_adaptation_step(tiny_maml_config):
    torch.manual_seed(0)
    algo = MAMLTRPO(tiny_maml_config)
    result = algo.meta_test()
    assert result["n_tasks"] == 4 and len(result["returns_by_step"]) == 3
    assert len(result["tasks"]) == 4 and all(len(r) == 4 for r in result["returns_by_task"])
    np.testing.assert_allclose(np.mean(result["returns_by_task"], axis=1), result["returns_by_step"], rtol=1e-6)
    assert result == algo.meta_test(), "the meta-test uses a fixed seed"
    table = algo.format_metatest(result)
    assert "adaptation steps" in table and table.count("\n") == 5


@pytest.mark.parametrize("field,value,message", [
    ("inner_lr", 0.0, "inner_lr must be a positive number"),
    ("inner_lr", -0.1, "inner_lr must be a positive number"),
    ("max_kl", float("nan"), "max_kl must be a positive number"),
    ("meta_batch_size", 0, "meta_batch_size must be a positive integer"),
    ("episodes_per_task", -2, "episodes_per_task must be a positive integer"),
    ("max_episode_steps", 0, "max_episode_steps must be a positive integer"),
    ("gamma", 1.5, "gamma"),
])
def test_invalid_hyperparameters_are_rejected(tiny_maml_config, field, value, message):
    cfg = dataclasses.replace(tiny_maml_config, **{field: value})
    with pytest.raises(ValueError, match=message):
        MAMLTRPO(cfg)


def test_divergent_inner_step_stops_with_a_message(tiny_maml_config):
    torch.manual_seed(0)
    algo = MAMLTRPO(dataclasses.replace(tiny_maml_config, inner_lr=1e38))
    with pytest.raises(NonFiniteError, match="non-finite (action from the policy|adapted policy parameter)"):
        algo.meta_train_step(np.random.default_rng(0))


def test_discrete_actions_and_value_network_baseline(tiny_maml_config):
    """Categorical policy (TabularMDP's Discrete actions) and the MLP value-network baseline option."""
    from metarl.networks import CategoricalMLPPolicy

    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_maml_config, env="metarl/TabularMDP-v0", max_episode_steps=None, baseline="value")
    algo = MAMLTRPO(cfg)
    assert isinstance(algo.policy, CategoricalMLPPolicy)
    metrics = algo.meta_train_step(np.random.default_rng(0))
    assert metrics["samples"] == 2 * 3 * 4 * 10 and metrics["train/step_accepted"] == 1.0
    assert "value_net" in algo.state_dict()


def test_fisher_vector_product_equals_kl_hessian_through_the_inner_step(tiny_maml_config):
    """J^T F J (forward-mode through the inner step) == double backprop of the mean KL through adaptation."""
    from metarl.trpo import fisher_vector_product_fn, flat

    torch.manual_seed(0)
    algo = MAMLTRPO(tiny_maml_config)
    rng = np.random.default_rng(0)
    tasks = algo.sampler.sample_tasks(3, rng)
    params = algo.meta_params()
    train = algo.task_batch(algo.sampler.sample(algo.act_fn(params, False), tasks, 4, rng))
    with torch.no_grad():
        adapted = algo.adapt(detach_params(params), train, steps=1, first_order=True)
    valid = algo.task_batch(algo.sampler.sample(algo.act_fn(adapted, True), tasks, 4, rng))
    with torch.no_grad():
        old = algo._dist(adapted, valid["observations"], batched=True).detach()
    _, kl = algo._surrogate(params, [train], [valid], [old.log_prob(valid["actions"])], [old], first_order=False)
    reference = fisher_vector_product_fn(kl, list(params.values()), damping=tiny_maml_config.cg_damping)
    ours = algo.fisher_vector_product(params, [train], [valid], [adapted], [old])
    v = torch.randn(flat(list(params.values())).numel(), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(v), reference(v), atol=1e-6, rtol=1e-4)


def _two_step_batches(algo, params, n_tasks=3, episodes=4):
    """Support episodes of two inner steps (each from the policies adapted so far), the adapted parameters after
    each, and the query episodes: what ``meta_train_step`` samples with ``inner_steps=2``."""
    rng = np.random.default_rng(0)
    tasks = algo.sampler.sample_tasks(n_tasks, rng)
    state, batched, supports, states = detach_params(params), False, [], []
    for step in range(2):
        batch = algo.task_batch(algo.sampler.sample(algo.act_fn(state, batched), tasks, episodes, rng))
        with torch.no_grad():
            state = algo.adapt(state, batch, steps=1, first_order=True, batched_params=batched,
                               step_size=algo.step_size(params, step))
        supports.append(batch)
        states.append(state)
        batched = True
    valid = algo.task_batch(algo.sampler.sample(algo.act_fn(state, True), tasks, episodes, rng))
    return supports, states, valid


@pytest.mark.parametrize("multi_step_loss,learn_step_sizes", [(False, False), (True, False), (True, True)])
def test_fisher_vector_product_through_two_inner_steps_on_fresh_episodes(tiny_maml_config, multi_step_loss,
                                                                         learn_step_sizes):
    """With --inner-steps 2 (each step on the episodes of the policies adapted so far) the forward-mode product
    still equals double backprop of the mean KL, with the multi-step loss's two query batches and learned
    per-step step sizes (meta-parameters the inner steps depend on) too."""
    from metarl.trpo import fisher_vector_product_fn, flat

    torch.manual_seed(0)
    algo = MAMLTRPO(dataclasses.replace(tiny_maml_config, inner_steps=2, multi_step_loss=multi_step_loss,
                                        learn_step_sizes=learn_step_sizes))
    params = algo.meta_params()
    supports, states, valid = _two_step_batches(algo, params)
    queries = [supports[1], valid] if multi_step_loss else [valid]
    sampled_by = states[-len(queries):]
    with torch.no_grad():
        olds = [algo._dist(s, q["observations"], batched=True).detach() for s, q in zip(sampled_by, queries)]
    _, kl = algo._surrogate(params, supports, queries, [o.log_prob(q["actions"]) for o, q in zip(olds, queries)], olds,
                            first_order=False)
    reference = fisher_vector_product_fn(kl, list(params.values()), damping=tiny_maml_config.cg_damping)
    ours = algo.fisher_vector_product(params, supports, queries, sampled_by, olds)
    v = torch.randn(flat(list(params.values())).numel(), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(v), reference(v), atol=1e-6, rtol=1e-4)
    metrics = algo.meta_train_step(np.random.default_rng(1))
    assert metrics["train/step_accepted"] == 1.0 and "rollout/return_after_1_steps" in metrics
    if learn_step_sizes:
        assert "log_step_sizes" in algo.policy.state_dict()
        assert metrics["train/step_size_1"] != metrics["train/step_size_2"], "each step's size is learned"


def test_multi_step_weights_weigh_each_inner_steps_loss(tiny_maml_config):
    torch.manual_seed(0)
    algo = MAMLTRPO(dataclasses.replace(tiny_maml_config, inner_steps=2, multi_step_loss=True, learn_step_sizes=True,
                                        multi_step_weights=(3.0, 1.0)))
    params = algo.meta_params()
    supports, states, valid = _two_step_batches(algo, params)
    queries = [supports[1], valid]
    with torch.no_grad():
        olds = [algo._dist(s, q["observations"], batched=True).detach() for s, q in zip(states, queries)]
    old_lps = [o.log_prob(q["actions"]) for o, q in zip(olds, queries)]
    both, _ = algo._surrogate(params, supports, queries, old_lps, olds, first_order=False)
    first, _ = algo._surrogate(params, supports[:1], queries[:1], old_lps[:1], olds[:1], first_order=False)
    second, _ = algo._surrogate(params, supports, queries[1:], old_lps[1:], olds[1:], first_order=False)
    torch.testing.assert_close(both, 0.75 * first + 0.25 * second)
    with pytest.raises(ValueError, match="one non-negative weight per inner step"):
        MAMLTRPO(dataclasses.replace(tiny_maml_config, inner_steps=2, multi_step_loss=True, multi_step_weights=(1.0,)))


@pytest.mark.parametrize("multi_step_loss", [False, True])
def test_logged_outer_step_matches_a_fresh_evaluation(tiny_maml_config, multi_step_loss, monkeypatch):
    """What meta_train_step reuses instead of recomputing (the support batches' sampling distributions as the
    queries' old policies and for the entropy; the line search's evaluation of the accepted step) equals a
    fresh computation: the old policies, the entropy and the surrogate and KL after the step."""
    torch.manual_seed(0)
    algo = MAMLTRPO(dataclasses.replace(tiny_maml_config, inner_steps=2, multi_step_loss=multi_step_loss,
                                        learn_step_sizes=True))
    start = {name: p.detach().clone() for name, p in algo.meta_params().items()}  # the step updates in place
    seen = {}
    outer_step = algo.outer_step

    def recording(params, train, queries, adapted, old_dists):
        seen.update(train=train, queries=queries, adapted=adapted, old_dists=old_dists)
        return outer_step(params, train, queries, adapted, old_dists)

    monkeypatch.setattr(algo, "outer_step", recording)
    metrics = algo.meta_train_step(np.random.default_rng(3))
    assert metrics["train/step_accepted"] == 1.0
    with torch.no_grad():
        for old, state, query in zip(seen["old_dists"], seen["adapted"], seen["queries"]):
            fresh = algo._dist(state, query["observations"], batched=True)
            for a, b in zip(old, fresh):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        entropy = masked_mean(algo._dist(start, seen["train"][0]["observations"], batched=False).entropy(),
                              seen["train"][0]["mask"])
        old_log_probs = [d.log_prob(q["actions"]) for d, q in zip(seen["old_dists"], seen["queries"])]
        loss, kl = algo._surrogate(algo.meta_params(), seen["train"], seen["queries"], old_log_probs,
                                   seen["old_dists"], True)
    assert metrics["train/entropy_loss"] == -float(entropy)
    assert metrics["train/surrogate_loss_after"] == float(loss) and metrics["train/approx_kl"] == float(kl)
