"""Posterior sampling for RL (PSRL), the tabular-MDP baseline of RL^2 (see :mod:`metarl.agents.baselines`)."""

from __future__ import annotations

import numpy as np

from metarl.agents.classic_policies import BaselinePolicy
from metarl.tasks import check_positive_int

__all__ = ["PSRLPolicy"]


class PSRLPolicy(BaselinePolicy):
    """Posterior sampling for RL on a tabular MDP with one-hot state observations.

    Prior (the TabularMDP family's task distribution): every transition row
    ``Dirichlet(transition_prior * 1)``, every mean reward ``Normal(reward_prior_mean,
    reward_prior_std**2)``, observed rewards the mean plus ``Normal(0, reward_noise_std**2)``.
    Both posteriors are conjugate. At each episode start one MDP is sampled per trial and
    solved by finite-horizon value iteration over ``horizon`` steps; the policy is then fixed
    for the episode (time-dependent, as the optimal finite-horizon policy is).

    Args:
        num_states: states of the MDP (observations are one-hot of this length).
        num_actions: actions.
        horizon: steps per episode.
        transition_prior: Dirichlet concentration of every entry (1 = flat).
        reward_prior_mean: prior mean of every mean reward.
        reward_prior_std: prior standard deviation of every mean reward.
        reward_noise_std: standard deviation of observed rewards around their mean (0 = noiseless).
    """

    def __init__(self, num_states: int, num_actions: int, horizon: int, transition_prior: float = 1.0,
                 reward_prior_mean: float = 1.0, reward_prior_std: float = 1.0, reward_noise_std: float = 1.0):
        self.num_states = check_positive_int("num_states", num_states)
        self.num_actions = check_positive_int("num_actions", num_actions)
        self.horizon = check_positive_int("horizon", horizon)
        if not (transition_prior > 0 and reward_prior_std > 0 and reward_noise_std >= 0):
            raise ValueError("need transition_prior > 0, reward_prior_std > 0 and reward_noise_std >= 0, got "
                             f"{transition_prior}, {reward_prior_std}, {reward_noise_std}")
        self.transition_prior = float(transition_prior)
        self.reward_prior_mean = float(reward_prior_mean)
        self.reward_prior_std = float(reward_prior_std)
        self.reward_noise_std = float(reward_noise_std)
        self._t = 0
        self.policy: np.ndarray | None = None

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        super().reset(num_envs, rng)
        s, a = self.num_states, self.num_actions
        self.transition_counts = np.zeros((self.num_envs, s, a, s))
        self.reward_counts = np.zeros((self.num_envs, s, a))
        self.reward_sums = np.zeros((self.num_envs, s, a))
        self.policy = None

    def reward_posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of every mean reward's Normal posterior, each ``(B, S, A)``."""
        prior_precision = self.reward_prior_std ** -2
        if self.reward_noise_std == 0.0:  # one observation reveals the mean exactly
            seen = self.reward_counts > 0
            mean = np.where(seen, self.reward_sums / np.maximum(self.reward_counts, 1), self.reward_prior_mean)
            return mean, np.where(seen, 0.0, self.reward_prior_std)
        precision = prior_precision + self.reward_counts * self.reward_noise_std ** -2
        mean = (prior_precision * self.reward_prior_mean + self.reward_sums * self.reward_noise_std ** -2) / precision
        return mean, precision ** -0.5

    def sample_mdp(self) -> tuple[np.ndarray, np.ndarray]:
        """One posterior sample per trial: transitions ``(B, S, A, S)`` and mean rewards ``(B, S, A)``."""
        # Dirichlet rows as normalised Gamma draws, in log space with the boost
        # Gamma(a) = Gamma(a + 1) * U**(1/a): plain Gamma draws underflow to 0 for small concentrations.
        concentration = self.transition_prior + self.transition_counts
        log_gammas = (np.log(self.rng.standard_gamma(concentration + 1.0))
                      + np.log1p(-self.rng.random(concentration.shape)) / concentration)
        weights = np.exp(log_gammas - log_gammas.max(axis=-1, keepdims=True))
        transitions = weights / weights.sum(axis=-1, keepdims=True)
        mean, std = self.reward_posterior()
        return transitions, mean + std * self.rng.standard_normal(mean.shape)

    def start_episode(self) -> None:
        transitions, rewards = self.sample_mdp()
        # Finite-horizon value iteration; policy[:, t, s] is the action at step t in state s.
        self.policy = np.zeros((self.num_envs, self.horizon, self.num_states), dtype=np.int64)
        value = np.zeros((self.num_envs, self.num_states))
        for t in range(self.horizon - 1, -1, -1):
            q = rewards + np.einsum("bsan,bn->bsa", transitions, value)
            self.policy[:, t] = np.argmax(q, axis=-1)
            value = np.max(q, axis=-1)
        self._t = 0

    def _states(self, obs: np.ndarray) -> np.ndarray:
        obs = self._check_batch("obs", obs)
        if obs.shape[1:] != (self.num_states,):
            raise ValueError(f"PSRL needs one-hot state observations of length {self.num_states}, got {obs.shape}")
        return np.argmax(obs, axis=1)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.policy is None:
            raise RuntimeError("call start_episode() after reset() before acting")
        t = min(self._t, self.horizon - 1)
        return self.policy[np.arange(self.num_envs), t, self._states(obs)]

    def update(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
               active: np.ndarray) -> None:
        rows = np.flatnonzero(self._check_batch("active", active))
        s, s_next = self._states(obs)[rows], self._states(next_obs)[rows]
        a = self._check_batch("actions", actions).astype(np.int64)[rows]
        r = self._check_batch("rewards", rewards)[rows]
        self.transition_counts[rows, s, a, s_next] += 1.0
        self.reward_counts[rows, s, a] += 1.0
        self.reward_sums[rows, s, a] += r
        self._t += 1


# --------------------------------------------------------------------------------------------
# Baseline sets and evaluation
# --------------------------------------------------------------------------------------------
