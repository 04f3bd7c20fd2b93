"""Classic bandit policies (random, greedy, epsilon-greedy, UCB1, Thompson sampling, Gittins, Bayes-optimal) and the
:class:`BaselinePolicy` interface every baseline implements (see :mod:`metarl.agents.baselines`)."""

from __future__ import annotations

import abc
import math

import numpy as np

from metarl.agents.gittins import _check_prior, finite_horizon_gittins_indices, gittins_indices
from metarl.tasks import check_positive_int, check_rng

__all__ = ["BaselinePolicy", "RandomPolicy", "BetaBernoulliBanditPolicy", "GreedyPolicy", "EpsilonGreedyPolicy",
           "UCB1Policy", "ThompsonSamplingPolicy", "GittinsIndexPolicy", "BayesOptimalBanditPolicy"]


def _argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax of ``values`` (B, n), ties broken uniformly at random."""
    is_max = values == values.max(axis=1, keepdims=True)
    return np.argmax(np.where(is_max, rng.random(values.shape), -1.0), axis=1)


class BaselinePolicy(abc.ABC):
    """A non-learned-by-gradient policy run on a batch of independent trials.

    Call order: ``reset`` once per batch of trials, then per episode ``start_episode`` and per
    step ``act`` followed by ``update``. Learning state persists across episodes until ``reset``.
    """

    num_envs: int = 0
    rng: np.random.Generator

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Start ``num_envs`` fresh trials (forget everything); ``rng`` drives the policy's own randomness."""
        self.num_envs = check_positive_int("num_envs", num_envs)
        self.rng = check_rng(rng)

    def start_episode(self) -> None:
        """A new episode of the same trials begins (learning state is kept)."""

    @abc.abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``(num_envs,)`` (int64) for observations ``obs`` batched on axis 0."""

    def update(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
               active: np.ndarray) -> None:
        """Learn from one step of every trial; rows where ``active`` is False are ignored."""

    def _check_batch(self, name: str, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if array.shape[:1] != (self.num_envs,):
            raise ValueError(f"{name} must be batched over {self.num_envs} trials, got shape {array.shape}")
        return array


class RandomPolicy(BaselinePolicy):
    """Uniformly random actions from ``Discrete(num_actions)``."""

    def __init__(self, num_actions: int):
        self.num_actions = check_positive_int("num_actions", num_actions)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.integers(self.num_actions, size=self.num_envs)


class BetaBernoulliBanditPolicy(BaselinePolicy):
    """Base of the bandit policies: per-arm success/failure counts and the Beta posterior.

    Args:
        num_arms: arms of the bandit.
        prior: ``(alpha, beta)`` of the Beta prior on every arm's mean (Beta(1, 1) = U[0, 1],
            the BernoulliBandit family's task distribution).
    """

    def __init__(self, num_arms: int, prior: tuple[float, float] = (1.0, 1.0)):
        self.num_arms = check_positive_int("num_arms", num_arms)
        self.prior = _check_prior(prior)
        self.successes = np.zeros((0, self.num_arms))
        self.failures = np.zeros((0, self.num_arms))

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        super().reset(num_envs, rng)
        self.successes = np.zeros((self.num_envs, self.num_arms))
        self.failures = np.zeros((self.num_envs, self.num_arms))

    @property
    def pulls(self) -> np.ndarray:
        """Pulls of each arm so far, ``(num_envs, num_arms)``."""
        return self.successes + self.failures

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha, beta)`` of every arm's Beta posterior, each ``(num_envs, num_arms)``."""
        return self.prior[0] + self.successes, self.prior[1] + self.failures

    def posterior_mean(self) -> np.ndarray:
        """Every arm's posterior mean, ``(num_envs, num_arms)``."""
        alpha, beta = self.posterior()
        return alpha / (alpha + beta)

    def update(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
               active: np.ndarray) -> None:
        actions = self._check_batch("actions", actions).astype(np.int64)
        rewards = self._check_batch("rewards", rewards)
        active = self._check_batch("active", active).astype(bool)
        if not np.all((rewards[active] == 0) | (rewards[active] == 1)):
            raise ValueError(f"{type(self).__name__} models Bernoulli arms and needs rewards in {{0, 1}}, "
                             f"got {np.unique(rewards[active])[:5]}")
        rows = np.flatnonzero(active)
        self.successes[rows, actions[rows]] += rewards[rows]
        self.failures[rows, actions[rows]] += 1.0 - rewards[rows]


class EpsilonGreedyPolicy(BetaBernoulliBanditPolicy):
    """With probability ``epsilon`` a uniformly random arm, else the highest posterior mean.

    Args:
        num_arms: arms of the bandit.
        epsilon: exploration probability in [0, 1].
        prior: Beta prior ``(alpha, beta)``; an unpulled arm's posterior mean is the prior mean.
    """

    def __init__(self, num_arms: int, epsilon: float = 0.1, prior: tuple[float, float] = (1.0, 1.0)):
        super().__init__(num_arms, prior)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = float(epsilon)

    def act(self, obs: np.ndarray) -> np.ndarray:
        greedy = _argmax_random_ties(self.posterior_mean(), self.rng)
        if self.epsilon == 0.0:
            return greedy
        explore = self.rng.random(self.num_envs) < self.epsilon
        return np.where(explore, self.rng.integers(self.num_arms, size=self.num_envs), greedy)


class GreedyPolicy(EpsilonGreedyPolicy):
    """Always the arm with the highest posterior mean (epsilon-greedy with ``epsilon = 0``)."""

    def __init__(self, num_arms: int, prior: tuple[float, float] = (1.0, 1.0)):
        super().__init__(num_arms, epsilon=0.0, prior=prior)


class UCB1Policy(BetaBernoulliBanditPolicy):
    """UCB1 (Auer, Cesa-Bianchi and Fischer 2002).

    Pulls every arm once (in random order), then the arm maximising
    ``empirical mean + c * sqrt(2 ln t / pulls)``, ``t`` being the pulls so far in the trial.

    Args:
        num_arms: arms of the bandit.
        c: exploration scale (1 is the original UCB1).
    """

    def __init__(self, num_arms: int, c: float = 1.0):
        super().__init__(num_arms)
        if not (math.isfinite(c) and c >= 0):
            raise ValueError(f"c must be finite and >= 0, got {c}")
        self.c = float(c)

    def act(self, obs: np.ndarray) -> np.ndarray:
        pulls = self.pulls
        total = pulls.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ucb = self.successes / pulls + self.c * np.sqrt(2.0 * np.log(np.maximum(total, 1.0)) / pulls)
        ucb = np.where(pulls == 0, np.inf, ucb)
        return _argmax_random_ties(ucb, self.rng)


class ThompsonSamplingPolicy(BetaBernoulliBanditPolicy):
    """Thompson sampling: one draw from every arm's Beta posterior, pull the largest."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        alpha, beta = self.posterior()
        return np.argmax(self.rng.beta(alpha, beta), axis=1)


class GittinsIndexPolicy(BetaBernoulliBanditPolicy):
    """Pull the arm with the largest Beta-Bernoulli Gittins index.

    Args:
        num_arms: arms of the bandit.
        horizon: pulls per trial.
        discount: ``None`` (default) for the finite-horizon undiscounted index with the pulls
            left in the trial (:func:`finite_horizon_gittins_indices`); a float in (0, 1) for the
            classic discounted index (:func:`gittins_indices`), the same at every pull.
        prior: Beta prior ``(alpha, beta)``.
        grid_size: lambda grid points for the index computation.
    """

    def __init__(self, num_arms: int, horizon: int, discount: float | None = None,
                 prior: tuple[float, float] = (1.0, 1.0), grid_size: int = 1024):
        super().__init__(num_arms, prior)
        self.horizon = check_positive_int("horizon", horizon)
        self.discount = discount
        if discount is None:
            self.table = finite_horizon_gittins_indices(self.horizon, 1.0, self.prior, grid_size)
        else:
            self.table = gittins_indices(discount, self.horizon - 1, self.prior, grid_size=grid_size)

    def act(self, obs: np.ndarray) -> np.ndarray:
        s = self.successes.astype(np.int64)
        f = self.failures.astype(np.int64)
        done = s.sum(axis=1) + f.sum(axis=1)
        if np.any(done >= self.horizon):
            raise RuntimeError(f"a trial has already made its {self.horizon} pulls; reset the policy")
        if self.discount is None:
            remaining = (self.horizon - done)[:, None]
            index = self.table[remaining, s, f]
        else:
            index = self.table[s, f]
        return _argmax_random_ties(index, self.rng)


class BayesOptimalBanditPolicy(BetaBernoulliBanditPolicy):
    """The exact Bayes-optimal policy for ``horizon`` pulls, by dynamic programming over posteriors.

    The state is the multiset of per-arm ``(successes, failures)`` (arms are exchangeable under
    the prior), and ``V(state, pulls left)`` is computed by memoised backward induction. The
    number of states grows quickly with the horizon (3.5 thousand for ``k=5, n=10``, 350 thousand
    for ``k=5, n=20``), so this is for short trials; it is the ceiling any policy, an RL^2 one
    included, can reach in expectation on tasks drawn from the prior.

    Args:
        num_arms: arms of the bandit.
        horizon: pulls per trial.
        prior: Beta prior ``(alpha, beta)`` on every arm's mean.
    """

    def __init__(self, num_arms: int, horizon: int, prior: tuple[float, float] = (1.0, 1.0)):
        super().__init__(num_arms, prior)
        self.horizon = check_positive_int("horizon", horizon)
        self._values: dict[tuple[tuple[tuple[int, int], ...], int], float] = {}

    def _arm_values(self, state: tuple[tuple[int, int], ...], left: int) -> np.ndarray:
        """Expected total reward of pulling each arm now and acting optimally after."""
        a0, b0 = self.prior
        out = np.empty(len(state))
        for i, (s, f) in enumerate(state):
            if i > 0 and state[i - 1] == (s, f):  # states are sorted: same arm state, same value
                out[i] = out[i - 1]
                continue
            p = (a0 + s) / (a0 + b0 + s + f)
            after = list(state)
            after[i] = (s + 1, f)
            success = self.value(tuple(sorted(after)), left - 1)
            after[i] = (s, f + 1)
            failure = self.value(tuple(sorted(after)), left - 1)
            out[i] = p * (1.0 + success) + (1.0 - p) * failure
        return out

    def value(self, state: tuple[tuple[int, int], ...] | None = None, left: int | None = None) -> float:
        """Bayes-optimal expected reward of the ``left`` remaining pulls from posterior ``state``.

        ``state`` is a sorted tuple of per-arm ``(successes, failures)``; the defaults give the
        value of a whole trial from the prior.
        """
        if state is None:
            state = ((0, 0),) * self.num_arms
        left = self.horizon if left is None else left
        if left == 0:
            return 0.0
        key = (state, left)
        if key not in self._values:
            self._values[key] = float(self._arm_values(state, left).max())
        return self._values[key]

    def act(self, obs: np.ndarray) -> np.ndarray:
        s = self.successes.astype(np.int64)
        f = self.failures.astype(np.int64)
        actions = np.empty(self.num_envs, dtype=np.int64)
        for b in range(self.num_envs):
            left = self.horizon - int(s[b].sum() + f[b].sum())
            if left <= 0:
                raise RuntimeError(f"a trial has already made its {self.horizon} pulls; reset the policy")
            order = np.lexsort((f[b], s[b]))  # arm order of the sorted state
            state = tuple((int(s[b, i]), int(f[b, i])) for i in order)
            values = np.empty(self.num_arms)
            values[order] = self._arm_values(state, left)
            best = np.flatnonzero(values >= values.max() - 1e-12)
            actions[b] = best[self.rng.integers(len(best))]
        return actions
