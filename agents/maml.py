"""MAML for reinforcement learning (Finn et al. 2017) with two outer optimisers: TRPO and PPO.

Per meta-iteration (:meth:`MAMLBase.meta_train_step`, shared by both): sample ``meta_batch_size``
tasks; roll out ``episodes_per_task`` episodes of each with the meta-policy (pre-adaptation);
adapt with ``num_inner_steps`` vanilla policy-gradient steps (the shared core,
:func:`metarl.adaptation.adapt_batch`, vmapped over tasks); roll out fresh episodes with each
adapted policy (post-adaptation). The outer optimiser then updates the meta-policy on a
post-adaptation surrogate loss, differentiated *through* the inner step (second order by default):

- :class:`MAMLTRPO` (Finn et al. 2017): one natural-gradient step in a KL trust region
  (conjugate gradient + backtracking line search).
- :class:`MAMLPPO`: the outer step of ProMP (Rothfuss et al. 2019): ``ppo_epochs`` Adam steps
  on the clipped likelihood-ratio objective over the same episodes; ProMP's inner-KL penalty is
  off by default (``inner_kl_coef``). What differs from ProMP is listed in ``docs/maml_ppo.md``.

Defaults follow the original code's 2-D navigation settings; :data:`FAMILY_DEFAULTS` holds the
original code's HalfCheetah settings, applied by the command line.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.func import grad, jvp, vjp, vmap

from metarl.adaptation import Params, adapt_batch, detach_params, functional_forward
from metarl.config import field
from metarl.networks import LinearFeatureBaseline, ValueNetwork, make_policy
from metarl.returns import discounted_returns, gae, masked_mean, masked_normalize
from metarl.sampler import Episodes, EpisodeSampler
from metarl.tasks import check_positive_int, tasks_to_json
from metarl.training import MetaAlgorithm, check_finite, check_validation_seed
from metarl.trpo import backtracking_line_search, conjugate_gradient, flat, unflat_like

__all__ = [
    "MAMLBaseConfig",
    "MAMLConfig",
    "MAMLPPOConfig",
    "MAMLBase",
    "MAMLTRPO",
    "MAMLPPO",
    "FAMILY_DEFAULTS",
    "family_defaults",
    "default_iterations",
]

Batch = dict[str, torch.Tensor]


def _check_positive_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


@dataclass
class MAMLBaseConfig:
    """Settings shared by every MAML-RL outer optimiser (defaults: the original code's 2-D navigation run)."""

    env: str = field("metarl/Navigation2D-v0", "task family id (or 'module:Id-v0' for your own family)")
    env_kwargs: dict = field({}, "constructor kwargs of the family, e.g. {'goal_high': 1.0}")
    max_episode_steps: int | None = field(None, "horizon (default: the family's registered max_episode_steps)")
    meta_batch_size: int = field(20, "tasks per meta-iteration")
    episodes_per_task: int = field(20, "episodes per task for each adaptation step and for the outer loss")
    inner_lr: float = field(0.1, "step size of the inner policy-gradient step")
    num_inner_steps: int = field(1, "inner policy-gradient steps during meta-training")
    first_order: bool = field(False, "first-order MAML (no second derivatives through the inner step)")
    gamma: float = field(0.99, "discount")
    gae_lambda: float = field(1.0, "GAE lambda for advantages (1.0: returns minus baseline, as the original)")
    baseline: Literal["linear", "value"] = field("linear", "per-task linear feature baseline or an MLP value network")
    hidden_sizes: tuple[int, ...] = field((100, 100), "policy hidden layer sizes")
    activation: Literal["relu", "tanh"] = field("relu", "policy activation")
    init_std: float = field(1.0, "initial policy standard deviation (Gaussian policies)")
    weight_init: Literal["torch", "glorot"] = field(
        "torch", "policy weight init: PyTorch's nn.Linear default, or Glorot-uniform with zero biases (original MAML-RL)")
    inner_estimator: Literal["vpg", "lvc"] = field(
        "vpg", "inner-step loss: 'vpg', the original MAML's REINFORCE loss log pi * A, or 'lvc', ProMP's "
               "low-variance curvature loss pi / stop_grad(pi) * A: the same inner gradient, but the meta-gradient "
               "keeps the curvature term of the pre-adaptation episodes' dependence on the meta-parameters")
    metatest_tasks: int = field(40, "held-out tasks in the final meta-test")
    metatest_steps: int = field(3, "adaptation steps evaluated in the meta-test (each on fresh episodes)")
    metatest_seed: int = field(1234, "seed of the meta-test tasks and episodes (fixed across runs)")

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot train."""
        for name in ("meta_batch_size", "episodes_per_task", "num_inner_steps", "metatest_tasks"):
            check_positive_int(name, getattr(self, name))
        if self.max_episode_steps is not None:
            check_positive_int("max_episode_steps (horizon)", self.max_episode_steps)
        if isinstance(self.metatest_steps, bool) or not isinstance(self.metatest_steps, int) or self.metatest_steps < 0:
            raise ValueError(f"metatest_steps must be a non-negative integer, got {self.metatest_steps!r}")
        _check_positive_number("inner_lr", self.inner_lr)
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"gamma and gae_lambda must be in [0, 1], got {self.gamma}, {self.gae_lambda}")
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes}")
        if self.inner_estimator not in ("vpg", "lvc"):
            raise ValueError(f"inner_estimator must be 'vpg' or 'lvc', got {self.inner_estimator!r}")


@dataclass
class MAMLConfig(MAMLBaseConfig):
    """Settings of MAML-TRPO (defaults: the original code's 2-D navigation run)."""

    max_kl: float = field(0.01, "TRPO trust-region size (mean KL of the post-adaptation policies)")
    cg_iters: int = field(10, "conjugate-gradient iterations")
    cg_damping: float = field(1e-5, "damping added to the Fisher-vector product")
    fisher_subsample: int = field(1, "use every k-th episode of each task for the Fisher-vector products "
                                     "(1: exact; k > 1 trades curvature accuracy for speed, as OpenAI baselines' TRPO)")
    ls_max_steps: int = field(15, "line-search backtracking steps")
    ls_backtrack_ratio: float = field(0.8, "line-search shrink factor")

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot train."""
        super().validate()
        for name in ("cg_iters", "ls_max_steps", "fisher_subsample"):
            check_positive_int(name, getattr(self, name))
        _check_positive_number("max_kl", self.max_kl)
        if not 0 < self.ls_backtrack_ratio < 1:
            raise ValueError(f"ls_backtrack_ratio must be in (0, 1), got {self.ls_backtrack_ratio}")


@dataclass
class MAMLPPOConfig(MAMLBaseConfig):
    """Settings of MAML-PPO; the outer-step defaults are ProMP's (``learning_rate``, ``num_promp_steps``, ``clip_eps``)."""

    outer_lr: float = field(1e-3, "Adam step size of the outer update (ProMP's learning_rate)")
    ppo_epochs: int = field(5, "Adam steps on the clipped objective per meta-iteration, all on the same "
                               "episodes (ProMP's num_ppo_steps)")
    clip_eps: float = field(0.3, "clip range of the post-adaptation likelihood ratio (ProMP's clip_eps)")
    inner_kl_coef: float = field(0.0, "weight of ProMP's fixed penalty on the mean KL(sampling pre-adaptation policy "
                                      "|| current one) on the pre-adaptation episodes (0: MAML-PPO; ProMP uses 5e-4)")
    target_kl: float = field(0.02, "stop the Adam epochs once the mean KL(sampling adapted policy || current "
                                   "adapted policy) on the post-adaptation episodes exceeds 1.5 x target_kl, as "
                                   "Stable-Baselines3's PPO, and shrink the step that crossed it (0: neither; ProMP "
                                   "has no such limit)")
    kl_backtracks: int = field(10, "halve the Adam step that crossed 1.5 x target_kl up to this many times until the "
                                   "adapted policies are inside it, else undo it (0: always undo)")

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot train."""
        super().validate()
        _check_positive_number("outer_lr", self.outer_lr)
        check_positive_int("ppo_epochs", self.ppo_epochs)
        if isinstance(self.clip_eps, bool) or not (isinstance(self.clip_eps, (int, float)) and 0 < self.clip_eps < 1):
            raise ValueError(f"clip_eps must be a number in (0, 1), got {self.clip_eps!r}")
        if not (isinstance(self.inner_kl_coef, (int, float)) and math.isfinite(self.inner_kl_coef)
                and self.inner_kl_coef >= 0):
            raise ValueError(f"inner_kl_coef must be a non-negative number, got {self.inner_kl_coef!r}")
        if isinstance(self.target_kl, bool) or not (isinstance(self.target_kl, (int, float))
                                                    and math.isfinite(self.target_kl) and self.target_kl >= 0):
            raise ValueError(f"target_kl must be a non-negative number (0 disables the early stop), "
                             f"got {self.target_kl!r}")
        if isinstance(self.kl_backtracks, bool) or not isinstance(self.kl_backtracks, int) or self.kl_backtracks < 0:
            raise ValueError(f"kl_backtracks must be a non-negative integer, got {self.kl_backtracks!r}")


# The original MAML HalfCheetah runs (cbfinn/maml_rl maml_examples/cluster_maml_trpo_cheetah.py):
# fast_lr 0.1, fast_batch_size 20 episodes, meta_batch_size 40 (the paper's locomotion setting;
# the script also swept 80), ReLU (100, 100) policy, linear baseline, one inner step, horizon 200
# (the registered one), meta_step_size (TRPO max_kl) 0.01, discount 0.99, n_itr 1000.
# We keep all of them but the network: the 2x64 tanh policy of pytorch-maml-rl and ProMP reached
# 228.7 and 104.9 after one step on HalfCheetahDir in two ~90-minute runs (430 and 540 iterations)
# where the original 2x100 ReLU reached 12.2 (its adaptation peaked near iteration 75 and decayed;
# README, which also has runs at MAML-RL's time step, frame_skip=1). Fisher-vector products
# on every 4th episode (the KL is still checked on all) make a MAML-TRPO iteration fit 12 s on one core.
_HALF_CHEETAH = dict(meta_batch_size=40, episodes_per_task=20, inner_lr=0.1, hidden_sizes=(64, 64),
                     activation="tanh", fisher_subsample=4, iterations=1000)

# Navigation2D keeps the original settings above (2x100 ReLU, inner lr 0.1, 20 tasks x 20 episodes,
# max KL 0.01, gamma 0.99) and adds what makes the run fit ten minutes on a 2-core CPU: the
# Fisher-vector products on every 4th episode (the KL constraint is still checked on all data in the
# line search) and GAE lambda 0.9 for a lower-variance inner gradient (see the README's results).
_NAVIGATION = dict(gae_lambda=0.9, fisher_subsample=4, iterations=200)

#: per-family settings (fields of either config, plus ``"iterations"``: the run length)
FAMILY_DEFAULTS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "metarl/Navigation2D-v0": lambda kw: dict(_NAVIGATION),
    "metarl/HalfCheetahDir-v0": lambda kw: dict(_HALF_CHEETAH),
    "metarl/HalfCheetahVel-v0": lambda kw: dict(_HALF_CHEETAH),
}

DEFAULT_ITERATIONS = 300
"""Run length for families without an entry in :data:`FAMILY_DEFAULTS`."""


def family_defaults(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Default MAML settings (plus ``"iterations"``) for a family and its kwargs; ``{}`` if it has none."""
    make = FAMILY_DEFAULTS.get(env_id)
    return dict(make(dict(env_kwargs or {}))) if make is not None else {}


def default_iterations(config: MAMLBaseConfig) -> int:
    """Meta-iterations of a run with ``config``'s family when ``--iterations`` is not given."""
    return int(family_defaults(config.env, config.env_kwargs).get("iterations", DEFAULT_ITERATIONS))


class MAMLBase(MetaAlgorithm):
    """MAML-RL without its outer update: sampling, advantages, the inner step, meta-test and state.

    A subclass implements :meth:`outer_step`, which updates the meta-policy from one meta-batch of
    pre- and post-adaptation episodes.

    Args:
        config: the settings (a :class:`MAMLBaseConfig` subclass).
    """

    def __init__(self, config: MAMLBaseConfig):
        config.validate()
        self.cfg = config
        self.sampler = EpisodeSampler(config.env, config.env_kwargs, max_episode_steps=config.max_episode_steps)
        self.policy = make_policy(self.sampler.observation_space, self.sampler.action_space,
                                  config.hidden_sizes, config.activation, config.init_std, config.weight_init)
        self.linear_baseline = LinearFeatureBaseline()
        self.value_net: ValueNetwork | None = None
        if config.baseline == "value":
            self.value_net = ValueNetwork(self.sampler.observation_space.shape[0])
            self.value_opt = torch.optim.Adam(self.value_net.parameters(), lr=1e-3)
        self.env_steps = 0

    # ----- policy as a function of explicit parameters -------------------------------------------
    def meta_params(self) -> Params:
        return dict(self.policy.named_parameters())

    def _dist(self, params: Params, obs: torch.Tensor, batched: bool) -> Any:
        if batched:
            return vmap(lambda p, o: functional_forward(self.policy, p, o))(params, obs)
        return functional_forward(self.policy, params, obs)

    def act_fn(self, params: Params, batched: bool):
        """Sampling function for the sampler: actions from the policy with ``params``."""
        params = detach_params(params)

        def act(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return self._dist(params, obs, batched).sample(generator)

        return act

    def inner_loss(self, params: Params, batch: Batch) -> torch.Tensor:
        """Policy-gradient loss of one task's episodes (the inner step's objective).

        ``inner_estimator="vpg"``: REINFORCE, ``-mean(log pi(a|s) A)``, as the original MAML.
        ``"lvc"``: ProMP's low-variance curvature estimator (Rothfuss et al. 2019),
        ``-mean(pi(a|s) / stop_grad(pi(a|s)) A)``: the same value of the gradient, but its derivative
        adds ``-mean(grad log pi grad log pi^T A)``, the curvature term of the pre-adaptation episodes'
        own dependence on the parameters, which the REINFORCE loss leaves out of the meta-gradient.

        With ``batch["importance_weights"]`` (constants) each step's term is weighted, for
        episodes sampled by other parameters than ``params`` (see :meth:`MAMLPPO.outer_step`).
        """
        dist = functional_forward(self.policy, params, batch["observations"])
        log_probs = dist.log_prob(batch["actions"])
        advantages = batch["advantages"]
        if "importance_weights" in batch:
            advantages = advantages * batch["importance_weights"]
        if self.cfg.inner_estimator == "lvc":
            return -masked_mean(torch.exp(log_probs - log_probs.detach()) * advantages, batch["mask"])
        return -masked_mean(log_probs * advantages, batch["mask"])

    # ----- advantages ------------------------------------------------------------------------------
    def _values(self, episodes: Episodes, returns: torch.Tensor) -> torch.Tensor:
        if self.value_net is None:
            return self.linear_baseline.fit_predict(episodes.observations, returns, episodes.mask)
        obs, mask = episodes.observations, episodes.mask
        for _ in range(20):
            self.value_opt.zero_grad()
            loss = masked_mean((self.value_net(obs) - returns) ** 2, mask)
            loss.backward()
            self.value_opt.step()
        with torch.no_grad():
            return self.value_net(obs) * mask

    def task_batch(self, episodes: Episodes) -> Batch:
        """Episode tensors plus per-task normalised advantages, ready for ``adapt_batch``."""
        returns = discounted_returns(episodes.rewards, episodes.mask, self.cfg.gamma)
        values = self._values(episodes, returns)
        adv = gae(episodes.rewards, values, episodes.mask, self.cfg.gamma, self.cfg.gae_lambda)
        adv = masked_normalize(adv, episodes.mask, dim=(1, 2))
        return {"observations": episodes.observations, "actions": episodes.actions, "advantages": adv,
                "mask": episodes.mask}

    def adapt(self, params: Params, batch: Batch, *, steps: int, first_order: bool,
              batched_params: bool = False) -> Params:
        """Per-task adapted parameters (leading task axis), through the shared core."""
        return adapt_batch(self.inner_loss, params, batch, steps=steps, step_size=self.cfg.inner_lr,
                           first_order=first_order, batched_params=batched_params)

    def post_adaptation_log_probs(self, params: Params, train: Batch, valid: Batch,
                                  first_order: bool) -> tuple[Any, torch.Tensor]:
        """Adapt ``params`` on ``train`` (differentiably); each adapted policy's distribution on
        ``valid``'s observations and log-probabilities of its actions, ``(tasks, episodes, T)``."""
        adapted = self.adapt(params, train, steps=self.cfg.num_inner_steps, first_order=first_order)
        dist = self._dist(adapted, valid["observations"], batched=True)
        return dist, dist.log_prob(valid["actions"])

    # ----- one meta-iteration ------------------------------------------------------------------------
    @abc.abstractmethod
    def outer_step(self, params: Params, train: Batch, valid: Batch, adapted: Params, old_dist: Any) -> dict[str, float]:
        """Update the meta-parameters in place from one meta-batch; return ``train/`` metrics.

        Args:
            params: the meta-parameters (the policy's own tensors).
            train: pre-adaptation episodes of each task (:meth:`task_batch`): the support data.
            valid: post-adaptation episodes of each task: the query data.
            adapted: the detached adapted parameters that sampled ``valid`` (leading task axis).
            old_dist: their detached action distributions on ``valid["observations"]``.

        Returns:
            At least ``train/surrogate_loss_before``, ``train/surrogate_loss_after`` and ``train/kl``
            (mean KL of the post-adaptation policies from ``old_dist`` after the update).
        """

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        t_start = time.perf_counter()
        tasks = self.sampler.sample_tasks(cfg.meta_batch_size, rng)
        params = self.meta_params()
        sample_time = time.perf_counter()
        train_eps = self.sampler.sample(self.act_fn(params, batched=False), tasks, cfg.episodes_per_task, rng)
        sample_time = time.perf_counter() - sample_time
        train = self.task_batch(train_eps)
        check_finite(train["advantages"], "pre-adaptation advantages")
        with torch.no_grad():
            adapted = self.adapt(detach_params(params), train, steps=cfg.num_inner_steps, first_order=True)
        for name, value in adapted.items():
            check_finite(value, f"adapted policy parameter {name} after the inner step (inner_lr={cfg.inner_lr})")
        t0 = time.perf_counter()
        valid_eps = self.sampler.sample(self.act_fn(adapted, batched=True), tasks, cfg.episodes_per_task, rng)
        sample_time += time.perf_counter() - t0
        valid = self.task_batch(valid_eps)
        with torch.no_grad():
            old_dist = self._dist(adapted, valid["observations"], batched=True).detach()
        outer_metrics = self.outer_step(params, train, valid, adapted, old_dist)
        steps = train_eps.num_steps + valid_eps.num_steps
        self.env_steps += steps
        elapsed = time.perf_counter() - t_start
        return {
            "samples": steps,
            "rollout/return_before_adaptation": float(train_eps.episode_returns.mean()),
            "rollout/return_after_adaptation": float(valid_eps.episode_returns.mean()),
            **outer_metrics,
            "train/policy_std": float(torch.exp(self.policy.log_std.detach()).mean()) if hasattr(self.policy, "log_std") else float("nan"),
            "time/fps": steps / sample_time if sample_time > 0 else float("nan"),
            "time/iteration_seconds": elapsed,
        }

    # ----- meta-test -------------------------------------------------------------------------------
    def meta_test(self) -> dict[str, Any]:
        """Mean return on ``metatest_tasks`` held-out tasks after 0..``metatest_steps`` adaptation steps.

        The result also lists the tasks and each task's mean return per step (``returns_by_task[step][i]``).

        Each step adapts on fresh episodes of the current (adapted) policy, as in the MAML paper's
        figure 5; tasks and episodes come from ``metatest_seed``, so the test set is fixed.
        """
        cfg = self.cfg
        tasks, by_task = self._adaptation_returns(cfg.metatest_tasks, cfg.metatest_steps, cfg.metatest_seed)
        means, ci95 = [], []
        for per_task in by_task:
            means.append(float(per_task.mean()))
            ci95.append(float(1.96 * per_task.std(ddof=1) / math.sqrt(len(per_task))) if len(per_task) > 1 else 0.0)
        return {"env": cfg.env, "n_tasks": cfg.metatest_tasks, "episodes_per_task": cfg.episodes_per_task,
                "returns_by_step": means, "ci95_by_step": ci95, "inner_lr": cfg.inner_lr,
                "metatest_seed": cfg.metatest_seed, "tasks": tasks_to_json(tasks),
                "returns_by_task": [[float(r) for r in per_task] for per_task in by_task]}

    def _adaptation_returns(self, n_tasks: int, steps: int, seed: int) -> tuple[list[Any], list[np.ndarray]]:
        """``n_tasks`` tasks from ``seed`` and each task's mean return after 0..``steps`` inner steps."""
        cfg = self.cfg
        rng = np.random.default_rng(seed)
        tasks = self.sampler.sample_tasks(n_tasks, rng)
        params: Params = detach_params(self.meta_params())
        batched = False
        by_task = []
        for step in range(steps + 1):
            eps = self.sampler.sample(self.act_fn(params, batched), tasks, cfg.episodes_per_task, rng)
            by_task.append(eps.episode_returns.mean(1).numpy())
            if step < steps:
                batch = self.task_batch(eps)
                with torch.no_grad():
                    params = self.adapt(params, batch, steps=1, first_order=True, batched_params=batched)
                batched = True
        return tasks, by_task

    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]:
        """Mean return on ``n_tasks`` validation tasks before and after ``num_inner_steps`` inner steps.

        ``score`` is the return after the inner steps, the quantity meta-training maximises. Tasks and
        episodes come from ``seed``, which must differ from ``metatest_seed``.
        """
        check_validation_seed(seed, self.cfg.metatest_seed)
        steps = self.cfg.num_inner_steps
        # a value-network baseline is fitted on the episodes it sees: restore it, so validating leaves training as is
        saved = None if self.value_net is None else copy.deepcopy(
            (self.value_net.state_dict(), self.value_opt.state_dict()))
        try:
            _, by_task = self._adaptation_returns(n_tasks, steps, seed)
        finally:
            if saved is not None:
                self.value_net.load_state_dict(saved[0])
                self.value_opt.load_state_dict(saved[1])
        out = {f"return_after_{k}_steps": float(r.mean()) for k, r in enumerate(by_task)}
        return {"score": out[f"return_after_{steps}_steps"], **out}

    def format_metatest(self, result: dict[str, Any]) -> str:
        lines = [f"meta-test: {result['n_tasks']} held-out tasks of {result['env']}, "
                 f"{result['episodes_per_task']} episodes per task and step",
                 "adaptation steps | mean return | 95% CI",
                 "---------------- | ----------- | ------"]
        for k, (m, c) in enumerate(zip(result["returns_by_step"], result["ci95_by_step"])):
            lines.append(f"{k:>16} | {m:>11.2f} | +/- {c:.2f}")
        return "\n".join(lines)

    def metatest_scalars(self, result: dict[str, Any]) -> dict[str, float]:
        return {f"return_after_{k}_steps": v for k, v in enumerate(result["returns_by_step"])}

    # ----- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"policy": self.policy.state_dict(), "env_steps": self.env_steps}
        if self.value_net is not None:
            state["value_net"] = self.value_net.state_dict()
            state["value_opt"] = self.value_opt.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.env_steps = int(state["env_steps"])
        if self.value_net is not None:
            self.value_net.load_state_dict(state["value_net"])
            self.value_opt.load_state_dict(state["value_opt"])

    def config(self) -> dict[str, Any]:
        out = dataclasses.asdict(self.cfg)
        out["hidden_sizes"] = list(out["hidden_sizes"])
        return {"algo": self.name, **out}


class MAMLTRPO(MAMLBase):
    """MAML-TRPO on a task family: the outer step is one TRPO step through the inner step.

    Args:
        config: the settings (:class:`MAMLConfig`).
    """

    name = "maml-trpo"
    cfg: MAMLConfig

    def _surrogate(self, params: Params, train: Batch, valid: Batch, old_log_probs: torch.Tensor, old_dist: Any,
                   first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
        dist, log_probs = self.post_adaptation_log_probs(params, train, valid, first_order)
        ratio = torch.exp(log_probs - old_log_probs)
        dims = (1, 2)
        loss = -masked_mean(ratio * valid["advantages"], valid["mask"], dim=dims).mean()
        kl = masked_mean(old_dist.kl(dist), valid["mask"], dim=dims).mean()
        return loss, kl

    def fisher_vector_product(self, params: Params, train: Batch, valid: Batch, adapted: Params, old_dist: Any) -> Any:
        """``v -> (H + damping I) v`` with ``H`` the Hessian of the mean KL through the inner step at ``params``.

        At the current parameters the KL's gradient vanishes, so ``H = J^T F J`` exactly, with
        ``J`` the Jacobian of the adapted parameters (a forward-mode product through the inner
        step) and ``F`` the Fisher of each adapted policy; ``fisher_subsample`` estimates both
        from every k-th episode.
        """
        k, n_tasks = self.cfg.fisher_subsample, len(next(iter(valid.values())))
        names = list(params)
        start = detach_params(params)
        train_sub = {key: value[:, ::k] for key, value in train.items()}
        obs, mask = valid["observations"][:, ::k], valid["mask"][:, ::k]
        old_fields = [field[:, ::k].contiguous() for field in old_dist]
        adapted = detach_params(adapted)

        def adapt_fn(p: Params) -> Params:
            return self.adapt(p, train_sub, steps=self.cfg.num_inner_steps, first_order=False)

        def task_kl(p: Params, o: torch.Tensor, m: torch.Tensor, *old: torch.Tensor) -> torch.Tensor:
            return masked_mean(type(old_dist)(*old).kl(functional_forward(self.policy, p, o)), m) / n_tasks

        def task_hvp(p: Params, u: Params, o: torch.Tensor, m: torch.Tensor, *old: torch.Tensor) -> Params:
            return jvp(lambda q: grad(task_kl)(q, o, m, *old), (p,), (u,))[1]

        _, transpose = vjp(adapt_fn, start)
        like = list(start.values())

        def fvp(vector: torch.Tensor) -> torch.Tensor:
            v = dict(zip(names, unflat_like(vector, like)))
            _, jv = jvp(adapt_fn, (start,), (v,))
            hv = vmap(task_hvp)(adapted, jv, obs, mask, *old_fields)
            out = transpose(hv)[0]
            return flat([out[n] for n in names]) + self.cfg.cg_damping * vector

        return fvp

    def outer_step(self, params: Params, train: Batch, valid: Batch, adapted: Params, old_dist: Any) -> dict[str, float]:
        """A TRPO step: conjugate gradient on the Fisher through the inner step, then a line search."""
        cfg = self.cfg
        old_log_probs = old_dist.log_prob(valid["actions"])
        param_list = list(params.values())
        loss, _ = self._surrogate(params, train, valid, old_log_probs, old_dist, cfg.first_order)
        check_finite(loss, "MAML-TRPO surrogate loss")
        grads = flat(torch.autograd.grad(loss, param_list))
        check_finite(grads, "MAML-TRPO meta-gradient")
        fvp = self.fisher_vector_product(params, train, valid, adapted, old_dist)
        step_dir = conjugate_gradient(fvp, grads, cfg.cg_iters)
        shs = 0.5 * (step_dir @ fvp(step_dir))
        step = step_dir / torch.sqrt(shs / cfg.max_kl).clamp_min(1e-12)
        check_finite(step, "TRPO step direction (conjugate gradient)")
        old_flat = flat([p.detach() for p in param_list]).clone()

        def set_params(vector: torch.Tensor) -> None:
            with torch.no_grad():
                for p, v in zip(param_list, unflat_like(vector, param_list)):
                    p.copy_(v)

        def evaluate(fraction: float) -> tuple[float, float]:
            set_params(old_flat - fraction * step)
            with torch.no_grad():
                new_loss, new_kl = self._surrogate(params, train, valid, old_log_probs, old_dist, True)
            return float(new_loss), float(new_kl)

        old_loss = float(loss.detach())
        del loss, fvp
        fraction, ls_steps = backtracking_line_search(evaluate, old_loss, cfg.max_kl, cfg.ls_max_steps,
                                                      cfg.ls_backtrack_ratio)
        set_params(old_flat - fraction * step)
        new_loss, new_kl = evaluate(fraction) if fraction > 0 else (old_loss, 0.0)
        return {
            "train/surrogate_loss_before": old_loss,
            "train/surrogate_loss_after": new_loss,
            "train/kl": new_kl,
            "train/line_search_steps": ls_steps,
            "train/step_accepted": float(fraction > 0),
        }


class MAMLPPO(MAMLBase):
    """MAML-PPO on a task family: the outer step is ProMP's clipped objective, optimised with Adam.

    Per meta-iteration, ``ppo_epochs`` full-batch Adam steps minimise

        -mean_tasks masked_mean_t min(r_t A_t, clip(r_t, 1 - clip_eps, 1 + clip_eps) A_t)
            [+ inner_kl_coef * mean_tasks KL(pi_sampling || pi_theta) on the pre-adaptation episodes]

    where ``r_t = pi_{theta'}(a_t|s_t) / pi_old(a_t|s_t)`` on the post-adaptation episodes,
    ``theta' = theta - inner_lr * grad(inner loss)`` is recomputed from the current ``theta`` in
    every epoch and differentiated through (second order unless ``first_order``), and ``pi_old`` is
    the adapted policy that sampled the episodes. Because ``theta`` moves away from the parameters
    that sampled the pre-adaptation episodes, the inner step weights each step by
    ``pi_theta / pi_sampling`` (held constant), so the inner gradient stays an importance-sampled
    policy gradient; at the sampling parameters (the first epoch) the weights are 1 and the
    meta-gradient is exactly MAML-TRPO's. With ``target_kl > 0`` the epochs stop once the mean KL
    between the sampling and the current adapted policies on the post-adaptation episodes exceeds
    ``1.5 * target_kl`` (Stable-Baselines3's rule), and the Adam step that crossed the limit is
    halved up to ``kl_backtracks`` times until it is inside, else undone. Without the stop one
    meta-batch moved a HalfCheetahDir policy by a KL of 0.16; with the stop alone single first steps
    of KL 38 destroyed a run; with a plain undo every step from iteration ~50 was undone and the run
    stalled (README).

    Args:
        config: the settings (:class:`MAMLPPOConfig`).
    """

    name = "maml-ppo"
    cfg: MAMLPPOConfig

    def __init__(self, config: MAMLPPOConfig):
        super().__init__(config)
        self.outer_opt = torch.optim.Adam(self.policy.parameters(), lr=config.outer_lr)

    def clipped_objective(self, params: Params, train: Batch, valid: Batch, old_log_probs: torch.Tensor,
                          first_order: bool) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """The clipped surrogate loss through the inner step, the likelihood ratios and the adapted distributions."""
        dist, log_probs = self.post_adaptation_log_probs(params, train, valid, first_order)
        ratio = torch.exp(log_probs - old_log_probs)
        eps, adv = self.cfg.clip_eps, valid["advantages"]
        objective = torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
        loss = -masked_mean(objective, valid["mask"], dim=(1, 2)).mean()
        return loss, ratio, dist

    def _importance_weighted(self, params: Params, train: Batch, sampling_log_probs: torch.Tensor) -> Batch:
        with torch.no_grad():
            log_ratio = self._dist(params, train["observations"], batched=False).log_prob(train["actions"])
            log_ratio = log_ratio - sampling_log_probs
            weights = torch.where(train["mask"] > 0, torch.exp(log_ratio), torch.zeros_like(log_ratio))
        return {**train, "importance_weights": weights}

    def _inner_kl(self, params: Params, train: Batch, sampling_dist: Any) -> torch.Tensor:
        dist = self._dist(params, train["observations"], batched=False)
        return masked_mean(sampling_dist.kl(dist), train["mask"], dim=(1, 2)).mean()

    def outer_step(self, params: Params, train: Batch, valid: Batch, adapted: Params, old_dist: Any) -> dict[str, float]:
        """``ppo_epochs`` Adam steps on the clipped objective, all on this meta-batch's episodes."""
        cfg = self.cfg
        old_log_probs = old_dist.log_prob(valid["actions"])
        with torch.no_grad():
            sampling_dist = self._dist(params, train["observations"], batched=False).detach()
            sampling_log_probs = sampling_dist.log_prob(train["actions"])
        loss_before = float("nan")
        epochs, kept = 0, 1.0
        limit = 1.5 * cfg.target_kl
        before_step: dict[str, torch.Tensor] = {}

        def adapted_kl(dist: Any) -> float:
            return float(masked_mean(old_dist.kl(dist.detach()), valid["mask"], dim=(1, 2)).mean())

        def current_dist() -> Any:
            """The adapted policies' distributions at the current parameters (no gradient)."""
            support = self._importance_weighted(params, train, sampling_log_probs)
            return self.clipped_objective(params, support, valid, old_log_probs, True)[2]

        def shrink_last_step() -> float:
            """Halve the last step until the adapted policies are inside the limit; the fraction kept (0: undone)."""
            with torch.no_grad():
                after_step = {name: p.detach().clone() for name, p in params.items()}
                fraction = 1.0
                for _ in range(cfg.kl_backtracks):
                    fraction *= 0.5
                    for name, p in params.items():
                        p.copy_(before_step[name] + fraction * (after_step[name] - before_step[name]))
                    if adapted_kl(current_dist()) <= limit:
                        return fraction
                for name, p in params.items():
                    p.copy_(before_step[name])
            return 0.0

        for epoch in range(cfg.ppo_epochs):
            support = self._importance_weighted(params, train, sampling_log_probs)
            loss, _, dist = self.clipped_objective(params, support, valid, old_log_probs, cfg.first_order)
            if epoch == 0:
                loss_before = float(loss.detach())
            elif cfg.target_kl > 0 and adapted_kl(dist) > limit:
                # Stable-Baselines3 stops here; the step that went past the limit is also shrunk or undone
                kept = shrink_last_step()
                if kept == 0.0:
                    epochs -= 1
                break
            if cfg.inner_kl_coef > 0:
                loss = loss + cfg.inner_kl_coef * self._inner_kl(params, train, sampling_dist)
            check_finite(loss, f"MAML-PPO clipped objective (epoch {epoch})")
            self.outer_opt.zero_grad(set_to_none=True)
            loss.backward()
            for name, p in params.items():
                check_finite(p.grad, f"MAML-PPO meta-gradient of {name} (epoch {epoch})")
            if cfg.target_kl > 0:
                before_step = {name: p.detach().clone() for name, p in params.items()}
            self.outer_opt.step()
            epochs += 1
        with torch.no_grad():
            if cfg.target_kl > 0 and kept == 1.0 and epochs == cfg.ppo_epochs:  # the last epoch's step too
                if adapted_kl(current_dist()) > limit:
                    kept = shrink_last_step()
                    if kept == 0.0:
                        epochs -= 1
            support = self._importance_weighted(params, train, sampling_log_probs)
            loss_after, ratio, dist = self.clipped_objective(params, support, valid, old_log_probs, True)
            mask = valid["mask"]
            kl = masked_mean(old_dist.kl(dist), mask, dim=(1, 2)).mean()
            clip_fraction = masked_mean(((ratio - 1).abs() > cfg.clip_eps).to(mask.dtype), mask)
            inner_kl = self._inner_kl(params, train, sampling_dist)
        return {
            "train/surrogate_loss_before": loss_before,
            "train/surrogate_loss_after": float(loss_after),
            "train/kl": float(kl),
            "train/inner_kl": float(inner_kl),
            "train/clip_fraction": float(clip_fraction),
            "train/ppo_epochs": float(epochs),
            "train/last_step_kept": float(kept),
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "outer_opt": self.outer_opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.outer_opt.load_state_dict(state["outer_opt"])
