"""Classic baselines: Gittins indices against known values, policies' updates by hand, evaluation numbers."""

from __future__ import annotations

from functools import lru_cache

import gymnasium as gym
import numpy as np
import pytest

import metarl  # noqa: F401  (registers the families)
from metarl import Task
from metarl.agents.baselines import (
    BayesOptimalBanditPolicy,
    EpsilonGreedyPolicy,
    GittinsIndexPolicy,
    GreedyPolicy,
    PSRLPolicy,
    RandomPolicy,
    ThompsonSamplingPolicy,
    UCB1Policy,
    evaluate_baselines,
    finite_horizon_gittins_indices,
    gittins_indices,
)

BANDIT = "metarl/BernoulliBandit-v0"
MDP = "metarl/TabularMDP-v0"


# ---------------------------------------------------------------------------- Gittins indices


def test_discounted_gittins_index_matches_gittins_table():
    # Gittins (1979) / Gittins, Glazebrook and Weber (2011): Beta(1, 1) arm at discount 0.9 -> 0.7029.
    table = gittins_indices(0.9, 3)
    assert table[0, 0] == pytest.approx(0.7029, abs=5e-5)
    s, f = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    valid = s + f <= 3
    mean = (1 + s) / (2 + s + f)
    assert np.all(table[valid] > mean[valid])  # exploration bonus: index above the posterior mean
    assert np.all(np.diff(table[:, 0]) > 0) and np.all(np.diff(table[0, :]) < 0)
    assert np.isnan(table[3, 1])
    assert gittins_indices(0.95, 0)[0, 0] > table[0, 0]  # more patience, more value in learning


def test_finite_horizon_gittins_index_by_hand():
    table = finite_horizon_gittins_indices(8)
    for s in range(7):
        for f in range(7 - s):
            p = (1 + s) / (2 + s + f)
            p_after_success = (2 + s) / (3 + s + f)
            assert table[1, s, f] == pytest.approx(p, abs=1e-12)  # one pull left: the posterior mean
            # two pulls left: best of "pull once" (ratio p) and "pull again only after a success"
            assert table[2, s, f] == pytest.approx(p * (1 + p_after_success) / (1 + p), abs=1e-12)
    assert table[2, 0, 0] == pytest.approx(5 / 9, abs=1e-12)
    assert np.isnan(table[8, 1, 0]) and np.isnan(table[0, 0, 0])


def _bisection_index(s0: int, f0: int, left: int, iterations: int = 60) -> float:
    """Finite-horizon index by plain bisection on the retirement reward (the definition)."""
    lo, hi = 0.0, 1.0
    for _ in range(iterations):
        lam = (lo + hi) / 2

        @lru_cache(maxsize=None)
        def value(s: int, f: int, r: int) -> float:
            if r == 0:
                return 0.0
            p = (1 + s) / (2 + s + f)
            return max(lam * r, p * (1 + value(s + 1, f, r - 1)) + (1 - p) * value(s, f + 1, r - 1))

        p = (1 + s0) / (2 + s0 + f0)
        pull = p * (1 + value(s0 + 1, f0, left - 1)) + (1 - p) * value(s0, f0 + 1, left - 1)
        lo, hi = (lam, hi) if pull > lam * left else (lo, lam)
    return (lo + hi) / 2


def test_finite_horizon_gittins_index_matches_bisection():
    n = 7
    table = finite_horizon_gittins_indices(n)
    for r in range(1, n + 1):
        for s in range(n - r + 1):
            for f in range(n - r + 1 - s):
                assert table[r, s, f] == pytest.approx(_bisection_index(s, f, r), abs=1e-10)


def _index_policy_value(table: np.ndarray, k: int, n: int) -> float:
    """Exact expected total reward of the finite-horizon index policy (ties averaged)."""

    @lru_cache(maxsize=None)
    def value(state: tuple[tuple[int, int], ...], left: int) -> float:
        if left == 0:
            return 0.0
        index = [table[left, s, f] for s, f in state]
        best = [i for i, x in enumerate(index) if x == max(index)]
        total = 0.0
        for i in best:
            s, f = state[i]
            p = (1 + s) / (2 + s + f)
            up, down = list(state), list(state)
            up[i], down[i] = (s + 1, f), (s, f + 1)
            total += p * (1 + value(tuple(sorted(up)), left - 1)) + (1 - p) * value(tuple(sorted(down)), left - 1)
        return total / len(best)

    return value(((0, 0),) * k, n)


def test_gittins_policy_is_bayes_optimal_on_short_bandits():
    assert BayesOptimalBanditPolicy(2, 2).value() == pytest.approx(13 / 12)  # 1/2 + 1/2 * 2/3 + 1/2 * 1/2
    assert BayesOptimalBanditPolicy(1, 3).value() == pytest.approx(1.5)  # one arm: n times the prior mean
    optimum = BayesOptimalBanditPolicy(5, 10).value()
    assert optimum == pytest.approx(6.65999, abs=1e-5)
    # The finite-horizon Gittins policy attains the Bayes-optimal value for k = 5, n = 10.
    assert _index_policy_value(finite_horizon_gittins_indices(10), 5, 10) == pytest.approx(optimum, abs=1e-9)


def test_gittins_index_errors():
    with pytest.raises(ValueError, match="discount"):
        gittins_indices(1.0, 3)
    with pytest.raises(ValueError, match="discount"):
        finite_horizon_gittins_indices(5, discount=0.0)
    with pytest.raises(ValueError, match="prior"):
        finite_horizon_gittins_indices(5, prior=(0.0, 1.0))
    with pytest.raises(ValueError, match="max_observations"):
        gittins_indices(0.9, -1)


# ---------------------------------------------------------------------------- bandit policies


def _step(policy, actions, rewards, active=None):
    actions = np.asarray(actions)
    active = np.ones(len(actions), dtype=bool) if active is None else np.asarray(active)
    policy.update(None, actions, np.asarray(rewards, dtype=float), None, active)


def test_thompson_posterior_updates_by_hand():
    policy = ThompsonSamplingPolicy(3)
    policy.reset(2, np.random.default_rng(0))
    _step(policy, [0, 2], [1, 0])
    _step(policy, [0, 2], [1, 1])
    _step(policy, [1, 2], [0, 0], active=[True, False])  # the second trial's step is ignored
    alpha, beta = policy.posterior()
    np.testing.assert_array_equal(alpha, [[3, 1, 1], [1, 1, 2]])
    np.testing.assert_array_equal(beta, [[1, 2, 1], [1, 1, 2]])
    # act draws one Beta sample per arm from the posterior and pulls the largest
    policy.rng = np.random.default_rng(7)
    expected = np.argmax(np.random.default_rng(7).beta(alpha, beta), axis=1)
    np.testing.assert_array_equal(policy.act(None), expected)
    with pytest.raises(ValueError, match="Bernoulli"):
        _step(policy, [0, 0], [0.5, 1])


def test_thompson_prefers_an_arm_with_many_successes():
    policy = ThompsonSamplingPolicy(2)
    policy.reset(1000, np.random.default_rng(1))
    for _ in range(20):
        _step(policy, np.zeros(1000, dtype=int), np.ones(1000))
    assert np.mean(policy.act(None) == 0) > 0.95  # Beta(21, 1) beats Beta(1, 1) with probability 21/22


def test_ucb1_pulls_every_arm_once_first_then_the_upper_bound():
    k, trials = 6, 50
    policy = UCB1Policy(k, c=1.0)
    policy.reset(trials, np.random.default_rng(2))
    rewards = np.random.default_rng(3).integers(0, 2, size=(k, trials))
    for t in range(k):
        actions = policy.act(None)
        _step(policy, actions, rewards[t])
    np.testing.assert_array_equal(policy.pulls, np.ones((trials, k)))
    means = policy.successes / policy.pulls
    expected_values = means + np.sqrt(2 * np.log(k) / 1.0)
    chosen = policy.act(None)
    np.testing.assert_array_equal(expected_values[np.arange(trials), chosen], expected_values.max(axis=1))


def test_greedy_and_gittins_win_stay_lose_shift_on_two_pulls():
    for policy in (GreedyPolicy(3), GittinsIndexPolicy(3, horizon=2)):
        policy.reset(2, np.random.default_rng(4))
        first = policy.act(None)
        _step(policy, first, [1, 0])
        second = policy.act(None)
        assert second[0] == first[0] and second[1] != first[1]


def test_gittins_policy_uses_the_pulls_left():
    policy = GittinsIndexPolicy(2, horizon=10)
    policy.reset(1, np.random.default_rng(5))
    # arm 0: 1 success, 1 failure (posterior mean 1/2, well explored); arm 1 untried (mean 1/2)
    _step(policy, [0], [1])
    _step(policy, [0], [0])
    assert policy.act(None)[0] == 1  # with 8 pulls left the untried arm is worth more
    table = policy.table
    assert table[8, 0, 0] > table[8, 1, 1]


def test_epsilon_greedy_extremes():
    always_random = EpsilonGreedyPolicy(4, epsilon=1.0)
    always_random.reset(4000, np.random.default_rng(6))
    counts = np.bincount(always_random.act(None), minlength=4)
    assert counts.min() > 850  # uniform: 1000 expected per arm
    greedy = EpsilonGreedyPolicy(3, epsilon=0.0)
    greedy.reset(2, np.random.default_rng(6))
    _step(greedy, [1, 2], [1, 1])
    np.testing.assert_array_equal(greedy.act(None), [1, 2])
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedyPolicy(3, epsilon=1.5)


def test_bayes_optimal_policy_acts_like_the_dynamic_program():
    policy = BayesOptimalBanditPolicy(3, horizon=3)
    policy.reset(2, np.random.default_rng(8))
    _step(policy, [2, 0], [1, 0])
    actions = policy.act(None)
    assert actions[0] == 2 and actions[1] in (1, 2)


# ---------------------------------------------------------------------------- PSRL


def test_psrl_posterior_by_hand():
    policy = PSRLPolicy(num_states=2, num_actions=2, horizon=3)
    policy.reset(1, np.random.default_rng(0))
    policy.start_episode()
    eye = np.eye(2)
    policy.update(eye[[0]], np.array([1]), np.array([3.0]), eye[[1]], np.array([True]))
    policy.update(eye[[0]], np.array([1]), np.array([1.0]), eye[[1]], np.array([True]))
    np.testing.assert_array_equal(policy.transition_counts[0, 0, 1], [0, 2])
    mean, std = policy.reward_posterior()
    # prior N(1, 1), two unit-noise observations 3 and 1: precision 3, mean (1 + 3 + 1) / 3
    assert mean[0, 0, 1] == pytest.approx(5 / 3) and std[0, 0, 1] == pytest.approx(3 ** -0.5)
    assert mean[0, 1, 0] == 1.0 and std[0, 1, 0] == 1.0
    noiseless = PSRLPolicy(num_states=2, num_actions=2, horizon=3, reward_noise_std=0.0)
    noiseless.reset(1, np.random.default_rng(0))
    noiseless.start_episode()
    noiseless.update(eye[[0]], np.array([1]), np.array([3.0]), eye[[1]], np.array([True]))
    mean, std = noiseless.reward_posterior()
    assert mean[0, 0, 1] == 3.0 and std[0, 0, 1] == 0.0


@pytest.mark.parametrize("prior, counts", [(1.0, [3.0, 0.0]), (0.1, [0.0, 0.0])])
def test_psrl_transition_samples_are_dirichlet(prior, counts):
    policy = PSRLPolicy(num_states=2, num_actions=1, horizon=2, transition_prior=prior)
    policy.reset(20000, np.random.default_rng(2))
    policy.transition_counts[:, 0, 0] = counts
    transitions, _ = policy.sample_mdp()
    alpha = prior + np.array(counts)
    mean = alpha[0] / alpha.sum()
    variance = alpha[0] * alpha[1] / (alpha.sum() ** 2 * (alpha.sum() + 1))
    x = transitions[:, 0, 0, 0]
    assert np.all(np.isfinite(transitions)) and np.allclose(transitions.sum(-1), 1.0)
    assert abs(x.mean() - mean) < 5 * np.sqrt(variance / len(x))
    assert abs(x.var() - variance) < 0.05 * variance


def test_psrl_follows_a_known_mdp_optimally():
    # Action 1 in state 0 pays 5 and stays; everything else pays 0. With noiseless rewards and a
    # posterior sharpened on the true (deterministic) transitions, PSRL exploits it.
    policy = PSRLPolicy(num_states=2, num_actions=2, horizon=4, transition_prior=1e-3, reward_noise_std=0.0)
    policy.reset(1, np.random.default_rng(1))
    eye = np.eye(2)
    for a, r in ((0, 0.0), (1, 5.0)):
        for _ in range(50):
            policy.update(eye[[0]], np.array([a]), np.array([r]), eye[[0]], np.array([True]))
    policy.start_episode()
    assert policy.act(eye[[0]])[0] == 1
    with pytest.raises(RuntimeError, match="start_episode"):
        fresh = PSRLPolicy(2, 2, 4)
        fresh.reset(1, np.random.default_rng(0))
        fresh.act(eye[[0]])


def test_psrl_beats_random_on_tabular_mdps():
    tasks = gym.make(MDP).unwrapped.sample_tasks(100, np.random.default_rng(0))
    results = evaluate_baselines(MDP, {}, tasks, 10, np.random.default_rng(1))
    assert set(results) == {"random", "psrl"}
    random, psrl = results["random"], results["psrl"]
    assert random.mean_episode_returns.shape == (10,) and random.total_returns.shape == (100,)
    # Measured: random about 101, PSRL about 133 (stderr about 2 each over 100 tasks).
    assert psrl.mean_total_return > random.mean_total_return + 15
    assert psrl.mean_episode_returns[-3:].mean() > psrl.mean_episode_returns[:2].mean() + 2  # it learns


# ---------------------------------------------------------------------------- evaluation


def test_bandit_baselines_sanity_numbers():
    tasks = gym.make(BANDIT).unwrapped.sample_tasks(1000, np.random.default_rng(0))
    results = evaluate_baselines(BANDIT, {"k": 5, "n": 10}, tasks, 1, np.random.default_rng(1))
    means = {name: r.mean_total_return for name, r in results.items()}
    assert set(means) == {"random", "greedy", "epsilon_greedy", "ucb1", "thompson", "gittins", "bayes_optimal"}
    # Expected values: random 5, Bayes-optimal (= Gittins here) 6.66; stderr about 0.07 over 1000 tasks.
    assert means["random"] == pytest.approx(5.0, abs=0.25)
    assert means["gittins"] == pytest.approx(6.66, abs=0.25)
    assert means["bayes_optimal"] == pytest.approx(6.66, abs=0.25)
    assert 5.4 < means["thompson"] < 6.3  # the RL^2 paper reports 5.7
    assert means["gittins"] > means["thompson"] + 0.4 and means["gittins"] > means["ucb1"] + 0.4


def test_evaluate_baselines_is_reproducible_and_checks_arguments():
    tasks = gym.make(BANDIT).unwrapped.sample_tasks(20, np.random.default_rng(0))
    baselines = {"random": RandomPolicy(5), "thompson": ThompsonSamplingPolicy(5)}
    first = evaluate_baselines(BANDIT, None, tasks, 2, np.random.default_rng(3), baselines)
    again = evaluate_baselines(BANDIT, None, tasks, 2, np.random.default_rng(3), baselines)
    for name in baselines:
        np.testing.assert_array_equal(first[name].total_returns, again[name].total_returns)
        assert first[name].mean_episode_returns.shape == (2,)
    with pytest.raises(ValueError, match="episodes_per_trial"):
        evaluate_baselines(BANDIT, None, tasks, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no default baselines"):
        nav_tasks = gym.make("metarl/Navigation2D-v0").unwrapped.sample_tasks(2, np.random.default_rng(0))
        evaluate_baselines("metarl/Navigation2D-v0", None, nav_tasks, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least one task"):
        evaluate_baselines(BANDIT, None, [], 1, np.random.default_rng(0))


def test_baselines_learn_within_a_multi_episode_bandit_trial():
    # Thompson sampling keeps its posterior across the episodes of a trial, so later episodes pay more.
    tasks = [Task.create("BernoulliBandit", means=m)
             for m in np.random.default_rng(0).uniform(size=(300, 5))]
    results = evaluate_baselines(BANDIT, {"k": 5, "n": 5}, tasks, 4, np.random.default_rng(2),
                                 {"thompson": ThompsonSamplingPolicy(5)})
    episode_means = results["thompson"].mean_episode_returns
    assert episode_means[-1] > episode_means[0] + 0.3
