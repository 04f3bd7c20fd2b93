"""MAML for reinforcement learning (Finn et al. 2017) with two outer optimisers: TRPO and PPO.

Per meta-iteration (:meth:`MAMLBase.meta_train_step`, shared by both): sample ``meta_batch_size``
tasks; roll out ``episodes_per_task`` episodes of each with the meta-policy (pre-adaptation);
adapt with ``inner_steps`` vanilla policy-gradient steps, each on fresh episodes of the policy
adapted so far (the shared core,
:func:`metarl.adaptation.adapt_batch`, vmapped over tasks); roll out fresh episodes with each
adapted policy (post-adaptation). The outer optimiser then updates the meta-policy on a
post-adaptation surrogate loss, differentiated *through* the inner step (second order by default):

- :class:`MAMLTRPO` (Finn et al. 2017): one natural-gradient step in a KL trust region
  (conjugate gradient + backtracking line search).
- :class:`MAMLPPO`: the outer step of ProMP (Rothfuss et al. 2019): ``ppo_epochs`` Adam steps
  on the clipped likelihood-ratio objective over the same episodes; ProMP's inner-KL penalty is
  off by default (``inner_kl_coef``). What differs from ProMP is listed in ``docs/maml_ppo.md``.

Defaults follow the original code's 2-D navigation settings; ``metarl/presets/maml-trpo.yaml`` holds
the per-family settings (applied by the command line and by ``MAMLTRPO(env=...)``).
"""

from __future__ import annotations

import abc
import copy
import math
import time
from typing import Any

import numpy as np
import torch

from metarl.adaptation import Params, adapt_batch, detach_params, functional_forward, inner_loop
from metarl.networks import LinearFeatureBaseline, ValueNetwork, make_policy
from metarl.returns import ci95, discounted_returns, gae, masked_mean, masked_normalize
from metarl.sampler import Episodes
from metarl.tasks import tasks_to_json
from metarl.agents.actors import PolicyActor, policy_distribution
from metarl.agents.maml_config import MAMLBaseConfig, MAMLConfig, MAMLPPOConfig
from metarl.errors import check_finite, check_validation_seed
from metarl.meta_rl import MetaRLAlgorithm, acting_copy
from metarl.agents.maml_policy import MAMLPolicy

__all__ = [
    "MAMLBaseConfig",
    "MAMLConfig",
    "MAMLPPOConfig",
    "MAMLBase",
    "MAMLPolicy",
]

Batch = dict[str, torch.Tensor]


class MAMLBase(MetaRLAlgorithm):
    """MAML-RL without its outer update: sampling, advantages, the inner step, meta-test and state.

    A subclass implements :meth:`outer_step`, which updates the meta-policy from one meta-batch of
    pre- and post-adaptation episodes.

    Args:
        config: the complete settings (a :class:`MAMLBaseConfig` subclass), used as given.
        **settings: or settings by name instead: the algorithm's preset for the family (``env``) fills
            the rest, as on the command line (``MAMLTRPO(env="metarl/Navigation2D-v0", seed=1)``).
    """

    config_class: type[MAMLBaseConfig] = MAMLBaseConfig
    metatest_only_settings = ("metatest_tasks", "metatest_steps", "metatest_protocol")

    def __init__(self, config: MAMLBaseConfig | None = None, **settings: Any):
        self.cfg = config = self.resolve_settings(config, settings)
        self.sampler = self.make_sampler(config)
        self.policy = make_policy(self.sampler.observation_space, self.sampler.action_space,
                                  config.hidden_sizes, config.activation, config.init_std, config.weight_init)
        if config.multi_step_weights is not None and (not config.multi_step_loss
                                                      or len(config.multi_step_weights) != config.inner_steps
                                                      or sum(config.multi_step_weights) <= 0):
            raise ValueError(f"multi_step_weights needs --multi-step-loss and one non-negative weight per inner step "
                             f"({config.inner_steps}), not all zero; got {config.multi_step_weights}")
        if config.learn_step_sizes:  # meta-parameters of the policy module, so every optimiser and checkpoint has them
            self.policy.log_step_sizes = torch.nn.Parameter(
                torch.full((config.inner_steps,), math.log(config.inner_lr), dtype=torch.float32))
        self.policy.to(self.device)
        self._acting_policy = acting_copy(self.policy, self.device)  # its structure; act_fn passes the weights
        self.linear_baseline = LinearFeatureBaseline()
        self.value_net: ValueNetwork | None = None
        if config.baseline == "value":
            self.value_net = ValueNetwork(self.sampler.observation_space.shape[0]).to(self.device)
            self.value_opt = torch.optim.Adam(self.value_net.parameters(), lr=1e-3)
        self.env_steps = 0

    # ----- policy as a function of explicit parameters -------------------------------------------
    def meta_params(self) -> Params:
        return dict(self.policy.named_parameters())

    def _dist(self, params: Params, obs: torch.Tensor, batched: bool) -> Any:
        return policy_distribution(self.policy, params, obs, batched)

    def act_fn(self, params: Params, batched: bool) -> "PolicyActor":
        """Sampling function for the sampler: actions from the policy with ``params`` (on the CPU)."""
        return PolicyActor(self._acting_policy, {k: v.detach().cpu() for k, v in params.items()}, batched)

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
        obs, mask, target = (x.to(self.device) for x in (episodes.observations, episodes.mask, returns))
        for _ in range(20):
            self.value_opt.zero_grad()
            loss = masked_mean((self.value_net(obs) - target) ** 2, mask)
            loss.backward()
            self.value_opt.step()
        with torch.no_grad():
            return (self.value_net(obs) * mask).cpu()

    def task_batch(self, episodes: Episodes) -> Batch:
        """Episode tensors plus per-task normalised advantages, ready for ``adapt_batch``."""
        returns = discounted_returns(episodes.rewards, episodes.mask, self.cfg.gamma)
        values = self._values(episodes, returns)
        adv = gae(episodes.rewards, values, episodes.mask, self.cfg.gamma, self.cfg.gae_lambda)
        adv = masked_normalize(adv, episodes.mask, dim=(1, 2))
        batch = {"observations": episodes.observations, "actions": episodes.actions, "advantages": adv,
                 "mask": episodes.mask}
        return {key: value.to(self.device) for key, value in batch.items()}

    def step_size(self, meta_params: Params, step: int) -> float | torch.Tensor:
        """The size of inner step ``step`` (0-based): ``inner_lr``, or the learned one (``learn_step_sizes``),
        read from the meta-parameters ``meta_params`` (differentiable) and the last for steps past them."""
        sizes = meta_params.get("log_step_sizes")
        if sizes is None:
            return self.cfg.inner_lr
        return torch.exp(sizes[min(step, sizes.shape[-1] - 1)])

    def adapt(self, params: Params, batch: Batch, *, steps: int, first_order: bool,
              batched_params: bool = False, step_size: float | torch.Tensor | None = None) -> Params:
        """Per-task adapted parameters (leading task axis), through the shared core (step size: ``inner_lr``
        unless given)."""
        return adapt_batch(self.inner_loss, params, batch, steps=steps,
                           step_size=self.cfg.inner_lr if step_size is None else step_size,
                           first_order=first_order, batched_params=batched_params)

    #: weight each inner step's terms by pi_current / pi_sampling (outer optimisers that move the
    #: meta-parameters away from those that sampled the support episodes, as MAML-PPO's epochs)
    importance_weighted_inner_steps: bool = False

    def adapt_through(self, params: Params, supports: list[Batch], *, first_order: bool) -> list[Params]:
        """One inner step on each support batch in turn: ``supports[j]`` holds the episodes sampled by the
        policy adapted ``j`` steps (differentiable through every step unless ``first_order``). Returns the
        parameters after each step (leading task axis)."""

        def support(step: int, adapted: Params) -> Batch:
            if not self.importance_weighted_inner_steps:
                return supports[step]
            return {**supports[step], "importance_weights": self.importance_weights(adapted, supports[step], step > 0)}

        return inner_loop(self.inner_loss, params, support, steps=len(supports), first_order=first_order,
                          step_size=lambda step: self.step_size(params, step), task_axis=True)

    def importance_weights(self, params: Params, batch: Batch, batched: bool) -> torch.Tensor:
        """``pi_params(a|s) / pi_sampling(a|s)`` on a support batch (constants; 0 on padding)."""
        with torch.no_grad():
            log_probs = self._dist(params, batch["observations"], batched).log_prob(batch["actions"])
            ratio = torch.exp(log_probs - batch["sampling_log_probs"])
            return torch.where(batch["mask"] > 0, ratio, torch.zeros_like(ratio))

    def post_adaptation_log_probs(self, params: Params, train: list[Batch], queries: list[Batch],
                                  first_order: bool) -> list[tuple[Any, torch.Tensor]]:
        """Adapt ``params`` on the support batches ``train`` (differentiably); for each query batch, the
        distribution of the policies adapted as many steps as sampled it (the last ``len(queries)`` steps) on
        its observations and the log-probabilities of its actions, ``(tasks, episodes, T)``."""
        states = self.adapt_through(params, train, first_order=first_order)[-len(queries):]
        out = []
        for state, query in zip(states, queries):
            dist = self._dist(state, query["observations"], batched=True)
            out.append((dist, dist.log_prob(query["actions"])))
        return out

    def query_weights(self, n_queries: int) -> torch.Tensor:
        """Normalised weights of the losses on the ``n_queries`` query batches (the last is the final step's)."""
        weights = self.cfg.multi_step_weights if n_queries > 1 and self.cfg.multi_step_weights else [1.0] * n_queries
        weights = torch.as_tensor(list(weights)[-n_queries:], dtype=torch.float32, device=self.device)
        return weights / weights.sum()

    # ----- one meta-iteration ------------------------------------------------------------------------
    @abc.abstractmethod
    def outer_step(self, params: Params, train: list[Batch], queries: list[Batch], adapted: list[Params],
                   old_dists: list[Any]) -> dict[str, float]:
        """Update the meta-parameters in place from one meta-batch; return ``train/`` metrics.

        Args:
            params: the meta-parameters (the policy's own tensors).
            train: the support data, one batch (:meth:`task_batch`) per inner step: ``train[0]`` the
                pre-adaptation episodes, ``train[j]`` those of the policies adapted ``j`` steps.
            queries: the query data the outer loss is measured on: the episodes of the policies adapted
                ``inner_steps`` steps, and with ``multi_step_loss`` first those adapted 1 .. inner_steps - 1
                steps (``train[1:]``), each scored with the policies that sampled it.
            adapted: the detached adapted parameters that sampled each query batch (leading task axis).
            old_dists: their detached action distributions on the query observations.

        Returns:
            At least ``train/surrogate_loss_before``, ``train/surrogate_loss_after`` and ``train/kl``
            (mean KL of the post-adaptation policies from ``old_dists`` after the update).
        """

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        t_start = time.perf_counter()
        tasks = self.sampler.sample_tasks(cfg.meta_batch_size, rng, split="train")
        params = self.meta_params()
        sample_time = 0.0
        returns: list[float] = []
        successes: list[float] = []
        supports: list[Batch] = []
        sampling_dists: list[Any] = []

        def check_adapted(adapted: Params, step: int) -> None:
            for name, value in adapted.items():
                check_finite(value, f"adapted policy parameter {name} after inner step {step} (inner_lr={cfg.inner_lr})")

        def sample(adapted: Params, batched: bool) -> Batch:
            """A batch of episodes of the policy with ``adapted`` parameters on every task, with advantages."""
            nonlocal sample_time
            t0 = time.perf_counter()
            episodes = self.sampler.sample(self.act_fn(adapted, batched), tasks, cfg.episodes_per_task, rng)
            sample_time += time.perf_counter() - t0
            returns.append(float(episodes.episode_returns.mean()))
            reached = self.sampler.episode_success(episodes.rewards * episodes.mask, episodes.infos)
            if reached is not None:  # families with a success criterion (Meta-World, the sparse point robot)
                successes.append(float(np.mean(reached)))
            with torch.enable_grad():  # a value baseline is fitted here
                return self.task_batch(episodes)

        def support(step: int, adapted: Params) -> Batch:
            """Fresh support episodes of the policy adapted ``step`` steps (the inner loop's data callback)."""
            if step > 0:
                check_adapted(adapted, step)
            batch = sample(adapted, step > 0)
            check_finite(batch["advantages"], f"advantages of the support episodes of inner step {step + 1}")
            sampling_dists.append(self._dist(adapted, batch["observations"], step > 0))
            batch["sampling_log_probs"] = sampling_dists[-1].log_prob(batch["actions"])
            supports.append(batch)
            return batch

        with torch.no_grad():  # sampling adapts first order; the outer step differentiates through its own steps
            states = inner_loop(self.inner_loss, detach_params(params), support, steps=cfg.inner_steps,
                                step_size=lambda step: self.step_size(params, step), first_order=True, task_axis=True)
            check_adapted(states[-1], cfg.inner_steps)
            valid = sample(states[-1], True)  # the query episodes
        steps = sum(int(b["mask"].sum()) for b in supports) + int(valid["mask"].sum())
        self.env_steps += steps
        queries = [*supports[1:], valid] if cfg.multi_step_loss else [valid]
        sampled_by = states[-len(queries):]
        # the policies that sampled each query batch, and the entropy of the first: a support batch's sampling
        # distribution is already computed above (only the last query batch needs a forward pass)
        known = [*sampling_dists[1:], None] if cfg.multi_step_loss else [None]
        with torch.no_grad():
            old_dists = [(dist if dist is not None else self._dist(state, query["observations"], batched=True))
                         .detach() for dist, state, query in zip(known, sampled_by, queries)]
            entropy = masked_mean(sampling_dists[0].entropy(), supports[0]["mask"])
        t0 = time.perf_counter()
        outer_metrics = self.outer_step(params, supports, queries, sampled_by, old_dists)
        outer_time = time.perf_counter() - t0
        metrics = {
            "samples": steps,
            "rollout/return_before_adaptation": returns[0],
            "rollout/return_after_adaptation": returns[-1],
            **{f"rollout/return_after_{k}_steps": r for k, r in enumerate(returns[1:-1], start=1)},
            **outer_metrics,
            "train/entropy_loss": -float(entropy),
            "time/fps": steps / sample_time if sample_time > 0 else float("nan"),
            "time/sampling_seconds": sample_time,
            "time/outer_step_seconds": outer_time,
            "time/iteration_seconds": time.perf_counter() - t_start,
        }
        if successes:
            metrics["rollout/success_rate_before_adaptation"] = successes[0]
            metrics["rollout/success_rate_after_adaptation"] = successes[-1]
        if hasattr(self.policy, "log_std"):  # Gaussian policies
            metrics["train/std"] = float(torch.exp(self.policy.log_std.detach()).mean())
        if cfg.learn_step_sizes:
            for k, size in enumerate(torch.exp(self.policy.log_step_sizes.detach()).tolist(), start=1):
                metrics[f"train/step_size_{k}"] = size
        return metrics

    # ----- meta-test -------------------------------------------------------------------------------
    def meta_test(self) -> dict[str, Any]:
        """Mean return on ``metatest_tasks`` held-out tasks after 0..``metatest_steps`` adaptation steps.

        The result also lists the tasks and each task's mean return per step (``returns_by_task[step][i]``).

        Each step adapts on fresh episodes of the current (adapted) policy, as in the MAML paper's
        figure 5; tasks and episodes come from ``metatest_seed``, so the test set is fixed.
        """
        cfg = self.cfg
        tasks, by_task, success = self._adaptation_returns(cfg.metatest_tasks, cfg.metatest_steps, cfg.metatest_seed,
                                                           split="test")
        means, intervals = [], []
        for per_task in by_task:
            means.append(float(per_task.mean()))
            intervals.append(ci95(per_task))
        result = {"env": cfg.env, "n_tasks": cfg.metatest_tasks, "episodes_per_task": cfg.episodes_per_task,
                  "returns_by_step": means, "ci95_by_step": intervals, "inner_lr": cfg.inner_lr,
                  "env_steps": self.env_steps, "metatest_seed": cfg.metatest_seed, "tasks": tasks_to_json(tasks),
                  "returns_by_task": [[float(r) for r in per_task] for per_task in by_task]}
        if self.sampler.has_task_splits:
            result["task_split"] = "test"
        if success is not None:  # families with a goal: the fraction of episodes that reached it, per step
            result["success_rate_by_step"] = [float(s.mean()) for s in success]
        return result

    def _adaptation_returns(self, n_tasks: int, steps: int, seed: int, split: str
                            ) -> tuple[list[Any], list[np.ndarray], list[np.ndarray] | None]:
        """``n_tasks`` tasks from ``seed`` (the family's ``split`` set where it has one), each task's mean return
        after 0..``steps`` inner steps and, for families with a success criterion, each task's fraction of
        successful episodes after each step (else ``None``). Families with a ``max_simulations`` are run a
        few tasks at a time."""
        cfg = self.cfg
        rng = np.random.default_rng(seed)
        tasks = self.sampler.sample_tasks(n_tasks, rng, split)
        limit = self.sampler.max_simulations
        chunk = len(tasks) if limit is None else max(1, limit // cfg.episodes_per_task)
        meta_params: Params = detach_params(self.meta_params())
        by_task: list[list[np.ndarray]] = [[] for _ in range(steps + 1)]
        success: list[list[np.ndarray]] = [[] for _ in range(steps + 1)]
        for start in range(0, len(tasks), chunk):
            part = tasks[start:start + chunk]

            def episodes_of(params: Params, step: int) -> Episodes:
                """Episodes of the policy adapted ``step`` steps on this chunk's tasks, recorded."""
                eps = self.sampler.sample(self.act_fn(params, step > 0), part, cfg.episodes_per_task, rng)
                by_task[step].append(eps.episode_returns.mean(1).numpy())
                reached = self.sampler.episode_success(eps.rewards * eps.mask, eps.infos)
                if reached is not None:
                    success[step].append(reached.mean(1))
                return eps

            def support(step: int, params: Params) -> Batch:
                eps = episodes_of(params, step)
                with torch.enable_grad():  # a value-network baseline trains here
                    return self.task_batch(eps)

            with torch.no_grad():
                states = inner_loop(self.inner_loss, meta_params, support, steps=steps, first_order=True,
                                    task_axis=True, step_size=lambda step: self.step_size(meta_params, step))
                episodes_of(states[-1] if states else meta_params, steps)
        return (tasks, [np.concatenate(x) for x in by_task],
                [np.concatenate(x) for x in success] if success[0] else None)

    def meta_policy(self) -> MAMLPolicy:
        """The trained policy a user holds (:class:`MAMLPolicy`)."""
        return MAMLPolicy(self)

    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]:
        """Mean return on ``n_tasks`` validation tasks before and after ``inner_steps`` inner steps.

        ``score`` is the return after the inner steps, the quantity meta-training maximises. Tasks and
        episodes come from ``seed``, which must differ from ``metatest_seed``.
        """
        check_validation_seed(seed, self.cfg.metatest_seed)
        steps = self.cfg.inner_steps
        # a value-network baseline is fitted on the episodes it sees: restore it, so validating leaves training as is
        saved = None if self.value_net is None else copy.deepcopy(
            (self.value_net.state_dict(), self.value_opt.state_dict()))
        try:
            _, by_task, _ = self._adaptation_returns(n_tasks, steps, seed, split="train")
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
        if "success_rate_by_step" in result:
            lines.append("success rate by step: " + " ".join(f"{x:.3f}" for x in result["success_rate_by_step"]))
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
