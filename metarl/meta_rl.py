"""The meta-RL layer of the algorithm interface: sampling episodes of a task family, on a device.

:class:`MetaRLAlgorithm` adds to :class:`~metarl.algorithm.MetaAlgorithm` what only the RL learners
(MAML-TRPO/PPO, RL^2, PEARL, a user's) need: the run's sampler (local, or Ray workers that sample the
same episodes), the training device with a CPU copy of the policy that acts in the sampler, and
``retarget`` to meta-test on another family with the same spaces. Few-shot and continual learners
do not inherit it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import torch

from metarl.algorithm import MetaAlgorithm
from metarl.protocols import run_protocol
from metarl.ray_sampler import RaySampler
from metarl.sampler import EpisodeSampler

__all__ = ["MetaRLAlgorithm", "resolve_device", "acting_copy", "check_spaces"]


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` (refused with a one-line error where CUDA is unavailable) or ``"auto"`` (CUDA when
    available) as a ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch build sees no CUDA device (torch.cuda.is_available() is False); "
                         "use --device cpu, or --device auto to take CUDA only where there is one")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: choose cpu, cuda or auto")
    return torch.device(name)


def acting_copy(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module that acts in the sampler: ``module`` itself on the CPU, else a CPU copy of it (its current
    weights). Sampling runs on the CPU whatever the training device, with the same noise."""
    if device.type == "cpu":
        return module
    return copy.deepcopy(module).cpu()


def check_spaces(env: gym.Env, observation_space: gym.Space, action_space: gym.Space, who: str) -> None:
    """Raise a one-line ``ValueError`` unless ``env``'s spaces have the kind and shape the policy was trained on."""
    for name, mine, theirs in (("observation", observation_space, env.observation_space),
                               ("action", action_space, env.action_space)):
        same = type(mine) is type(theirs) and mine.shape == theirs.shape
        if isinstance(mine, gym.spaces.Discrete) and same:
            same = int(mine.n) == int(theirs.n)
        if not same:
            raise ValueError(f"{who} was trained on the {name} space {mine}; this env has {theirs}: use a family "
                             "with the same spaces")


class MetaRLAlgorithm(MetaAlgorithm):
    """A meta-RL learner: its settings are an :class:`~metarl.config.EnvRunConfig` (``env``, ``env_kwargs``,
    ``max_episode_steps``, sampler and device settings) and it samples through ``self.sampler``
    (built with :meth:`make_sampler`)."""

    sampler: Any

    @property
    def device(self) -> torch.device:
        """Where the networks, the adaptation and the outer updates run (``device`` setting; sampling, and the
        policy copy that acts in it, stay on the CPU)."""
        if not hasattr(self, "_device"):
            self._device = resolve_device(getattr(self.cfg, "device", "cpu"))
        return self._device

    def sampler_factory(self, config: Any) -> Callable[[], Any]:
        """What builds the run's local sampler (picklable: remote workers build theirs with it): an
        :class:`~metarl.sampler.EpisodeSampler` of ``config``'s family (``env``, ``env_kwargs``,
        ``max_episode_steps``); RL^2 overrides it with its trial sampler."""
        return functools.partial(EpisodeSampler, config.env, config.env_kwargs,
                                 max_episode_steps=config.max_episode_steps)

    def make_sampler(self, config: Any) -> Any:
        """The run's sampler: the local one, or with ``sampler: ray`` a :class:`~metarl.ray_sampler.RaySampler`
        of ``num_workers`` workers that samples the same episodes."""
        factory = self.sampler_factory(config)
        if getattr(config, "sampler", "local") != "ray":
            return factory()
        return RaySampler(factory, config.num_workers, address=config.ray_address, worker_cpus=config.worker_cpus,
                          worker_timeout=config.worker_timeout, worker_retries=config.worker_retries)

    def meta_policy(self) -> Any:
        """The trained policy a user holds (a :class:`~metarl.policy.MetaPolicy`: adapt to an env's task, act); what
        benchmark protocols run. An algorithm of one's own implements it to have them."""
        raise NotImplementedError(f"{self.name or type(self).__name__} has no meta_policy(): implement it (return its "
                                  "MetaPolicy) to run a benchmark's protocol")

    def protocol_metatest(self) -> dict[str, Any] | None:
        """The benchmark protocol of the ``metatest_protocol`` setting on this algorithm's policy, on the run's test
        tasks with ``metatest_seed`` (:mod:`metarl.protocols`); ``None`` for the algorithm's own meta-test only."""
        name = getattr(self.cfg, "metatest_protocol", "own")
        return None if name == "own" else run_protocol(name, self.meta_policy(), seed=self.cfg.metatest_seed)

    def retarget(self, env: str, env_kwargs: Mapping[str, Any] | None = None, **settings: Any) -> None:
        """Sample another family from now on with the same networks (to meta-test a run on a family it was not
        trained on); ``settings``: meta-test settings to change too (``metatest_tasks=...``).

        Raises:
            ValueError: the family's observation or action space differs from the run's (kind or shape).
        """
        changes: dict[str, Any] = {"env": env, "env_kwargs": dict(env_kwargs or {}), **settings}
        if env != getattr(self.cfg, "env", None) or changes["env_kwargs"] != dict(getattr(self.cfg, "env_kwargs", {})):
            changes.setdefault("max_episode_steps", None)  # the other family's own horizon
        config = dataclasses.replace(self.cfg, **changes)
        config.validate()
        sampler = self.make_sampler(config)
        old = self.sampler
        try:
            check_spaces(sampler.env, old.env.observation_space, old.env.action_space, f"this {self.name} run")
        except ValueError:
            sampler.close()
            raise
        self.cfg, self.sampler = config, sampler
        old.close()  # its envs (and, for a Ray sampler, its workers)
