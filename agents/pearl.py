"""PEARL (Rakelly et al. 2019): off-policy meta-RL by inferring the task from context.

A :class:`~metarl.encoders.TaskEncoder` maps a context of a task's transitions to a Gaussian posterior
over a latent task ``z``; a soft actor-critic (:mod:`metarl.sac`: tanh-Gaussian actor, twin Q
networks with target networks, fixed or learned temperature) acts and evaluates on ``[s, z]``. The
encoder learns only through the critic's Bellman error plus ``kl_lambda`` times the KL of its posterior
to the unit-Gaussian prior (the information bottleneck); the actor sees ``z`` without gradient.

Per meta-iteration (as the public code, katerakelly/oyster):

1. for ``tasks_per_iteration`` training tasks: clear the task's *encoder* buffer, then collect
   ``prior_episodes`` episodes with ``z`` drawn from the prior (one draw per episode; to both buffers),
   ``posterior_episodes`` with ``z`` from the posterior given context drawn from the encoder buffer,
   re-inferred every ``posterior_update_every`` episodes (to both buffers), and
   ``extra_posterior_episodes`` likewise but only for the actor-critic's replay buffer;
2. ``gradient_steps`` SAC updates, each on ``meta_batch_size`` training tasks: a context of
   ``context_size`` transitions from each task's encoder buffer (the task's data from the last time it was
   collected for, see below) and ``batch_size`` transitions from its replay buffer.

Before the first iteration every training task gets ``initial_episodes`` episodes with ``z`` from the
prior. Training tasks are a fixed set of ``train_tasks`` tasks drawn from the run's seed, each with its
own buffers (:class:`~metarl.replay.MultiTaskReplayBuffer`), as in the paper.

All episodes are collected through the shared :class:`~metarl.sampler.EpisodeSampler` (the families'
batched backends): every episode of a collection phase runs in one batched pass over tasks.

Meta-test (the paper's protocol): on ``metatest_tasks`` held-out tasks (``metatest_seed``; the same
tasks as MAML's meta-test), the first ``metatest_prior_episodes`` episodes (1; the public code's sparse
point robot: 5) act with ``z`` drawn from the prior, a fresh draw each, and sample their actions
(``metatest_sample_prior``, as the training's prior episodes that form the encoder's context); every later
episode acts with the policy's mode and ``z`` drawn from the posterior given all transitions of the trial
so far (posterior sampling). The return (and, for families with a success criterion, the success rate) of
every episode index is reported, like RL^2's ``metatest.json``.

The encoder's context in an update comes from the task's encoder buffer, which is refilled only when the
task is collected for: with ``tasks_per_iteration`` of ``train_tasks`` tasks collected per iteration, a
context was collected by the policy of ``train_tasks / tasks_per_iteration`` iterations before on average
(20 for the Navigation2D preset), not by the current one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch.distributions import Normal

from metarl.encoders import TaskEncoder, make_context
from metarl.replay import MultiTaskReplayBuffer, episode_transitions
from metarl.returns import ci95
from metarl.sac import ActionScaler, TanhGaussianPolicy, TwinQ, soft_q_target, soft_update
from metarl.sampler import ActFn, Episodes
from metarl.tasks import Task, tasks_to_json
from metarl.agents.actors import LatentActor
from metarl.agents.pearl_config import PEARLConfig
from metarl.errors import check_finite, check_validation_seed
from metarl.meta_rl import MetaRLAlgorithm, acting_copy
from metarl.agents.pearl_policy import PEARLPolicy

__all__ = ["PEARLConfig", "PEARL", "PEARLPolicy"]

#: the step info key holding a dense reward for the critic (``--critic-reward dense``)
DENSE_REWARD_KEY = "dense_reward"


class PEARL(MetaRLAlgorithm):
    """PEARL: a task encoder and a soft actor-critic conditioned on its latent task.

    Args:
        config: the complete settings (:class:`PEARLConfig`), used as given.
        **settings: or settings by name instead: the preset for the family (``env``) fills the rest
            (``PEARL(env="metarl/SparsePointRobot-v0", seed=1)``).
    """

    name = "pearl"
    config_class = PEARLConfig
    metatest_only_settings = ("metatest_tasks", "metatest_episodes", "metatest_sample_prior",
                              "metatest_prior_episodes", "metatest_protocol")
    cfg: PEARLConfig

    def __init__(self, config: PEARLConfig | None = None, **settings: Any):
        self.cfg = cfg = self.resolve_settings(config, settings)
        self.sampler = self.make_sampler(cfg)
        obs_space = self.sampler.observation_space
        if not isinstance(obs_space, spaces.Box):
            raise ValueError(f"pearl needs a Box observation space, {cfg.env} has {type(obs_space).__name__}: use "
                             "rl2-ppo for discrete observations")
        self.scaler = ActionScaler(self.sampler.action_space, "pearl")
        self.obs_dim, self.act_dim = int(np.prod(obs_space.shape)), self.scaler.dim
        self.encoder = TaskEncoder(TaskEncoder.transition_dim(self.obs_dim, self.act_dim, cfg.use_next_obs),
                                   cfg.latent_dim, cfg.encoder_hidden_sizes, aggregator=cfg.encoder_aggregator)
        self.policy = TanhGaussianPolicy(self.obs_dim + cfg.latent_dim, self.act_dim, cfg.hidden_sizes)
        self.critic = TwinQ(self.obs_dim + cfg.latent_dim, self.act_dim, cfg.hidden_sizes)
        for net in (self.encoder, self.policy, self.critic):
            net.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.alpha), requires_grad=cfg.learn_alpha, device=self.device)
        self.target_entropy = -float(self.act_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
        self.optimizers = {
            "policy": torch.optim.Adam(self.policy.parameters(), lr=cfg.outer_lr),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=cfg.outer_lr),
            "encoder": torch.optim.Adam(self.encoder.parameters(), lr=cfg.outer_lr),
        }
        if cfg.learn_alpha:
            self.optimizers["alpha"] = torch.optim.Adam([self.log_alpha], lr=cfg.outer_lr)
        # the fixed training tasks: drawn from the seed alone (not the training generator)
        self.train_tasks: list[Task] = self.sampler.sample_tasks(cfg.train_tasks, np.random.default_rng([cfg.seed, 1]),
                                                                   split="train")
        self.replay = MultiTaskReplayBuffer(cfg.train_tasks, cfg.replay_capacity, self.obs_dim, self.act_dim)
        self.context_buffer = MultiTaskReplayBuffer(cfg.train_tasks, cfg.replay_capacity, self.obs_dim, self.act_dim)
        self.env_steps = 0
        self.gradient_steps_done = 0
        self.iteration = 0

    def retarget(self, env: str, env_kwargs: Mapping[str, Any] | None = None, **settings: Any) -> None:
        super().retarget(env, env_kwargs, **settings)
        self.scaler = ActionScaler(self.sampler.action_space, "pearl")  # the tanh policy scales to the new bounds

    # ----- acting ----------------------------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        """The entropy temperature."""
        return float(self.log_alpha.detach().exp())

    def act_fn(self, z: torch.Tensor, deterministic: bool = False, uniform: bool = False) -> ActFn:
        """A sampler act function for latent tasks ``z`` of shape ``(tasks, episodes, latent_dim)`` (``uniform``:
        uniformly random actions, whatever ``z``)."""
        return LatentActor(acting_copy(self.policy, self.device), self.scaler, z.detach().cpu(), deterministic,
                           uniform)

    def context_of(self, transitions: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Context vectors ``[s, a, r(, s')]`` of a batch of transitions (the family's reward)."""
        return make_context(transitions["observations"], transitions["actions"], transitions["rewards"],
                            transitions["next_observations"] if self.cfg.use_next_obs else None)

    def infer_posterior(self, context: torch.Tensor, mask: torch.Tensor | None = None) -> Normal:
        """``q(z | context)`` for contexts ``(..., n, transition_dim)`` (moved to the training device)."""
        return self.encoder(context.to(self.device), None if mask is None else mask.to(self.device))

    # ----- collection ------------------------------------------------------------------------------------
    @staticmethod
    def _sample_z(posterior: Normal, generator: torch.Generator) -> torch.Tensor:
        """A reparameterised draw of ``z`` from ``posterior`` (differentiable in its parameters)."""
        noise = torch.randn(posterior.loc.shape, generator=generator)  # on the CPU: the same draws on any device
        return posterior.loc + posterior.scale * noise.to(posterior.loc.device)

    def _rollout(self, tasks: Sequence[Task], z: torch.Tensor, rng: np.random.Generator,
                 deterministic: bool = False, uniform: bool = False) -> Episodes:
        """One episode per ``z[:, j]`` of every task, through the shared sampler (with the dense reward where the
        critic's reward uses it, ``critic_reward`` ``dense`` or ``env+dense``)."""
        keys = (DENSE_REWARD_KEY,) if self.cfg.critic_reward != "env" else ()
        try:
            return self.sampler.sample(self.act_fn(z, deterministic, uniform), list(tasks), z.shape[1], rng,
                                       info_keys=keys)
        except KeyError as exc:
            raise ValueError(f"--critic-reward {self.cfg.critic_reward} needs a family whose step info has "
                             f"'dense_reward' (as metarl/SparsePointRobot-v0); {self.cfg.env} has none: use "
                             "--critic-reward env") from exc

    def _store(self, task_ids: Sequence[int], episodes: Episodes, to_context: bool) -> None:
        critic_rewards = episodes.infos.get(DENSE_REWARD_KEY)
        if critic_rewards is not None and self.cfg.critic_reward == "env+dense":
            critic_rewards = episodes.rewards + self.cfg.dense_reward_weight * critic_rewards
        tr = episode_transitions(episodes, self.scaler, critic_rewards)
        keep = tr["mask"] > 0
        for row, task in enumerate(task_ids):
            sel = keep[row]
            replay = {k: tr[k][row][sel] for k in ("observations", "actions", "next_observations", "terminals")}
            self.replay.add(task, {**replay, "rewards": tr["critic_rewards"][row][sel]})
            if to_context:
                self.context_buffer.add(task, {**replay, "rewards": tr["rewards"][row][sel]})
        self.env_steps += episodes.num_steps

    def _collect(self, task_ids: Sequence[int], n_episodes: int, rng: np.random.Generator,
                 generator: torch.Generator, *, posterior: bool, to_context: bool) -> list[Episodes]:
        """``n_episodes`` episodes of each task (z from the prior or the posterior), stored in the buffers."""
        cfg, out = self.cfg, []
        block = cfg.posterior_update_every if posterior else n_episodes
        done = 0
        while done < n_episodes:
            k = min(block, n_episodes - done)
            if posterior:
                batch = self.context_buffer.sample(task_ids, cfg.context_size * k, generator)
                context = self.context_of(batch).reshape(len(task_ids), k, cfg.context_size, -1)
                with torch.no_grad():
                    post = self.infer_posterior(context)
                z = self._sample_z(post, generator)
            else:
                z = torch.randn((len(task_ids), k, cfg.latent_dim), generator=generator)
            with torch.no_grad():
                episodes = self._rollout([self.train_tasks[i] for i in task_ids], z, rng,
                                         uniform=not posterior and cfg.prior_actions == "uniform")
            self._store(task_ids, episodes, to_context)
            out.append(episodes)
            done += k
        return out

    # ----- training --------------------------------------------------------------------------------------
    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        t_start = time.perf_counter()
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        steps_before = self.env_steps
        metrics: dict[str, float] = {}
        if self.iteration == 0 and len(self.replay) == 0:
            all_tasks = list(range(cfg.train_tasks))
            self._collect(all_tasks, cfg.initial_episodes, rng, generator, posterior=False, to_context=True)
        task_ids = [int(i) for i in rng.choice(cfg.train_tasks, cfg.tasks_per_iteration, replace=False)]
        for task in task_ids:
            self.context_buffer.clear(task)
        prior, post = [], []
        if cfg.prior_episodes:
            prior = self._collect(task_ids, cfg.prior_episodes, rng, generator, posterior=False, to_context=True)
        if cfg.posterior_episodes:
            post += self._collect(task_ids, cfg.posterior_episodes, rng, generator, posterior=True, to_context=True)
        if cfg.extra_posterior_episodes:
            post += self._collect(task_ids, cfg.extra_posterior_episodes, rng, generator, posterior=True,
                                  to_context=False)
        sample_seconds = time.perf_counter() - t_start
        t0 = time.perf_counter()
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.gradient_steps):
            for key, value in self._update(generator).items():
                stats.setdefault(key, []).append(value)
        update_seconds = time.perf_counter() - t0
        self.gradient_steps_done += cfg.gradient_steps
        self.iteration += 1
        steps = self.env_steps - steps_before

        def mean_return(batches: list[Episodes]) -> float:
            return float(torch.cat([b.episode_returns.flatten() for b in batches]).mean()) if batches else float("nan")

        def success_rate(batches: list[Episodes]) -> float | None:
            """The fraction of the episodes that reached the goal (families with a success criterion)."""
            reached = [self.sampler.episode_success(b.rewards * b.mask, b.infos) for b in batches]
            return None if not reached or reached[0] is None else float(np.mean(np.concatenate(
                [r.reshape(-1) for r in reached])))

        metrics.update({
            "samples": steps,
            "rollout/return_after_adaptation": mean_return(post),
            "rollout/prior_return": mean_return(prior),
            **{f"train/{k}": float(np.mean(v)) for k, v in stats.items()},
            "train/alpha": self.alpha,
            "time/fps": steps / sample_seconds if sample_seconds > 0 else float("nan"),
            "time/sampling_seconds": sample_seconds,
            "time/gradient_steps_per_second": cfg.gradient_steps / update_seconds if update_seconds > 0 else float("nan"),
            "time/iteration_seconds": time.perf_counter() - t_start,
        })
        for tag, batches in (("rollout/prior_success_rate", prior), ("rollout/success_rate_after_adaptation", post)):
            rate = success_rate(batches)
            if rate is not None:
                metrics[tag] = rate
        if not post:
            del metrics["rollout/return_after_adaptation"]
        return metrics

    def _update(self, generator: torch.Generator) -> dict[str, float]:
        """One SAC update of actor, critic, encoder (and temperature) on ``meta_batch_size`` training tasks."""
        cfg = self.cfg
        ids = torch.randperm(cfg.train_tasks, generator=generator)[:cfg.meta_batch_size].tolist()
        context = self.context_of(self.context_buffer.sample(ids, cfg.context_size, generator))
        batch = {k: v.to(self.device) for k, v in self.replay.sample(ids, cfg.batch_size, generator).items()}
        posterior = self.infer_posterior(context)
        z = self._sample_z(posterior, generator)
        kl = TaskEncoder.kl_to_prior(posterior).sum()  # summed over tasks, as the public code
        z_batch = z[:, None, :].expand(-1, cfg.batch_size, -1)
        x = torch.cat([batch["observations"], z_batch], dim=-1)
        x_detached = torch.cat([batch["observations"], z_batch.detach()], dim=-1)
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            x_next = torch.cat([batch["next_observations"], z_batch.detach()], dim=-1)
            next_pi = self.policy(x_next, generator)
            next_q = torch.minimum(*self.critic_target(x_next, next_pi.actions))
            target = soft_q_target(batch["rewards"], batch["terminals"], next_q, next_pi.log_prob, alpha, cfg.gamma,
                                   cfg.reward_scale)
        q1, q2 = self.critic(x, batch["actions"])
        critic_loss = ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()
        loss = critic_loss + cfg.kl_lambda * kl
        check_finite(loss, "PEARL critic/encoder loss (Bellman error + KL)")
        self.optimizers["critic"].zero_grad(set_to_none=True)
        self.optimizers["encoder"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["critic"].step()
        self.optimizers["encoder"].step()

        self.critic.requires_grad_(False)  # the actor's loss moves only the actor
        pi = self.policy(x_detached, generator)
        q_pi = torch.minimum(*self.critic(x_detached, pi.actions))
        actor_loss = (alpha * pi.log_prob - q_pi).mean()
        actor_loss = actor_loss + cfg.policy_reg * ((pi.mean ** 2).mean() + (pi.log_std ** 2).mean())
        check_finite(actor_loss, "PEARL actor loss")
        self.optimizers["policy"].zero_grad(set_to_none=True)
        actor_loss.backward()
        self.optimizers["policy"].step()
        self.critic.requires_grad_(True)
        out = {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "kl": kl.item() / len(ids),
               "q_mean": q1.detach().mean().item(), "entropy": -pi.log_prob.detach().mean().item(),
               "z_std": posterior.scale.detach().mean().item()}
        if cfg.learn_alpha:
            alpha_loss = -(self.log_alpha * (pi.log_prob.detach() + self.target_entropy)).mean()
            self.optimizers["alpha"].zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.optimizers["alpha"].step()
        soft_update(self.critic_target, self.critic, cfg.tau)
        return out

    # ----- meta-test ------------------------------------------------------------------------------------
    def adaptation_trials(self, tasks: Sequence[Task], n_episodes: int, rng: np.random.Generator,
                          sample_prior: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """One trial of ``n_episodes`` on each task: the first ``metatest_prior_episodes`` with ``z`` from the prior
        (a fresh draw each; actions sampled if ``sample_prior``, default ``metatest_sample_prior``), each later one
        with ``z`` from the posterior given the trial's transitions so far and the policy's mode acting.

        Returns:
            returns ``(tasks, n_episodes)`` and, where the family defines ``episode_success(rewards)``, the
            success of each episode ``(tasks, n_episodes)`` (else ``None``).
        """
        cfg = self.cfg
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        n = len(tasks)
        returns, successes = np.zeros((n, n_episodes)), np.zeros((n, n_episodes), dtype=bool)
        context = torch.zeros((n, 0, self.encoder.input_dim))
        mask = torch.zeros((n, 0))
        sample_prior = cfg.metatest_sample_prior if sample_prior is None else sample_prior
        for e in range(n_episodes):
            with torch.no_grad():
                exploring = e < cfg.metatest_prior_episodes
                post = self.encoder.prior((n,)) if exploring else self.infer_posterior(context, mask)
                z = self._sample_z(post, generator)
                episodes = self._rollout(tasks, z[:, None], rng, deterministic=not (exploring and sample_prior),
                                         uniform=exploring and cfg.prior_actions == "uniform")
            returns[:, e] = episodes.episode_returns[:, 0].double().numpy()
            reached = self.sampler.episode_success(episodes.rewards[:, 0], {k: v[:, 0] for k, v in episodes.infos.items()})
            has_success = reached is not None
            if has_success:
                successes[:, e] = reached
            tr = episode_transitions(episodes, self.scaler)
            context = torch.cat([context, self.context_of({k: v[:, 0] for k, v in tr.items()})], dim=1)
            mask = torch.cat([mask, tr["mask"][:, 0]], dim=1)
        return returns, (successes if has_success else None)

    def meta_test(self) -> dict[str, Any]:
        """One trial of ``metatest_episodes`` on each of ``metatest_tasks`` held-out tasks (``metatest_seed``;
        drawn as MAML's meta-test draws its tasks, so both are tested on the same tasks)."""
        cfg = self.cfg
        rng = np.random.default_rng(cfg.metatest_seed)
        tasks = self.sampler.sample_tasks(cfg.metatest_tasks, rng, split="test")
        returns, successes = self.adaptation_trials(tasks, cfg.metatest_episodes, rng)
        result: dict[str, Any] = {
            "env": cfg.env, "env_kwargs": dict(cfg.env_kwargs), "n_tasks": len(tasks),
            "episodes_per_trial": cfg.metatest_episodes,
            "mean_return_by_episode": [float(x) for x in returns.mean(0)],
            "ci95_return_by_episode": [ci95(returns[:, e]) for e in range(cfg.metatest_episodes)],
            "env_steps": self.env_steps, "gradient_steps": self.gradient_steps_done,
            "metatest_seed": cfg.metatest_seed, "tasks": tasks_to_json(tasks),
            "returns_by_task": returns.tolist(),
        }
        if self.sampler.has_task_splits:
            result["task_split"] = "test"
        if successes is not None:
            result["success_rate_by_episode"] = [float(x) for x in successes.mean(0)]
            result["success_rate_by_episode_cumulative"] = [float(x) for x in np.maximum.accumulate(successes, 1).mean(0)]
        return result

    def meta_policy(self) -> PEARLPolicy:
        """The trained policy a user holds (:class:`PEARLPolicy`)."""
        return PEARLPolicy(self)

    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]:
        """Mean return of the posterior episodes of one ``metatest_episodes`` trial on each of ``n_tasks`` validation
        tasks (``score``), and of the prior episode. Tasks come from ``seed`` (not ``metatest_seed``)."""
        check_validation_seed(seed, self.cfg.metatest_seed)
        rng = np.random.default_rng(seed)
        tasks = self.sampler.sample_tasks(n_tasks, rng, split="train")
        returns, _ = self.adaptation_trials(tasks, self.cfg.metatest_episodes, rng)
        return {"score": float(returns[:, 1:].mean()), "prior_episode_return": float(returns[:, 0].mean()),
                "first_posterior_episode_return": float(returns[:, 1].mean())}

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        n_eps = result["episodes_per_trial"]
        lines = [f"meta-test: {result['n_tasks']} held-out tasks of {result['env']}, one trial of {n_eps} episodes "
                 f"(episode 1: z from the prior; then posterior sampling); {result['env_steps']} training env steps",
                 "episode | mean return (+/- 95% CI)" + (" | success rate" if "success_rate_by_episode" in result else ""),
                 "------- | ------------------------" + (" | ------------" if "success_rate_by_episode" in result else "")]
        for e in range(n_eps):
            line = f"{e + 1:7d} | {result['mean_return_by_episode'][e]:10.3f} +/- {result['ci95_return_by_episode'][e]:<8.3f}"
            if "success_rate_by_episode" in result:
                line += f" | {result['success_rate_by_episode'][e]:12.3f}"
            lines.append(line)
        return "\n".join(lines)

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        out = {f"pearl_episode_return/{i + 1}": v for i, v in enumerate(result["mean_return_by_episode"])}
        out.update({f"pearl_success_rate/{i + 1}": v for i, v in enumerate(result.get("success_rate_by_episode", []))})
        return out

    # ----- state -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder.state_dict(), "policy": self.policy.state_dict(),
                "critic": self.critic.state_dict(), "critic_target": self.critic_target.state_dict(),
                "log_alpha": self.log_alpha.detach().clone(),
                "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
                "replay": self.replay.state_dict(), "context_buffer": self.context_buffer.state_dict(),
                "train_tasks": tasks_to_json(self.train_tasks), "env_steps": self.env_steps,
                "gradient_steps": self.gradient_steps_done, "iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["train_tasks"] != tasks_to_json(self.train_tasks):
            raise ValueError("the checkpoint's training tasks differ from those this run's seed draws")
        self.encoder.load_state_dict(state["encoder"])
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if set(state["optimizers"]) != set(self.optimizers):
            raise ValueError(f"optimisers {sorted(state['optimizers'])} do not match {sorted(self.optimizers)}")
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        self.replay.load_state_dict(state["replay"])
        self.context_buffer.load_state_dict(state["context_buffer"])
        self.env_steps = int(state["env_steps"])
        self.gradient_steps_done = int(state["gradient_steps"])
        self.iteration = int(state["iteration"])
