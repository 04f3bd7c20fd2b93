"""RL^2 (Duan et al. 2016; Wang et al. 2016): a recurrent meta-policy trained with PPO over whole trials.

The adaptation is the recurrent state: a GRU reads ``[s_t, a_{t-1}, r_{t-1}, d_{t-1}]`` (see
:mod:`metarl.wrappers`) through a trial of ``episodes_per_trial`` episodes of one task, its state
kept across the episode boundaries and reset only between trials, so what it does in later
episodes depends on what it saw in earlier ones. Policy and value heads sit on the GRU state.

Per meta-iteration: sample ``meta_batch_size`` tasks; roll out ``trials_per_task`` trials of each
with :class:`~metarl.wrappers.RL2TrialSampler` (the act function carries the GRU state; it stays
still on idle steps of a batched trial); compute GAE over each trial's steps *across* its episode
boundaries (the trial is the meta-episode, nothing is bootstrapped past its end); then run
``ppo_epochs`` epochs of clipped-surrogate PPO on minibatches of whole trials, backpropagating
through each trial from its start (full backprop through time).

The meta-test runs one trial on each of ``metatest_tasks`` held-out tasks and reports the mean
return of every episode index within the trial and of the whole trial, next to the classic
baselines of :mod:`metarl.agents.baselines` on the same tasks (bandits: random, greedy,
epsilon-greedy, UCB1, Thompson, Gittins, Bayes-optimal for short trials; tabular MDPs: random,
PSRL), or a uniformly random policy for families without baselines.

Each family's preset (``metarl/presets/rl2-ppo.yaml``) holds the settings behind the numbers in ``docs/rl2.md``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from metarl.agents.rl2_policy import ActorCriticHeads, RecurrentActor, RecurrentActorCritic, TrialBatch, compact_trials
from metarl.agents.rl2_config import RL2Config, RL2TransformerConfig
from metarl.agents.rl2_transformer import TransformerActorCritic

from metarl.returns import ci95, gae, masked_mean
from metarl.sampler import Episodes
from metarl.tasks import tasks_to_json
from metarl.errors import check_finite, check_validation_seed
from metarl.meta_rl import MetaRLAlgorithm, acting_copy
from metarl.policy import AdaptedPolicy, MetaPolicy
from metarl.wrappers import RL2TrialSampler

__all__ = ["RL2Config", "RL2PPO", "RL2TransformerConfig", "RL2Transformer", "RL2Policy", "RecurrentActorCritic", "RecurrentActor", "TrialBatch", "compact_trials",
           ]


# ---------------------------------------------------------------------------------------------------
# The algorithm
# ---------------------------------------------------------------------------------------------------


class RL2PPO(MetaRLAlgorithm):
    """RL^2 with a GRU actor-critic trained by PPO over whole trials.

    Args:
        config: the complete settings (:class:`RL2Config`), used as given.
        **settings: or settings by name instead: the preset for the family (``env``) fills the rest, as on
            the command line (``RL2PPO(env="metarl/TabularMDP-v0", seed=1)``).
    """

    name = "rl2-ppo"
    config_class = RL2Config
    metatest_only_settings = ("metatest_tasks", "metatest_protocol")
    cfg: RL2Config

    def __init__(self, config: RL2Config | None = None, **settings: Any):
        self.cfg = config = self.resolve_settings(config, settings)
        self.sampler = self.make_sampler(config)
        self.net = self._make_memory(config).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.outer_lr, eps=1e-5)
        self.env_steps = 0
        self.iteration = 0

    def _make_memory(self, config: RL2Config) -> ActorCriticHeads:
        """The actor-critic of ``config.memory``: a GRU, or a causal transformer over the trial."""
        if config.memory == "transformer":
            return TransformerActorCritic(
                self.sampler.inputs.size, self.sampler.action_space, width=config.transformer_width,
                layers=config.transformer_layers, heads=config.transformer_heads,
                context_length=config.context_length, dropout=config.transformer_dropout,
                positional_encoding=config.positional_encoding, max_length=self.sampler.horizon,
                init_std=config.init_std)
        return RecurrentActorCritic(self.sampler.inputs.size, self.sampler.action_space, config.hidden_size,
                                    config.init_std)

    def sampler_factory(self, config: RL2Config) -> Callable[[], RL2TrialSampler]:
        return functools.partial(RL2TrialSampler, config.env, config.env_kwargs,
                                 episodes_per_trial=config.episodes_per_trial,
                                 max_episode_steps=config.max_episode_steps)

    # ----- schedules ---------------------------------------------------------------------------------
    def _progress(self) -> float:
        if self.cfg.anneal_iterations == 0:
            return 0.0
        return min(self.iteration / self.cfg.anneal_iterations, 1.0)

    def current_lr(self) -> float:
        """Learning rate of this iteration (linear decay to ``outer_lr * lr_final_fraction``)."""
        return self.cfg.outer_lr * (1.0 - (1.0 - self.cfg.lr_final_fraction) * self._progress())

    def current_ent_coef(self) -> float:
        """Entropy weight of this iteration (linear decay to ``ent_coef_final``)."""
        final = self.cfg.ent_coef if self.cfg.ent_coef_final is None else self.cfg.ent_coef_final
        return self.cfg.ent_coef + (final - self.cfg.ent_coef) * self._progress()

    # ----- rollouts ------------------------------------------------------------------------------------
    def rollout(self, tasks: list[Any], trials_per_task: int, rng: np.random.Generator, *,
                deterministic: bool = False) -> Episodes:
        """``trials_per_task`` trials of every task with the current policy, ``(tasks, trials, T, ...)``."""
        actor = RecurrentActor(acting_copy(self.net, self.device), self.sampler.backend(tasks, trials_per_task),
                               deterministic)
        return self.sampler.sample(actor, tasks, trials_per_task, rng)

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        t_start = time.perf_counter()
        tasks = self.sampler.sample_tasks(cfg.meta_batch_size, rng, split="train")
        t0 = time.perf_counter()
        trials = self.rollout(tasks, cfg.trials_per_task, rng)
        sample_time = time.perf_counter() - t0
        batch = compact_trials(*(x.to(self.device) for x in (trials.observations, trials.actions, trials.rewards,
                                                              trials.mask)))
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        train = self._ppo_update(batch, generator)
        steps = trials.num_steps
        self.env_steps += steps
        self.iteration += 1
        by_index = self.sampler.episode_returns_by_index(trials.rewards).reshape(-1, cfg.episodes_per_trial).mean(0)

        def by_episode(x: torch.Tensor) -> torch.Tensor:  # (tasks, trials, T) -> (trials, episodes, horizon)
            return x.reshape(-1, cfg.episodes_per_trial, x.shape[-1] // cfg.episodes_per_trial)

        success = self.sampler.episode_success(by_episode(trials.rewards),
                                               {k: by_episode(v) for k, v in trials.infos.items()})
        metrics = {
            "samples": steps,
            "rollout/trial_return": float(trials.episode_returns.mean()),
            "rollout/return_after_adaptation": float(by_index[-1]),
            "rollout/first_episode_return": float(by_index[0]),
            "rollout/last_episode_return": float(by_index[-1]),
            **({} if success is None else {"rollout/first_episode_success_rate": float(success[:, 0].mean()),
                                          "rollout/success_rate_after_adaptation": float(success[:, -1].mean())}),
            **train,
            "time/fps": steps / sample_time if sample_time > 0 else float("nan"),
            "time/sampling_seconds": sample_time,
            "time/iteration_seconds": time.perf_counter() - t_start,
        }
        return metrics

    # ----- PPO -----------------------------------------------------------------------------------------
    def _ppo_update(self, batch: TrialBatch, generator: torch.Generator) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            self.net.eval()  # the sampling policy's probabilities and values: no dropout (a transformer's)
            dist, values, _ = self.net(batch.inputs)
            self.net.train()
            old_log_probs = dist.log_prob(batch.actions)
            rewards = batch.rewards * cfg.reward_scale
            advantages = gae(rewards, values, batch.mask, cfg.gamma, cfg.gae_lambda)
            returns = (advantages + values) * batch.mask
        check_finite(advantages, "RL^2 advantages")
        lr, ent_coef = self.current_lr(), self.current_ent_coef()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        n = len(batch)
        stats: dict[str, list[float]] = {k: [] for k in ("policy_gradient_loss", "value_loss", "entropy_loss", "approx_kl",
                                                          "clip_fraction", "grad_norm")}
        stop = False
        for _ in range(cfg.ppo_epochs):
            if stop:
                break
            perm = torch.randperm(n, generator=generator)
            for idx in torch.tensor_split(perm.to(self.device), cfg.num_minibatches):
                mask = batch.mask[idx]
                adv = advantages[idx]
                mean = masked_mean(adv, mask)
                std = torch.sqrt(masked_mean((adv - mean) ** 2, mask))
                adv = (adv - mean) / (std + 1e-8)
                dist, new_values, _ = self.net(batch.inputs[idx])
                log_probs = dist.log_prob(batch.actions[idx])
                log_ratio = log_probs - old_log_probs[idx]
                ratio = torch.exp(log_ratio)
                with torch.no_grad():
                    approx_kl = float(masked_mean((ratio - 1) - log_ratio, mask))
                if cfg.target_kl is not None and approx_kl > 1.5 * cfg.target_kl and stats["grad_norm"]:
                    stop = True  # the policy moved far enough from the one that sampled: SB3's early stop
                    break
                surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - cfg.clip_range, 1 + cfg.clip_range) * adv)
                policy_loss = -masked_mean(surrogate, mask)
                value_loss = 0.5 * masked_mean((new_values - returns[idx]) ** 2, mask)
                entropy = masked_mean(dist.entropy(), mask)
                loss = policy_loss + cfg.vf_coef * value_loss - ent_coef * entropy
                check_finite(loss, "RL^2 PPO loss")
                self.optimizer.zero_grad()
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
                check_finite(grad_norm, "RL^2 PPO gradient")
                self.optimizer.step()
                with torch.no_grad():
                    stats["policy_gradient_loss"].append(float(policy_loss))
                    stats["value_loss"].append(float(value_loss))
                    stats["entropy_loss"].append(-float(entropy))
                    stats["approx_kl"].append(approx_kl)
                    clipped = ((ratio - 1).abs() > cfg.clip_range).float()
                    stats["clip_fraction"].append(float(masked_mean(clipped, mask)))
                    stats["grad_norm"].append(float(grad_norm))
        flat_returns, flat_values = returns[batch.mask > 0], values[batch.mask > 0]
        var = float(flat_returns.var()) if flat_returns.numel() > 1 else 0.0
        explained = 1.0 - float((flat_returns - flat_values).var()) / var if var > 0 else float("nan")
        out = {f"train/{k}": float(np.mean(v)) for k, v in stats.items()}
        out["train/ppo_updates"] = float(len(stats["grad_norm"]))
        out.update({"train/explained_variance": explained, "train/learning_rate": lr, "train/ent_coef": ent_coef})
        if not self.net.discrete:
            out["train/std"] = float(torch.exp(self.net.log_std.detach()).mean())
        return out

    # ----- meta-test -----------------------------------------------------------------------------------
    def _baseline_returns(self, tasks: list[Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per-task, per-episode returns ``(tasks, episodes_per_trial)`` of each baseline on ``tasks``."""
        from metarl.agents.baselines import default_baselines, evaluate_baselines

        cfg = self.cfg
        probe = self.sampler.env_fn()
        try:
            default_baselines(probe, cfg.episodes_per_trial)
            has_baselines = True
        except ValueError:
            has_baselines = False
        finally:
            probe.close()
        if has_baselines:
            results = evaluate_baselines(cfg.env, cfg.env_kwargs, tasks, cfg.episodes_per_trial, rng,
                                         max_episode_steps=cfg.max_episode_steps)
            out = {}
            for name, result in results.items():
                # evaluate_baselines keeps the totals per task and the episode means over tasks
                out[name] = (result.total_returns, np.asarray(result.mean_episode_returns))
            return out
        # any other family: a uniformly random policy through the same trial sampler
        space = self.sampler.action_space

        def random_act(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            lead = obs.shape[:2]
            if isinstance(space, spaces.Discrete):
                return torch.randint(int(space.n), lead, generator=generator) + int(space.start)
            low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
            if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
                return torch.randn((*lead, *space.shape), generator=generator)
            u = torch.rand((*lead, *space.shape), generator=generator)
            return (low + (high - low) * u).float()

        trials = self.sampler.sample(random_act, tasks, 1, rng)
        per_episode = self.sampler.episode_returns_by_index(trials.rewards)[:, 0].double().numpy()
        return {"random": (per_episode.sum(1), per_episode.mean(0))}

    def meta_test(self) -> dict[str, Any]:
        """One trial on each of ``metatest_tasks`` held-out tasks: RL^2 and the baselines on the same tasks.

        Tasks and trials come from ``metatest_seed``, so the test set is the same for every run.
        """
        cfg = self.cfg
        task_rng, rl2_rng, baseline_rng = np.random.default_rng(cfg.metatest_seed).spawn(3)
        tasks = self.sampler.sample_tasks(cfg.metatest_tasks, task_rng, split="test")
        with torch.no_grad():
            trials = self.rollout(tasks, 1, rl2_rng)
        per_episode = self.sampler.episode_returns_by_index(trials.rewards)[:, 0].double().numpy()
        results = {"rl2": (per_episode.sum(1), per_episode.mean(0))}
        # families with a goal: whether each inner episode reached it
        def by_episode(x: torch.Tensor) -> torch.Tensor:
            return x[:, 0].reshape(len(tasks), cfg.episodes_per_trial, -1)

        success = self.sampler.episode_success(by_episode(trials.rewards),
                                               {k: by_episode(v) for k, v in trials.infos.items()})
        results.update(self._baseline_returns(tasks, baseline_rng))
        n = len(tasks)

        result = {
            "env": cfg.env,
            "env_kwargs": dict(cfg.env_kwargs),
            "n_tasks": n,
            "episodes_per_trial": cfg.episodes_per_trial,
            "mean_total_return": {k: float(tot.mean()) for k, (tot, _) in results.items()},
            "ci95_total_return": {k: ci95(tot) for k, (tot, _) in results.items()},
            "mean_return_by_episode": {k: [float(x) for x in eps] for k, (_, eps) in results.items()},
            "env_steps": self.env_steps,
            "metatest_seed": cfg.metatest_seed,
            "tasks": tasks_to_json(tasks),
        }
        if self.sampler.has_task_splits:
            result["task_split"] = "test"
        if success is not None:
            result["rl2_success_rate_by_episode"] = [float(x) for x in success.mean(0)]
            result["rl2_success_rate_by_episode_cumulative"] = [
                float(x) for x in np.maximum.accumulate(success, axis=1).mean(0)]
        return result

    def meta_policy(self) -> "RL2Policy":
        """The trained policy a user holds (:class:`RL2Policy`)."""
        return RL2Policy(self)

    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]:
        """Mean total return of one trial on each of ``n_tasks`` validation tasks (``score``), and of its
        first and last episode. Tasks and trials come from ``seed``, which must differ from ``metatest_seed``."""
        check_validation_seed(seed, self.cfg.metatest_seed)
        task_rng, trial_rng = np.random.default_rng(seed).spawn(2)
        tasks = self.sampler.sample_tasks(n_tasks, task_rng, split="train")
        with torch.no_grad():
            trials = self.rollout(tasks, 1, trial_rng)
        by_index = self.sampler.episode_returns_by_index(trials.rewards)[:, 0].double().mean(0)
        return {"score": float(trials.episode_returns.mean()), "first_episode_return": float(by_index[0]),
                "last_episode_return": float(by_index[-1])}

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        n_eps = result["episodes_per_trial"]
        shown = list(range(n_eps)) if n_eps <= 4 else [0, 1, n_eps - 1]
        header = " | ".join(f"episode {i + 1}" for i in shown)
        lines = [f"meta-test: {result['n_tasks']} held-out tasks of {result['env']} {result['env_kwargs']}, "
                 f"one trial of {n_eps} episode(s) each",
                 f"policy         | total return (+/- 95% CI) | {header}",
                 "-------------- | ------------------------- | " + " | ".join("-" * 9 for _ in shown)]
        for name, total in result["mean_total_return"].items():
            by_ep = result["mean_return_by_episode"][name]
            cells = " | ".join(f"{by_ep[i]:9.3f}" for i in shown)
            lines.append(f"{name:<14} | {total:12.3f} +/- {result['ci95_total_return'][name]:<8.3f} | {cells}")
        return "\n".join(lines)

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        out = {f"total_return/{k}": v for k, v in result["mean_total_return"].items()}
        out.update({f"rl2_episode_return/{i + 1}": v for i, v in enumerate(result["mean_return_by_episode"]["rl2"])})
        return out

    # ----- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "env_steps": self.env_steps, "iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.env_steps = int(state["env_steps"])
        self.iteration = int(state["iteration"])



class RL2Transformer(RL2PPO):
    """RL^2 with a causal transformer memory (:mod:`metarl.agents.rl2_transformer`): ``--algo rl2-transformer``
    is ``--algo rl2-ppo --memory transformer`` with presets of its own (``metarl/presets/rl2-transformer.yaml``,
    which extends rl2-ppo's per family)."""

    name = "rl2-transformer"
    config_class = RL2TransformerConfig


# ----------------------------------------------------------------------------------------------------
# the trained policy a user holds (metarl.load / metarl.load_policy): adapt to an env's task, then act


class _RL2Adapted(AdaptedPolicy):
    """Carries the GRU state and the previous action, reward and episode-end flag through the trial."""

    def __init__(self, policy: MetaPolicy, generator: torch.Generator):
        super().__init__(policy, generator)
        algo: Any = policy.algorithm
        self.inputs = algo.sampler.inputs
        self.state = algo.net.initial_state(1)
        self.prev_action = np.zeros((1, self.inputs.action_dim), dtype=np.float32)
        self.prev_reward, self.done, self.pending = 0.0, 0.0, None

    def act(self, obs: Any, sample: bool = False) -> np.ndarray:
        x = self.inputs.compose(self.observation(obs)[None], self.prev_action, np.array([self.prev_reward]),
                                np.array([self.done]))
        with torch.no_grad():
            dist, self.state = self.policy.algorithm.net.step(torch.as_tensor(x), self.state)  # type: ignore[attr-defined]
            action = dist.sample(self.generator) if sample else dist.mode()
        self.pending = action[0].numpy()
        if not action.is_floating_point():
            return self.pending.astype(np.int64)[()]
        space = self.policy.action_space  # a sampled Gaussian action, inside the Box as the env would clip it
        return np.clip(self.pending, space.low, space.high).astype(space.dtype)

    def observe(self, reward: float, terminated: bool = False, truncated: bool = False) -> None:
        if self.pending is None:
            raise RuntimeError("observe() follows act(): call act(obs) first")
        self.prev_action = self.inputs.encode_actions(np.asarray(self.pending)[None])
        self.prev_reward, self.done, self.pending = float(reward), float(terminated or truncated), None


class RL2Policy(MetaPolicy):
    """RL^2: ``adapt`` runs the episodes as the start of a trial; the adapted policy continues it."""

    def __init__(self, algorithm: Any):
        super().__init__(algorithm)
        self.default_episodes = max(int(algorithm.cfg.episodes_per_trial) - 1, 0)  # type: ignore[attr-defined]

    def _adapt(self, env: gym.Env, episodes: int, seeds: list[int | None], generator: torch.Generator,
               sample: bool = True) -> AdaptedPolicy:
        """``sample``: sample the trial's first episodes' actions (as in training and the meta-test)."""
        actor = _RL2Adapted(self, generator)
        if episodes:
            self.collect(env, actor, seeds, sample=sample)
        return actor
